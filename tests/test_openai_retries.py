"""The openai engine's retries (tenacity), over real HTTP without a model: tests.servers.FaultProxy in
front of tests.servers.FakeOpenAI injects 500, 429 (Retry-After: 0.1), dropped connections and
timeouts; the engine retries those, honours Retry-After, counts retries by cause, gives up after
max_retries, and does not retry a 4xx that another try cannot fix."""

from __future__ import annotations

import time

from dsforge.engines import Request, SamplingParams, get_engine
from tests.servers import FakeOpenAI, FaultProxy


def ask(url: str, requests: int, **options) -> tuple[list, object]:
    eng = get_engine("openai", "judge-a", {"base_url": url, "probe": False, **options}).open()
    reqs = [Request([{"role": "user", "content": f"q{i}"}], SamplingParams(max_tokens=4), tag=i) for i in range(requests)]
    return list(eng.generate(reqs)), eng


def test_transient_faults_are_retried_and_counted_by_cause():
    schedule = ["500", "ok", "429", "ok", "drop", "ok", "slow", "ok"]
    with FakeOpenAI() as fake, FaultProxy(fake.url(), schedule, slow_s=1.5) as proxy:
        results, eng = ask(proxy.url, 4, timeout=0.5, backoff=0.01, max_retries=6, concurrency=1)
    assert [r.error for r in results] == [None] * 4 and all(len(r.completions) == 1 for r in results)
    assert eng.stats["retry_causes"] == {"http_500": 1, "http_429": 1, "connection": 1, "timeout": 1}
    assert eng.stats["retries"] == 4 and eng.stats["requests"] == 8
    assert sorted(c for r in results for c in r.meta.get("retries", [])) == ["connection", "http_429", "http_500",
                                                                             "timeout"]


def test_retry_after_is_honoured():
    with FakeOpenAI() as fake, FaultProxy(fake.url(), ["429", "429", "ok"]) as proxy:
        t0 = time.monotonic()
        results, eng = ask(proxy.url, 1, backoff=0.001, max_retries=3)
        waited = time.monotonic() - t0
    assert results[0].error is None and eng.stats["retry_causes"] == {"http_429": 2}
    assert waited >= 0.2   # two waits of at least the server's Retry-After (0.1 s), not the 1 ms backoff


def test_bounded_retries_then_the_failure_is_recorded():
    with FakeOpenAI() as fake, FaultProxy(fake.url(), ["500"]) as proxy:
        results, eng = ask(proxy.url, 1, backoff=0.001, max_retries=2)
        assert proxy.count == 3
    assert results[0].error.startswith("http_500") and results[0].meta["error_cause"] == "http_500"
    assert eng.stats["retries"] == 2 and eng.stats["requests"] == 3


def test_a_client_error_is_not_retried():
    with FakeOpenAI(fail_status=400) as fake:
        results, eng = ask(fake.url(), 1, backoff=0.001, max_retries=5)
        posts = [r for r in fake.requests if r[0] == "POST"]
    assert len(posts) == 1 and results[0].meta["error_cause"] == "http_400" and eng.stats["retries"] == 0


def test_fault_proxy_times_out_only_on_its_schedule_never_on_a_slow_upstream():
    """The fault tests' client timeouts are shorter than a CPU server's generation on a loaded machine;
    the proxy keeps such calls alive, so only the schedule's "slow" action can time out."""
    with FakeOpenAI(delay_s=1.5) as fake, FaultProxy(fake.url(), ["ok", "ok", "slow"], slow_s=1.0) as proxy:
        results, eng = ask(proxy.url, 3, timeout=0.5, backoff=0.01, max_retries=3, concurrency=1)
    assert [r.error for r in results] == [None] * 3
    assert eng.stats["retry_causes"] == {"timeout": 1}      # the scheduled "slow", and nothing else
