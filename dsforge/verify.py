"""Verifiers: programs that check a reply against a reference answer.

    from dsforge.verify import get_verifier
    v = get_verifier("numeric")               # exact | numeric[:rel=R,abs=A] | math | regex:PATTERN | python:MOD:FN
    v.check("29 + 14 = 43", "43")             # Verdict(correct=True, format_ok=False, answer='43', score=1.0)

A `Verdict` keeps two flags apart (format gains must not pass for reasoning gains):
- `correct` is LENIENT: the right answer, wherever it stands in the reply.
- `format_ok` is STRICT: the reply has the form the prompt asked for. The rule is the row's
  `format` field when the row has one (see `check_format`), else the verifier's default.
`score` is 1.0/0.0 from `correct` (a python: verifier may give its own float).

Numeric answer extraction and the strict format rules live in dsforge.answers (`final_number`,
`check_format`); both are re-exported here.

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

from dsforge.answers import (FORMAT_RULES, check_format, final_number, find_number, normalize, to_number,
                             words_to_digits)
from dsforge.errors import InputError, UsageError

KINDS = ("exact", "numeric", "math", "regex:PATTERN", "python:MODULE:FUNCTION")
__all__ = ["KINDS", "FORMAT_RULES", "Verdict", "Verifier", "MissingReference", "get_verifier", "check_format",
           "final_number", "normalize", "to_number", "words_to_digits"]


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
        found = find_number(reply)
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
