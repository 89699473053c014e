import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def lf_python() -> str | None:
    """The interpreter of the LLaMA-Factory environment (scripts/setup.sh builds .venv-lf)."""
    cand = os.environ.get("DSFORGE_LF_PYTHON") or str(ROOT / ".venv-lf" / "bin" / "python")
    return cand if os.path.exists(cand) else None


@pytest.fixture(scope="session")
def lf_py():
    p = lf_python()
    if p is None:
        if os.environ.get("CI"):
            pytest.fail("LLaMA-Factory environment missing: scripts/setup.sh should have built .venv-lf")
        pytest.skip("no LLaMA-Factory environment (run scripts/setup.sh or set DSFORGE_LF_PYTHON)")
    return p


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    out = tmp_path_factory.mktemp("tok")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tiny_tokenizer.py"), str(out)], check=True)
    return str(out)
