"""The judge summary: score statistics from the judged rows, counters from the run, the console lines."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from dsforge.judge.core import Judge, JudgeConfig


def spearman(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None

    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return r

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    vy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return round(cov / (vx * vy), 4) if vx and vy else None


_SUMMED = ("calls", "cached_calls", "failed_calls", "prompt_tokens", "completion_tokens", "cache_hits",
           "cache_misses", "comparisons", "swap_decided", "kept_previous")


def merge_summaries(summaries: list[dict], judged: list[dict], cfg: JudgeConfig) -> dict:
    """One summary for a run judged in shards: counters added up, score statistics from `judged`."""
    s = _row_stats(judged, cfg)
    for k in _SUMMED:
        if any(k in x for x in summaries):
            s[k] = sum(x.get(k) or 0 for x in summaries)
    for k in ("parse_failures_first_try", "failures_final", "slot_picks"):
        if any(k in x for x in summaries):
            total = Counter()
            for x in summaries:
                total.update(x.get(k) or {})   # update, not +: a zero count stays
            s[k] = dict(total)
    s["structured_output"] = all(x.get("structured_output") for x in summaries)
    s["seconds"] = max(x.get("seconds") or 0 for x in summaries)   # the shards ran side by side
    s["engine_info"] = summaries[0].get("engine_info")
    if cfg.rubric.mode == "pairwise":
        d = s.get("swap_decided") or 0
        s["swap_consistency"] = (round(sum((x.get("swap_consistency") or 0) * (x.get("swap_decided") or 0)
                                           for x in summaries) / d, 4) if d else None)
        picks = s.get("slot_picks") or {}
        fs = (picks.get("first") or 0) + (picks.get("second") or 0)
        s["first_slot_rate"] = round(picks.get("first", 0) / fs, 4) if fs else None
    if cfg.prices:
        s["cost_usd"] = round(sum(x.get("cost_usd") or 0 for x in summaries), 6)
    return s


def summarize(judged: list[dict], judge: Judge, cfg: JudgeConfig, seconds: float) -> dict:
    st = judge.stats
    s = _row_stats(judged, cfg)
    s.update({
        "parse_failures_first_try": dict(st.first_try_failures),
        "failures_final": dict(st.final_failures),
        "structured_output": judge.structured,
        "calls": st.usage["calls"] + st.usage["cached_calls"] + st.usage["failed_calls"],
        "cached_calls": st.usage["cached_calls"], "failed_calls": st.usage["failed_calls"],
        "prompt_tokens": st.usage["prompt_tokens"], "completion_tokens": st.usage["completion_tokens"],
        "cache_hits": judge.cache.hits, "cache_misses": judge.cache.misses, "seconds": round(seconds, 2),
    })
    if cfg.rubric.mode == "pairwise":
        d = st.counts["swap_decided"]
        s["comparisons"] = st.counts["comparisons"]
        s["swap_decided"] = d
        s["swap_consistency"] = round(st.counts["swap_consistent"] / d, 4) if d else None
        picks = {k: st.counts[f"slot_{k}"] for k in ("first", "second", "tie")}
        s["slot_picks"] = picks   # per call (each pair is asked in both orders)
        s["first_slot_rate"] = (round(picks["first"] / (picks["first"] + picks["second"]), 4)
                                if picks["first"] + picks["second"] else None)
    if cfg.prices:
        s["cost_usd"] = round(s["prompt_tokens"] / 1e6 * cfg.prices[0] + s["completion_tokens"] / 1e6 * cfg.prices[1], 6)
    return s


def _row_stats(judged: list[dict], cfg: JudgeConfig) -> dict:
    """The summary fields that follow from the judged rows alone."""
    scored = [r for r in judged if r["judge"].get("score") is not None]
    by_t = defaultdict(list)
    for r in scored:
        by_t[str(r.get("temperature"))].append(r["judge"]["score"])
    hist = Counter()
    for r in scored:
        hist[str(round(r["judge"]["score"], 1))] += 1
    s = {
        "judge_model": cfg.judge_model, "rubric": cfg.rubric.name, "rubric_hash": cfg.rubric.hash,
        "mode": cfg.rubric.mode, "votes": cfg.votes, "items": len(judged), "scored": len(scored),
        "not_judged_truncated": sum(1 for r in judged if r["judge"].get("error") == "truncated_not_judged"),
        "failed": sum(1 for r in judged if r["judge"].get("score") is None
                      and r["judge"].get("error") not in ("truncated_not_judged", "not_compared")),
        "not_compared": sum(1 for r in judged if r["judge"].get("error") == "not_compared"),
        "mean_score_by_temperature": {t: round(sum(v) / len(v), 4) for t, v in sorted(by_t.items())},
        "score_histogram": dict(sorted(hist.items(), key=lambda kv: float(kv[0]))),
        "spearman_score_length": spearman([r["judge"]["score"] for r in scored], [len(r["text"]) for r in scored]),
    }
    return s


def format_summary(s: dict) -> str:
    lines = [f"judged {s['items']} candidates with {s['judge_model']} ({s['rubric']}, {s['mode']}): "
             f"{s['scored']} scored, {s['failed']} failed, {s['not_judged_truncated']} truncated not judged"]
    if s["parse_failures_first_try"] or s["failures_final"]:
        lines.append(f"parse failures: first try {s['parse_failures_first_try'] or 0}, final {s['failures_final'] or 0}")
    if s.get("swap_consistency") is not None:
        fs = s.get("first_slot_rate")
        sp = s.get("slot_picks") or {}
        lines.append(f"pairwise: {s['comparisons']} comparisons, swap-consistency {s['swap_consistency']:.1%}, "
                     f"first-slot pick rate " + (f"{fs:.1%} ({sp.get('first')} of {sp.get('first', 0) + sp.get('second', 0)} "
                                                 f"decisive calls; 50% = no position bias)" if fs is not None else "n/a"))
    if s.get("not_compared"):
        lines.append(f"{s['not_compared']} candidates not compared (left out of every pair by --max-pairs-per-prompt)")
    lines.append(f"mean score by temperature: {s['mean_score_by_temperature']}; "
                 f"Spearman(score, length) = {s['spearman_score_length']}")
    lines.append(f"calls {s['calls']} ({s['cached_calls']} from the cache, free; {s.get('failed_calls', 0)} failed), "
                 f"new tokens {s['prompt_tokens']} in / "
                 f"{s['completion_tokens']} out, {s['seconds']} s" +
                 (f", est. cost ${s['cost_usd']}" if "cost_usd" in s else ""))
    if "audit" in s:
        a = s["audit"]
        lines.append("audit: " + ", ".join(f"{k} {v['rate']:.0%} ({v['passed']}/{v['total']})"
                                           for k, v in a.items() if isinstance(v, dict) and v.get("total")))
    return "\n".join(lines)
