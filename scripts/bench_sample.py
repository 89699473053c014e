"""Sampling throughput, side by side in one run, on one engine (start-up timed separately).

--engine vllm (default):
  (a) bare:   one vllm.LLM.chat call over all (prompt x temperature) requests, n samples each
  (b) dsforge: dsforge.sample.sample() through the vllm engine (provenance, dedup, resumable
              writes) on the same LLM instance, same SamplingParams and per-request seeds
  (c) naive:  one LLM.chat call per prompt per temperature (what a simple script does)

--engine hf (transformers; bf16 on a GPU):
  (a) bare:   a plain loop of model.generate(do_sample=True, num_return_sequences=n) over batches of
              --batch-size prompts per temperature, decoded (what a simple script does, batched)
  (b) dsforge: dsforge.sample.sample() through the hf engine on the same model instance (per-row
              seeds, provenance, resumable writes), --batch-size prompts per generate call
  After --warmup untimed passes of each, each is run --repeat times, alternating; the best run counts.

    python scripts/bench_sample.py [--engine vllm|hf] [--model smollm2-135m-instruct] [--prompts 24] [--n 4]
                                   [--max-tokens 64] [--batch-size 32] [--dtype bfloat16] [--json OUT.json]

Prints generated tokens/s and the ratios dsforge/bare (and naive/bare for vllm).
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
    ap.add_argument("--engine", choices=["vllm", "hf"], default="vllm")
    ap.add_argument("--batch-size", type=int, help="hf: prompts per generate call (default: the engine's)")
    ap.add_argument("--dtype", help="hf: model dtype (default: the engine's: bfloat16 on a GPU)")
    ap.add_argument("--repeat", type=int, default=2, help="hf: timed runs of each, alternating; the best counts")
    ap.add_argument("--warmup", type=int, default=1, help="hf: untimed passes of each before the timed ones")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.engine == "hf":
        return bench_hf(args)

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


def prompt_file(n: int) -> tuple[list[dict], str, str]:
    rows = [{"prompt": f"In two sentences, give one practical tip about {TOPICS[i % len(TOPICS)]} (tip #{i})."}
            for i in range(n)]
    tmp = tempfile.mkdtemp(prefix="bench_sample.")
    pfile = os.path.join(tmp, "prompts.jsonl")
    with open(pfile, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return rows, pfile, tmp


def bench_hf(args) -> None:
    import torch

    from dsforge import models
    from dsforge.engines import get_engine
    from dsforge.sample import SampleConfig, sample

    model = models.resolve(args.model)
    temps = [float(t) for t in args.temps.split(",")]
    rows, pfile, tmp = prompt_file(args.prompts)
    opts = {k: v for k, v in (("batch_size", args.batch_size), ("dtype", args.dtype)) if v}
    t0 = time.time()
    engine = get_engine("hf", model, opts).open()
    start_s = time.time() - t0
    lm, tok, bs = engine.lm, engine.tok, engine.batch_size
    texts = [tok.apply_chat_template([{"role": "user", "content": r["prompt"]}], tokenize=False,
                                     add_generation_prompt=True) for r in rows]
    sync = torch.cuda.synchronize if engine.device.startswith("cuda") else (lambda: None)

    def bare() -> int:
        gen = 0
        for t in temps:
            for i in range(0, len(texts), bs):
                enc = tok(texts[i:i + bs], return_tensors="pt", padding=True, add_special_tokens=False).to(lm.device)
                with torch.no_grad():
                    out = lm.generate(**enc, do_sample=True, temperature=t, top_p=1.0, top_k=0,
                                      num_return_sequences=args.n, max_new_tokens=args.max_tokens,
                                      pad_token_id=tok.pad_token_id)
                new = out[:, enc["input_ids"].shape[1]:].tolist()
                tok.batch_decode(new, skip_special_tokens=True)
                gen += sum(engine._completion(r, None, ()).completion_tokens for r in new)
        sync()
        return gen

    cfg = SampleConfig(model=model, engine="hf", temps=tuple(temps), n=args.n, max_tokens=args.max_tokens, seed=0)

    def dsforge(k: int) -> int:
        out = os.path.join(tmp, f"candidates{k}.jsonl")
        summary = sample([pfile], out, cfg, engine=engine, progress=False, log=lambda m: None)
        sync()
        return summary["completion_tokens"]

    for _ in range(args.warmup):   # warm-up passes (kernels, allocator, cuBLAS choices per shape): not timed
        bare()
        dsforge(-1 - _)
    runs: dict[str, list] = {"bare": [], "dsforge": []}
    for k in range(args.repeat):
        for name, fn in (("bare", bare), ("dsforge", lambda: dsforge(k))):
            t0 = time.time()
            n_tok = fn()
            runs[name].append((n_tok / (time.time() - t0), n_tok, time.time() - t0))
    best = {k: max(v) for k, v in runs.items()}
    ratio = best["dsforge"][0] / best["bare"][0]
    gpu = torch.cuda.get_device_name() if engine.device.startswith("cuda") else "cpu"
    print(f"\nhf engine on {gpu}, model {args.model} ({engine.dtype}, "
          f"{sum(p.numel() for p in lm.parameters()) / 1e6:.0f}M params), {args.prompts} prompts x {len(temps)} "
          f"temperatures x n={args.n}, max_tokens {args.max_tokens}, batch_size {bs} prompts; "
          f"best of {args.repeat}; start-up {start_s:.1f} s (not in the ratios)")
    print(f"{'':10s} {'seconds':>9s} {'gen tokens':>11s} {'tok/s':>9s} {'vs bare':>8s}")
    for name in ("bare", "dsforge"):
        tps, n_tok, sec = best[name]
        print(f"{name:10s} {sec:9.2f} {n_tok:11d} {tps:9.1f} {tps / best['bare'][0]:8.3f}")
    print("all runs (tok/s): " + "; ".join(f"{k}: {', '.join(f'{r[0]:.0f}' for r in v)}" for k, v in runs.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": gpu, "model": args.model, "dtype": engine.dtype, "batch_size": bs,
                       "prompts": args.prompts, "temps": temps, "n": args.n, "max_tokens": args.max_tokens,
                       "runs": runs, "ratio": ratio}, f, indent=2)
    engine.close()


if __name__ == "__main__":
    main()
