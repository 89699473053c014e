"""Sampling throughput, side by side in one run, on one vLLM engine (start-up timed separately):

  (a) bare:   one vllm.LLM.chat call over all (prompt x temperature) requests, n samples each
  (b) dsforge: dsforge.sample.sample() through the vllm engine (provenance, dedup, resumable
              writes) on the same LLM instance, same SamplingParams and per-request seeds
  (c) naive:  one LLM.chat call per prompt per temperature (what a simple script does)

    python scripts/bench_sample.py [--model smollm2-135m-instruct] [--prompts 24] [--n 4] [--max-tokens 64]

Prints generated tokens/s and the ratios dsforge/bare and naive/bare.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

TOPICS = ["tokenizers", "learning rates", "dataset splits", "LoRA ranks", "gradient clipping", "chat templates",
          "deduplication", "evaluation sets", "prompt formats", "sequence packing", "mixed precision", "DPO pairs"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--temps", default="0.7,1.0")
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from dsforge import models
    from dsforge.engines import derive_seed, get_engine
    from dsforge.records import prompt_id
    from dsforge.sample import SampleConfig, sample

    model = models.resolve(args.model)
    temps = [float(t) for t in args.temps.split(",")]
    rows = [{"prompt": f"In two sentences, give one practical tip about {TOPICS[i % len(TOPICS)]} (tip #{i})."}
            for i in range(args.prompts)]
    tmp = tempfile.mkdtemp(prefix="bench_sample.")
    pfile = os.path.join(tmp, "prompts.jsonl")
    with open(pfile, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)

    t0 = time.time()
    engine = get_engine("vllm", model, {"max_model_len": 2048}).open()
    start_s = time.time() - t0
    llm = engine.llm
    from vllm import SamplingParams

    convs, params = [], []
    for r in rows:
        msgs = [{"role": "user", "content": r["prompt"]}]
        pid = prompt_id(msgs)
        for t in temps:
            convs.append(msgs)
            params.append(SamplingParams(n=args.n, temperature=t, top_p=1.0, max_tokens=args.max_tokens,
                                         seed=derive_seed(0, pid, t), logprobs=0))
    # warm-up (first batch compiles kernels / fills caches): not timed
    llm.chat(convs[:2], params[:2], use_tqdm=False)

    def toks(outs):
        return sum(len(o.token_ids) for r in outs for o in r.outputs)

    t0 = time.time()
    bare_out = llm.chat(convs, params, use_tqdm=False)
    bare_s = time.time() - t0
    bare_tok = toks(bare_out)

    cfg = SampleConfig(model=model, engine="vllm", temps=tuple(temps), n=args.n, max_tokens=args.max_tokens, seed=0)
    out = os.path.join(tmp, "candidates.jsonl")
    t0 = time.time()
    summary = sample([pfile], out, cfg, engine=engine, progress=False, log=lambda m: None)
    ds_s = time.time() - t0
    ds_tok = summary["completion_tokens"]

    naive_s = naive_tok = None
    if not args.skip_naive:
        t0 = time.time()
        naive_tok = 0
        for c, p in zip(convs, params):
            naive_tok += toks(llm.chat([c], p, use_tqdm=False))
        naive_s = time.time() - t0

    engine.close()
    bare_tps, ds_tps = bare_tok / bare_s, ds_tok / ds_s
    print(f"\nmodel {args.model}, {args.prompts} prompts x {len(temps)} temperatures x n={args.n}, "
          f"max_tokens {args.max_tokens}; engine start-up {start_s:.1f} s (not in the ratios)")
    print(f"{'':10s} {'seconds':>9s} {'gen tokens':>11s} {'tok/s':>8s} {'vs bare':>8s}")
    print(f"{'bare vLLM':10s} {bare_s:9.2f} {bare_tok:11d} {bare_tps:8.1f} {1.0:8.3f}")
    print(f"{'dsforge':10s} {ds_s:9.2f} {ds_tok:11d} {ds_tps:8.1f} {ds_tps / bare_tps:8.3f}")
    if naive_s:
        print(f"{'naive loop':10s} {naive_s:9.2f} {naive_tok:11d} {naive_tok / naive_s:8.1f} "
              f"{naive_tok / naive_s / bare_tps:8.3f}")
    print(f"(dsforge wrote {summary['candidates_written']} candidates, {summary['duplicates_collapsed']} duplicates "
          f"collapsed, {summary['truncated']} truncated; same seeds, so token counts should match bare)")


if __name__ == "__main__":
    main()
