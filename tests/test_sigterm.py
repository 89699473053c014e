"""SIGTERM (kill, timeout, Slurm, Kubernetes, systemd) and SIGINT stop every process dsforge started.

Each test runs the real CLI as a subprocess, waits (on its own schedule, generous timeouts) until
the child process exists, sends the signal to the dsforge process only, and then checks the exit
status (143 / 130), that no process dsforge started is still alive, and, for servers, that the
port no longer answers. One command per test: serve (vLLM server, llamafactory-cli api), sample
(in-process vLLM engine core, while it starts and while it generates), train (LLaMA-Factory, SIGTERM
and SIGINT), run (its judge server). Without the SIGTERM handler, train and sample leave their
children running (measured); serve and run did too (issue 10).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

psutil = pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parent.parent
EXIT = {signal.SIGTERM: 143, signal.SIGINT: 130}


@pytest.fixture(scope="module")
def vllm_tiny(tmp_path_factory):
    """A tiny random Llama whose head size vLLM's CPU attention supports (64)."""
    pytest.importorskip("vllm")
    out = tmp_path_factory.mktemp("tiny_vllm")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import make_tiny_model as m; "
            "m.build(sys.argv[2], hidden=256)")
    subprocess.run([sys.executable, "-c", code, str(ROOT / "scripts"), str(out)], check=True, capture_output=True)
    cfg = json.loads((out / "config.json").read_text())
    cfg["max_position_embeddings"] = 4096     # what `dsforge serve` asks for on CPU
    (out / "config.json").write_text(json.dumps(cfg))
    return str(out)


class Dsforge:
    """`python -m dsforge ARGS` with its output in a log file, and every process it starts, tracked."""

    def __init__(self, args: list[str], log: Path, cwd: Path | None = None):
        self.log = log
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        env.pop("DSFORGE_DEBUG", None)
        with open(log, "wb") as f:
            # its own session, so the test's signal reaches dsforge only (like `kill PID`)
            self.proc = subprocess.Popen([sys.executable, "-m", "dsforge", *map(str, args)], stdout=f,
                                         stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
        self.seen: dict[int, psutil.Process] = {}

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def poll_children(self) -> list:
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            kids = []
        for k in kids:
            self.seen.setdefault(k.pid, k)
        return kids

    def wait_for(self, what: str, check, timeout: float = 900) -> None:
        """Poll until check() is true; fail if dsforge exits first or after `timeout` seconds."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.poll_children()
            if check():
                return
            if self.proc.poll() is not None:
                pytest.fail(f"dsforge exited ({self.proc.returncode}) before {what}:\n{self.output()[-4000:]}")
            time.sleep(0.5)
        pytest.fail(f"no {what} after {timeout} s:\n{self.output()[-4000:]}")

    def has_child(self, needle: str) -> bool:
        for p in self.poll_children():
            try:
                if needle in " ".join(p.cmdline()) or needle in p.name():
                    return True
            except psutil.Error:
                pass
        return False

    def signal_and_wait(self, sig: int, timeout: float = 600) -> int:
        self.poll_children()
        assert self.seen, "no child process was seen"
        self.proc.send_signal(sig)      # to dsforge only, not its group
        code = self.proc.wait(timeout=timeout)
        assert "Interrupted" in self.output(), self.output()[-3000:]
        return code

    def alive(self) -> list:
        """Processes dsforge started that still run (zombies waiting for a reaper do not count)."""
        out = []
        for p in self.seen.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.Error:
                pass
        return out

    def assert_all_stopped(self, grace: float = 60) -> None:
        # multiprocessing's resource tracker exits on its own once its parent is gone: allow a moment
        deadline = time.time() + grace
        while self.alive() and time.time() < deadline:
            time.sleep(0.5)
        left = [(p.pid, " ".join(p.cmdline())[:120]) for p in self.alive()]
        assert not left, f"still running after dsforge exited: {left}"

    def cleanup(self) -> None:
        """Test teardown: never leave anything running, whatever the test found."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for p in self.alive():
            try:
                p.kill()
            except psutil.Error:
                pass


@pytest.fixture
def launch():
    started: list[Dsforge] = []

    def _launch(args, log, cwd=None):
        d = Dsforge(args, log, cwd)
        started.append(d)
        return d

    yield _launch
    for d in started:
        d.cleanup()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _no_traceback(text: str) -> None:
    assert "Traceback (most recent call last)" not in text, text[-3000:]


@pytest.mark.vllm
def test_serve_sigterm_stops_the_vllm_server_and_closes_its_port(tmp_path, vllm_tiny, launch):
    from dsforge.procs import free_port

    port = free_port()
    d = launch(["serve", "--engine", "vllm", "-m", vllm_tiny, "--name", "tiny", "--port", port], tmp_path / "log")
    d.wait_for("server answering", lambda: _answers(f"http://127.0.0.1:{port}/v1/models"))
    assert d.signal_and_wait(signal.SIGTERM) == 143, d.output()[-3000:]
    d.assert_all_stopped()
    assert not _port_open(port), "the server still answers after dsforge exited"


@pytest.mark.llamafactory
def test_serve_llamafactory_sigterm_stops_its_api_server(tmp_path, tiny_model, lf_py, launch):
    from dsforge.procs import free_port

    port = free_port()
    d = launch(["serve", "--engine", "llamafactory", "-m", tiny_model, "--name", "tiny", "--port", port,
                "--lf-python", lf_py], tmp_path / "log", cwd=tmp_path)
    d.wait_for("server answering", lambda: _answers(f"http://127.0.0.1:{port}/v1/models"))
    assert d.signal_and_wait(signal.SIGTERM) == 143, d.output()[-3000:]
    d.assert_all_stopped()
    assert not _port_open(port), "the server still answers after dsforge exited"


@pytest.mark.vllm
@pytest.mark.parametrize("moment", ["starting", "generating"])
def test_sample_sigterm_stops_the_vllm_engine_processes(tmp_path, vllm_tiny, launch, moment):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {i}?"}) + "\n" for i in range(50000)))
    out = tmp_path / "c.jsonl"
    d = launch(["sample", prompts, "--engine", "vllm", "-m", vllm_tiny, "-n", "4", "--max-tokens", "64",
                "-o", out], tmp_path / "log")
    # vLLM's engine core is a separate process: SIGTERM while it starts, or once it generates
    if moment == "starting":
        d.wait_for("the engine core process", lambda: d.has_child("EngineCore"))
    else:
        d.wait_for("candidates written", lambda: out.exists() and out.read_bytes().count(b"\n") >= 1)
    assert d.signal_and_wait(signal.SIGTERM) == 143, d.output()[-3000:]
    d.assert_all_stopped()
    _no_traceback(d.output())


def _sft_dataset(tmp_path: Path) -> Path:
    from click.testing import CliRunner

    from dsforge.cli import cli

    data = tmp_path / "data"
    data.mkdir()
    rows = [{"instruction": f"question {i}?", "output": f"answer {i}."} for i in range(40)]
    (data / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = CliRunner().invoke(cli, ["register", str(data / "sft.jsonl"), "--name", "s", "--dataset-dir", str(data)])
    assert r.exit_code == 0, r.output
    return data


@pytest.mark.llamafactory
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_train_signal_stops_llamafactory(tmp_path, tiny_model, lf_py, launch, sig):
    data = _sft_dataset(tmp_path)
    d = launch(["train", "sft", "-m", tiny_model, "--dataset", "s", "--dataset-dir", data, "--lf-python", lf_py,
                "-o", tmp_path / "out", "--set", "max_steps=100000", "--set", "save_steps=100000",
                "--set", "per_device_train_batch_size=1", "--set", "cutoff_len=64",
                "--set", "preprocessing_num_workers=1"], tmp_path / "log")
    d.wait_for("llamafactory-cli running", lambda: d.has_child("launch.py"))
    assert d.signal_and_wait(sig) == EXIT[sig], d.output()[-3000:]
    d.assert_all_stopped()
    _no_traceback(d.output())


@pytest.mark.vllm
def test_run_sigterm_stops_its_judge_server(tmp_path, tiny_model, vllm_tiny, launch):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {i}?"}) + "\n" for i in range(2)))
    recipe = {"name": "t", "run_dir": str(tmp_path / "run"), "inputs": [str(prompts)],
              "models": {"sampler": tiny_model, "judge": vllm_tiny},
              "stages": [{"sample": {"engine": "hf", "engine_options": {"batch_size": 1}, "n": 2, "temps": [1.0],
                                     "max_tokens": 4}},
                         {"judge": {"serve": True}}]}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    d = launch(["run", tmp_path / "recipe.yaml", "--no-report"], tmp_path / "log")
    found = {}

    def server_answers() -> bool:
        m = re.search(r"judge server .* on 127\.0\.0\.1:(\d+)", d.output())
        if m:
            found["port"] = int(m.group(1))
        return bool(m) and _answers(f"http://127.0.0.1:{found['port']}/v1/models")

    d.wait_for("judge server answering", server_answers)
    assert d.has_child("vllm.entrypoints.openai.api_server")
    assert d.signal_and_wait(signal.SIGTERM) == 143, d.output()[-3000:]
    d.assert_all_stopped()
    assert not _port_open(found["port"]), "the judge server still answers after dsforge exited"
    _no_traceback(d.output())


@pytest.mark.parametrize("script", ["sleep 1000 & sleep 1000 & wait",             # children stop on SIGTERM
                                    "trap '' TERM; sleep 1000 & sleep 1000 & wait"])  # ...or need SIGKILL
def test_stop_group_stops_the_child_and_its_children(script):
    from dsforge.procs import start, stop_group

    proc = start(["sh", "-c", script])
    deadline = time.time() + 60
    while len(psutil.Process(proc.pid).children()) < 2 and time.time() < deadline:
        time.sleep(0.1)
    kids = psutil.Process(proc.pid).children(recursive=True)
    assert len(kids) == 2
    stop_group(proc, timeout=2)
    assert proc.returncode is not None
    gone, alive = psutil.wait_procs(kids, timeout=10)
    assert not alive
