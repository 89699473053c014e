"""Judge throughput against one local OpenAI-compatible server, side by side in one run:

  (a) bare:    an asyncio openai client sending the same judge prompts at the same concurrency
  (b) dsforge: dsforge.judge.judge_file (cache, parsing, retries, bookkeeping), cache cold
  (c) rerun:   dsforge again on the same cache (every call a cache hit)

    python scripts/bench_judge.py --base-url http://127.0.0.1:8000/v1 --model NAME [--items 48]
    python scripts/bench_judge.py --start-server        # starts vllm serve with SmolLM2 and stops it

Prints requests/s and the ratio dsforge/bare, and the cached rerun time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url")
    ap.add_argument("--model", default="smol")
    ap.add_argument("--items", type=int, default=48)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--start-server", action="store_true")
    args = ap.parse_args()

    from dsforge.judge import JudgeConfig, judge_file
    from dsforge.records import prompt_id
    from dsforge.rubrics import BUILTIN

    server = None
    if args.start_server:
        from dsforge.servers import LocalServer

        t0 = time.time()
        server = LocalServer.vllm("smollm2-135m-instruct", name=args.model, ready_timeout=600,
                                  log_path=os.path.join(tempfile.gettempdir(), "bench_judge_server.log"),
                                  env={"HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"})
        server.start().wait()
        args.base_url = server.url
        print(f"server up in {time.time() - t0:.1f} s (not timed below)")
    try:
        tmp = tempfile.mkdtemp(prefix="bench_judge.")
        cands = os.path.join(tmp, "c.jsonl")
        rows = []
        for i in range(args.items):
            msgs = [{"role": "user", "content": f"Give one tip for writing clean Python code (#{i})."}]
            rows.append({"prompt_id": prompt_id(msgs), "messages": msgs, "temperature": 1.0, "sample_index": 0,
                         "text": f"Tip {i}: use descriptive names and keep functions short; test edge case {i}.",
                         "truncated": False})
        with open(cands, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        rubric = BUILTIN["additive"]()
        cfg = JudgeConfig(judge_model=args.model, rubric=rubric, max_tokens=args.max_tokens, parse_retries=0,
                          logprobs=False)
        # the exact requests dsforge sends (same messages, params, response_format)
        import openai

        async def bare():
            client = openai.AsyncOpenAI(base_url=args.base_url, api_key="EMPTY", max_retries=0, timeout=600)
            sem = asyncio.Semaphore(args.concurrency)

            async def one(r):
                async with sem:
                    return await client.chat.completions.create(
                        model=args.model, messages=rubric.pointwise_messages(r["messages"], r["text"]),
                        temperature=0.0, top_p=1.0, max_tokens=args.max_tokens, n=1, seed=0,
                        response_format=rubric.response_format())
            try:
                return await asyncio.gather(*(one(r) for r in rows))
            finally:
                await client.close()

        asyncio.run(bare())   # warm-up, not timed
        t0 = time.time()
        out = asyncio.run(bare())
        bare_s = time.time() - t0
        bare_tok = sum(o.usage.completion_tokens for o in out)

        from dsforge.engines import get_engine

        eng = get_engine("openai", args.model, {"base_url": args.base_url, "concurrency": args.concurrency,
                                                "probe": False}).open()
        t0 = time.time()
        s = judge_file(cands, os.path.join(tmp, "j.jsonl"), cfg, engine=eng, progress=False, log=lambda m: None)
        ds_s = time.time() - t0
        t0 = time.time()
        s2 = judge_file(cands, os.path.join(tmp, "j2.jsonl"), cfg, engine=eng, progress=False, log=lambda m: None,
                        cache_path=os.path.join(tmp, "j.jsonl.cache.sqlite"))
        rerun_s = time.time() - t0
        n = len(rows)
        print(f"\n{n} judge requests, concurrency {args.concurrency}, max_tokens {args.max_tokens}, {args.base_url}")
        print(f"{'':16s} {'seconds':>8s} {'req/s':>8s} {'vs bare':>8s}")
        print(f"{'bare asyncio':16s} {bare_s:8.2f} {n / bare_s:8.2f} {1.0:8.3f}   ({bare_tok} completion tokens)")
        print(f"{'dsforge judge':16s} {ds_s:8.2f} {n / ds_s:8.2f} {bare_s / ds_s:8.3f}   "
              f"({s['completion_tokens']} completion tokens, {s['scored']} scored, {s['failed']} failed)")
        print(f"{'dsforge (cached)':16s} {rerun_s:8.2f} {n / rerun_s:8.1f} {bare_s / rerun_s:8.1f}   "
              f"({s2['cache_hits']} cache hits, {s2['cache_misses']} misses)")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
