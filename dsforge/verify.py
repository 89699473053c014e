"""Verifiers: programs that check a reply against a reference answer.

    from dsforge.verify import get_verifier
    v = get_verifier("numeric")               # exact | numeric[:rel=R,abs=A] | math | regex:PATTERN | python:MOD:FN
    v.check("29 + 14 = 43", "43")             # Verdict(correct=True, format_ok=False, answer='43', score=1.0)

A `Verdict` keeps two flags apart (format gains must not pass for reasoning gains):
- `correct` is LENIENT: the right answer, wherever it stands in the reply.
- `format_ok` is STRICT: the reply has the form the prompt asked for. The rule is the row's
  `format` field when the row has one (see `check_format`), else the verifier's default.
`score` is 1.0/0.0 from `correct` (a python: verifier may give its own float).

Numeric answer extraction (`final_number`), in this order; the first rule that finds a number wins:
 1. the last `\\boxed{...}`, then the last `<answer>...</answer>` (the rules below applied inside it);
 2. after the last "answer is" / "answer:" / "answer =" / "result is" / "final answer is" (up to the
    end of that sentence; "answer" alone is no anchor): the number stated last as a result in it (rule 3), else its first number that is not
    an operand;
 3. the number stated last as a result: right after the last "=", "is", "equals", "equal to",
    "makes", "gives" or "get" that a number (not an operand) follows ("29 + 14 = 31" -> 31: the
    model's answer, even when wrong; "6 + 8 = 12. So 26 + 7 is 14." -> 14);
 4. the last number of the reply that is not an operand of an arithmetic expression
    ("a + b", "a x b", ...: a restated question gives no answer).
Numbers may be written "1,234", "1 234" (groups of three), "43.0", "-7" / "−7", "**43**",
"12 km", "$43$", or in words ("forty-three", "one hundred and five"). A minus sign right after a
digit is subtraction, not a sign. Comparison is exact for integers (43.0 == 43) and relative 1e-6
otherwise; `numeric:rel=1e-3,abs=0.01` sets the tolerances (close when either holds).

Errors: `get_verifier` raises UsageError (exit 2) for an unknown kind, a bad regex, bad numeric
options, or a python: module/function that cannot be found; `check` raises `MissingReference`
(an InputError, exit 1) when a verifier that needs a reference gets None, and InputError for an
unknown `format` rule in a row, or a python: function that raises or returns something unusable.
Words for numbers are read only when the reply has no usable digits (so "one" in "the one who" is
left alone when a digit answer exists).
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import re
import sys
import threading
from dataclasses import asdict, dataclass
from fractions import Fraction

from dsforge.errors import InputError, UsageError

KINDS = ("exact", "numeric", "math", "regex:PATTERN", "python:MODULE:FUNCTION")
FORMAT_RULES = ("any", "number", "answer_tag", "boxed", "exact", "words:N", "regex:PATTERN")


@dataclass(frozen=True)
class Verdict:
    """One reply checked: `correct` (lenient), `format_ok` (strict), the extracted `answer`
    (None when nothing answer-like was found) and `score` (1.0/0.0 from correct unless a python:
    verifier gave its own)."""

    correct: bool
    format_ok: bool
    answer: str | None
    score: float

    def to_dict(self) -> dict:
        """{"correct", "format_ok", "answer", "score"} for a judged record."""
        return asdict(self)


class MissingReference(InputError):
    """A verifier that compares with a reference got none for this row."""


# ---------------------------------------------------------------- numbers

_ONES = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i > 1}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_WORD = "|".join(sorted([*_ONES, *_TENS, *_SCALES], key=len, reverse=True))
_AFTER_SCALE = "|".join(f"(?<={w})" for w in _SCALES)
_WORD_RUN = re.compile(rf"\b(?:minus\s+|negative\s+)?(?:{_WORD})(?:(?:(?:{_AFTER_SCALE})\s+and\s+|[\s-]+)(?:{_WORD}))*\b",
                       re.I)


def _words_value(text: str) -> int | None:
    """'forty-three' -> 43, 'one hundred and five' -> 105, 'minus seven' -> -7 (None if malformed)."""
    words = re.findall(r"[a-z]+", text.lower())
    sign = -1 if words and words[0] in ("minus", "negative") else 1
    total = current = 0
    seen, small = False, None   # small: the last word was a unit/teen ("u") or a ten ("t")
    for w in words[1:] if sign < 0 else words:
        if w == "and":
            continue
        if w in _ONES:
            if small == "u" or (small == "t" and _ONES[w] > 9) or (small == "t" and _ONES[w] == 0):
                return None   # "three four", "twenty twelve": not one number
            current += _ONES[w]
            small = "u"
        elif w in _TENS:
            if small:
                return None
            current += _TENS[w]
            small = "t"
        elif w == "hundred":
            current = max(current, 1) * 100
            small = None
        elif w in _SCALES:
            total += max(current, 1) * _SCALES[w]
            current, small = 0, None
        else:
            return None
        seen = True
    return sign * (total + current) if seen else None


def words_to_digits(text: str) -> str:
    """Number words written as digits: 'forty-three apples' -> '43 apples'."""
    def repl(m: re.Match) -> str:
        value = _words_value(m.group(0))
        return m.group(0) if value is None else str(value)

    return _WORD_RUN.sub(repl, text)


# a number: thousands with commas or (thin/normal) spaces, optional decimals; the sign is decided in code
_NUM = re.compile(r"(?<![\d.,])([-−]?)(\d{1,3}(?:,\d{3})+(?!\d)|\d{1,3}(?:[ \u00a0\u202f\u2009]\d{3})+(?![\d,])|\d+)"
                  r"(\.\d+)?(?![\d])")
_OP = r"[-−+*×x÷/]"
_ANCHOR = re.compile(r"\b(?:final answer|answer|result)\s*(?:is|was|would be|will be|=|:)\s*:?", re.I)
_BOXED = re.compile(r"\\boxed\s*\{")
_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)


@dataclass(frozen=True)
class _Num:
    text: str      # as written, sign included
    value: Fraction
    start: int
    end: int


def _numbers(text: str) -> list[_Num]:
    out = []
    for m in _NUM.finditer(text):
        sign, body, frac = m.group(1), m.group(2), m.group(3) or ""
        start = m.start()
        if sign:
            before = text[:m.start()].rstrip()
            if before and (before[-1].isdigit() or before[-1] == ")"):
                sign, start = "", m.start(2)   # 29-14: subtraction, not a negative number
        digits = re.sub(r"[, \u00a0\u202f\u2009]", "", body) + frac
        value = Fraction(digits) * (-1 if sign else 1)
        out.append(_Num((("-" if sign else "") + digits), value, start, m.end()))
    return out


def _is_operand(text: str, num: _Num, nums: list[_Num]) -> bool:
    """Whether `num` is a left or right operand of an arithmetic expression (a + b, a x b, ...)."""
    after = text[num.end:]
    if re.match(rf"\s*{_OP}\s*[-−]?\d", after):
        return True
    before = text[:num.start]
    return re.search(rf"\d\s*{_OP}\s*$", before) is not None


def _clean(text: str) -> str:
    text = re.sub(r"\*\*|__|`", "", text)
    text = re.sub(r"(?<=\d)\\[,!;](?=\d)|(?<=\d)\{,\}(?=\d)", "", text)   # LaTeX 1\,234 / 1{,}234
    return text


def _balanced(text: str, start: int) -> str:
    depth, i = 1, start
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start:i - 1] if depth == 0 else text[start:]


# a stated result: "= 43", "is 43", "equals 43", "equal to 43", "makes 43", "gives 43", "get 43"
_MARKER = re.compile(r"(?:(?<![=<>!])=(?!=)|\b(?:is|are|equals?(?:\s+to)?|makes|gives|get|gets)\b)[\s$\\(:]*(?=[-−]?\d)",
                     re.I)


def _after_marker(text: str) -> _Num | None:
    """The number stated last as a result (after '=', 'is', 'equals', ...), skipping operands
    ('is 29 + 14' states no result)."""
    nums = _numbers(text)
    for m in reversed(list(_MARKER.finditer(text))):
        after = [n for n in nums if n.start >= m.end()]
        if after and after[0].start <= m.end() + 1 and not _is_operand(text, after[0], nums):
            return after[0]
    return None


def _free_number(text: str, first: bool = False) -> _Num | None:
    nums = [n for n in _numbers(text) if not _is_operand(text, n, [])]
    if not nums:
        return None
    return nums[0] if first else nums[-1]


def _extract(text: str) -> _Num | None:
    boxes = [m.end() for m in _BOXED.finditer(text)]
    if boxes:
        inner = _extract_plain(_balanced(text, boxes[-1]))
        if inner is not None:
            return inner
    tags = _TAG.findall(text)
    if tags:
        inner = _extract_plain(tags[-1])
        if inner is not None:
            return inner
    return _extract_plain(text)


def _extract_plain(text: str) -> _Num | None:
    anchors = list(_ANCHOR.finditer(text))
    if anchors:
        seg = text[anchors[-1].end():]
        seg = re.split(r"\.(?=\s|$)|[!?;\n]", seg, maxsplit=1)[0]
        found = _after_marker(seg) or _free_number(seg, first=True)
        if found is not None:
            return found
    return _after_marker(text) or _free_number(text)


def final_number(reply: str) -> str | None:
    """The reply's final numeric answer as a plain decimal string ('1,234' -> '1234', '-7', '43.0'),
    or None. Rules: module docstring."""
    found = _find_number(reply)
    return None if found is None else found.text


def _find_number(reply: str) -> _Num | None:
    text = _clean(reply)
    found = _extract(text)
    if found is None:
        found = _extract(words_to_digits(text))
    return found


def to_number(value) -> Fraction | None:
    """A reference (int, float, or text such as '1,234', '-7', '43.0', 'forty-three') as a Fraction, or None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(value) if math.isfinite(value) else None
    found = _find_number(str(value))
    return None if found is None else found.value


_NUMBER_ONLY = re.compile(r"\s*[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s*\.?\s*")


def check_format(rule: str | None, reply: str, *, reference=None) -> bool:
    """Whether `reply` has the form `rule` asks for (STRICT):
    any: always; number: the reply is one number and nothing else (one trailing '.' allowed);
    answer_tag: exactly one <answer>...</answer> holding a non-empty answer; boxed: exactly one non-empty \\boxed{};
    exact: the reply equals the reference after trimming, case and whitespace;
    words:N: exactly N words (runs of letters/digits) and no equation (=, +, *, /); regex:PATTERN: the trimmed reply matches PATTERN whole.
    Raises InputError for an unknown rule."""
    if rule in (None, "any"):
        return True
    if rule == "number":
        return _NUMBER_ONLY.fullmatch(reply) is not None
    if rule == "answer_tag":
        tags = _TAG.findall(reply)
        return len(tags) == 1 and tags[0].strip() != ""
    if rule == "boxed":
        boxes = [m.end() for m in _BOXED.finditer(reply)]
        return len(boxes) == 1 and _balanced(reply, boxes[0]).strip() != ""
    if rule == "exact":
        return reference is not None and normalize(reply) == normalize(str(reference))
    if rule.startswith("words:") and rule[6:].isdigit():
        if re.search(r"[=+*/×÷]", reply):   # an equation is not an answer in words
            return False
        return len(re.findall(r"[^\W_]+(?:['’.,-][^\W_]+)*", reply)) == int(rule[6:])
    if rule.startswith("regex:"):
        try:
            return re.fullmatch(rule[6:], reply.strip(), re.S) is not None
        except re.error as err:
            raise InputError(f"format rule {rule!r} is not a valid regular expression: {err}") from None
    raise InputError(f"unknown format rule {rule!r}", f"format rules: {', '.join(FORMAT_RULES)}")


def normalize(text: str) -> str:
    """Text for exact comparison: trimmed, casefolded, whitespace collapsed, markdown emphasis,
    surrounding quotes and trailing punctuation removed."""
    text = re.sub(r"\*\*|__|`", "", text).strip().casefold()
    text = re.sub(r"\s+", " ", text).strip(" \"'“”‘’")
    return text.rstrip(".!;:").strip()


# ---------------------------------------------------------------- verifiers


class Verifier:
    """Checks replies against references. `spec` is the text it was built from; `default_format`
    is the strict rule used when a row has no `format` field."""

    spec: str = ""
    default_format: str = "any"
    needs_reference: bool = True

    def check(self, reply: str, reference, row: dict | None = None) -> Verdict:
        """Verdict for one reply. reference: the row's reference answer (str/int/float; None only
        for verifiers that need none); row: the prompt/candidate row (its `format` sets the strict rule).
        Raises MissingReference, InputError (unknown format rule)."""
        if reference is None and self.needs_reference:
            raise MissingReference(f"verifier {self.spec!r} needs a reference answer and this row has none",
                                   "give each prompt a 'reference' field (dsforge tasks make writes one)")
        correct, answer = self._judge(reply or "", reference)
        return Verdict(bool(correct), self._format_ok(reply or "", reference, row), answer, 1.0 if correct else 0.0)

    def _format_ok(self, reply: str, reference, row: dict | None) -> bool:
        rule = (row or {}).get("format") or self.default_format
        return check_format(rule, reply, reference=reference)

    def _judge(self, reply: str, reference) -> tuple[bool, str | None]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<Verifier {self.spec}>"


class ExactVerifier(Verifier):
    """`exact`: correct when the normalized reference appears in the reply as a whole phrase
    (lenient); format_ok when the whole normalized reply equals it."""

    spec, default_format = "exact", "exact"

    def _judge(self, reply, reference):
        ref = normalize(str(reference))
        text = normalize(reply)
        if ref and re.search(rf"(?<!\w){re.escape(ref)}(?!\w)", text):
            return True, ref
        lines = [normalize(x) for x in reply.splitlines() if x.strip()]
        return False, (lines[-1] if lines else None)


class NumericVerifier(Verifier):
    """`numeric[:rel=R,abs=A]`: the final number (`final_number`) equals the reference: exactly when
    both are integers and no tolerance was given, else within rel (default 1e-6) or abs (default 0)."""

    default_format = "number"

    def __init__(self, rel: float | None = None, abs_: float | None = None, spec: str = "numeric"):
        self.rel, self.abs, self.spec = rel, abs_, spec

    def _judge(self, reply, reference):
        ref = to_number(reference)
        if ref is None:
            raise InputError(f"reference {reference!r} is not a number", "use verifier 'exact' for text answers")
        found = _find_number(reply)
        if found is None:
            return False, None
        got = found.value
        if self.rel is None and self.abs is None and got.denominator == 1 and ref.denominator == 1:
            return got == ref, found.text
        ok = math.isclose(float(got), float(ref), rel_tol=1e-6 if self.rel is None else self.rel,
                          abs_tol=self.abs or 0.0)
        return ok or got == ref, found.text


class MathVerifier(Verifier):
    """`math`: the `math-verify` library parses the reply's final answer (boxed, LaTeX or plain
    expression) and compares it with the reference symbolically (1/2 == 0.5 == \\frac{1}{2})."""

    spec, default_format = "math", "boxed"

    def __init__(self):
        try:
            import math_verify  # noqa: F401
        except ImportError:
            raise UsageError("verifier 'math' needs the math-verify package", "pip install math-verify") from None

    def _judge(self, reply, reference):
        from math_verify import parse, verify

        main = threading.current_thread() is threading.main_thread()   # its timeouts use SIGALRM
        timeout = 5 if main else None
        ref = str(reference)
        gold = parse(ref if ("$" in ref or "\\boxed" in ref) else f"${ref}$", parsing_timeout=timeout)
        got = parse(reply, parsing_timeout=timeout)
        if not got:
            return False, None
        answer = str(got[-1]) if len(got) > 1 else str(got[0])
        return bool(gold) and verify(gold, got, timeout_seconds=timeout), answer


class RegexVerifier(Verifier):
    """`regex:PATTERN`: the answer is the last match (group 1 when the pattern has a group);
    correct when it equals the reference (normalized), or, without a reference, when there is a
    match. format_ok: the row's rule, else the whole trimmed reply matches PATTERN."""

    needs_reference = False

    def __init__(self, pattern: str, spec: str):
        self.spec = spec
        try:
            self.pattern = re.compile(pattern, re.S)
        except re.error as err:
            raise UsageError(f"verifier {spec!r}: bad regular expression: {err}",
                             "e.g. --verifier 'regex:answer: (\\d+)'") from None
        self.default_format = f"regex:{pattern}"

    def _judge(self, reply, reference):
        matches = list(self.pattern.finditer(reply))
        if not matches:
            return False, None
        m = matches[-1]
        answer = m.group(1) if self.pattern.groups else m.group(0)
        if reference is None:
            return True, answer
        return normalize(answer or "") == normalize(str(reference)), answer


class PythonVerifier(Verifier):
    """`python:MODULE:FUNCTION` (or `python:path/to/file.py:FUNCTION`): FUNCTION(reply, reference, row)
    returns a bool, a float score (correct when >= 0.5), a Verdict, or a dict with `correct` and
    optionally `format_ok`, `answer`, `score`. The current directory is importable."""

    needs_reference = False

    def __init__(self, module: str, function: str, spec: str):
        self.spec = spec
        mod = _import_user_module(module, spec)
        fn = getattr(mod, function, None)
        if not callable(fn):
            raise UsageError(f"verifier {spec!r}: {module} has no function {function!r}",
                             f"define def {function}(reply, reference, row): ... in {module}")
        self.fn = fn

    def check(self, reply: str, reference, row: dict | None = None) -> Verdict:
        try:
            out = self.fn(reply, reference, row)
        except Exception as err:  # noqa: BLE001 - the user's verifier failed on this reply
            raise InputError(f"verifier {self.spec!r} raised {type(err).__name__}: {err}",
                             "fix the function (it is called as fn(reply, reference, row))") from err
        if isinstance(out, Verdict):
            return out
        fmt = self._format_ok(reply or "", reference, row)
        if isinstance(out, dict):
            if "correct" not in out and "score" not in out:
                raise InputError(f"verifier {self.spec!r} returned a dict without 'correct' or 'score'",
                                 "return True/False, a float score, or {'correct': bool, ...}")
            score = float(out["score"]) if out.get("score") is not None else (1.0 if out.get("correct") else 0.0)
            correct = bool(out["correct"]) if "correct" in out else score >= 0.5
            answer = out.get("answer")
            return Verdict(correct, bool(out.get("format_ok", fmt)), None if answer is None else str(answer), score)
        if isinstance(out, bool):
            return Verdict(out, fmt, None, 1.0 if out else 0.0)
        if isinstance(out, (int, float)) and math.isfinite(out):
            return Verdict(out >= 0.5, fmt, None, float(out))
        raise InputError(f"verifier {self.spec!r} returned {type(out).__name__}, not a bool, score or dict",
                         "return True/False, a float score, or {'correct': bool, ...}")


def _import_user_module(module: str, spec: str):
    if module.endswith(".py"):
        if not os.path.isfile(module):
            raise UsageError(f"verifier {spec!r}: no file {module}", "check the path")
        loader = importlib.util.spec_from_file_location(f"dsforge_user_verifier_{abs(hash(module))}", module)
        mod = importlib.util.module_from_spec(loader)
        try:
            loader.loader.exec_module(mod)
        except Exception as err:  # noqa: BLE001 - the user's code failed to import
            raise UsageError(f"verifier {spec!r}: {module} failed to import: {type(err).__name__}: {err}") from None
        return mod
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and module.split(".")[0] == err.name.split(".")[0] or err.name == module:
            raise UsageError(f"verifier {spec!r}: no module named {module!r}",
                             "run from the directory that holds it, set PYTHONPATH, or give a file: "
                             "python:path/to/file.py:function") from None
        raise UsageError(f"verifier {spec!r}: {module} failed to import: {err}") from None
    except Exception as err:  # noqa: BLE001 - the user's code failed to import
        raise UsageError(f"verifier {spec!r}: {module} failed to import: {type(err).__name__}: {err}") from None


def _numeric_options(text: str, spec: str) -> dict:
    opts = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not sep or key not in ("rel", "abs") or not math.isfinite(number) or number < 0:
            raise UsageError(f"verifier {spec!r}: bad option {part!r}",
                             "numeric options are rel=R and abs=A (non-negative numbers), e.g. numeric:rel=1e-3,abs=0.01")
        opts["abs_" if key == "abs" else key] = number
    return opts


def get_verifier(spec: str) -> Verifier:
    """The verifier for `spec`: exact | numeric | numeric:rel=R,abs=A | math | regex:PATTERN |
    python:MODULE:FUNCTION (or python:FILE.py:FUNCTION). Raises UsageError naming the problem."""
    spec = (spec or "").strip()
    kind, _, rest = spec.partition(":")
    if kind == "exact" and not rest:
        return ExactVerifier()
    if kind == "numeric":
        return NumericVerifier(**_numeric_options(rest, spec), spec=spec)
    if kind == "math" and not rest:
        return MathVerifier()
    if kind == "regex":
        if not rest:
            raise UsageError("verifier 'regex:' needs a pattern", "e.g. regex:answer: (\\d+)")
        return RegexVerifier(rest, spec)
    if kind == "python":
        module, _, function = rest.rpartition(":")
        if not module or not function:
            raise UsageError(f"verifier {spec!r}: give python:MODULE:FUNCTION", "e.g. python:myverifiers:check")
        return PythonVerifier(module, function, spec)
    raise UsageError(f"unknown verifier {spec!r}", f"verifiers: {', '.join(KINDS)}")
