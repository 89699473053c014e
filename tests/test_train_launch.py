"""`dsforge train` and the environment it meets: a version LLaMA-Factory was not released for is named in one
line (not hidden by DISABLE_VERSION_CHECK=1), an installed-but-broken openai is an error before launch, and
the manifest records every launcher variable and the DeepSpeed config so a multi-GPU run can be repeated.
LLaMA-Factory's environment is faked (a package folder on PYTHONPATH) except where .venv-lf is used."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.train import LAUNCH_ENV, lf_environment, train


def fake_lf_python(tmp_path, *, pins, openai_body=None):
    """An interpreter whose environment holds a stand-in llamafactory 0.9.5 that checks `pins` (and a
    broken openai when openai_body is given)."""
    site = tmp_path / "site"
    pkg = site / "llamafactory" / "extras"
    pkg.mkdir(parents=True)
    (site / "llamafactory" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    checks = "\n".join(f'    check_version("{p}")' for p in pins)
    (pkg / "misc.py").write_text(f"def check_dependencies() -> None:\n{checks}\n\n\ndef other():\n    pass\n")
    meta = site / "llamafactory-0.9.5.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: llamafactory\nVersion: 0.9.5\n")
    if openai_body is not None:
        (site / "openai").mkdir()
        (site / "openai" / "__init__.py").write_text(openai_body)
        m = site / "openai-9.9.9.dist-info"
        m.mkdir()
        (m / "METADATA").write_text("Metadata-Version: 2.1\nName: openai\nVersion: 9.9.9\n")
    py = tmp_path / "lfpython"
    py.write_text(f"#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} \"$@\"\n")
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    return str(py)


@pytest.fixture(scope="module")
def data_dir(sft_data_dir):
    return sft_data_dir


def test_version_mismatch_is_one_line_naming_the_fix(tmp_path, data_dir, tiny_model):
    import transformers

    py = fake_lf_python(tmp_path, pins=["transformers>=4.55.0,<=4.56.0", "click>=1.0"])
    env = lf_environment(py)
    assert env["llamafactory"] == "0.9.5" and env["mismatches"] == [
        ["transformers>=4.55.0,<=4.56.0", "transformers", transformers.__version__]]
    r = CliRunner().invoke(cli, ["train", "sft", "-m", tiny_model, "--dataset", "s", "--dataset-dir", str(data_dir),
                                 "--dry-run", "--lf-python", py, "-o", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    notes = [x for x in r.output.splitlines() if "DISABLE_VERSION_CHECK" in x]
    assert len(notes) == 1 and f"transformers {transformers.__version__}" in notes[0]
    assert f"{py} -m pip install 'transformers>=4.55.0,<=4.56.0'" in notes[0]


@pytest.mark.parametrize("dry", [True, False])
def test_installed_but_broken_openai_is_said_plainly_before_launch(tmp_path, data_dir, tiny_model, dry):
    py = fake_lf_python(tmp_path, pins=[], openai_body="raise ImportError('cannot import name X from httpx')\n")
    args = ["train", "sft", "-m", tiny_model, "--dataset", "s", "--dataset-dir", str(data_dir), "--lf-python", py,
            "-o", str(tmp_path / "o")] + (["--dry-run"] if dry else [])
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "openai is installed in LLaMA-Factory's environment" in r.output
    assert "cannot import name X from httpx" in r.output and "pip uninstall openai" in r.output
    assert not (tmp_path / "o" / "dsforge_manifest.json").exists(), "nothing launched, nothing written"


def test_manifest_records_every_launcher_variable_and_the_deepspeed_config(tmp_path, data_dir, tiny_model,
                                                                            monkeypatch):
    py = fake_lf_python(tmp_path, pins=[])
    launch = {"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2", "NNODES": "2", "NODE_RANK": "1",
              "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29501", "CUDA_VISIBLE_DEVICES": "0,1"}
    for k in LAUNCH_ENV:
        monkeypatch.delenv(k, raising=False)
    for k, v in launch.items():
        monkeypatch.setenv(k, v)
    ds = tmp_path / "ds_z2.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": "auto"}))
    res = train("sft", tiny_model, ["s"], str(data_dir), sets={"deepspeed": str(ds)}, dry_run=True, lf_python=py,
                output_dir=str(tmp_path / "o"), log=lambda m: None, echo=lambda m: None)
    man = res["manifest"]
    assert {k: man["env"][k] for k in launch} == launch and man["env"]["DISABLE_VERSION_CHECK"] == "1"
    assert man["deepspeed"]["path"] == str(ds) and man["deepspeed"]["config"]["zero_optimization"] == {"stage": 2}
    assert len(man["deepspeed"]["sha256"]) == 64
    assert man["repeat"].startswith("FORCE_TORCHRUN=1 NPROC_PER_NODE=2 NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1")
    assert man["repeat"].endswith(f"llamafactory-cli train {tmp_path / 'o' / 'dsforge_train.yaml'}")


def test_real_llamafactory_environment_is_reported(lf_py):
    env = lf_environment(lf_py)
    assert env["llamafactory"] == "0.9.5" and "transformers" in env["versions"]
    assert any(r.startswith("transformers") for r in env["requirements"])
    assert os.path.basename(lf_py).startswith("python")
