"""dsforge train/export/serve on the real LLaMA-Factory 0.9.5 (its own env, CPU, tiny local Llama):
datasets made by dsforge, registered, then pt, sft, dpo, kto and rm for a few steps each."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.pairs import PairConfig, build_pairs
from dsforge.train import inspect_model

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "dsforge" / "data" / "demo"
SHORT = ["--set", "max_steps=2", "--set", "per_device_train_batch_size=1", "--set", "gradient_accumulation_steps=1",
         "--set", "cutoff_len=128", "--set", "logging_steps=1", "--set", "preprocessing_num_workers=1"]


def run(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r


def dry_yaml(output: str) -> dict:
    """The YAML part of `train --dry-run` output (notes and the command line left out)."""
    return yaml.safe_load("\n".join(x for x in output.split("# command:")[0].splitlines() if not x.startswith(("note:", "compute dtype:"))))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    assert run("convert", DEMO / "faq.csv", "--to", "sft", "--map", "instruction=question", "--map", "output=answer",
               "--skip-bad", "-o", d / "sft.jsonl").exit_code == 0
    assert run("convert", DEMO / "notes", "--to", "pt", "--chunk-chars", "400", "-o", d / "pt.jsonl").exit_code == 0
    rows = []
    for i in range(12):
        for j, (text, score) in enumerate([(f"a helpful answer number {i}", 5), (f"bad {i}", 1), (f"meh {i}", 3)]):
            rows.append({"prompt_id": f"p{i}", "messages": [{"role": "user", "content": f"question {i}?"}],
                         "text": text, "temperature": 1.0, "sample_index": j, "truncated": False,
                         "judge": {"score": score, "model": "j", "rubric": "additive", "rubric_hash": "h"}})
    (d / "judged.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_pairs(str(d / "judged.jsonl"), str(d / "dpo.jsonl"), PairConfig(kto_threshold=3), kto_out=str(d / "kto.jsonl"))
    for name in ("sft", "pt", "dpo", "kto"):
        r = run("register", d / f"{name}.jsonl", "--name", f"demo_{name}", "--dataset-dir", d)
        assert r.exit_code == 0, r.output
    return d


def test_dry_run_prints_resolved_yaml_with_recipe_stage_defaults_and_sets(data_dir):
    r = run("train", "dpo", "-m", "some/model", "--dataset", "demo_dpo", "--dataset-dir", data_dir, "--dry-run",
            "--set", "label_smoothing_factor=0.1", "--set", "pref_beta=0.2", "-o", data_dir / "never")
    assert r.exit_code == 0, r.output
    cfg = dry_yaml(r.output)
    assert cfg["stage"] == "dpo" and cfg["finetuning_type"] == "lora" and cfg["lora_rank"] == 8
    assert cfg["lora_alpha"] == 16 and cfg["lora_target"] == "all" and cfg["pref_loss"] == "sigmoid"
    assert cfg["pref_beta"] == 0.2 and cfg["label_smoothing_factor"] == 0.1 and cfg["dataset"] == "demo_dpo"
    assert not (data_dir / "never").exists()
    r = run("train", "sft", "-m", "org/m", "--dataset", "demo_sft", "--dataset-dir", data_dir, "--dry-run",
            "--recipe", "freeze", "--set", "freeze_trainable_layers=1")
    cfg = dry_yaml(r.output)
    assert cfg["finetuning_type"] == "freeze" and cfg["freeze_trainable_layers"] == 1
    assert not any(k.startswith("lora_") for k in cfg)


def test_dataset_must_fit_the_stage(data_dir):
    r = run("train", "dpo", "-m", "org/m", "--dataset", "demo_sft", "--dataset-dir", data_dir, "--dry-run")
    assert r.exit_code != 0 and "cannot train stage dpo" in r.output and "ranking" in r.output
    r = run("train", "sft", "-m", "org/m", "--dataset", "demo_sfx", "--dataset-dir", data_dir, "--dry-run")
    assert r.exit_code != 0 and "did you mean 'demo_sft'" in r.output
    r = run("train", "ppo", "-m", "org/m", "--dataset", "demo_sft", "--dataset-dir", data_dir, "--dry-run")
    assert r.exit_code != 0 and "reward model" in r.output


def test_missing_llamafactory_says_how_to_install(data_dir, tmp_path):
    r = run("train", "sft", "-m", "org/m", "--dataset", "demo_sft", "--dataset-dir", data_dir,
            "--lf-python", sys.executable, "-o", tmp_path / "o")
    assert r.exit_code != 0 and "no LLaMA-Factory" in r.output and "scripts/setup.sh --lf" in r.output
    assert "Traceback" not in r.output


def transformers_overlays() -> list:
    """None (LLaMA-Factory's environment as pinned) + folders holding another transformers for it, e.g. the GPU
    machines' 5.17: .venv-lf/bin/pip install --no-deps --target .venv-lf-overlays/transformers-5.17.0
    transformers==5.17.0 tokenizers==0.23.2 (or DSFORGE_LF_OVERLAYS=dir:dir)."""
    dirs = os.environ.get("DSFORGE_LF_OVERLAYS", "").split(os.pathsep) if os.environ.get("DSFORGE_LF_OVERLAYS") \
        else sorted(str(p) for p in (ROOT / ".venv-lf-overlays").glob("transformers-*"))
    return [None] + [d for d in dirs if d]


@pytest.mark.parametrize("overlay", transformers_overlays())
def test_recipes_are_valid_llamafactory_arguments(lf_py, tiny_model, data_dir, tmp_path, overlay):
    """Every recipe x stage parses with LLaMA-Factory's own argument parser (unknown keys fail there), under the
    pinned transformers and under each overlay (another transformers version put first on the path)."""
    from dsforge.train import resolve

    code = ("import sys, json, os; sys.path.insert(0, sys.argv[1]); import shim; shim.install()\n"
            "import transformers; print('TRANSFORMERS', transformers.__version__)\n"
            "from llamafactory.hparams import get_train_args\n"
            "for cfg in json.load(open(sys.argv[2])):\n"
            "    get_train_args(cfg)\n"
            "print('PARSED', len(json.load(open(sys.argv[2]))))")
    cfgs = []
    for stage, ds in (("pt", "demo_pt"), ("sft", "demo_sft"), ("dpo", "demo_dpo"), ("kto", "demo_kto"),
                      ("rm", "demo_dpo")):
        for recipe in ("lora", "full", "freeze"):
            cfgs.append(resolve(stage, tiny_model, [ds], str(data_dir), recipe=recipe,
                                output_dir=str(tmp_path / f"{stage}_{recipe}")))
    (tmp_path / "cfgs.json").write_text(json.dumps(cfgs))
    env = dict(os.environ, DISABLE_VERSION_CHECK="1")
    if overlay:
        env["PYTHONPATH"] = overlay
    r = subprocess.run([lf_py, "-c", code, str(ROOT / "dsforge" / "lf"), str(tmp_path / "cfgs.json")],
                       capture_output=True, text=True, env=env)
    assert "PARSED 15" in r.stdout, r.stderr[-3000:]
    if overlay:
        assert "TRANSFORMERS " + os.path.basename(overlay).split("-", 1)[1] in r.stdout, r.stdout


@pytest.mark.llamafactory
@pytest.mark.parametrize("stage,dataset", [("pt", "demo_pt"), ("sft", "demo_sft"), ("dpo", "demo_dpo"),
                                           ("kto", "demo_kto"), ("rm", "demo_dpo")])
def test_train_stage_for_real(stage, dataset, lf_py, tiny_model, data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"train_{stage}")
    r = run("train", stage, "-m", tiny_model, "--dataset", dataset, "--dataset-dir", data_dir, "--lf-python", lf_py,
            "-o", out, *SHORT)
    assert r.exit_code == 0, r.output[-4000:]
    assert (out / "adapter_model.safetensors").exists() and (out / "adapter_config.json").exists()
    man = json.loads((out / "dsforge_manifest.json").read_text())
    assert man["llamafactory"] == "0.9.5" and man["exit_code"] == 0 and man["steps"] == 2
    assert man["dataset_files"][0]["sha256"] and man["dataset_files"][0]["lines"] > 0
    assert math.isfinite(man["train_loss"]) and "final train loss" in r.output
    assert yaml.safe_load((out / "dsforge_train.yaml").read_text())["stage"] == stage
    if stage == "sft":
        (tmp_path_factory.getbasetemp() / "sft_adapter").write_text(str(out))


@pytest.mark.llamafactory
def test_export_and_serve_close_the_loop(lf_py, tiny_model, data_dir, tmp_path):
    from dsforge.servers import LocalServer

    out = tmp_path / "sft"
    r = run("train", "sft", "-m", tiny_model, "--dataset", "demo_sft", "--dataset-dir", data_dir, "--lf-python", lf_py,
            "-o", out, *SHORT)
    assert r.exit_code == 0, r.output[-3000:]
    r = run("export", "-m", tiny_model, "--adapter", out, "-o", tmp_path / "merged", "--lf-python", lf_py)
    assert r.exit_code == 0, r.output[-3000:]
    assert (tmp_path / "merged" / "model.safetensors").exists() and (tmp_path / "merged" / "config.json").exists()
    server = LocalServer.llamafactory(tiny_model, name="tiny", adapter=str(out), lf_python=lf_py,
                                      config_dir=str(tmp_path), log_path=str(tmp_path / "api.log"), ready_timeout=180)
    port = server.port
    try:
        server.start().wait()
        import openai

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x")
        resp = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}],
                                              max_tokens=8)
        assert resp.choices and isinstance(resp.choices[0].message.content, str)
        # dsforge sample against llamafactory-cli api: it ignores seed and logprobs; the probe finds
        # out, so no candidate claims a seed or a logprob it did not get, and all n answers exist
        (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n{"prompt": "bye"}\n')
        r = run("sample", tmp_path / "p.jsonl", "--engine", "openai", "--base-url", f"http://127.0.0.1:{port}/v1",
                "-m", "tiny", "--temps", "0.7,1.0", "-n", "3", "--max-tokens", "8", "-o", tmp_path / "c.jsonl")
        assert r.exit_code == 0, r.output
        rows = [json.loads(x) for x in open(tmp_path / "c.jsonl")]
        assert sum(1 + len(x["duplicate_indices"]) for x in rows) == 2 * 2 * 3
        assert all(x["seed"] is None and x["mean_logprob"] is None for x in rows)
        info = json.load(open(tmp_path / "c.jsonl.summary.json"))["engine_info"]["capabilities"]
        assert info["seed"] is not True and info["logprobs"] is False
    finally:
        server.stop()


def test_inspect_model_lists_linear_modules(tiny_model):
    info = inspect_model(tiny_model)
    assert info["linear_modules"]["q_proj"] == 2 and "lm_head" not in info["lora_target_all"]
    assert info["parameters"] > 0
    r = run("inspect-model", tiny_model)
    assert r.exit_code == 0 and "q_proj" in r.output and "lora_target" in r.output
