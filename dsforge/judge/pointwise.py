"""Pointwise judging: each candidate scored alone against the rubric."""

from __future__ import annotations

from dsforge.judge.core import Call, Judge, outcome, reference_of


def judge_pointwise(judge: Judge, items: list[dict]) -> list[dict]:
    """Score each candidate alone; returns the rows of `items` (same order) each with a "judge" dict:
    kind "llm", model, rubric, rubric_hash, mode, attempts, and either score (mean of the valid votes,
    rubric scale), votes, rationale, raw (first reply), expected_score (from logprobs, when given), or
    score None with error (the parse/API cause, or "truncated_not_judged") and raw (last 3 replies)."""
    cfg, rubric = judge.cfg, judge.cfg.rubric
    eligible = [it for it in items if cfg.include_truncated or not it.get("truncated")]
    judge.stats.counts["skipped_truncated"] = len(items) - len(eligible)
    calls = {id(it): Call(item=id(it), messages=rubric.pointwise_messages(
        it["messages"], it["text"], reference_of(it, cfg.reference_field))) for it in eligible}
    judge.ask(list(calls.values()), "judging")
    out = []
    for it in items:
        j = {"kind": "llm", "model": cfg.judge_model, "rubric": rubric.name, "rubric_hash": rubric.hash, "mode": "pointwise"}
        if id(it) not in calls:
            j.update(score=None, error="truncated_not_judged")
        else:
            r, tries = calls[id(it)].parsed, calls[id(it)].tries
            j["attempts"] = len(tries)
            if "error" in r:
                j.update(score=None, error=r["error"], raw=[t for a in tries for t in a.get("raw", [])][-3:])
                judge.stats.final_failures[r["error"]] += 1
            else:
                j.update(score=round(outcome(r), 4), votes=r["votes"], rationale=r["rationale"],
                         raw=r["raw"][:1])
                if r.get("expected_score") is not None:
                    j["expected_score"] = round(r["expected_score"], 4)
        out.append({**it, "judge": j})
    return out
