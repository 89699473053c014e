#!/usr/bin/env python
"""Benchmark: dsforge dedup (rensa MinHash + numpy LSH) vs a plain datasketch loop vs exact dedup.

Generates --rows alpaca rows with planted near-duplicate clusters of known sizes (members are an
exact copy, a copy with case/punctuation changes, or a copy with one word replaced: Jaccard ~0.88
on word 3-shingles), then runs each method in its own subprocess (so peak RSS is its own) and
prints rows/s, peak RSS and precision/recall of the planted duplicates, side by side with ratios.

    python scripts/bench_dedup.py --rows 1000000            # the issue's size
    python scripts/bench_dedup.py --rows 20000              # quick check

The datasketch loop (MinHash + MinHashLSH query-then-insert, one row at a time) runs on the first
--baseline-rows rows only (default 200,000): at ~5k rows/s and several GB of index it would not
finish 1M rows here; its rows/s and RSS are for that many rows and say so.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

SIZES = (2, 3, 5, 10)      # planted cluster sizes, cycled
DUP_SHARE = 0.2            # share of rows that belong to a planted cluster


def generate(path: str, rows: int, seed: int = 0) -> str:
    """Write rows to `path`; returns the path of a JSON truth file: should_drop row indices."""
    rng = random.Random(seed)
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "su", "ta", "ve", "ro", "di", "po")
             for b in range(2000)]
    drop, out, i, k = [], [], 0, 0
    punct = [",", ".", "!", "?", ";"]
    with open(path, "w") as f:
        while i < rows:
            words = rng.choices(vocab, k=rng.randint(35, 60))
            size = SIZES[k % len(SIZES)] if rng.random() < DUP_SHARE / 4 else 1
            k += size > 1
            size = min(size, rows - i)
            variants = [words]
            for m in range(1, size):
                kind = m % 3
                if kind == 0:
                    v = list(words)
                elif kind == 1:
                    v = [w.upper() if rng.random() < 0.2 else w + (rng.choice(punct) if rng.random() < 0.1 else "")
                         for w in words]
                else:
                    v = list(words)
                    v[rng.randrange(len(v))] = rng.choice(vocab)
                variants.append(v)
            for m, v in enumerate(variants):
                half = len(v) // 2
                f.write(json.dumps({"instruction": " ".join(v[:half]), "input": "", "output": " ".join(v[half:])})
                        + "\n")
                if m:
                    drop.append(i)
                i += 1
    truth = path + ".truth.json"
    with open(truth, "w") as f:
        json.dump(drop, f)
    return truth


def run_dsforge(path: str, rows: int, out_dir: str) -> dict:
    from dsforge.dedup import DedupOptions, dedup_files

    out = os.path.join(out_dir, "dsforge.jsonl")
    t = time.perf_counter()
    rep = dedup_files([path], out, DedupOptions(on="all", shingle="word:3", threshold=0.8))
    secs = time.perf_counter() - t
    dropped = rep.drop_mask.nonzero()[0].tolist()
    return {"rows": rows, "seconds": secs, "dropped": dropped, "clusters": rep.clusters}


def run_datasketch(path: str, rows: int, out_dir: str) -> dict:
    from datasketch import MinHash, MinHashLSH

    from dsforge.dedup import Shingling, identity_text

    sh = Shingling("word", 3)
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    dropped = []
    t = time.perf_counter()
    with open(path) as f:
        for i, line in enumerate(f):
            if i >= rows:
                break
            m = MinHash(num_perm=128)
            m.update_batch([s.encode() for s in sh(identity_text(json.loads(line), "all"))])
            if lsh.query(m):
                dropped.append(i)
            else:
                lsh.insert(i, m)
    return {"rows": rows, "seconds": time.perf_counter() - t, "dropped": dropped}


def run_exact(path: str, rows: int, out_dir: str) -> dict:
    import hashlib

    from dsforge.dedup import identity_text

    seen, dropped = set(), []
    t = time.perf_counter()
    with open(path) as f:
        for i, line in enumerate(f):
            d = hashlib.blake2b(identity_text(json.loads(line), "all").encode(), digest_size=8).digest()
            if d in seen:
                dropped.append(i)
            else:
                seen.add(d)
    return {"rows": rows, "seconds": time.perf_counter() - t, "dropped": dropped}


METHODS = {"dsforge (rensa)": run_dsforge, "datasketch loop": run_datasketch, "exact (hash)": run_exact}


def child(method: str, path: str, rows: int, out_dir: str) -> None:
    c = time.process_time()
    res = METHODS[method](path, rows, out_dir)
    res["cpu_seconds"] = time.process_time() - c
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(res))


def score(dropped: list[int], truth: set[int], rows: int) -> tuple[float, float]:
    t = {i for i in truth if i < rows}
    d = set(dropped)
    tp = len(d & t)
    return (tp / len(d) if d else 1.0), (tp / len(t) if t else 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--baseline-rows", type=int, default=200_000)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true", help="keep the generated data")
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1], int(a.child[2]), a.child[3])
        return
    with tempfile.TemporaryDirectory(prefix="bench_dedup.") as d:
        path = os.path.join(d, "rows.jsonl")
        t = time.perf_counter()
        truth = set(json.load(open(generate(path, a.rows))))
        print(f"generated {a.rows:,} rows ({len(truth):,} planted duplicates, cluster sizes {SIZES}) "
              f"in {time.perf_counter() - t:.0f}s; {os.cpu_count()} CPUs", flush=True)
        results = {}
        for name in METHODS:
            rows = min(a.rows, a.baseline_rows) if name == "datasketch loop" else a.rows
            p = subprocess.run([sys.executable, __file__, "--child", name, path, str(rows), d],
                               capture_output=True, text=True)
            if p.returncode:
                print(f"{name}: failed\n{p.stderr[-2000:]}")
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            r["precision"], r["recall"] = score(r.pop("dropped"), truth, rows)
            results[name] = r
            print(f"  {name}: {r['rows']:,} rows in {r['seconds']:.1f}s", flush=True)
    ref = results.get("dsforge (rensa)")
    print(f"\n{'method':<18} {'rows':>10} {'rows/s':>10} {'rows/cpu-s':>11} {'peak RSS MB':>12} {'precision':>10} "
          f"{'recall':>8} {'cpu-rate vs dsforge':>20}")
    for name, r in results.items():
        rate = r["rows"] / r["seconds"]
        ratio = f"{r['cpu_seconds'] and (r['rows'] / r['cpu_seconds']) / (ref['rows'] / ref['cpu_seconds']):.3f}x" \
            if ref else "-"
        print(f"{name:<18} {r['rows']:>10,} {rate:>10,.0f} {r['rows'] / r['cpu_seconds']:>11,.0f} "
              f"{r['peak_rss_mb']:>12,.0f} {r['precision']:>10.4f} {r['recall']:>8.4f} {ratio:>20}")
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: wall rows/s shrink when the machine is "
          f"shared; rows/cpu-s is the single-process rate)")


if __name__ == "__main__":
    main()
