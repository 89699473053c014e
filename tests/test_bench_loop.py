"""scripts/bench_loop.py's per-round table (the numbers come from dsforge.evaluate summaries)."""

import importlib.util
import os

spec = importlib.util.spec_from_file_location(
    "bench_loop", os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts", "bench_loop.py"))
bench_loop = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_loop)


def acc(x, lo, hi):
    return {"acc": x, "ci_low": lo, "ci_high": hi}


def summary(len_acc, base_diff=None, ctl=False):
    s = {"pass1": {"lenient": acc(len_acc, len_acc - 0.03, len_acc + 0.03), "strict": acc(0.0, 0.0, 0.01)},
         "reply_tokens_mean": 31.5}
    if base_diff is not None:
        d = {"diff": base_diff, "ci_low": base_diff - 0.04, "ci_high": base_diff + 0.04, "mcnemar": {"p": 1e-9}}
        s["baseline"] = {"lenient": d, "strict": d}
    return s


def test_table_has_base_and_round_rows_with_paired_diff_yield_and_minutes():
    base = {"arith": summary(0.148), "control": summary(0.14)}
    rec = {"round": 1, "eval": {"arith": summary(0.364, 0.216), "control": summary(0.13, -0.01)},
           "pairs": 74, "steps": 20, "pair_yield": {"rate": 0.2467},
           "seconds": {"sample": 120, "judge": 6, "pairs": 6, "train": 300, "export": 60, "eval": 240}}
    lines = bench_loop.table(base, [rec]).splitlines()
    assert lines[2].startswith("| base | 14.8 [11.8, 17.8] | 0.0 |  | 14.0 |")
    assert lines[3] == ("| 1 | 36.4 [33.4, 39.4] | 0.0 | +21.6 [+17.6, +25.6], p=1e-09 | 13.0 (-1.0) | 31.5 | 0.25 | 74 | 20 "
                        "| 2.0/0.1/0.1/5.0/1.0/4.0 |")
