"""Verifiers: answer extraction in many written forms, strict vs lenient flags, spec errors."""

import pytest

from dsforge.errors import InputError, UsageError
from dsforge.verify import MissingReference, Verdict, check_format, final_number, get_verifier, words_to_digits


@pytest.mark.parametrize("reply,expected", [
    ("43", "43"), ("1,234", "1234"), ("1 234 apples", "1234"), ("43.0", "43.0"), ("-7", "-7"), ("−7", "-7"),
    ("forty-three", "43"), ("one hundred and five", "105"), ("minus seven", "-7"),
    ("\\boxed{43}", "43"), ("So \\boxed{\\text{43}} it is", "43"), ("**43**", "43"), ("$43$", "43"),
    ("The answer is 43.", "43"), ("The answer is: 29 + 14 = 43", "43"), ("12 km", "12"),
    ("29 + 14 = 31", "31"),                   # the model's (wrong) answer after '=', not an operand
    ("29-14 = 15", "15"), ("3 x 4 = 12", "12"), ("10 / 4 = 2.5", "2.5"),
    ("What is 29 + 14?", None),               # a restated question has no answer
    ("The sum of 29 and 14 is 43.", "43"), ("5 km is 5000 meters.", "5000"),
    ("<answer>43</answer> (29 + 14)", "43"), ("Answer: 3,000,000", "3000000"),
    ("The answer is 43. That is 29 more than 14.", "43"),   # the anchor beats a later number
    ("", None), ("no numbers here", None),
    # real SmolLM2 replies: the last stated result wins over a later stray number
    ("Alright buddy, we just calculate 6 + 8 = 12. So 26 + 7 is 14. The final answer.", "14"),
    ("6 + 7 is 15, which is the sum of these two mixed numbers (considering two 7s).", "15"),
    ("1 + 8 = 9\n\nIn this equation, just the number is treated like a quantity of 1.", "9"),
    ("The sum is 29 + 14", None),
    ("90 + 40 = 130\n\nThe answer clearly represents the sum of 90 and 40.", "130"),   # 'answer' alone is no anchor ("4 kilometers is equal to 4000 meters.", "4000"),
])
def test_final_number(reply, expected):
    assert final_number(reply) == expected


def test_words_to_digits():
    assert words_to_digits("twenty one and forty-three") == "21 and 43"
    assert words_to_digits("seventy thousand two hundred") == "70200"


@pytest.mark.parametrize("reply,ref,correct,fmt", [
    ("43", 43, True, True), ("43.", "43", True, True), (" 43.0 ", 43, True, True), ("1,234", 1234, True, True),
    ("The answer is 43.", 43, True, False), ("29 + 14 = 43", "43", True, False), ("29 + 14 = 31", 43, False, False),
    ("43 km", 43, True, False), ("44", 43, False, True), ("-7", -7, True, True), ("7", -7, False, True),
])
def test_numeric_lenient_and_strict(reply, ref, correct, fmt):
    v = get_verifier("numeric")
    verdict = v.check(reply, ref)
    assert (verdict.correct, verdict.format_ok, verdict.score) == (correct, fmt, 1.0 if correct else 0.0)


def test_numeric_tolerances():
    assert not get_verifier("numeric").check("3.1416", "3.14159").correct
    assert get_verifier("numeric").check("0.30000000001", 0.3).correct          # rel 1e-6 for floats
    assert get_verifier("numeric:rel=1e-3").check("3.1416", "3.14159").correct
    assert get_verifier("numeric:abs=0.5").check("43.4", 43).correct
    assert not get_verifier("numeric").check("43.4", 43).correct


def test_row_format_rules():
    v = get_verifier("numeric")
    assert v.check("<answer>43</answer>", 43, {"format": "answer_tag"}).format_ok
    assert not v.check("43", 43, {"format": "answer_tag"}).format_ok
    assert v.check("It is forty-three.", 43, {"format": "words:3"}) == Verdict(True, True, "43", 1.0)
    assert not v.check("It is 43 for sure.", 43, {"format": "words:3"}).format_ok
    assert v.check("whatever 43", 43, {"format": "any"}).format_ok
    assert check_format("boxed", "so \\boxed{4}") and not check_format("boxed", "4")
    assert not check_format("boxed", "The answer is \\boxed{}.")              # an empty box (a real reply)
    assert not check_format("words:3", "49 + 19 = 113")                      # an equation is not 3 words
    assert check_format("regex:\\d+ km", "12 km") and not check_format("regex:\\d+ km", "12 m")
    with pytest.raises(InputError, match="unknown format rule"):
        v.check("43", 43, {"format": "shout"})


def test_exact_regex_math():
    assert get_verifier("exact").check("Paris", "paris") == Verdict(True, True, "paris", 1.0)
    ex = get_verifier("exact").check("The capital is **Paris**.", "Paris")
    assert ex.correct and not ex.format_ok
    assert not get_verifier("exact").check("Parisian food", "Paris").correct
    rx = get_verifier(r"regex:answer: (\d+)")
    assert rx.check("answer: 12 then answer: 43", "43").answer == "43"
    assert rx.check("answer: 43", None).correct and not rx.check("nothing", None).correct
    m = get_verifier("math")
    assert m.check("so the result is $\\frac{1}{2}$", "0.5").correct
    assert m.check("\\boxed{43}", "43").format_ok and not m.check("43 apples", "44").correct


def test_python_verifier(tmp_path, monkeypatch):
    (tmp_path / "myver.py").write_text(
        "def flag(reply, reference, row):\n    return reply.strip() == str(reference)\n"
        "def score(reply, reference, row):\n    return 0.75\n"
        "def full(reply, reference, row):\n    return {'correct': True, 'format_ok': False, 'answer': 'x'}\n"
        "def bad(reply, reference, row):\n    return 'yes'\n"
        "def boom(reply, reference, row):\n    return 1 / 0\n")
    monkeypatch.chdir(tmp_path)
    assert get_verifier("python:myver:flag").check("43", 43).correct
    assert get_verifier("python:myver:score").check("43", 43) == Verdict(True, True, None, 0.75)
    assert get_verifier(f"python:{tmp_path / 'myver.py'}:full").check("x", None) == Verdict(True, False, "x", 1.0)
    with pytest.raises(InputError, match="returned str"):
        get_verifier("python:myver:bad").check("43", 43)
    with pytest.raises(InputError, match="raised ZeroDivisionError"):
        get_verifier("python:myver:boom").check("43", 43)


@pytest.mark.parametrize("spec,message", [
    ("nope", "unknown verifier 'nope'"), ("regex:(", "bad regular expression"), ("regex:", "needs a pattern"),
    ("numeric:tol=1", "bad option 'tol=1'"), ("numeric:rel=-1", "bad option"),
    ("python:no_such_module_xyz:f", "no module named 'no_such_module_xyz'"), ("python:os:no_such_fn", "has no function"),
    ("python:justone", "give python:MODULE:FUNCTION"), ("exact:x", "unknown verifier"),
])
def test_bad_specs(spec, message):
    with pytest.raises(UsageError, match=message) as err:
        get_verifier(spec)
    assert err.value.exit_code == 2


def test_missing_reference():
    with pytest.raises(MissingReference, match="needs a reference"):
        get_verifier("numeric").check("43", None)
    with pytest.raises(InputError, match="not a number"):
        get_verifier("numeric").check("43", "Paris")
    for structured in ({"value": 43}, [43], ["12", "43"]):   # no number is guessed out of a structure's text
        with pytest.raises(InputError, match="not a number"):
            get_verifier("numeric").check("43", structured)
    assert get_verifier("numeric").check("43", 43).correct and get_verifier("numeric").check("43", 43.0).correct


def test_math_verifier_off_the_main_thread():
    """math-verify's timeouts use SIGALRM (main thread only); in a worker thread they are switched off."""
    from concurrent.futures import ThreadPoolExecutor

    v = get_verifier("math")
    with ThreadPoolExecutor(2) as pool:
        verdicts = list(pool.map(lambda r: v.check(r, "0.5"), ["$\\frac{1}{2}$", "\\boxed{0.25}"]))
    assert [x.correct for x in verdicts] == [True, False]
