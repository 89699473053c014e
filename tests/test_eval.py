"""dsforge eval: statistics against independent formulas, scoring and comparison with a scripted engine,
the win-rate mode through a real HTTP judge server, and the CLI's usage errors."""

import json
import math

import pytest
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.engines import Completion, Engine, EngineOptions, Result
from dsforge.evalstats import mcnemar, mean_ci, paired_difference, pass_at_k, wilson
from dsforge.evaluate import EvalConfig, evaluate, format_summary
from dsforge.errors import UsageError
from tests.servers import FakeOpenAI


# ---------------------------------------------------------------- statistics


def _wilson_closed_form(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (81, 263), (50, 50), (1, 1)])
def test_wilson_matches_the_closed_form(k, n):
    lo, hi = wilson(k, n)
    elo, ehi = _wilson_closed_form(k, n)
    assert lo == pytest.approx(elo, abs=1e-9) and hi == pytest.approx(ehi, abs=1e-9)
    assert wilson(0, 0) == (None, None)


def test_pass_at_k_matches_the_binomial_ratio():
    for n in range(1, 12):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)
    assert pass_at_k(5, 0, 3) == 0.0 and pass_at_k(5, 3, 3) == 1.0 and pass_at_k(4, 1, 1) == 0.25
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_mcnemar_exact_is_the_two_sided_binomial_on_discordant_pairs():
    new = [True] * 41 + [False] * 12 + [True] * 30 + [False] * 17
    old = [False] * 41 + [True] * 12 + [True] * 30 + [False] * 17
    r = mcnemar(new, old)
    assert (r["b"], r["c"], r["both"], r["neither"]) == (41, 12, 30, 17)
    expect = 2 * sum(math.comb(53, i) for i in range(13)) / 2 ** 53
    assert r["p"] == pytest.approx(expect, rel=1e-9)
    assert mcnemar([True, False], [True, False])["p"] == 1.0


def test_paired_bootstrap_is_seeded_covers_the_difference_and_is_zero_for_identical_items():
    import numpy as np

    rng = np.random.default_rng(1)
    old = rng.random(200) < 0.3
    new = old | (rng.random(200) < 0.15)
    a = paired_difference(new.astype(float).tolist(), old.astype(float).tolist(), seed=3)
    b = paired_difference(new.astype(float).tolist(), old.astype(float).tolist(), seed=3)
    assert a == b
    assert a["diff"] == pytest.approx(new.mean() - old.mean())
    assert a["ci_low"] < a["diff"] < a["ci_high"] and a["ci_low"] > 0   # only gains: the interval is above 0
    # an independent seeded resampling of item indices gives about the same interval
    d = new.astype(float) - old.astype(float)
    idx = np.random.default_rng(7).integers(0, len(d), (20000, len(d)))
    lo, hi = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
    assert a["ci_low"] == pytest.approx(lo, abs=0.015) and a["ci_high"] == pytest.approx(hi, abs=0.015)
    same = paired_difference([1.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    assert (same["diff"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)
    assert mean_ci([0.5, 0.5])["ci_low"] == 0.5


# ---------------------------------------------------------------- scoring with a scripted engine


class Scripted(Engine):
    """Answers each request with reply(messages, params) (a plain function)."""

    name = "scripted"

    def __init__(self, reply):
        super().__init__("scripted", EngineOptions())
        self.reply, self.requests = reply, []

    def generate(self, requests):
        for r in requests:
            self.requests.append(r)
            texts = [self.reply(r.messages, r.params, i) for i in range(r.params.n)]
            yield Result(request=r, completions=[Completion(t, "stop", len(t.split())) for t in texts])


def _prompts(tmp_path, n=6, name="p.jsonl", **extra):
    rows = [{"id": f"q{i}", "instruction": f"What is {i} + {i}?", "reference": str(2 * i), "verifier": "numeric",
             **extra} for i in range(n)]
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _adder(wrong=()):
    def reply(messages, params, i):
        q = int(messages[-1]["content"].split()[2])
        return f"{q} + {q} = {2 * q + (1 if q in wrong else 0)}"
    return reply


def test_pass1_strict_lenient_items_and_baseline_pairing(tmp_path):
    p = _prompts(tmp_path, format="number")
    cfg = EvalConfig(model="m")
    base = evaluate(cfg, p, str(tmp_path / "base.json"), engine=Scripted(_adder(wrong={0, 1, 2, 3})))
    assert base["pass1"]["lenient"]["k"] == 2 and base["pass1"]["lenient"]["n"] == 6
    assert base["pass1"]["strict"]["k"] == 0   # "4 + 4 = 8" is right but not the bare number asked for
    doc = json.loads((tmp_path / "base.json").read_text())
    assert doc["kind"] == "dsforge.eval" and [r["id"] for r in doc["items"]] == [f"q{i}" for i in range(6)]
    assert {"id", "reply", "answer", "correct", "format_ok"} <= set(doc["items"][5])
    assert doc["items"][5]["answer"] == "10" and doc["items"][0]["correct"] is False
    new = evaluate(cfg, p, str(tmp_path / "new.json"), baseline=str(tmp_path / "base.json"),
                   engine=Scripted(_adder(wrong={0})))
    d = new["baseline"]["lenient"]
    assert d["diff"] == pytest.approx(3 / 6) and (d["mcnemar"]["b"], d["mcnemar"]["c"]) == (3, 0)
    assert d["mcnemar"]["p"] == pytest.approx(0.25)
    text = format_summary(new)
    assert "pass@1 lenient 83.3% [" in text and "vs baseline +50.0 pts [" in text and "(b=3 gained, c=0 lost)" in text


def test_an_earlier_eval_of_another_model_or_prompts_is_not_replaced(tmp_path):
    p, other = _prompts(tmp_path), _prompts(tmp_path, n=3, name="other.jsonl")
    base = tmp_path / "base.json"
    evaluate(EvalConfig(model="m"), p, str(base), engine=Scripted(_adder(wrong={0})))
    first = base.read_text()
    for cfg, prompts, what in ((EvalConfig(model="m2"), p, "model 'm' (now 'm2')"),
                               (EvalConfig(model="m"), other, "prompts")):
        with pytest.raises(UsageError, match="is an earlier eval of another run") as err:
            evaluate(cfg, prompts, str(base), engine=Scripted(_adder()), keep_other_evals=True)
        assert what in err.value.message and base.read_text() == first
    r = _run(["eval", "--prompts", other, "-m", "m", "--engine", "openai", "--base-url", "http://127.0.0.1:9/v1",
              "-o", str(base)])   # the CLI refuses before starting any engine
    assert r.exit_code == 2 and "is an earlier eval of another run" in r.output and base.read_text() == first
    evaluate(EvalConfig(model="m"), p, str(base), engine=Scripted(_adder()), keep_other_evals=True)   # the same run
    assert json.loads(base.read_text())["summary"]["pass1"]["lenient"]["k"] == 6
    evaluate(EvalConfig(model="m2"), p, str(base), engine=Scripted(_adder()))   # the runner reruns onto its output
    assert json.loads(base.read_text())["config"]["model"] == "m2"


def test_a_baseline_with_other_scoring_settings_is_paired_with_a_note(tmp_path):
    p = _prompts(tmp_path)
    evaluate(EvalConfig(model="m", max_tokens=64), p, str(tmp_path / "base.json"), engine=Scripted(_adder()))
    notes = []
    s = evaluate(EvalConfig(model="m", max_tokens=128), p, baseline=str(tmp_path / "base.json"),
                 engine=Scripted(_adder()), log=notes.append)
    assert s["baseline"]["settings_differ"] == "max_tokens 64 (now 128)"
    assert any("was run with other settings: max_tokens 64 (now 128)" in n for n in notes)
    assert "note: the baseline was run with other settings: max_tokens 64 (now 128)" in format_summary(s)
    s = evaluate(EvalConfig(model="m2", max_tokens=64), p, baseline=str(tmp_path / "base.json"), engine=Scripted(_adder()))
    assert s["baseline"]["settings_differ"] is None   # another model is what a baseline is for


def test_sampled_pass_at_k_uses_per_item_seeds(tmp_path):
    p = _prompts(tmp_path, n=4)
    eng = Scripted(lambda m, params, i: "no idea" if params.temperature and i % 2 else _adder()(m, params, i))
    s = evaluate(EvalConfig(model="m", k=2, samples=4, temperature=0.8), p, None, engine=eng)
    assert s["pass_k"]["pass1"] == pytest.approx(0.5) and s["pass_k"]["pass_k"] == pytest.approx(1 - 1 / 6)
    assert s["pass_k"]["items_mixed"] == 4
    sampled = [r for r in eng.requests if r.params.n == 4]
    assert len(sampled) == 4 and len({r.params.seed for r in sampled}) == 4 and sampled[0].params.temperature == 0.8


def test_baseline_of_other_prompts_is_refused_before_any_generation(tmp_path):
    p = _prompts(tmp_path)
    evaluate(EvalConfig(model="m"), p, str(tmp_path / "base.json"), engine=Scripted(_adder()))
    other = _prompts(tmp_path, n=5, name="other.jsonl")
    eng = Scripted(_adder())
    with pytest.raises(UsageError, match=r"other prompts: 1 ids only in it \(e.g. q5\)"):
        evaluate(EvalConfig(model="m"), other, None, baseline=str(tmp_path / "base.json"), engine=eng)
    assert eng.requests == []


def test_a_handed_in_engine_must_serve_the_configured_adapter(tmp_path):
    import types

    p = _prompts(tmp_path, n=2)
    eng = Scripted(_adder())
    eng.options = types.SimpleNamespace(lora_path=str(tmp_path / "round-1"))
    with pytest.raises(UsageError, match="serves adapter .*round-1.*asks for .*round-2"):
        evaluate(EvalConfig(model="m", adapter=str(tmp_path / "round-2")), p, None, engine=eng)
    with pytest.raises(UsageError, match="asks for None"):
        evaluate(EvalConfig(model="m"), p, None, engine=eng)
    assert evaluate(EvalConfig(model="m", adapter=str(tmp_path / "round-1")), p, None, engine=eng)["items"] == 2


def _judge_prefers_right(messages, params, i):
    """A pairwise judge that picks whichever answer holds the right sum (so both orders agree)."""
    text = messages[-1]["content"]
    q = int(text.split("What is ")[1].split()[0])
    a = text.split("BEGIN ANSWER A")[1].split("END ANSWER A")[0]
    return json.dumps({"rationale": "checked the sum", "winner": "A" if f"= {2 * q}" in a else "B"})


def test_win_rate_from_a_consistent_judge(tmp_path):
    p = _prompts(tmp_path, n=5)
    evaluate(EvalConfig(model="m"), p, str(tmp_path / "base.json"), engine=Scripted(_adder(wrong={0, 1, 2})))
    s = evaluate(EvalConfig(model="m", judge_model="j"), p, None, against=str(tmp_path / "base.json"),
                 engine=Scripted(_adder(wrong={4})), judge_engine=Scripted(_judge_prefers_right))
    w = s["winrate"]   # q0-q2: only the new reply is right; q3: both right (the judge says A both times: tie); q4: lost
    assert (w["win"], w["tie"], w["loss"], w["swap_consistency"]) == (3, 1, 1, 0.8)
    assert w["win_rate"] == pytest.approx(3.5 / 5) and w["ci_low"] < w["win_rate"] < w["ci_high"]


def test_win_rate_counts_both_orders(tmp_path, monkeypatch):
    from dsforge import rubrics

    p = _prompts(tmp_path, n=4)
    evaluate(EvalConfig(model="m"), p, str(tmp_path / "base.json"), engine=Scripted(_adder(wrong={0, 1, 2})))
    with FakeOpenAI(models=("judge",), reply='{"rationale": "first is better", "winner": "A"}') as fake:
        s = evaluate(EvalConfig(model="m", judge_model="judge"), p, str(tmp_path / "new.json"),
                     against=str(tmp_path / "base.json"), engine=Scripted(_adder()),
                     judge_options={"base_url": fake.url(), "probe": False})
    w = s["winrate"]   # a judge that always says "A" flips under swap: every comparison is a tie
    assert (w["n"], w["win"], w["tie"], w["loss"], w["failed"]) == (4, 0, 4, 0, 0)
    assert w["win_rate"] == 0.5 and w["swap_consistency"] == 0.0
    assert len([r for r in fake.requests if r[0] == "POST"]) == 8
    assert "win 0 / tie 4 / loss 0; win rate 50.0% [50.0, 50.0], swap-consistent 0%" in format_summary(s)
    assert rubrics.load_rubric("pairwise", "pairwise").mode == "pairwise"


# ---------------------------------------------------------------- CLI


def _run(args):
    return CliRunner().invoke(cli, args)


def test_cli_usage_errors_are_one_message_exit_2(tmp_path):
    p = _prompts(tmp_path)
    cases = [
        (["eval", "--prompts", p, "--samples", "4"], "--samples needs --k"),
        (["eval", "--prompts", p, "--k", "4", "--samples", "2"], "--samples 2 is below --k 4"),
        (["eval", "--prompts", p, "--judge-model", "j"], "only apply with --against"),
        (["eval", "--prompts", p, "--base-url", "http://127.0.0.1:9/v1"], "--base-url/--api-key apply to --engine openai"),
        (["eval", "--prompts", p, "--baseline", p], "is not JSON"),
        (["eval", "--prompts", p, "--adapter", str(tmp_path), "-o", str(tmp_path / "e.json")], "has no adapter_config.json"),
        (["eval", "--prompts", p, "--engine", "openai", "--adapter", str(tmp_path)], "--adapter works with --engine vllm only"),
        (["eval", "--prompts", p, "-o", str(tmp_path / "e.jsonl")], "must end in .json"),
    ]
    for args, msg in cases:
        r = _run(args)
        assert r.exit_code == 2, (args, r.output)
        assert msg in r.output and "Traceback" not in r.output, (args, r.output)
    bad = tmp_path / "nover.jsonl"
    bad.write_text(json.dumps({"id": "a", "instruction": "hi", "reference": "1"}) + "\n")
    r = _run(["eval", "--prompts", str(bad), "--engine", "openai", "--base-url", "http://127.0.0.1:9/v1"])
    assert r.exit_code == 2 and "nover.jsonl:1: no verifier for item 'a'" in r.output
    (tmp_path / "keep.json").write_text('{"mine": 1}')
    r = _run(["eval", "--prompts", p, "-o", str(tmp_path / "keep.json")])
    assert r.exit_code == 2 and "already exists and is not an eval output" in r.output
    assert json.loads((tmp_path / "keep.json").read_text()) == {"mine": 1}


def test_bad_prompt_rows_are_data_errors_with_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"id": "a", "instruction": "1+1?", "reference": "2"}) + "\n"
                 + json.dumps({"id": "b", "reference": "3"}) + "\n")
    r = _run(["eval", "--prompts", str(f), "--verifier", "numeric", "--engine", "openai"])
    assert r.exit_code == 1 and "bad.jsonl:2: not a prompt row" in r.output and "Traceback" not in r.output
    f.write_text(json.dumps({"id": "a", "instruction": "1+1?", "reference": "2"}) + "\n"
                 + json.dumps({"id": "a", "instruction": "2+2?", "reference": "4"}) + "\n")
    r = _run(["eval", "--prompts", str(f), "--verifier", "numeric", "--engine", "openai"])
    assert r.exit_code == 1 and "bad.jsonl:2: id 'a' is used again (first at line 1)" in r.output
    ok = {"id": "a", "instruction": "1+1?", "reference": "2", "verifier": "numeric"}
    for bad, code, msg in (({"verifier": "numerc"}, 2, "bad.jsonl:2: unknown verifier 'numerc'"),
                           ({"format": "nmber"}, 1, "bad.jsonl:2: unknown format rule 'nmber'")):
        f.write_text(json.dumps(ok) + "\n" + json.dumps({**ok, "id": "b", **bad}) + "\n")
        with FakeOpenAI(models=("m",), reply="2") as fake:   # refused before any request reaches the model
            r = _run(["eval", "--prompts", str(f), "-m", "m", "--engine", "openai", "--base-url", fake.url()])
            assert not [x for x in fake.requests if x[0] == "POST"]
        assert r.exit_code == code and msg in r.output and "Traceback" not in r.output, r.output


def test_output_config_holds_no_credential(tmp_path):
    p = _prompts(tmp_path, n=2)
    cfg = EvalConfig(model="m", engine="openai", base_url="http://user:SECRET@127.0.0.1:9/v1")
    evaluate(cfg, p, str(tmp_path / "e.json"), engine=Scripted(_adder()))
    text = (tmp_path / "e.json").read_text()
    assert "SECRET" not in text and json.loads(text)["config"]["base_url"].startswith("http://***@")
    r = _run(["eval", "--prompts", p, "--max-tokens", "0"])
    assert r.exit_code == 2 and "--max-tokens" in r.output


def test_eval_has_help():
    r = _run(["eval", "--help"])
    assert r.exit_code == 0 and "pass@1" in r.output
