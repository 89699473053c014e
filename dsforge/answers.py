"""Reading answers out of model replies: the final number, and whether a reply has a required form.

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

`check_format(rule, reply)` decides the STRICT flag of a verdict (rules: FORMAT_RULES).
Errors: InputError for an unknown format rule or a bad regex rule.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from dsforge.errors import InputError

FORMAT_RULES = ("any", "number", "answer_tag", "boxed", "exact", "words:N", "regex:PATTERN")

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
class Number:
    """A number found in a reply: its plain text (sign included, no separators), exact value and span."""

    text: str      # as written, sign included
    value: Fraction
    start: int
    end: int


def _numbers(text: str) -> list[Number]:
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
        out.append(Number((("-" if sign else "") + digits), value, start, m.end()))
    return out


def _is_operand(text: str, num: Number, nums: list[Number]) -> bool:
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


def _after_marker(text: str) -> Number | None:
    """The number stated last as a result (after '=', 'is', 'equals', ...), skipping operands
    ('is 29 + 14' states no result)."""
    nums = _numbers(text)
    for m in reversed(list(_MARKER.finditer(text))):
        after = [n for n in nums if n.start >= m.end()]
        if after and after[0].start <= m.end() + 1 and not _is_operand(text, after[0], nums):
            return after[0]
    return None


def _free_number(text: str, first: bool = False) -> Number | None:
    nums = [n for n in _numbers(text) if not _is_operand(text, n, [])]
    if not nums:
        return None
    return nums[0] if first else nums[-1]


def _extract(text: str) -> Number | None:
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


def _extract_plain(text: str) -> Number | None:
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
    found = find_number(reply)
    return None if found is None else found.text


def find_number(reply: str) -> Number | None:
    """The reply's final answer as a Number (digits first; number words only when digits give none), or None."""
    text = _clean(reply)
    found = _extract(text)
    if found is None:
        found = _extract(words_to_digits(text))
    return found


def to_number(value) -> Fraction | None:
    """A reference (int, float, or text such as '1,234', '-7', '43.0', 'forty-three') as a Fraction, or None."""
    if isinstance(value, (bool, dict, list)) or value is None:   # no number is guessed out of a structure's text
        return None
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(value) if math.isfinite(value) else None
    found = find_number(str(value))
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
