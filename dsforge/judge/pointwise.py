"""Pointwise judging: each candidate scored alone against the rubric."""

from __future__ import annotations

from collections import defaultdict

from dsforge.judge.core import Call, Judge, _parse_votes


def judge_pointwise(judge: Judge, items: list[dict]) -> list[dict]:
    cfg, rubric = judge.cfg, judge.cfg.rubric
    eligible = [it for it in items if cfg.include_truncated or not it.get("truncated")]
    judge.stats.counts["skipped_truncated"] = len(items) - len(eligible)
    results: dict[int, dict] = {}
    pending = [Call(item=id(it), messages=rubric.pointwise_messages(it["messages"], it["text"])) for it in eligible]
    by_id = {id(it): it for it in eligible}
    attempts: dict[int, list] = defaultdict(list)
    for attempt in range(cfg.parse_retries + 1):
        if not pending:
            break
        for c in pending:
            c.attempt = attempt
            c.result = None
        judge.run_calls(pending, "judging" if attempt == 0 else f"re-asking ({attempt})")
        nxt = []
        for c in pending:
            parsed = _parse_votes(c, rubric)
            attempts[c.item].append(parsed)
            if "error" in parsed:
                if attempt == 0:
                    judge.stats.first_try_failures[parsed["error"]] += 1
                if "error" in c.result:   # API failure after the engine's retries: not re-asked now
                    results[c.item] = parsed
                    continue
                nxt.append(Call(item=c.item, messages=c.messages))
            else:
                results[c.item] = parsed
        pending = nxt
    for c in pending:
        results[c.item] = attempts[c.item][-1]
    out = []
    for it in items:
        j = {"kind": "llm", "model": cfg.judge_model, "rubric": rubric.name, "rubric_hash": rubric.hash, "mode": "pointwise"}
        if id(it) not in by_id:
            j.update(score=None, error="truncated_not_judged")
        else:
            r = results[id(it)]
            tries = attempts[id(it)]
            j["attempts"] = len(tries)
            if "error" in r:
                j.update(score=None, error=r["error"], raw=[t for a in tries for t in a.get("raw", [])][-3:])
                judge.stats.final_failures[r["error"]] += 1
            else:
                scores = [v["score"] if isinstance(v, dict) else v for v in r["votes"]]
                j.update(score=round(sum(scores) / len(scores), 4), votes=r["votes"], rationale=r["rationale"],
                         raw=r["raw"][:1])
                if r.get("expected_score") is not None:
                    j["expected_score"] = round(r["expected_score"], 4)
        out.append({**it, "judge": j})
    return out
