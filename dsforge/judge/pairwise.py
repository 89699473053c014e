"""Pairwise judging: candidates of a prompt compared in both orders; disagreement is a tie."""

from __future__ import annotations

import itertools
import random
from collections import Counter, defaultdict

from dsforge.engines import derive_seed
from dsforge.judge.core import Call, Judge, outcome


def judge_pairwise(judge: Judge, items: list[dict]) -> tuple[list[dict], list[dict]]:
    """Compare candidates of a prompt in both orders; agreement is a verdict, disagreement a tie.

    Up to cfg.max_pairs_per_prompt pairs per prompt, drawn from a seed of (cfg.seed, prompt id).
    Returns (rows, comparisons): the rows of `items` in order, each with a "judge" dict (kind "llm",
    model, rubric, rubric_hash, mode; score = win rate in [0, 1] with ties counting half, games,
    wins; or score None with error "no_valid_comparison", "not_compared" or "truncated_not_judged"),
    and one record per pair {prompt_id, a, b (row indexes), verdict "A"|"B"|"tie"|None, straight,
    swapped, consistent} or {..., verdict None, error}."""
    cfg, rubric = judge.cfg, judge.cfg.rubric
    groups: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        if cfg.include_truncated or not it.get("truncated"):
            groups[it["prompt_id"]].append(i)
    pairs = []
    for pid, idx in groups.items():
        combos = list(itertools.combinations(idx, 2))
        # one draw per prompt: its pairs do not depend on the other prompts in the file (or shard)
        random.Random(derive_seed(cfg.seed, "pairs", pid)).shuffle(combos)
        pairs.extend(combos[:cfg.max_pairs_per_prompt])
    calls = []
    for a, b in pairs:
        prompt = items[a]["messages"]
        calls.append(Call(item=(a, b), messages=rubric.pairwise_messages(prompt, items[a]["text"], items[b]["text"])))
        calls.append(Call(item=(a, b), swapped=True,
                          messages=rubric.pairwise_messages(prompt, items[b]["text"], items[a]["text"])))
    judge.ask(calls, "comparing")
    by_pair = defaultdict(dict)
    for c in calls:
        by_pair[c.item]["swapped" if c.swapped else "straight"] = c.parsed
    comparisons = []
    wins = defaultdict(float)
    games = Counter()
    consistent = decided = 0
    slots = Counter()   # which slot each parsed call picked: a judge that always says "A" is position-biased
    for (a, b), r in by_pair.items():
        s, w = r["straight"], r["swapped"]
        rec = {"prompt_id": items[a]["prompt_id"], "a": a, "b": b}
        if "error" in s or "error" in w:
            rec.update(verdict=None, error=s.get("error") or w.get("error"))
            judge.stats.final_failures[rec["error"]] += 1
        else:
            v1, raw2 = outcome(s), outcome(w)
            v2 = {"A": "B", "B": "A", "tie": "tie"}[raw2]
            for raw in (v1, raw2):
                slots[{"A": "first", "B": "second"}.get(raw, "tie")] += 1
            decided += 1
            consistent += v1 == v2
            verdict = v1 if v1 == v2 else "tie"
            rec.update(verdict=verdict, straight=v1, swapped=v2, consistent=v1 == v2)
            games[a] += 1
            games[b] += 1
            wins[a] += 1.0 if verdict == "A" else 0.5 if verdict == "tie" else 0.0
            wins[b] += 1.0 if verdict == "B" else 0.5 if verdict == "tie" else 0.0
        comparisons.append(rec)
    judge.stats.counts["comparisons"] = len(by_pair)
    judge.stats.counts["swap_consistent"] = consistent
    judge.stats.counts["swap_decided"] = decided
    judge.stats.counts.update({f"slot_{k}": v for k, v in slots.items()})
    in_pair = {x for p in pairs for x in p}
    out = []
    for i, it in enumerate(items):
        j = {"kind": "llm", "model": cfg.judge_model, "rubric": rubric.name, "rubric_hash": rubric.hash, "mode": "pairwise"}
        if games[i]:
            j.update(score=round(wins[i] / games[i], 4), games=games[i], wins=wins[i])
        else:
            # left out of every comparison by --max-pairs-per-prompt: not compared, which is no failure
            j.update(score=None, error="truncated_not_judged" if it.get("truncated") and not cfg.include_truncated
                     else "no_valid_comparison" if i in in_pair else "not_compared")
        out.append({**it, "judge": j})
    return out, comparisons
