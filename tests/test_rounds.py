"""Recipe rounds: the loop stages (tasks, export, eval) in the runner table, their recipe rules, and a real
two-round run killed with SIGKILL in round 2 that resumes without redoing round 1."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dsforge.errors import ConfigError
from dsforge.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
HELDOUT = str(ROOT / "dsforge" / "data" / "heldout" / "arith-5.jsonl")


def write_recipe(tmp_path, stages, **top):
    doc = {"name": "t", "run_dir": str(tmp_path / "run"), "stages": stages, **top}
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(p)


LOOP = [{"tasks": {"family": "arith", "n": 4}}, {"sample": {"n": 2, "temps": [1.0]}},
        {"judge": {"verifier": "numeric"}}, {"pairs": {"strategy": "correct-vs-wrong"}}, {"register": {"name": "r"}},
        {"train": {"stage": "dpo"}}, {"export": {}}, {"eval": {"heldout": [HELDOUT], "limit": 4}}]


@pytest.mark.parametrize("stages,top,expect", [
    (LOOP[1:], {}, "inputs: give input files (or a tasks stage"),
    (LOOP, {"inputs": ["x.csv"]}, "stages[0]: a tasks stage makes the prompts"),
    (LOOP[:6] + [LOOP[7]], {"rounds": 2}, "rounds: rounds > 1 sample from the policy the round before exported: add export"),
    (LOOP[:7] + [{"eval": {}}], {}, "stages[7].eval.heldout: name the held-out prompt files"),
    (LOOP[:7] + [{"eval": {"heldout": ["a/x.jsonl", "b/x.jsonl"]}}], {},
     "stages[7].eval.heldout: two held-out files share the name x"),
    (LOOP[:7] + [{"eval": {"heldout": ["nope.jsonl"]}}], {}, "stages[7].eval.heldout[0]: "),
    (LOOP[:5] + [{"train": {"stage": "dpo", "recipe": "full"}}] + LOOP[6:], {}, "stages[6]: export merges a LoRA"),
    (LOOP, {"rounds": 0}, "rounds: Input should be greater than or equal to 1"),
    (LOOP[:4] + [{"register": {"name": "r", "dataset_dir": "d"}}] + LOOP[5:], {"rounds": 2},
     "stages[4].register.dataset_dir: with rounds each round registers into RUN_DIR/round-T/data"),
])
def test_loop_recipe_errors_point_at_their_location(tmp_path, stages, top, expect):
    with pytest.raises(ConfigError) as err:
        load_recipe(write_recipe(tmp_path, stages, **top))
    assert expect in str(err.value)


def test_loop_recipe_loads_and_resolves_heldout_relative_to_the_recipe(tmp_path):
    stages = LOOP[:7] + [{"eval": {"heldout": ["h.jsonl"]}}]
    (tmp_path / "h.jsonl").write_text('{"id": "1", "instruction": "1+1?", "reference": "2"}\n')
    r = load_recipe(write_recipe(tmp_path, stages, rounds=3))
    assert r.rounds == 3 and [s.kind for s in r.stages][-3:] == ["train", "export", "eval"]
    assert r.stages[-1].eval.heldout == (str(tmp_path / "h.jsonl"),)


def _tiny_loop(tmp_path, lf_py):
    """Two real rounds, as small as they go: 8 level-1 sums x 4 samples (hf engine) at max_tokens 16, the numeric
    verifier, correct-vs-wrong pairs, 1 DPO step in LLaMA-Factory, the merged policy, a vLLM eval on 4 held-out items."""
    return write_recipe(tmp_path, [
        {"tasks": {"family": "arith", "difficulty": "1", "n": 8, "seed": 3}},
        {"sample": {"engine": "hf", "n": 4, "temps": [1.0], "max_tokens": 16}},
        {"judge": {"verifier": "numeric"}},
        {"pairs": {"strategy": "correct-vs-wrong", "max_pairs_per_prompt": 2, "include_truncated": True}},
        {"register": {"name": "loop"}},
        {"train": {"stage": "dpo", "lf_python": lf_py,
                   "set": {"max_steps": 1, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1,
                           "cutoff_len": 128, "logging_steps": 1, "save_steps": 1000, "warmup_steps": 0,
                           "preprocessing_num_workers": 1, "lora_rank": 4, "lora_alpha": 8}}},
        {"export": {"lf_python": lf_py}},
        {"eval": {"heldout": [HELDOUT], "limit": 4, "max_tokens": 16, "engine_options": {"max_model_len": 512}}},
    ], rounds=2)


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.llamafactory
def test_two_rounds_killed_in_round_2_resume_without_redoing_round_1(tmp_path, smollm2, lf_py):
    r = _tiny_loop(tmp_path, lf_py)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "dsforge", "run", r, "--no-report"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    cand = run / "round-2" / "02-sample" / "candidates.jsonl"
    deadline = time.time() + 1200
    while time.time() < deadline and proc.poll() is None and not cand.exists():
        time.sleep(0.2)
    assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]   # still running: round 2 sampling
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "round-2" / "08-eval" / "eval.json").exists()
    markers = {p: p.read_text() for p in (run / "round-1").glob("*/.dsforge-done.json")}
    assert len(markers) == 8   # round 1 finished: its eight stages
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    for i, kind in enumerate(("tasks", "sample", "judge", "pairs", "register", "train", "export", "eval")):
        assert f"round 1 [{i + 1}/8] {kind}: done before" in done.stderr
    assert "round 0 [8/8] eval: done before" in done.stderr
    assert {p: p.read_text() for p in markers} == markers   # round 1 untouched
    man = json.loads((run / "manifest.json").read_text())
    assert set(man["rounds"]) == {"0", "1", "2"} and man["rounds_done"] == 2
    assert set(man["rounds"]["1"]) == set(man["rounds"]["2"]) == {"tasks", "sample", "judge", "pairs", "register",
                                                                 "train", "export", "eval"}
    for t in (1, 2):
        ev = json.loads((run / f"round-{t}" / "08-eval" / "eval.json").read_text())
        assert ev["summary"]["items"] == 4 and "baseline" in ev["summary"]   # paired with round 0
        assert (run / f"round-{t}" / "06-train" / "adapter_config.json").exists()
        assert (run / f"round-{t}" / "07-export" / "model" / "config.json").exists()
        assert man["rounds"][str(t)]["eval"]["fingerprint"]
        assert json.loads((run / f"round-{t}" / "data" / "dataset_info.json").read_text())["loop"]   # per round
    # round 2 sampled and trained from round 1's merged policy
    s2 = man["rounds"]["2"]["export"]["summary"]
    assert s2["base"] == str(run / "round-1" / "07-export" / "model")
    lf = yaml.safe_load((run / "round-2" / "06-train" / "dsforge_train.yaml").read_text())
    assert lf["pref_ftx"] == 1.0 and lf["model_name_or_path"] == s2["base"]   # DPO + NLL by default on verifier data


def _eval_summary(acc, base=None):
    s = {"items": 200, "reply_tokens_mean": 30.0 - 10 * acc,
         "pass1": {"lenient": {"k": int(200 * acc), "n": 200, "acc": acc, "ci_low": acc - 0.05, "ci_high": acc + 0.05},
                   "strict": {"k": 0, "n": 200, "acc": 0.0, "ci_low": 0.0, "ci_high": 0.02}}}
    if base is not None:
        s["baseline"] = {"lenient": {"diff": acc - base, "ci_low": acc - base - 0.03, "ci_high": acc - base + 0.03,
                                     "mcnemar": {"b": 20, "c": 3, "p": 0.0004}}}
    return s


def test_report_of_a_run_with_rounds_has_the_accuracy_plot_and_the_round_table(tmp_path):
    from dsforge.report import write_report

    run = tmp_path / "run"
    (run / "round-1" / "01-tasks").mkdir(parents=True)
    ev = lambda acc, base=None: {"summary": {"metric": "arith-5", "files": {  # noqa: E731
        "arith-5": _eval_summary(acc, base), "units-1": _eval_summary(0.14, None if base is None else 0.14)}}}
    man = {"name": "loop", "rounds": {
        "0": {"eval": ev(0.148)},
        "1": {"pairs": {"summary": {"pairs": 54, "chosen_longer_rate": 0.52, "pair_yield": {"rate": 0.18}}},
              "eval": ev(0.216, 0.148)}}}
    (run / "manifest.json").write_text(json.dumps(man))
    page = Path(write_report(str(run), str(tmp_path / "report.html"))).read_text()
    assert "Held-out accuracy per round" in page and "<polyline" in page
    assert "<td>1</td><td>21.6 [16.6, 26.6]</td><td>0.0 [0.0, 2.0]</td><td>+6.8 [+3.8, +9.8]</td><td>0.0004</td>" in page
    assert "units-1 14.0 (+0.0)" in page and "<td>0.18</td><td>54</td><td>52%</td>" in page
    assert "Round 1 vs base: +6.8 points [+3.8, +9.8] (paired bootstrap), McNemar p=0.0004." in page


def test_console_rounds_table_prints_base_and_trained_with_intervals():
    from dsforge.report_rounds import format_rounds, round_rows

    ev = lambda acc, base=None: {"summary": {"metric": "arith-5", "files": {"arith-5": _eval_summary(acc, base)}}}  # noqa: E731
    text = format_rounds(round_rows({"rounds": {"0": {"eval": ev(0.148)}, "1": {"eval": ev(0.216, 0.148)}}}))
    assert text.splitlines() == [
        "  base     arith-5: lenient 14.8% [9.8, 19.8]  strict 0.0% [0.0, 2.0]",
        "  round 1  arith-5: lenient 21.6% [16.6, 26.6]  strict 0.0% [0.0, 2.0]  vs base +6.8 points [+3.8, +9.8], "
        "McNemar p=0.0004"]


def test_rounds_pass_the_policy_on_skip_finished_stages_and_rerun_only_evals_when_eval_changes(tmp_path, monkeypatch):
    """The runner's round mechanics with stand-in stage functions (the real run is the slow test above)."""
    from dsforge import run as runmod

    calls = []

    def fake(kind):
        def stage(o, ctx):
            calls.append((ctx.round, kind, ctx.policy, (ctx.baseline or {}).get("path")))
            out = ctx.dir / f"{kind}.out"
            out.write_text(kind)
            extra = {"model": str(ctx.dir / "model")} if kind == "export" else {}
            return {"path": str(out), **extra}, {"round": ctx.round}
        return stage

    for kind in ("sample", "judge", "pairs", "register", "train", "export", "eval"):
        monkeypatch.setitem(runmod.STAGES, kind, fake(kind))
    r = load_recipe(write_recipe(tmp_path, LOOP, rounds=2))
    runmod.Runner(r, "x.yaml", log=lambda *a: None, echo=lambda *a: None).run(report=False)
    run = tmp_path / "run"
    base_eval = str(run / "round-0" / "08-eval" / "eval.out")
    assert calls[0] == (0, "eval", None, None)
    assert [c[1] for c in calls[1:8]] == ["sample", "judge", "pairs", "register", "train", "export", "eval"]
    assert {c[2] for c in calls[1:8]} == {None} and calls[7][3] == base_eval
    assert {c[2] for c in calls[8:]} == {str(run / "round-1" / "07-export" / "model")} and calls[-1][3] == base_eval
    assert (run / "round-2" / "01-tasks" / "prompts.jsonl").read_text() != (run / "round-1" / "01-tasks" /
                                                                            "prompts.jsonl").read_text()
    man = json.loads((run / "manifest.json").read_text())
    assert set(man["rounds"]) == {"0", "1", "2"} and man["rounds"]["2"]["eval"]["summary"] == {"round": 2}
    calls.clear()
    runmod.Runner(r, "x.yaml", log=lambda *a: None, echo=lambda *a: None).run(report=False)
    assert calls == []   # all finished: nothing reruns
    r2 = load_recipe(write_recipe(tmp_path, LOOP[:7] + [{"eval": {"heldout": [HELDOUT], "limit": 5}}], rounds=2))
    runmod.Runner(r2, "x.yaml", log=lambda *a: None, echo=lambda *a: None).run(report=False)
    assert [c[:2] for c in calls] == [(0, "eval"), (1, "eval"), (2, "eval")]   # a changed eval reruns only the evals


def test_dsforge_run_ends_with_the_accuracy_per_round(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from dsforge import run as runmod
    from dsforge.cli import cli

    def stage(kind):
        def fn(o, ctx):
            if kind == "eval":
                s = _eval_summary(0.1 + 0.05 * ctx.round, None if ctx.round == 0 else 0.1)
                return {"path": "e", "files": {}}, {"metric": "arith-5", "files": {"arith-5": s}}
            return {"path": str(ctx.dir / "x"), "model": "m"}, {}
        return fn

    for kind in ("sample", "judge", "pairs", "register", "train", "export", "eval"):
        monkeypatch.setitem(runmod.STAGES, kind, stage(kind))
    res = CliRunner().invoke(cli, ["run", write_recipe(tmp_path, LOOP, rounds=2), "--no-report"])
    assert res.exit_code == 0, res.output
    assert res.output.endswith("held-out accuracy (greedy pass@1, 95% intervals; paired with the base model):\n"
                               "  base     arith-5: lenient 10.0% [5.0, 15.0]  strict 0.0% [0.0, 2.0]\n"
                               "  round 1  arith-5: lenient 15.0% [10.0, 20.0]  strict 0.0% [0.0, 2.0]  vs base +5.0 points "
                               "[+2.0, +8.0], McNemar p=0.0004\n"
                               "  round 2  arith-5: lenient 20.0% [15.0, 25.0]  strict 0.0% [0.0, 2.0]  vs base +10.0 points "
                               "[+7.0, +13.0], McNemar p=0.0004\n")
