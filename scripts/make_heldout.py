"""Make the frozen held-out set ONCE: dsforge/data/heldout/*.jsonl and MANIFEST.json.

    .venv/bin/python scripts/make_heldout.py

Never rerun it to regenerate: the committed files ARE the benchmark, and tests/test_heldout.py
pins their sha256, so a generator change cannot silently change a metric. The script refuses to
write over existing files; `--check` only tells whether today's generators still reproduce them.

Contents (levels from `dsforge tasks calibrate` on SmolLM2-135M-Instruct, see MANIFEST.json):
- ARITH: the calibrated arithmetic level (greedy pass@1 within 15-50%), the metric;
- CONTROL: a second family, to see what training on arithmetic costs elsewhere.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

from dsforge import tasks
from dsforge.io import atomic_write, dumps_row

SEED = 20261130                       # held-out seed; training prompts use others (and skip these items anyway)
SETS = [("arith", "ARITH_LEVEL", 500), ("units", "CONTROL_LEVEL", 200)]
# from `dsforge tasks calibrate` on SmolLM2-135M-Instruct (24 prompts/level, 6 samples at T=1.0, 2026-11-30):
# arith 5 (2-digit +- 2-digit): greedy 21%, pair-able 21% (the chosen level); units 1: greedy 25%
LEVELS = {"ARITH_LEVEL": "5", "CONTROL_LEVEL": "1"}


def build() -> dict[str, str]:
    """{file name: JSONL text} of the held-out set."""
    out = {}
    for family, key, n in SETS:
        level = LEVELS[key]
        rows = tasks.get_family(family).make(n, SEED, level)
        out[f"{family}-{level}.jsonl"] = "".join(dumps_row(r) + "\n" for r in rows)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="Compare the generators' output with the committed files.")
    args = ap.parse_args()
    files = build()
    if args.check:
        same = True
        for name, text in files.items():
            path = os.path.join(tasks.HELDOUT_DIR, name)
            ok = os.path.exists(path) and open(path, encoding="utf-8").read() == text
            same &= ok
            print(f"{name}: {'reproduced' if ok else 'DIFFERS from the committed file (the committed one stays)'}")
        return 0 if same else 1
    if os.path.exists(tasks.HELDOUT_DIR) and os.listdir(tasks.HELDOUT_DIR):
        print(f"{tasks.HELDOUT_DIR} exists: the held-out set is frozen and is never regenerated", file=sys.stderr)
        return 2
    os.makedirs(tasks.HELDOUT_DIR)
    manifest = {"seed": SEED, "levels": LEVELS, "files": {}}
    for name, text in files.items():
        with atomic_write(os.path.join(tasks.HELDOUT_DIR, name)) as f:
            f.write(text)
        manifest["files"][name] = {"rows": text.count("\n"), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    with atomic_write(os.path.join(tasks.HELDOUT_DIR, "MANIFEST.json")) as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
