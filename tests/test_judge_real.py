"""dsforge judge against a real judge server (vllm serve with SmolLM2-135M-Instruct on 127.0.0.1):
a tiny judge is a poor judge, so parse failures, ties and inconsistency all get exercised."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dsforge.engines import get_engine
from dsforge.judge import JudgeConfig, judge_file
from dsforge.pairs import PairConfig, build_pairs
from dsforge.rubrics import BUILTIN
from dsforge.validate import validate_path
from tests.servers import FaultProxy

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

QA = {
    "What is the capital of France?": ["The capital of France is Paris.", "France's capital is Lyon.",
                                       "Paris.", "I like turtles."],
    "How many legs does a spider have?": ["A spider has eight legs.", "Spiders have six legs.",
                                          "Eight.", "Spiders are mammals with wings."],
    "Name a primary colour.": ["Red is a primary colour.", "Green, in paint mixing.", "Blue.", "The moon."],
}


def write_candidates(path, qa=QA):
    from dsforge.records import prompt_id

    rows = []
    for q, answers in qa.items():
        msgs = [{"role": "user", "content": q}]
        for i, a in enumerate(answers):
            rows.append({"prompt_id": prompt_id(msgs), "messages": msgs, "text": a, "temperature": [0.7, 1.0][i % 2],
                         "sample_index": i, "duplicate_indices": [], "truncated": False, "finish_reason": "stop"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_pointwise_judge_audit_pairs_validate(tmp_path, vllm_server):
    c = write_candidates(tmp_path / "c.jsonl")
    out = tmp_path / "j.jsonl"
    r = subprocess.run([sys.executable, "-m", "dsforge", "judge", c, "-m", vllm_server["model"], "--base-url",
                        vllm_server["url"], "--audit", "--max-tokens", "160", "--price", "0.1,0.4", "-o", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.load(open(str(out) + ".summary.json"))
    rows = [json.loads(x) for x in open(out)]
    assert len(rows) == 12 and s["items"] == 12
    assert s["scored"] + s["failed"] == 12
    for row in rows:
        j = row["judge"]
        assert (j["score"] is None) == ("error" in j)
        if j["score"] is not None:
            assert 0 <= j["score"] <= 5 and j["raw"]
    assert s["prompt_tokens"] > 0 and s["cost_usd"] > 0 and s["structured_output"] is True
    assert set(s["audit"]) >= {"identical", "padded_not_better", "swapped"}
    assert "audit:" in r.stdout and "Spearman" in r.stdout
    # pairs from whatever the tiny judge decided; they validate as LLaMA-Factory dpo data
    ps = build_pairs(str(out), str(tmp_path / "dpo.jsonl"), PairConfig())
    assert ps["pairs"] + sum(ps["dropped"].get(k, 0) for k in ("tie", "margin", "identical_text")) >= 1
    if ps["pairs"]:
        rep = validate_path(str(tmp_path / "dpo.jsonl"), stage="dpo")
        assert rep.kept == rep.rows == ps["pairs"]
    # rerun: the cache answers everything
    r2 = subprocess.run([sys.executable, "-m", "dsforge", "judge", c, "-m", vllm_server["model"], "--base-url",
                         vllm_server["url"], "--max-tokens", "160", "-o", str(out)], capture_output=True, text=True,
                        timeout=120)
    s2 = json.load(open(str(out) + ".summary.json"))
    assert r2.returncode == 0 and s2["cache_misses"] == 0 and s2["calls"] == s2["cached_calls"]


def test_pairwise_both_orders_and_swap_consistency(tmp_path, vllm_server):
    c = write_candidates(tmp_path / "c.jsonl")
    eng = get_engine("openai", vllm_server["model"], {"base_url": vllm_server["url"]}).open()
    cfg = JudgeConfig(judge_model="smol", rubric=BUILTIN["pairwise"](), max_tokens=160, max_pairs_per_prompt=3)
    s = judge_file(c, str(tmp_path / "j.jsonl"), cfg, engine=eng, progress=False, log=lambda m: None)
    comps = [json.loads(x) for x in open(tmp_path / "j.jsonl.comparisons.jsonl")]
    assert s["comparisons"] == len(comps) == 9
    decided = [x for x in comps if x["verdict"] is not None]
    assert s["swap_consistency"] == pytest.approx(sum(x["consistent"] for x in decided) / len(decided), abs=1e-4)
    for x in decided:   # disagreement between the two orders is a tie, never a win
        assert x["verdict"] == (x["straight"] if x["consistent"] else "tie")
    rows = [json.loads(x) for x in open(tmp_path / "j.jsonl")]
    assert all(r["judge"]["score"] is None or 0 <= r["judge"]["score"] <= 1 for r in rows)


def test_judge_fault_injection_loses_nothing_and_counts_causes(tmp_path, vllm_server):
    c = write_candidates(tmp_path / "c.jsonl")

    def out_of_range(req, resp):
        for ch in resp["choices"]:
            ch["message"]["content"] = '{"rationale": "x", "score": 42}'
        return resp

    schedule = ["500", "ok", "429", "garbage", "drop", "ok", "slow", out_of_range, "ok", "no_response_format"]
    with FaultProxy(vllm_server["url"], schedule, slow_s=4.0) as proxy:
        eng = get_engine("openai", "smol", {"base_url": proxy.url, "timeout": 2.0, "backoff": 0.05,
                                            "max_retries": 8, "concurrency": 4, "probe": False}).open()
        cfg = JudgeConfig(judge_model="smol", rubric=BUILTIN["additive"](), max_tokens=120, parse_retries=3)
        s = judge_file(c, str(tmp_path / "j.jsonl"), cfg, engine=eng, progress=False, log=lambda m: None)
    rows = [json.loads(x) for x in open(tmp_path / "j.jsonl")]
    assert len(rows) == 12 and s["scored"] + s["failed"] == 12      # nothing lost
    causes = set(eng.stats["retry_causes"])
    assert {"http_500", "http_429", "connection", "timeout"} <= causes
    first = s["parse_failures_first_try"]
    assert first.get("out_of_range", 0) >= 1 and first.get("no_score_found", 0) >= 1   # garbage, 42/5
    assert s["structured_output"] is False     # the 400 on response_format switched it off, no call lost
    assert proxy.actions["no_response_format"] >= 1


def test_judge_kill_9_then_rerun_uses_cache(tmp_path, vllm_server):
    qa = {f"Question {i}: what is {i} plus {i}?": [f"{2 * i}", f"{2 * i + 1}", "no idea"] for i in range(14)}
    c = write_candidates(tmp_path / "c.jsonl", qa)
    out = tmp_path / "j.jsonl"
    cmd = [sys.executable, "-m", "dsforge", "judge", c, "-m", "smol", "--base-url", vllm_server["url"],
           "--engine-opt", "concurrency=2", "--max-tokens", "120", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cache = str(out) + ".cache.sqlite"
    import sqlite3

    deadline = time.time() + 300
    n = 0
    while time.time() < deadline and n < 8:
        time.sleep(0.5)
        if os.path.exists(cache):
            try:
                n = sqlite3.connect(cache).execute("SELECT count(*) FROM calls").fetchone()[0]
            except sqlite3.Error:
                pass
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert n >= 8 and not out.exists()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.load(open(str(out) + ".summary.json"))
    assert s["cache_hits"] >= 8 and s["items"] == 42 and s["scored"] + s["failed"] == 42
