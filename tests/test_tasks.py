"""dsforge tasks: deterministic generators with correct references, the CLI, the calibration maths."""

import json
import re
from fractions import Fraction

import pytest
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.engines import Completion, Result
from dsforge.tasks import FAMILIES, get_family, heldout_instructions
from dsforge.tasks.calibrate import calibrate, choose, pass_at_k
from dsforge.verify import get_verifier

UNIT_FACTORS = {("kilometers", "meters"): 1000, ("meters", "centimeters"): 100, ("centimeters", "millimeters"): 10,
                ("kilograms", "grams"): 1000, ("hours", "minutes"): 60, ("minutes", "seconds"): 60,
                ("liters", "milliliters"): 1000, ("days", "hours"): 24, ("kilometers", "centimeters"): 100_000,
                ("meters", "millimeters"): 1000, ("hours", "seconds"): 3600, ("days", "minutes"): 1440}


def recompute(row) -> Fraction:
    """The answer worked out again from the instruction text alone (not from the generator)."""
    text = row["instruction"]
    m = re.fullmatch(r"What is ([\d +\-*]+)\? .*", text)
    if m:
        tokens = m.group(1).split()
        # * first, then + and - left to right, done by hand (not eval) so the check is independent
        vals, ops = [int(tokens[0])], []
        for op, x in zip(tokens[1::2], tokens[2::2]):
            if op == "*":
                vals[-1] *= int(x)
            else:
                ops.append(op)
                vals.append(int(x))
        total = vals[0]
        for op, v in zip(ops, vals[1:]):
            total = total + v if op == "+" else total - v
        return Fraction(total)
    m = re.fullmatch(r"Convert ([\d.]+) (\w+) to (\w+)\. .*", text)
    amount, src, dst = Fraction(m.group(1)), m.group(2), m.group(3)
    if (src, dst) in UNIT_FACTORS:
        return amount * UNIT_FACTORS[(src, dst)]
    return amount / UNIT_FACTORS[(dst, src)]


@pytest.mark.parametrize("family,level", [(f.name, lv) for f in FAMILIES.values() for lv in f.levels])
def test_references_recompute(family, level):
    rows = get_family(family).make(40, 7, level)
    assert len({r["instruction"] for r in rows}) == 40
    v = get_verifier("numeric")
    for r in rows:
        assert Fraction(r["reference"]) == recompute(r), r
        assert r["task"]["family"] == family and r["task"]["difficulty"] == level
        assert v.check(r["reference"], r["reference"], r).correct
        assert set(r) == {"id", "instruction", "reference", "task", "verifier", "format"}
        if not r["format"].startswith("words:") and r["format"] != "number":
            assert not v.check(r["reference"], r["reference"], r).format_ok   # the bare number lacks the form


def test_same_seed_same_bytes_and_prefix(tmp_path):
    runner = CliRunner()
    outs = []
    for name, seed in (("a.jsonl", 5), ("b.jsonl", 5), ("c.jsonl", 6)):
        res = runner.invoke(cli, ["tasks", "make", "arith", "--n", "50", "--seed", str(seed), "--difficulty", "5",
                                  "-o", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1] and outs[0] != outs[2]
    first = get_family("arith").make(10, 5, "5", heldout_instructions("arith"))
    assert [json.loads(x) for x in outs[0].decode().splitlines()[:10]] == first   # a larger n extends a smaller


def test_cli_list_and_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["tasks", "list"])
    assert res.exit_code == 0 and "arith:" in res.output and "units:" in res.output and "format:" in res.output
    data = json.loads(runner.invoke(cli, ["tasks", "list", "--json"]).output)
    assert {f["name"] for f in data} == set(FAMILIES)
    res = runner.invoke(cli, ["tasks", "make", "algebra", "--n", "3", "-o", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "unknown task family 'algebra'" in res.output
    res = runner.invoke(cli, ["tasks", "make", "arith", "--n", "3", "--difficulty", "42", "-o", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "has no difficulty '42'" in res.output
    res = runner.invoke(cli, ["tasks", "make", "arith", "--n", "500", "--difficulty", "1", "-o", str(tmp_path / "x.jsonl")])
    assert res.exit_code == 2 and "distinct prompts" in res.output and not (tmp_path / "x.jsonl").exists()
    other = tmp_path / "mine.jsonl"
    other.write_text('{"instruction": "keep me"}\n')
    res = runner.invoke(cli, ["tasks", "make", "arith", "--n", "3", "-o", str(other)])
    assert res.exit_code == 2 and "not replacing it" in res.output
    assert other.read_text() == '{"instruction": "keep me"}\n'


def test_pass_at_k_and_choose():
    assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 1, 8) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)   # C(3,2)/C(5,2)
    levels = {"1": {"greedy_pass1": 0.9, "pairable": 0.3}, "2": {"greedy_pass1": 0.45, "pairable": 0.5},
              "3": {"greedy_pass1": 0.2, "pairable": 0.6}, "4": {"greedy_pass1": 0.02, "pairable": 0.1}}
    assert choose(levels)[0] == "3"
    assert choose({"1": levels["1"], "4": levels["4"]})[0] == "4"   # 0.02 is nearer 15% than 0.9 is to 50%
    assert "no level" in choose({"1": levels["1"]})[1]


class ScriptedEngine:
    """Answers each prompt from a function of its reference (greedy: temperature 0)."""

    def __init__(self, answer):
        self.answer = answer

    def generate(self, requests):
        for req in requests:
            ref = self.ref[req.messages[0]["content"]]
            texts = [self.answer(ref, req.params.temperature, i) for i in range(req.params.n)]
            yield Result(req, [Completion(t, "stop", completion_tokens=3) for t in texts])


def test_calibrate_with_scripted_engine():
    fam = get_family("arith")
    eng = ScriptedEngine(lambda ref, t, i: ref if (t == 0 and int(ref) % 3 == 0) or (t > 0 and i % 2 == 0) else "0")
    eng.ref = {r["instruction"]: r["reference"] for lv in ("3", "4") for r in fam.make(30, 0, lv)}
    res = calibrate("arith", "fake", levels=["3", "4"], n_prompts=30, k=4, engine=eng)
    for lv in ("3", "4"):
        m = res["levels"][lv]
        rows = fam.make(30, 0, lv)
        assert m["greedy_pass1"] == pytest.approx(sum(int(r["reference"]) % 3 == 0 for r in rows) / 30)
        assert m["sampled_pass1"] == pytest.approx(0.5) and m["pairable"] == 1.0 and m["pass_at_k"] == 1.0
    assert res["chosen"] in ("3", "4") and res["settings"]["k"] == 4


def test_make_skips_excluded_instructions():
    fam = get_family("arith")
    plain = fam.make(20, 3, "4")
    held = frozenset(r["instruction"] for r in plain[:5])
    rows = fam.make(20, 3, "4", exclude=held)
    assert not held & {r["instruction"] for r in rows}
    assert len(rows) == 20
    assert [r["instruction"] for r in rows[:15]] == [r["instruction"] for r in plain[5:]]   # same draws, held ones skipped


def test_calibrate_cli_refuses_before_any_engine(tmp_path):
    runner = CliRunner()
    same = str(tmp_path / "x.jsonl")   # -o is JSON (.json), --replies JSONL: they cannot be one file
    res = runner.invoke(cli, ["tasks", "calibrate", "arith", "--replies", same, "-o", same])
    assert res.exit_code == 2 and "must end in .json" in res.output
    res = runner.invoke(cli, ["tasks", "calibrate", "arith", "--k", "8", "--n-samples", "4"])
    assert res.exit_code == 2 and "--n-samples 4 is below --k 8" in res.output
    res = runner.invoke(cli, ["tasks", "calibrate", "arith", "--levels", "3,77", "-m", str(tmp_path)])
    assert res.exit_code == 2 and "has no difficulty '77'" in res.output


def test_calibrate_never_writes_over_a_prompts_file_of_tasks_make(tmp_path):
    from dsforge.errors import UsageError
    from dsforge.io import guard_kind
    from dsforge.tasks import write_rows
    from dsforge.tasks.calibrate import write_json

    runner = CliRunner()
    prompts = str(tmp_path / "p.jsonl")
    assert runner.invoke(cli, ["tasks", "make", "arith", "--n", "3", "-o", prompts]).exit_code == 0
    before = open(prompts).read()
    res = runner.invoke(cli, ["tasks", "calibrate", "arith", "--replies", prompts, "-m", str(tmp_path)])
    assert res.exit_code == 2 and "is not an output of dsforge tasks calibrate (it is an output of dsforge tasks make)" in res.output
    res = runner.invoke(cli, ["tasks", "calibrate", "arith", "-o", prompts, "-m", str(tmp_path)])
    assert res.exit_code == 2 and "must end in .json" in res.output and open(prompts).read() == before
    replies, result = str(tmp_path / "r.jsonl"), str(tmp_path / "cal.json")
    write_rows([{"reply": "4"}], replies, kind="calibrate")
    write_json({"levels": {}}, result)
    guard_kind(replies, "calibrate") or guard_kind(result, "calibrate", "--replies")   # calibrate may redo its own
    with pytest.raises(UsageError, match="is not an output of dsforge tasks make"):
        guard_kind(replies, "tasks")   # and tasks make does not write over calibrate's replies


def test_calibrate_engine_failures_are_data_errors():
    from dsforge.errors import DsforgeError, UsageError

    class Failing:
        def generate(self, requests):
            for req in requests:
                yield Result(req, [], error="server said 500")

    with pytest.raises(DsforgeError, match="requests failed \\(server said 500\\)") as err:
        calibrate("arith", "fake", levels=["1"], n_prompts=2, k=2, engine=Failing(), log=lambda s: None)
    assert not isinstance(err.value, UsageError) and err.value.exit_code == 1
