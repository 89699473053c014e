"""Install as users install: the built wheel carries every file the commands read, and the installed
package works from a folder that cannot see the repository. (scripts/smoke_wheel.sh, run by
scripts/test.sh, does the same in a fresh virtualenv with dependencies from the index.)"""

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """dsforge's wheel, built from the files git knows (so stale build/ folders cannot hide a gap)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            (src / f).write_bytes((ROOT / f).read_bytes())
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return next((tmp / "dist").glob("dsforge-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """The wheel unpacked as pip installs it (--no-deps --target): dependencies come from this venv."""
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return target


def test_every_package_file_is_in_the_wheel(wheel):
    """Everything under dsforge/ that git tracks (recipes, train templates, demo data, lf shim) ships."""
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "dsforge"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in tracked if (ROOT / f).is_file() and f not in names]
    assert not missing, f"not in the wheel: {missing}"
    for must in ("dsforge/data/recipes/train/lora.yaml", "dsforge/data/recipes/train/stages.yaml",
                 "dsforge/data/recipes/demo-tiny.yaml", "dsforge/data/demo/faq.csv", "dsforge/lf/launch.py",
                 "dsforge/data/requirements/llamafactory.txt"):
        assert must in names


def test_no_module_reads_files_above_the_package():
    """Reading recipes/, schemas/ or scripts/ next to the package only works in a git checkout."""
    bad = []
    for p in (ROOT / "dsforge").rglob("*.py"):
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"parents\[\d\]|parent\.parent|\.\./", line) and "__file__" in line:
                bad.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, bad


def _dsforge(installed, cwd, *args, **env):
    run_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DSFORGE_LF_PYTHON")}
    run_env.update(PYTHONPATH=str(installed), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **env)
    return subprocess.run([sys.executable, "-m", "dsforge", *args], cwd=cwd, capture_output=True, text=True,
                          env=run_env, timeout=300)


@pytest.mark.parametrize("recipe", ["lora", "full", "freeze"])
def test_installed_train_finds_its_recipes(installed, tmp_path, recipe, tiny_model):
    """From an empty folder, the installed package converts, registers and resolves every train recipe."""
    r = subprocess.run([sys.executable, "-c", "import dsforge; print(dsforge.__file__)"], cwd=tmp_path,
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(installed)))
    assert r.stdout.strip().startswith(str(installed)), r.stdout
    faq = str(installed / "dsforge" / "data" / "demo" / "faq.csv")
    r = _dsforge(installed, tmp_path, "convert", faq, "--to", "sft", "--map", "instruction=question",
                 "--map", "output=answer", "--skip-bad", "-o", "sft.jsonl")
    assert r.returncode == 0, r.stderr
    r = _dsforge(installed, tmp_path, "register", "sft.jsonl", "--name", "w_sft", "--dataset-dir", "data")
    assert r.returncode == 0, r.stderr
    # no DSFORGE_LF_PYTHON, no ./.venv-lf: a dry run needs no LLaMA-Factory
    r = _dsforge(installed, tmp_path, "train", "sft", "--model", tiny_model, "--dataset", "w_sft",
                 "--dataset-dir", "data", "--recipe", recipe, "-o", "saves", "--dry-run")
    assert r.returncode == 0 and f"finetuning_type: {recipe}" in r.stdout, (r.stdout[-2000:], r.stderr[-2000:])


def test_installed_run_takes_a_shipped_recipe_by_name(installed, tmp_path):
    r = _dsforge(installed, tmp_path, "run", "sft-from-qa", "--until", "register", "--set", "run_dir=run", "--no-report")
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    assert (tmp_path / "run" / "data" / "dataset_info.json").exists()
    r = _dsforge(installed, tmp_path, "run", "no-such-recipe")
    assert r.returncode != 0 and "demo-tiny" in r.stderr and "Traceback" not in r.stderr
