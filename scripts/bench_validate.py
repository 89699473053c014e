"""Benchmark: dsforge validate vs a bare JSON parse vs LLaMA-Factory's own loader, same files, one run.

    python scripts/bench_validate.py [--rows 1000000] [--lf-python .venv-lf/bin/python] [--out DIR]

Each contender runs in its own process; wall time and peak RSS (ru_maxrss of the child) are
reported, with rows/s and ratios. "LLaMA-Factory" is its data pipeline up to the rows it keeps
(load_dataset + align_dataset + the stage processor, which includes tokenization) — what it
must do to tell you the answer dsforge gives — and, separately, load + align only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def gen_alpaca(path: Path, n: int) -> None:
    rng = random.Random(0)
    words = "the of and to in is for on that with as it was data model train token answer question".split()
    with open(path, "w") as f:
        for i in range(n):
            q = " ".join(rng.choices(words, k=rng.randint(5, 25)))
            a = " ".join(rng.choices(words, k=rng.randint(10, 60)))
            row = {"instruction": f"{q} #{i}", "input": "" if i % 3 else "context", "output": a}
            if i % 97 == 0:
                row.pop("output")  # some bad rows, so the validator has work to report
            f.write(json.dumps(row) + "\n")


def gen_sharegpt(path: Path, n: int) -> None:
    rng = random.Random(1)
    words = "the of and to in is for on that with as it was data model train token answer question".split()
    with open(path, "w") as f:
        for i in range(n):
            turns = []
            for t in range(rng.choice((1, 1, 2, 3))):
                turns.append({"from": "human", "value": " ".join(rng.choices(words, k=rng.randint(5, 20))) + f" {i}"})
                turns.append({"from": "gpt", "value": " ".join(rng.choices(words, k=rng.randint(10, 40)))})
            if i % 101 == 0:
                turns = turns[:-1]
            f.write(json.dumps({"conversations": turns}) + "\n")


def measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    wrapper = [sys.executable, "-c", (
        "import resource, subprocess, sys, time, json\n"
        "t0 = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - t0\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps({'wall': wall, 'rss': rss, 'rc': p.returncode, 'out': p.stdout, 'err': p.stderr[-2000:]}))"),
        *cmd]
    res = subprocess.run(wrapper, capture_output=True, text=True, env={**os.environ, **(env or {})})
    d = json.loads(res.stdout)
    if d["rc"] not in (0, 1):
        raise SystemExit(f"{cmd[:4]} failed: {d['err']}")
    return d["wall"], d["rss"], d["out"]


BARE = ("import json, sys\n"
        "n = 0\n"
        "with open(sys.argv[1], 'rb') as f:\n"
        "    for line in f:\n"
        "        if line.strip():\n"
        "            json.loads(line); n += 1\n"
        "print(n)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--lf-python", default=str(ROOT / ".venv-lf" / "bin" / "python"))
    ap.add_argument("--lf-rows", type=int, default=None, help="rows for the LLaMA-Factory run (default: same file)")
    ap.add_argument("--out", default=None)
    ns = ap.parse_args()
    work = Path(ns.out or tempfile.mkdtemp(prefix="dsforge-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    tok = work / "tok"
    if not tok.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tiny_tokenizer.py"), str(tok)], check=True,
                       capture_output=True)
    dsforge = [sys.executable, "-m", "dsforge", "validate", "--json", "--examples", "1"]
    results = []
    for kind, gen, entry, stage in (
            ("alpaca", gen_alpaca, {"file_name": "alpaca.jsonl"}, "sft"),
            ("sharegpt", gen_sharegpt, {"file_name": "sharegpt.jsonl", "formatting": "sharegpt"}, "sft")):
        data = work / f"{kind}.jsonl"
        if not data.exists() or sum(1 for _ in open(data)) != ns.rows:
            gen(data, ns.rows)
        (work / "dataset_info.json").write_text(json.dumps({"alpaca": {"file_name": "alpaca.jsonl"},
                                                            "sharegpt": {"file_name": "sharegpt.jsonl", "formatting": "sharegpt"},
                                                            "alpaca_small": {"file_name": "alpaca_small.jsonl"},
                                                            "sharegpt_small": {"file_name": "sharegpt_small.jsonl", "formatting": "sharegpt"}}))
        size_mb = data.stat().st_size / 2**20
        row = {"kind": kind, "rows": ns.rows, "mb": round(size_mb, 1)}
        w, rss, _ = measured([sys.executable, "-c", BARE, str(data)])
        row["bare"] = (w, rss)
        w, rss, out = measured([*dsforge, str(data)])
        rep = json.loads(out)[0]
        row["dsforge"] = (w, rss)
        row["would_train"] = rep["would_train"]
        # memory growth: same validator on a quarter of the file
        small = work / f"{kind}_small.jsonl"
        with open(data) as src, open(small, "w") as dst:
            for i, line in enumerate(src):
                if i >= ns.rows // 4:
                    break
                dst.write(line)
        w, rss_small, out_small = measured([*dsforge, str(small)])
        row["dsforge_quarter_rss"] = rss_small
        row["would_train_quarter"] = json.loads(out_small)[0]["would_train"]
        if os.path.exists(ns.lf_python):
            name = kind if not ns.lf_rows else f"{kind}_small"
            lf_rows = ns.rows if not ns.lf_rows else ns.rows // 4
            w, rss, out = measured([ns.lf_python, str(ROOT / "dsforge" / "lf" / "probe.py"), "--dataset-dir", str(work),
                                    "--model", str(tok), "--cutoff-len", "1024", f"{name}:{stage}"],
                                   env={"HF_DATASETS_CACHE": str(work / "hfcache"), "OMP_NUM_THREADS": "2"})
            kept = [json.loads(x[14:]) for x in out.splitlines() if x.startswith("DSFORGE_PROBE ")]
            row["lf"] = (w, rss, lf_rows)
            row["lf_kept"] = kept[0]["rows"] if kept else None
        results.append(row)
        print(json.dumps(row), flush=True)

    print("\n| data | rows | MB | bare json.loads rows/s | dsforge validate rows/s | dsforge/bare | LLaMA-Factory rows/s "
          "| dsforge/LF | dsforge peak RSS (1/4 file -> full) | agree |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        bare = r["rows"] / r["bare"][0]
        ds = r["rows"] / r["dsforge"][0]
        lf = r["lf"][2] / r["lf"][0] if "lf" in r else None
        ours = r["would_train"] if "lf" in r and r["lf"][2] == r["rows"] else r.get("would_train_quarter")
        agree = "" if "lf" not in r else (f"yes ({ours:,} kept)" if r["lf_kept"] == ours else f"NO (LF {r['lf_kept']} vs {ours})")
        print(f"| {r['kind']} | {r['rows']:,} | {r['mb']} | {bare:,.0f} | {ds:,.0f} | {ds / bare:.2f} | "
              f"{'' if lf is None else f'{lf:,.0f}'} | {'' if lf is None else f'{ds / lf:.1f}x'} | "
              f"{r['dsforge_quarter_rss']:.0f} -> {r['dsforge'][1]:.0f} MB | {agree} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
