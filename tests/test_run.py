"""dsforge run: recipe checks with locations, fingerprinted skip/rerun, kill -9 mid-stage resume, the report."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.errors import ConfigError
from dsforge.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
FAQ = str(ROOT / "dsforge" / "data" / "demo" / "faq.csv")


def write_recipe(tmp_path, stages, **top):
    doc = {"name": "t", "run_dir": str(tmp_path / "run"), "inputs": [FAQ], "stages": stages, **top}
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(p)


CONVERT = {"convert": {"to": "sft", "map": {"instruction": "question", "output": "answer"}, "skip_bad": True}}


@pytest.mark.parametrize("stages,top,expect", [
    ([CONVERT, {"sample": {"nn": 2}}], {}, "stages[1].sample.nn: Extra inputs are not permitted"),
    ([CONVERT, {"sample": {}}, {"judge": {"serve": True}}], {}, "stages[2].judge: a judge stage needs models.judge"),
    ([{"sample": {"n": 1, "temps": [1.0]}}, {"judge": {"serve": True}}, {"pairs": {"min_margin": 1}}],
     {"models": {"judge": "j"}}, "stages[0].sample.n: pairs need at least two candidates"),
    ([CONVERT, {"register": {"name": "x"}}, {"train": {"stage": "dpo"}}], {},
     "stages[2].train.stage: dpo trains on ranking pairs"),
    ([CONVERT, {"pairs": {}}], {}, "stages[1]: pairs needs a judge stage"),
    ([{"register": {"name": "x"}}, CONVERT], {}, "stages[1]: convert comes after register"),
    ([{"pairs": {"min_margin": -1}}], {}, "stages[0].pairs.min_margin: Input should be greater than or equal to 0"),
    ([{"convert": {}, "sample": {}}], {}, "each stage is exactly one of"),
])
def test_recipe_errors_point_at_their_location(tmp_path, stages, top, expect):
    with pytest.raises(ConfigError) as err:
        load_recipe(write_recipe(tmp_path, stages, **top))
    assert expect in str(err.value)


def test_shipped_recipes_load_and_match_the_published_schema():
    schema = json.loads((ROOT / "schemas" / "pipeline_recipe.schema.json").read_text())
    for p in sorted((ROOT / "dsforge" / "data" / "recipes").glob("*.yaml")):
        load_recipe(str(p))
        jsonschema.validate(yaml.safe_load(p.read_text()), schema)


def test_fingerprints_skip_finished_stages_and_rerun_changed_ones(tmp_path):
    r = write_recipe(tmp_path, [CONVERT, {"register": {"name": "faq"}}])
    res = CliRunner().invoke(cli, ["run", r])
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["inputs"][0]["sha256"] and man["stages"]["convert"]["summary"]["rows_out"] > 0
    info = json.loads((tmp_path / "run" / "data" / "dataset_info.json").read_text())
    assert info["faq"]["formatting"] == "sharegpt"
    from dsforge import summaries

    summaries.check("register", man["stages"]["register"]["summary"])   # the typed record readers rely on
    assert (tmp_path / "run" / "report.html").exists()
    again = subprocess.run([sys.executable, "-m", "dsforge", "run", r], capture_output=True, text=True)
    assert again.returncode == 0 and again.stderr.count("skipped") == 2, again.stderr
    marker = json.loads((tmp_path / "run" / "01-convert" / ".dsforge-done.json").read_text())
    reg = json.loads((tmp_path / "run" / "02-register" / ".dsforge-done.json").read_text())
    # change an option of the first stage: it and everything after it rerun
    res = CliRunner().invoke(cli, ["run", r, "--set", "stages[0].convert.shuffle=true"])
    assert res.exit_code == 0, res.output
    marker2 = json.loads((tmp_path / "run" / "01-convert" / ".dsforge-done.json").read_text())
    assert marker2["fingerprint"] != marker["fingerprint"]
    reg2 = json.loads((tmp_path / "run" / "02-register" / ".dsforge-done.json").read_text())
    assert reg2["fingerprint"] != reg["fingerprint"]   # the stage after a changed one reran too
    res = CliRunner().invoke(cli, ["run", r, "--from", "register", "--set", "stages[0].convert.seed=5"])
    assert res.exit_code != 0 and "before it is not done" in res.output


def test_kill_9_mid_sample_then_rerun_resumes_the_stage(tmp_path, tiny_model):
    r = write_recipe(tmp_path, [CONVERT, {"sample": {"engine": "hf", "engine_options": {"batch_size": 1}, "n": 2,
                                                     "temps": [0.7, 1.0], "max_tokens": 64}}],
                     models={"sampler": tiny_model})
    cmd = [sys.executable, "-m", "dsforge", "run", r, "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cand = tmp_path / "run" / "02-sample" / "candidates.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not cand.exists() or cand.read_bytes().count(b"\n") < 6):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "run" / "02-sample" / ".dsforge-done.json").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "convert: done before" in done.stderr and "resume:" in done.stderr
    s = json.loads((tmp_path / "run" / "02-sample" / "candidates.jsonl.summary.json").read_text())
    assert s["groups_resumed"] > 0 and s["groups_resumed"] + s["groups_sampled"] == s["prompts"] * 2


def test_report_renders_from_a_file(tmp_path):
    rows = [{"prompt_id": "p", "messages": [{"role": "user", "content": "q"}], "text": "a" * (i + 1),
             "temperature": [0.7, 1.0][i % 2], "completion_tokens": i + 3, "truncated": False,
             "judge": {"score": i % 3}} for i in range(12)]
    f = tmp_path / "judged.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = CliRunner().invoke(cli, ["report", str(f)])
    assert res.exit_code == 0, res.output
    page = (tmp_path / "judged.jsonl.report.html").read_text()
    assert page.count("<svg") >= 2 and "Judge score histogram per temperature" in page and "T=0.7" in page


def _chromium():
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium missing: .ci/run installs Debian's chromium for the report screenshot test")
        pytest.skip("no chromium")
    return path


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.llamafactory
def test_demo_recipe_end_to_end_with_report_screenshot(tmp_path, smollm2, lf_py):
    """The README demo's recipe, smaller: real vLLM sampling, a real judge server started and stopped
    by the run, pairs, register, DPO LoRA steps in LLaMA-Factory, the report, and a browser screenshot."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "dsforge", "run", "demo-tiny",
           "--set", f"run_dir={run_dir}", "--set", "stages[1].sample.limit=10",
           "--set", f"stages[5].train.lf_python={lf_py}", "--set", "stages[5].train.set.max_steps=2"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=ROOT)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    man = json.loads((run_dir / "manifest.json").read_text())
    assert set(man["stages"]) == {"convert", "sample", "judge", "pairs", "register", "train"}
    assert man["stages"]["sample"]["summary"]["candidates_written"] > 0
    assert man["stages"]["judge"]["summary"]["rubric_hash"] and man["stages"]["pairs"]["summary"]["pairs"] >= 1
    assert (run_dir / "06-train" / "adapter_model.safetensors").exists()
    assert (run_dir / "06-train" / "dsforge_run_manifest.json").exists()
    page = (run_dir / "report.html").read_text()
    for title in ("Token length of training rows", "Judge score histogram per temperature",
                  "Chosen vs rejected length", "Score margin of pairs", "Training loss"):
        assert title in page
    png = tmp_path / "report.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1240,1600",
                    f"--screenshot={png}", (run_dir / "report.html").as_uri()], capture_output=True, timeout=120)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 40_000   # a blank page is a few KB
    # rerun: every stage is skipped by fingerprint
    r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r2.returncode == 0 and r2.stderr.count("skipped") == 6, r2.stderr[-2000:]


def test_a_rerun_with_fewer_rounds_drops_the_later_rounds_from_the_manifest(tmp_path, monkeypatch):
    """rounds 2 then rounds 1: the manifest (so the console table and the report) shows rounds 0-1 only,
    not round 2 of the earlier run as if this recipe had produced it."""
    from dsforge import run as runmod
    from tests.test_rounds import LOOP
    from tests.test_rounds import write_recipe as write_loop_recipe

    def stage(kind):
        def fn(o, ctx):
            return {"path": str(ctx.dir / f"{kind}.out"), "model": "m"}, {"round": ctx.round}
        return fn

    for kind in ("sample", "judge", "pairs", "register", "train", "export", "eval"):
        monkeypatch.setitem(runmod.STAGES, kind, stage(kind))
    for rounds in (2, 1):
        r = load_recipe(write_loop_recipe(tmp_path, LOOP, rounds=rounds))
        runmod.Runner(r, "x.yaml", log=lambda *a: None, echo=lambda *a: None).run(report=False)
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert set(man["rounds"]) == {"0", "1"} and man["rounds_done"] == 1


def test_the_report_of_a_rerun_with_fewer_rounds_reads_its_own_last_round(tmp_path):
    """round-2 left on disk by an earlier 2-round run: the report's stage table comes from round-1, the
    manifest's last round."""
    from dsforge.report import collect

    run = tmp_path / "run"
    for t in (1, 2):
        d = run / f"round-{t}" / "02-sample"
        d.mkdir(parents=True)
        (d / ".dsforge-done.json").write_text(json.dumps({"outputs": {"round": t}}))
    (run / "manifest.json").write_text(json.dumps({"name": "x", "rounds": {"0": {}, "1": {}}, "stages": {}}))
    assert collect(str(run))["stages"]["sample"]["outputs"] == {"round": 1}


def test_a_changed_loop_reruns_round_1_register_onto_its_own_dataset_file(tmp_path, monkeypatch):
    """A 2-round loop rerun after a change before register: round 1's register replaces round-1/data/r.jsonl
    it wrote itself (it looked only at manifest.stages.register, round 2's, and refused)."""
    from dsforge import run as runmod
    from tests.test_rounds import LOOP
    from tests.test_rounds import write_recipe as write_loop_recipe

    question = {"q": "q0"}

    def stage(kind):
        def fn(o, ctx):
            out = ctx.dir / f"{kind}.jsonl"
            row = {"conversations": [{"from": "human", "value": question["q"]}],
                   "chosen": {"from": "gpt", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}}
            out.write_text(json.dumps(row) + "\n" if kind == "pairs" else "x")
            return {"path": str(out), "model": "m"}, {}
        return fn

    for kind in ("sample", "judge", "pairs", "train", "export", "eval"):
        monkeypatch.setitem(runmod.STAGES, kind, stage(kind))
    quiet = {"log": lambda *a: None, "echo": lambda *a: None}
    runmod.Runner(load_recipe(write_loop_recipe(tmp_path, LOOP, rounds=2)), "x.yaml", **quiet).run(report=False)
    question["q"] = "q1"
    changed = [LOOP[0], {"sample": {"n": 3, "temps": [1.0]}}] + LOOP[2:]
    runmod.Runner(load_recipe(write_loop_recipe(tmp_path, changed, rounds=2)), "x.yaml", **quiet).run(report=False)
    assert "q1" in (tmp_path / "run" / "round-1" / "data" / "r.jsonl").read_text()
