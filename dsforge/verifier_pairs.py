"""Pairs from verifier labels: correct vs wrong per prompt (iterative RPO's pairing, Pang et al. 2024).

A verifier judges each candidate right or wrong (`judge.kind == "verifier"`, `judge.correct`), so the
score has two values and "best vs worst" says nothing about which right and which wrong answer to
pair. Here, per prompt, every (right, wrong) combination is a candidate pair; pairs of similar length
come first (DPO amplifies what pairs encode, and a length gap is the easiest thing to learn), each
answer is used once before any is reused, and up to k pairs are taken.

Pair yield is the share of prompts that can give a pair at all (at least one right and one wrong
answer); the rest are counted by why not: all_right, all_wrong, single_candidate, no_candidate
(nothing judged), or degenerate (every right/wrong combination was dropped by the pair checks).
A falling yield is the signal to raise the task difficulty (all_right) or lower it (all_wrong).
"""

from __future__ import annotations

import random
from collections import Counter

STRATEGY = "correct-vs-wrong"
NO_PAIR_REASONS = ("all_right", "all_wrong", "single_candidate", "no_candidate", "degenerate")


def is_verifier_data(rows: list[dict]) -> bool:
    """True when every judged row was judged by a verifier (judge.kind == "verifier"); False for none."""
    return bool(rows) and all((r.get("judge") or {}).get("kind") == "verifier" for r in rows)


def _right(c: dict) -> bool:
    j = c["judge"]
    return bool(j["correct"]) if j.get("correct") is not None else j["score"] > 0


def no_pair_reason(cands: list[dict]) -> str | None:
    """Why the scored candidates of one prompt cannot give a correct-vs-wrong pair, or None when they can."""
    if not cands:
        return "no_candidate"
    if len(cands) < 2:
        return "single_candidate"
    right = sum(_right(c) for c in cands)
    if right == len(cands):
        return "all_right"
    if right == 0:
        return "all_wrong"
    return None


def select_correct_vs_wrong(cands: list[dict], k: int, rng: random.Random, drops: Counter,
                            check=None) -> list[tuple[dict, dict]]:
    """Up to k (chosen=right, rejected=wrong) pairs for one prompt's scored candidates.

    Combinations are ordered by absolute character-length difference (ties: seeded shuffle); a
    first pass takes pairs whose two answers are both unused, a second pass fills up to k with
    reused answers. `check(chosen, rejected)` returns a drop reason or None (degenerate pairs; each
    drop is counted in `drops` under its reason). A prompt with no possible pair counts its
    no_pair_reason in `drops` and returns [].
    """
    why = no_pair_reason(cands)
    if why:
        drops[why] += 1
        return []
    right = [c for c in cands if _right(c)]
    wrong = [c for c in cands if not _right(c)]
    combos = [(c, r) for c in right for r in wrong]
    rng.shuffle(combos)
    combos.sort(key=lambda p: abs(len(p[0]["text"]) - len(p[1]["text"])))
    out: list[tuple[dict, dict]] = []
    used: set[int] = set()
    bad: set[tuple[int, int]] = set()
    for fresh in (True, False):
        for c, r in combos:
            if len(out) >= k:
                return out
            key = (id(c), id(r))
            if key in bad or any(key == (id(a), id(b)) for a, b in out):
                continue
            if fresh and (id(c) in used or id(r) in used):
                continue
            if " ".join(c["text"].split()) == " ".join(r["text"].split()):
                why = "identical"
            else:
                why = check(c, r) if check else None
            if why:
                drops[why] += 1
                bad.add(key)
                continue
            out.append((c, r))
            used.update((id(c), id(r)))
    if not out:
        drops["degenerate"] += 1
    return out


def pair_yield(groups: dict[str, list[dict]], drops: Counter) -> dict:
    """Summary of how many prompts could give a pair: {"prompts", "with_right_and_wrong", "rate",
    "no_pair": {reason: prompts}} (reasons from NO_PAIR_REASONS with a non-zero count); `groups`
    maps prompt id -> all its candidates, `drops` is the run's drop counter."""
    n = len(groups)
    none = {why: drops[why] for why in NO_PAIR_REASONS if drops.get(why)}
    able = n - sum(v for why, v in none.items() if why != "degenerate")
    return {"prompts": n, "with_right_and_wrong": able, "rate": round(able / n, 4) if n else None, "no_pair": none}
