"""The hf engine batches whatever the seeds, and a request's answers depend only on its own seed.

Real transformers on the tiny random Llama (tests/conftest.py); nothing timed.
"""

import pytest

from dsforge.engines import Request, SamplingParams, get_engine

pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module", params=["default", "float32"])
def engine(request, tiny_model):
    opts = {} if request.param == "default" else {"dtype": request.param}
    e = get_engine("hf", tiny_model, opts).open()
    yield e
    e.close()


def req(i, seed, temp=0.8, n=3, max_tokens=12, top_p=1.0, logprobs=True):
    msgs = [{"role": "user", "content": f"question {'word ' * (i % 5)}{i}"}]   # prompts of several lengths
    return Request(msgs, SamplingParams(temperature=temp, top_p=top_p, max_tokens=max_tokens, n=n, seed=seed,
                                        logprobs=logprobs), tag=i)


def texts(engine, requests, batch_size):
    engine.batch_size = batch_size
    return {r.request.tag: [c.text for c in r.completions] for r in engine.generate(requests)}


def test_same_seed_same_answers_whatever_the_batch(engine):
    """Exact in float32. In bfloat16 a row's logits change in the last bits with the batch's shape, which moves
    a draw lying within rounding of a token boundary (documented in engines/hf.py): most rows must still agree,
    where seeding per batch (the old scheme) agreed on none."""
    mine = [req(i, seed=100 + i) for i in range(8)]
    alone = texts(engine, mine, batch_size=1)
    # other requests around them: other seeds, temperatures, n, prompt lengths, and another order
    others = [req(10 + i, seed=7 * i, temp=t, n=1 + i % 4) for i, t in enumerate((0.3, 1.0, 1.3, 0.0, 0.7))]
    for bs in (2, 8):
        mixed = texts(engine, others[:2] + mine[2:] + others[2:] + mine[:2], batch_size=bs)
        pairs = [(a, b) for k in alone for a, b in zip(alone[k], mixed[k])]
        if engine.dtype == "float32":
            assert {k: mixed[k] for k in alone} == alone, f"batch_size={bs}"
        else:
            assert sum(a == b for a, b in pairs) >= len(pairs) * 2 // 3, f"batch_size={bs}: {pairs}"
    assert len({t for v in alone.values() for t in v}) > 20, "samples must differ between seeds and indices"


def counted_generate(engine, monkeypatch):
    calls = []
    real = engine.lm.generate

    def spy(*a, **kw):
        calls.append(kw["input_ids"].shape[0])
        return real(*a, **kw)

    monkeypatch.setattr(engine.lm, "generate", spy)
    return calls


def test_one_generate_call_for_many_seeds(engine, monkeypatch):
    calls = counted_generate(engine, monkeypatch)
    engine.batch_size = 8
    results = list(engine.generate([req(i, seed=i, temp=0.5 + 0.1 * i, n=2) for i in range(6)]))
    assert calls == [12], "6 prompts x n=2 with distinct seeds and temperatures: one batch of 12 rows"
    assert [r.seed_used for r in sorted(results, key=lambda r: r.request.tag)] == list(range(6))


def test_unseeded_request_records_the_seed_it_used(engine):
    engine.batch_size = 4
    first = list(engine.generate([req(1, seed=None)]))[0]
    assert isinstance(first.seed_used, int)
    again = list(engine.generate([req(1, seed=first.seed_used)]))[0]
    assert [c.text for c in again.completions] == [c.text for c in first.completions]


def test_temperature_zero_and_tiny_top_p_are_greedy(engine):
    import torch

    r = req(3, seed=1, temp=0.0, n=1, max_tokens=10)
    ids = engine.tok.apply_chat_template(r.messages, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    with torch.no_grad():
        ref = engine.lm.generate(input_ids=torch.tensor([list(ids)], device=engine.lm.device), do_sample=False, max_new_tokens=10,
                                 pad_token_id=engine.tok.pad_token_id)
    greedy = engine._completion(ref[0, len(ids):].tolist(), None, ()).text
    engine.batch_size = 4
    got = list(engine.generate([r, req(4, seed=9), req(5, seed=2, temp=1.0, top_p=1e-6, n=2)]))
    by = {x.request.tag: x for x in got}
    assert by[3].completions[0].text == greedy
    # top_p -> 0 keeps only the most likely token: also greedy, for both samples
    r5 = req(5, seed=2, temp=0.0, n=1)
    greedy5 = list(engine.generate([r5]))[0].completions[0].text
    assert [c.text for c in by[5].completions] == [greedy5, greedy5]


def test_logprobs_only_when_asked_and_finish_reasons(engine):
    engine.batch_size = 8
    got = {r.request.tag: r for r in engine.generate([req(1, seed=1, logprobs=True), req(2, seed=1, logprobs=False)])}
    assert all(c.mean_logprob is not None and c.mean_logprob < 0 for c in got[1].completions)
    assert all(c.mean_logprob is None for c in got[2].completions)
    for c in got[1].completions:
        assert c.finish_reason in ("stop", "length") and 0 < c.completion_tokens <= 12
        assert (c.finish_reason == "length") == (c.completion_tokens == 12)


def test_default_dtype_follows_the_hardware(monkeypatch):
    from dsforge.engines import hf

    import torch

    monkeypatch.setattr(hf, "cpu_has_bf16", lambda: False)
    assert hf.default_dtype("cpu") == "float32"
    monkeypatch.setattr(hf, "cpu_has_bf16", lambda: True)
    assert hf.default_dtype("cpu") == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert hf.default_dtype("cuda") == "bfloat16"
    monkeypatch.undo()
    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        assert hf.cpu_has_bf16()


@pytest.mark.parametrize("opt,msg", [({"dtype": "flaot32"}, "dtype: Input should be 'float32', 'bfloat16' or 'float16'"),
                                     ({"batch_size": 0}, "batch_size: Input should be greater than 0"),
                                     ({"batch_size": -1}, "batch_size: Input should be greater than 0")])
def test_bad_engine_options_are_usage_errors_before_loading(opt, msg):
    from dsforge.errors import UsageError

    with pytest.raises(UsageError, match="bad option for the hf engine") as err:
        get_engine("hf", "no-such-model", opt)   # checked at construction: no model is loaded
    assert msg in err.value.message
