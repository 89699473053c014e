"""The judge summary: score statistics from the judged rows, counters from the run, the console lines."""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from dsforge.judge.cache import Cache
from dsforge.judge.core import Judge, JudgeConfig


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation of two equal-length lists (polars; ties get average ranks),
    rounded to 4 places; None for fewer than 3 points or a constant list."""
    if len(xs) < 3:
        return None
    import polars as pl

    rho = pl.DataFrame({"x": xs, "y": ys}, schema={"x": pl.Float64, "y": pl.Float64}).select(
        pl.corr("x", "y", method="spearman")).item()
    return None if rho is None or math.isnan(rho) else round(rho, 4)


_COUNTS = ("calls", "cached_calls", "failed_calls", "prompt_tokens", "completion_tokens", "cache_hits", "cache_misses")
_PAIR_COUNTS = ("comparisons", "swap_decided", "swap_consistent")
_TALLIES = ("parse_failures_first_try", "failures_final", "slot_picks")   # {cause or slot: count}


def summarize(judged: list[dict], judge: Judge | None, cfg: JudgeConfig, seconds: float) -> dict:
    """The summary of one judge run (OUT.summary.json) from its judged rows and the judge's counters.

    Keys: judge_model, rubric, rubric_hash, mode, votes; items, scored, failed, not_judged_truncated,
    not_compared (candidate counts); mean_score_by_temperature {temperature: mean score},
    score_histogram {score rounded to 0.1: count}, spearman_score_length (score vs reply characters);
    parse_failures_first_try and failures_final {cause: count}; structured_output (None for a
    verifier); calls,
    cached_calls, failed_calls, cache_hits, cache_misses; prompt_tokens, completion_tokens (new
    tokens, not from the cache); seconds (wall); cost_usd when cfg.prices is set; pairwise also
    comparisons, swap_decided, swap_consistent, swap_consistency, slot_picks {first, second, tie}
    and first_slot_rate (fractions in [0, 1], None without a decided pair). A verifier run (judge
    None, all call counters 0) has kind "verifier", verifier, reference_field, mode "verifier",
    accuracy and accuracy_by_temperature[t] = {n, lenient, strict} (fractions of the checked
    candidates; lenient = correct, strict = correct and format_ok) and no_answer (none extracted).
    An LLM run has kind "llm"."""
    verifier = judge is None
    if verifier:   # no calls: every counter is 0
        judge = Judge(cfg, None, Cache(None), progress=False)
    st, u = judge.stats, judge.stats.usage
    run = {"parse_failures_first_try": dict(st.first_try_failures), "failures_final": dict(st.final_failures),
           "structured_output": None if verifier else judge.structured,
           "calls": u["calls"] + u["cached_calls"] + u["failed_calls"], "cached_calls": u["cached_calls"],
           "failed_calls": u["failed_calls"], "prompt_tokens": u["prompt_tokens"],
           "completion_tokens": u["completion_tokens"], "cache_hits": judge.cache.hits,
           "cache_misses": judge.cache.misses, "seconds": round(seconds, 2),
           "comparisons": st.counts["comparisons"], "swap_decided": st.counts["swap_decided"],
           "swap_consistent": st.counts["swap_consistent"],
           "slot_picks": {k: st.counts[f"slot_{k}"] for k in ("first", "second", "tie")}}   # per call: both orders
    return _summary(judged, cfg, run)


def merge_summaries(summaries: list[dict], judged: list[dict], cfg: JudgeConfig) -> dict:
    """One summary for a run judged in shards (`summarize`'s keys plus engine_info and kept_previous):
    counters added up, seconds the longest shard's (they ran side by side), score statistics from
    the merged `judged` rows."""
    run = {k: sum(x.get(k) or 0 for x in summaries) for k in (*_COUNTS, *_PAIR_COUNTS, "kept_previous")}
    for k in _TALLIES:
        total = Counter()
        for x in summaries:
            total.update(x.get(k) or {})   # update, not +: a zero count stays
        run[k] = dict(total)
    run.update(structured_output=all(x.get("structured_output") for x in summaries),
               seconds=max(x.get("seconds") or 0 for x in summaries), engine_info=summaries[0].get("engine_info"))
    return _summary(judged, cfg, run)


def _summary(judged: list[dict], cfg: JudgeConfig, run: dict) -> dict:
    """Row statistics plus the run's counters, and what follows from both (rates, cost): one code path
    for a run and for a merge of shards."""
    s = _row_stats(judged, cfg)
    pairwise = cfg.mode == "pairwise"
    s.update({k: v for k, v in run.items() if pairwise or k not in (*_PAIR_COUNTS, "slot_picks")})
    if pairwise:
        d, picks = s["swap_decided"], s["slot_picks"]
        s["swap_consistency"] = round(s["swap_consistent"] / d, 4) if d else None
        fs = picks.get("first", 0) + picks.get("second", 0)
        s["first_slot_rate"] = round(picks.get("first", 0) / fs, 4) if fs else None
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
    if cfg.verifier:
        s = {"kind": "verifier", "verifier": cfg.verifier, "reference_field": cfg.reference_field,
             "judge_model": None, "rubric": None, "rubric_hash": None, "mode": "verifier", "votes": None}
    else:
        s = {"kind": "llm", "judge_model": cfg.judge_model, "rubric": cfg.rubric.name, "rubric_hash": cfg.rubric.hash,
             "mode": cfg.rubric.mode, "votes": cfg.votes}
    s.update({
        "items": len(judged), "scored": len(scored),
        "not_judged_truncated": sum(1 for r in judged if r["judge"].get("error") == "truncated_not_judged"),
        "failed": sum(1 for r in judged if r["judge"].get("score") is None
                      and r["judge"].get("error") not in ("truncated_not_judged", "not_compared")),
        "not_compared": sum(1 for r in judged if r["judge"].get("error") == "not_compared"),
        "mean_score_by_temperature": {t: round(sum(v) / len(v), 4) for t, v in sorted(by_t.items())},
        "score_histogram": dict(sorted(hist.items(), key=lambda kv: float(kv[0]))),
        "spearman_score_length": spearman([r["judge"]["score"] for r in scored], [len(r["text"]) for r in scored]),
    })
    if cfg.verifier:
        s["accuracy"] = _accuracy(scored)
        s["accuracy_by_temperature"] = {t: _accuracy([r for r in scored if str(r.get("temperature")) == t])
                                        for t in sorted(by_t)}
        s["no_answer"] = sum(1 for r in scored if r["judge"].get("answer") is None)
    return s


def _accuracy(rows: list[dict]) -> dict:
    """{"n", "lenient": mean correct, "strict": mean correct and format_ok} (fractions; None when n is 0)."""
    n = len(rows)
    lenient = sum(1 for r in rows if r["judge"].get("correct"))
    strict = sum(1 for r in rows if r["judge"].get("correct") and r["judge"].get("format_ok"))
    return {"n": n, "lenient": round(lenient / n, 4) if n else None, "strict": round(strict / n, 4) if n else None}


def format_summary(s: dict) -> str:
    """The console lines for a judge summary (`summarize`'s dict), joined by newlines."""
    if s.get("kind") == "verifier":
        return _format_verified(s)
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


def _format_verified(s: dict) -> str:
    def acc(a: dict) -> str:
        if not a["n"]:
            return "n/a (nothing checked)"
        return f"lenient {a['lenient']:.1%}, strict {a['strict']:.1%} (n={a['n']})"

    lines = [f"verified {s['items']} candidates with {s['verifier']} against '{s['reference_field']}': "
             f"{s['scored']} checked, {s['not_judged_truncated']} truncated not judged, "
             f"{s['no_answer']} with no answer found",
             f"accuracy: {acc(s['accuracy'])}  (lenient: right answer anywhere; strict: and in the asked format)"]
    for t, a in s["accuracy_by_temperature"].items():
        lines.append(f"  temperature {t}: {acc(a)}")
    lines.append(f"Spearman(score, length) = {s['spearman_score_length']}; {s['seconds']} s, no model calls")
    return "\n".join(lines)
