"""`dsforge train` finds what LLaMA-Factory would trip on before launching it: unknown keys, wrong
value types, a missing or incomplete --model; `--dry-run` works without LLaMA-Factory; the printed
command is shell-quoted; a child's traceback stays in the log (its last line and the log path are
shown). The key/type table is LLaMA-Factory's own, regenerated here to catch drift."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.lf_args import TABLE, check_config, check_model
from dsforge.train import ChildOutput

ROOT = Path(__file__).resolve().parent.parent


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    rows = [{"instruction": f"question {i}?", "output": f"answer {i}."} for i in range(20)]
    (d / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = run("register", d / "sft.jsonl", "--name", "s", "--dataset-dir", d)
    assert r.exit_code == 0, r.output
    return d


def dry(data_dir, model, *extra):
    return run("train", "sft", "-m", model, "--dataset", "s", "--dataset-dir", data_dir, "--dry-run", *extra)


def set_args(sets):
    return [a for s in sets for a in ("--set", s)]


def refused(data_dir, model, sets):
    """A dry run with these --set values, which must stop as a usage error before any command is printed."""
    r = dry(data_dir, model, *set_args(sets))
    assert r.exit_code == 2 and "# command:" not in r.output, r.output
    return r


def yaml_of(output: str) -> dict:
    return yaml.safe_load("\n".join(x for x in output.split("# command:")[0].splitlines()
                                    if not x.startswith(("note:", "compute dtype:"))))


@pytest.mark.parametrize("sets,expect", [
    (["learnig_rate=1e-4"], ["unknown key 'learnig_rate' (--set)", "did you mean 'learning_rate'?"]),
    (["lora_rnak=16"], ["unknown key 'lora_rnak'", "did you mean 'lora_rank'?"]),
    (["learning_rate=fast"], ["learning_rate must be a number, not 'fast' (text) (--set)"]),
    (["num_train_epochs=[1, 2]"], ["num_train_epochs must be a number, not [1, 2] (a list)"]),
    (["max_steps=2.5"], ["max_steps must be an integer, not 2.5 (a number)"]),
    (["bf16=yes please"], ["bf16 must be true/false, not 'yes please' (text)"]),
    (["lr_scheduler_type=cosin"], ["lr_scheduler_type: 'cosin' (--set) is not one of its values",
                                   "did you mean 'cosine'?"]),
    (["pref_loss=sigmod"], ["did you mean 'sigmoid'?"]),
    (["template=qwen3x"], ["template: 'qwen3x' (--set) is not one of its values", "did you mean 'qwen3'?"]),
    (["lora_rank=eight", "warmup_stpes=0.1"], ["lora_rank must be an integer", "did you mean 'warmup_steps'?"]),
])
def test_wrong_key_or_type_is_a_usage_error_before_launch(data_dir, tiny_model, sets, expect):
    r = refused(data_dir, tiny_model, sets)
    for e in expect:
        assert e in r.output, r.output
    assert "Traceback" not in r.output


def test_recipe_file_keys_are_checked_and_named(data_dir, tiny_model, tmp_path):
    rec = tmp_path / "mine.yaml"
    rec.write_text("finetuning_type: lora\nlora_rank: 8\nlearning_rate: 1.0e-4\nper_device_train_batchsize: 2\n")
    r = run("train", "sft", "-m", tiny_model, "--dataset", "s", "--dataset-dir", data_dir, "--dry-run",
            "--recipe", rec)
    assert r.exit_code == 2 and f"unknown key 'per_device_train_batchsize' (recipe {rec})" in r.output, r.output
    assert "did you mean 'per_device_train_batch_size'?" in r.output


def test_values_whose_meaning_is_certain_are_converted(data_dir, tiny_model):
    # PyYAML reads 5e-5 (no dot) as text; LLaMA-Factory would get a string learning rate
    r = dry(data_dir, tiny_model, "--set", "learning_rate=5e-5", "--set", "run_name=2024", "--set", "max_steps=3.0",
            "--set", "lora_target=[q_proj, v_proj]")
    assert r.exit_code == 0, r.output
    cfg = yaml_of(r.output)
    assert cfg["learning_rate"] == 5e-5 and cfg["run_name"] == "2024" and cfg["max_steps"] == 3
    assert cfg["lora_target"] == ["q_proj", "v_proj"]       # LLaMA-Factory splits text and takes a list


def test_null_and_unset_drop_a_recipe_key(data_dir, tiny_model):
    r = dry(data_dir, tiny_model, "--set", "warmup_steps=null", "--unset", "lora_dropout")
    assert r.exit_code == 0, r.output
    cfg = yaml_of(r.output)
    assert "warmup_steps" not in cfg and "lora_dropout" not in cfg and cfg["lora_rank"] == 8
    r = dry(data_dir, tiny_model, "--unset", "lora_rnak")
    assert r.exit_code == 2 and "did you mean 'lora_rank'?" in r.output
    r = dry(data_dir, tiny_model, "--unset", "output_dir")
    assert r.exit_code == 2 and "output_dir cannot be unset" in r.output


@pytest.mark.parametrize("sets,expect", [
    # keys dsforge fills from its options and checks: a --set must not launch something never checked
    (["dataset=nothere"], "dataset cannot be overridden with --set"),
    (["stage=dpo"], "stage cannot be overridden with --set"),
    (["model_name_or_path=/nonexistent"], "model_name_or_path cannot be overridden"),
    (["dataset_dir=/tmp"], "dataset_dir cannot be overridden"),
    # eval_dataset is loaded like --dataset: it must exist, and LLaMA-Factory refuses it next to val_size
    (["eval_dataset=nothere"], "no dataset 'nothere'"),
    (["eval_dataset=s", "val_size=0.1"], "eval_dataset and val_size do not combine"),
])
def test_set_cannot_bypass_what_dsforge_checked(data_dir, tiny_model, sets, expect):
    r = refused(data_dir, tiny_model, sets)
    assert expect in r.output, r.output
    r = dry(data_dir, tiny_model, "--set", "eval_dataset=s")
    assert r.exit_code == 0 and yaml_of(r.output)["eval_dataset"] == "s", r.output


def test_model_must_be_a_complete_folder_or_a_hub_id(data_dir, tiny_model, tmp_path):
    r = dry(data_dir, tmp_path / "no_such_model")
    assert r.exit_code == 2 and "no such model folder" in r.output, r.output
    r = dry(data_dir, "typo-model")
    assert r.exit_code == 2 and "not a hub id like ORG/NAME" in r.output
    half = tmp_path / "half"
    half.mkdir()
    shutil.copy(Path(tiny_model) / "config.json", half / "config.json")
    r = dry(data_dir, half)
    assert r.exit_code == 1 and "missing tokenizer files" in r.output and "Traceback" not in r.output, r.output
    (half / "config.json").unlink()
    shutil.copy(Path(tiny_model) / "tokenizer.json", half / "tokenizer.json")
    r = dry(data_dir, half)
    assert r.exit_code == 1 and "missing config.json" in r.output
    r = dry(data_dir, "Qwen/Qwen2.5-0.5B-Instruct")   # a hub id: allowed, with a warning
    assert r.exit_code == 0 and "not a local folder" in r.output and "Hugging Face hub" in r.output
    assert check_model(tiny_model) is None


def test_shipped_recipes_pass_the_check_and_use_no_deprecated_key(tmp_path):
    from dsforge.lf_args import deprecated
    from dsforge.train import METHODS, STAGES, resolve

    for stage in STAGES:
        for method in METHODS:
            cfg = check_config(resolve(stage, "org/m", ["d"], str(tmp_path), recipe=method))
            assert not deprecated(cfg), (stage, method, deprecated(cfg))


def test_dry_run_works_without_llamafactory_and_quotes_the_command(data_dir, tiny_model, tmp_path):
    """No LLaMA-Factory anywhere (no .venv-lf in the cwd, none on PATH): the YAML and the command still print."""
    out = tmp_path / "it's out dir"
    env = dict(os.environ, PATH="/usr/bin:/bin")
    env.pop("DSFORGE_LF_PYTHON", None)
    r = subprocess.run([sys.executable, "-m", "dsforge", "train", "sft", "-m", tiny_model, "--dataset", "s",
                        "--dataset-dir", str(data_dir), "--dry-run", "-o", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "LLaMA-Factory: not found on this machine" in r.stdout and "--lf-python" in r.stdout
    cmd_line = next(x for x in r.stdout.splitlines() if x.startswith("# command: "))[len("# command: "):]
    assert shlex.split(cmd_line) == ["llamafactory-cli", "train", str(out / "dsforge_train.yaml")]
    assert yaml_of(r.stdout)["output_dir"] == str(out) and not out.exists()
    # an environment named explicitly must have LLaMA-Factory, dry run or not
    r = run("train", "sft", "-m", tiny_model, "--dataset", "s", "--dataset-dir", data_dir, "--dry-run",
            "--lf-python", sys.executable)
    assert r.exit_code == 2 and "has no LLaMA-Factory" in r.output


def test_dry_run_with_llamafactory_prints_a_pasteable_command(data_dir, tiny_model, lf_py, tmp_path):
    out = tmp_path / "a dir; rm -rf x"
    r = dry(data_dir, tiny_model, "--lf-python", lf_py, "-o", out)
    assert r.exit_code == 0, r.output
    cmd_line = next(x for x in r.output.splitlines() if x.startswith("# command: "))[len("# command: "):]
    argv = shlex.split(cmd_line)
    assert argv[0] == lf_py and argv[-1] == str(out / "dsforge_train.yaml") and argv[-2] == "train"


def test_child_traceback_stays_in_the_log_and_its_last_line_is_kept(tmp_path):
    shown = []
    log = tmp_path / "child.log"
    out = ChildOutput(shown.append, str(log))
    lines = ["{'loss': 1.5}", "Traceback (most recent call last):", '  File "x.py", line 1, in <module>',
             "    main()", "ValueError: first", "", "During handling of the above exception, another exception "
             "occurred:", "", "Traceback (most recent call last):", '  File "y.py", line 2', "    ^^^^",
             "[rank0]: Traceback (most recent call last):", '[rank0]:   File "z.py", line 3',
             "[rank0]: RuntimeError: Template nothing does not exist.", "done"]
    for x in lines:
        out.line(x + "\n")
    out.close()
    assert shown == ["{'loss': 1.5}", "done"]
    assert out.last_error == "RuntimeError: Template nothing does not exist."
    assert log.read_text().splitlines() == lines


@pytest.mark.llamafactory
def test_a_failing_llamafactory_run_shows_its_error_line_and_log_not_a_traceback(data_dir, tiny_model, lf_py,
                                                                                   tmp_path):
    out = tmp_path / "out"
    r = run("train", "sft", "-m", tiny_model, "--dataset", "s", "--dataset-dir", data_dir, "--lf-python", lf_py,
            "-o", out, "--set", "lora_target=no_such_module", "--set", "max_steps=1")
    assert r.exit_code != 0
    assert "Traceback" not in r.output, r.output[-3000:]
    assert "llamafactory-cli exited with code" in r.output and "no_such_module" in r.output, r.output[-3000:]
    assert f"full log: {out}/dsforge_train.log" in r.output
    assert "Traceback (most recent call last)" in (out / "dsforge_train.log").read_text()


@pytest.mark.llamafactory
def test_shipped_table_matches_llamafactory_in_venv_lf(lf_py, tmp_path):
    """Regenerate the key/type table from the pinned LLaMA-Factory and transformers; fail on drift."""
    fresh = tmp_path / "train_args.json"
    r = subprocess.run([lf_py, str(ROOT / "scripts" / "gen_lf_args.py"), str(fresh)], capture_output=True,
                       text=True, env=dict(os.environ, DISABLE_VERSION_CHECK="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    shipped, new = json.loads(TABLE.read_text()), json.loads(fresh.read_text())
    assert (shipped["llamafactory"], shipped["transformers"]) == (new["llamafactory"], new["transformers"])
    gone, added = set(shipped["keys"]) - set(new["keys"]), set(new["keys"]) - set(shipped["keys"])
    assert not gone and not added, f"regenerate with scripts/gen_lf_args.py: gone {gone}, new {added}"
    assert shipped == new, "a key's type changed: regenerate with scripts/gen_lf_args.py"


def test_export_keys_are_checked_against_the_export_arguments(tmp_path, tiny_model, lf_py):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    r = run("export", "-m", tiny_model, "--adapter", adapter, "-o", tmp_path / "merged", "--lf-python", lf_py,
            "--set", "export_sise=2")
    assert r.exit_code == 2 and "no such export argument; did you mean 'export_size'?" in r.output, r.output
    r = run("export", "-m", tiny_model, "--adapter", adapter, "-o", tmp_path / "merged", "--lf-python", lf_py,
            "--set", "learning_rate=1e-4")       # a training argument: export's parser rejects it
    assert r.exit_code == 2 and "unknown key 'learning_rate'" in r.output, r.output
    assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize("sets", [["hf_hub_token=hf_abc123"], ["hub_token=hf_abc123"], ["push_to_hub_token=s3cr3tv4lue"],
                                  ["swanlab_api_key=s3cr3tk3y"], ["ms_hub_token=s3cr3tt0k"], ["db_password=s3cr3tpw"]])
def test_secrets_in_set_are_refused_and_never_printed(data_dir, tiny_model, tmp_path, sets):
    r = dry(data_dir, tiny_model, "-o", tmp_path / "o", *set_args(sets))
    assert r.exit_code == 2 and "is a credential" in r.output and "HF_TOKEN" in r.output, r.output
    assert sets[0].split("=", 1)[1] not in r.output and not (tmp_path / "o").exists()


@pytest.mark.parametrize("sets,expect", [
    (["learning_rate=-1e-4"], "learning_rate must be > 0"),
    (["cutoff_len=-5"], "cutoff_len must be >= 1"),
    (["lora_rank=0"], "lora_rank must be >= 1"),
    (["num_train_epochs=0"], "num_train_epochs must be > 0"),
    (["per_device_train_batch_size=0"], "per_device_train_batch_size must be >= 1"),
])
def test_values_out_of_range_are_usage_errors_without_llamafactory(data_dir, tiny_model, sets, expect):
    r = refused(data_dir, tiny_model, sets)
    assert expect in r.output, r.output


@pytest.mark.llamafactory
@pytest.mark.parametrize("stage,dataset,sets,expect", [
    ("sft", "s", ["finetuning_type=full", "quantization_bit=4"],
     "Quantization is only compatible with the LoRA or OFT method."),
    ("sft", "s", ["streaming=true"], "Please specify `max_steps` in streaming mode."),
    ("sft", "s", ["do_predict=true"], "Please enable `predict_with_generate` to save model predictions."),
])
def test_llamafactory_own_parser_runs_before_launch(data_dir, tiny_model, lf_py, tmp_path, stage, dataset, sets,
                                                    expect):
    """LLaMA-Factory's cross-field rules (its get_train_args, no model loaded) are one dsforge line, exit 2."""
    r = run("train", stage, "-m", tiny_model, "--dataset", dataset, "--dataset-dir", data_dir, "--dry-run",
            "--lf-python", lf_py, "-o", tmp_path / "o", *set_args(sets))
    assert r.exit_code == 2, r.output
    assert f"LLaMA-Factory 0.9.5 rejects this configuration: {expect}" in r.output, r.output
    assert "Traceback" not in r.output and "# command:" not in r.output and not (tmp_path / "o").exists()
