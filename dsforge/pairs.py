"""`dsforge pairs`: judged candidates -> DPO chosen/rejected rows (and KTO rows), by explicit policy.

Per prompt, candidates with a score (and, by default, not truncated) are ranked. A strategy
picks (chosen, rejected) pairs; ties and pairs under --min-margin are dropped, chosen is never
equal to rejected, and optional length control caps the chosen/rejected length ratio or prefers
the shortest of the top and the longest of the bottom. Rows are written exactly in
LLaMA-Factory's ranking format, with a sidecar that keeps every candidate's score, the margin,
lengths and temperatures so pairs can be re-selected later without re-judging.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter, defaultdict
from typing import get_args

from dsforge import pairchecks as pc
from dsforge import verifier_pairs as vp
from dsforge.candidates import dumps, load_judged
from dsforge.errors import InputError, UsageError
from dsforge.formats.rows import from_conversation
from dsforge.infer import infer_entry
from dsforge.io import atomic_files, guard_kind, guard_outputs, note_output
from dsforge.records import Conversation
from dsforge.stages import STRATEGIES, Combine, PairFormat, PairsConfig, ScoreField

PairConfig = PairsConfig   # the pairs stage's one config model (dsforge.stages)


def _norm(text: str) -> str:
    return " ".join(text.split())


def _order(cands: list[dict], tiered: bool, rng: random.Random) -> list[dict]:
    """Best first. Equal scores: by default a seeded shuffle (no hidden length preference);
    length-tiered: shortest first among equals at the top, longest last at the bottom."""
    cands = list(cands)
    rng.shuffle(cands)
    if tiered:
        return sorted(cands, key=lambda c: (-c["judge"]["score"], len(c["text"])))
    return sorted(cands, key=lambda c: -c["judge"]["score"])


def select(cands: list[dict], cfg: PairConfig, rng: random.Random, drops: Counter,
           check=None) -> list[tuple[dict, dict]]:
    """Pairs for one prompt; `check(chosen, rejected)` returns a drop reason or None (degenerate pairs)."""
    ranked = _order(cands, cfg.length_tiered, rng)
    best = ranked[0]
    top = best["judge"]["score"]

    def ok(c, r):
        margin = c["judge"]["score"] - r["judge"]["score"]
        if margin <= 0:
            drops["tie"] += 1
            return False
        if margin < cfg.min_margin:
            drops["margin"] += 1
            return False
        if _norm(c["text"]) == _norm(r["text"]):
            drops["identical_text"] += 1
            return False
        if cfg.max_length_ratio and len(c["text"]) > cfg.max_length_ratio * max(1, len(r["text"])):
            drops["length_ratio"] += 1
            return False
        if check is not None and (why := check(c, r)):
            drops[why] += 1
            return None   # degenerate: a candidate further down may still make a good pair
        return True

    if cfg.strategy == "all-pairs":
        out = []
        for i, c in enumerate(ranked):
            for r in ranked[i + 1:]:
                if c["judge"]["score"] > r["judge"]["score"] and ok(c, r):
                    out.append((c, r))
        return out[:cfg.max_pairs_per_prompt]
    if cfg.strategy == "best-vs-worst":
        if cfg.length_tiered:
            low = ranked[-1]["judge"]["score"]
            bottom = [c for c in ranked if c["judge"]["score"] == low]
            others = [max(bottom, key=lambda c: len(c["text"]))]
        else:
            others = list(reversed(ranked[1:]))
    elif cfg.strategy == "best-vs-random":
        others = [c for c in ranked[1:] if c["judge"]["score"] < top] or ranked[1:]
        rng.shuffle(others)
    elif cfg.strategy == "best-vs-mean-2sd":
        scores = [c["judge"]["score"] for c in ranked]
        target = statistics.fmean(scores) - 2 * (statistics.pstdev(scores) if len(scores) > 1 else 0)
        others = sorted(ranked[1:], key=lambda c: (abs(c["judge"]["score"] - target), -len(c["text"])))
    else:
        raise UsageError(f"unknown strategy '{cfg.strategy}'", f"choose one of: {', '.join(STRATEGIES)}")
    out = []
    for r in others:
        if verdict := ok(best, r):
            out.append((best, r))
            if len(out) >= cfg.max_pairs_per_prompt:
                break
        elif verdict is False and cfg.strategy in ("best-vs-worst", "best-vs-mean-2sd") and not cfg.length_tiered:
            break   # the worst (or the target) did not qualify on score: others are no further from best
    return out


DROP_ALWAYS = ("pair_identical_after_cutoff", "pair_response_emptied", "pair_prompt_no_room")


def _degenerate_check(cfg: PairConfig):
    """(check(chosen, rejected) -> drop reason | None, report(rows) -> summary dict) for one pairs run.

    Every candidate pair that passes the score rules is measured: format asymmetry, similarity, and with
    cfg.tokenizer the token-level truncation checks. Dropped: truncation-degenerate pairs (always, when a
    tokenizer is given), similarity >= cfg.max_similarity (when set), format asymmetry (when asked).
    """
    if cfg.max_similarity is not None and not 0 < cfg.max_similarity <= 1:
        raise UsageError(f"--max-similarity {cfg.max_similarity} is not in (0, 1]", "e.g. --max-similarity 0.9")
    if cfg.similarity not in pc.SIM_METHODS:
        raise UsageError(f"unknown --similarity '{cfg.similarity}'", f"use one of {', '.join(pc.SIM_METHODS)}")
    if (cfg.tokenizer is None) != (cfg.cutoff_len is None):
        raise UsageError("--tokenizer and --cutoff-len go together (the truncation check needs both)",
                         "add --cutoff-len N (LLaMA-Factory's cutoff_len) and --tokenizer MODEL_DIR")
    stats = pc.PairStats(cfg.max_similarity if cfg.max_similarity is not None else 2.0, cfg.similarity)
    tc = pc.TruncationCheck(cfg.tokenizer, cfg.cutoff_len, cfg.template) if cfg.tokenizer else None

    def check(c: dict, r: dict) -> str | None:
        reasons = stats.add(c["text"], r["text"])
        if tc is not None:
            reasons += tc.check(c["messages"], c["text"], r["text"])
        for why in reasons:
            if why in DROP_ALWAYS or why == "pair_near_identical" or (
                    cfg.drop_format_asymmetry and why in pc.FORMAT_REASONS):
                return why
        return None

    def report(rows: list[dict], margins: list[float]) -> dict:
        scores = [x["judge"]["score"] for x in rows if x["judge"].get("score") is not None]
        res = stats.result()
        res["similarity"]["threshold"] = cfg.max_similarity
        res["counts"].update(tc.counts if tc else {})
        if tc is not None:
            res["truncation"] = {"cutoff_len": cfg.cutoff_len, "template": tc.template}
        res["score_range"] = [min(scores), max(scores)] if scores else None
        res["margin"] = pc.margin_summary(margins, res["score_range"])
        return res

    return check, report


def _conversation(prompt: list[dict]) -> Conversation:
    system = prompt[0]["content"] if prompt and prompt[0]["role"] == "system" else None
    msgs = prompt[1:] if system is not None else list(prompt)
    return Conversation(messages=[dict(role=m["role"], content=m["content"]) for m in msgs], system=system)


def build_pairs(judged_path: str | list[str], out: str, cfg: PairConfig, *, kto_out: str | None = None,
                sidecar: str | None = "auto") -> dict:
    """Judged candidates (one file, or several with cfg.combine) -> chosen/rejected rows in `out`.

    Per prompt, eligible candidates (scored, non-empty, not truncated unless cfg.include_truncated) are
    ranked and paired by cfg.strategy; ties, margins under cfg.min_margin, identical texts and degenerate
    pairs are dropped with a counted reason. Writes `out` (LLaMA-Factory ranking rows, cfg.fmt), the
    sidecar (scores, margin, lengths in characters per pair; "auto" = OUT.sidecar.jsonl, None = none),
    OUT.summary.json and, with `kto_out`, KTO rows (kto_tag = score >= cfg.kto_threshold), all together
    and atomically. Returns the summary (summaries.PairsSummary): prompts, pairs, excluded_candidates and
    dropped {reason: count}, chosen_longer_rate, median_length_ratio, margin_quantiles, degenerate,
    dataset_info_entry (what `register` writes for OUT, less file_name), out, sidecar, kto, and pair_yield
    (dsforge.verifier_pairs.pair_yield) when verifier labels made the default strategy correct-vs-wrong. Raises
    UsageError for bad settings or outputs, InputError (nothing written) when no pair or KTO row survives.
    """
    if cfg.strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy '{cfg.strategy}'", f"choose one of: {', '.join(STRATEGIES)}")
    if cfg.fmt not in get_args(PairFormat):
        raise UsageError("--format must be sharegpt or alpaca")
    if kto_out and cfg.kto_threshold is None:
        raise UsageError("--kto needs --kto-threshold (candidates scoring at or above it are desirable)")
    if cfg.kto_threshold is not None and not kto_out:
        raise UsageError("--kto-threshold is used only with --kto FILE (where the KTO rows go)",
                         "add --kto kto.jsonl, or drop --kto-threshold")
    if sidecar == "auto":
        sidecar = out + ".sidecar.jsonl"
    paths = [judged_path] if isinstance(judged_path, str) else list(judged_path)
    guard_outputs([("JUDGED", p) for p in paths], {"-o": out, "sidecar": sidecar, "--kto": kto_out,
                                            "summary": out + ".summary.json"})
    guard_kind(out, "pairs")
    guard_kind(kto_out, "kto", "--kto")
    combined = None
    if len(paths) > 1 or cfg.combine:
        rows, combined = combine_sources(paths, cfg.combine)
    else:
        rows = load_judged(paths[0])
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["prompt_id"]].append(r)
    rng = random.Random(cfg.seed)
    # verifier labels (right/wrong): the default best-vs-worst becomes correct-vs-wrong (dsforge.verifier_pairs)
    verified = cfg.strategy in ("best-vs-worst", vp.STRATEGY) and vp.is_verifier_data(rows)
    if cfg.strategy == vp.STRATEGY and not verified:
        raise UsageError(f"--strategy {vp.STRATEGY} needs verifier labels (judge --verifier KIND) on every candidate",
                         "judge the candidates with a verifier, or pick another strategy")
    strategy = vp.STRATEGY if verified else cfg.strategy
    degenerate, degenerate_report = _degenerate_check(cfg)
    drops: Counter = Counter()
    excluded: Counter = Counter()
    pairs, side, kto_rows = [], [], []
    if cfg.score not in get_args(ScoreField):
        raise UsageError("--score must be score or expected_score")
    for pid, cands in groups.items():
        eligible = []
        for c in cands:
            if c.get("truncated") and not cfg.include_truncated:
                excluded["truncated"] += 1
            elif not str(c.get("text") or "").strip():   # LLaMA-Factory cannot train an empty answer
                excluded["empty_text"] += 1
            elif c["judge"].get("score") is None:
                err = c["judge"].get("error")
                excluded[err if err in ("flagged_unusable", "not_compared", "not_reviewed") else "failed_judge"] += 1
            else:
                if cfg.score == "expected_score":
                    if c["judge"].get("expected_score") is None:
                        excluded["no_expected_score"] += 1
                        continue
                    c = {**c, "judge": {**c["judge"], "score": c["judge"]["expected_score"],
                                        "discrete_score": c["judge"]["score"]}}
                eligible.append(c)
        if kto_out:
            for c in eligible:
                kto_rows.append((c, c["judge"]["score"] >= cfg.kto_threshold))
        if len(eligible) < 2:
            drops["single_candidate" if eligible else "no_candidate"] += 1
            continue
        if verified:   # a prompt without a pair is counted by vp under its reason (all_right, all_wrong, ...)
            chosen_pairs = vp.select_correct_vs_wrong(eligible, cfg.max_pairs_per_prompt, rng, drops, degenerate)
        else:
            chosen_pairs = select(eligible, cfg, rng, drops, degenerate)
        if cfg.combine == "agree-only":
            chosen_pairs = _agreeing(chosen_pairs, drops)
        if not chosen_pairs and not verified:
            drops["prompt_without_pair"] += 1
        for c, r in chosen_pairs:
            conv = _conversation(c["messages"])
            conv.chosen, conv.rejected = c["text"], r["text"]
            pairs.append(from_conversation(conv, "ranking", cfg.fmt))
            side.append({
                "prompt_id": pid, "margin": round(c["judge"]["score"] - r["judge"]["score"], 4),
                "chosen": {"score": c["judge"]["score"], "len": len(c["text"]), "temperature": c.get("temperature"),
                           "sample_index": c.get("sample_index"), "completion_tokens": c.get("completion_tokens")},
                "rejected": {"score": r["judge"]["score"], "len": len(r["text"]), "temperature": r.get("temperature"),
                             "sample_index": r.get("sample_index"), "completion_tokens": r.get("completion_tokens")},
                "all_scores": [{"score": x["judge"].get("score"), "len": len(x["text"]),
                                "temperature": x.get("temperature"), "sample_index": x.get("sample_index"),
                                "truncated": bool(x.get("truncated"))} for x in cands],
                "strategy": strategy, "judge": {k: c["judge"].get(k) for k in ("kind", "model", "rubric", "rubric_hash")},
            })
    lb = pc.length_bias([s["chosen"]["len"] for s in side], [s["rejected"]["len"] for s in side])
    margins = sorted(s["margin"] for s in side)
    summary = {
        "prompts": len(groups), "pairs": len(pairs), "strategy": strategy, "min_margin": cfg.min_margin,
        "format": cfg.fmt, "excluded_candidates": dict(excluded), "dropped": dict(drops), "combine": combined,
        "chosen_longer_rate": lb["chosen_longer_rate"], "median_length_ratio": lb["median_length_ratio"],
        "margin_quantiles": pc.quantiles(margins, (0, 25, 50, 75, 100)),   # nearest rank; {} without pairs
        "dataset_info_entry": infer_entry(pairs).entry if pairs else None,   # what register writes, less file_name
        "out": out, "sidecar": sidecar, "degenerate": degenerate_report(rows, margins),
        "pair_yield": vp.pair_yield(groups, drops) if verified else None,
    }
    if not pairs and not kto_rows:
        # decided before anything is written: a run that yields nothing leaves the previous outputs as they were
        raise InputError("no pair survived the policy" + (f" (dropped: {dict(drops)}; excluded candidates: "
                         f"{dict(excluded)})" if drops or excluded else ""),
                         ("no prompt had both a right and a wrong answer: sample more answers per prompt, raise "
                          "sample's --max-tokens when many were truncated, or pick the difficulty where the model "
                          "is right 15-50% of the time (dsforge tasks calibrate)" if verified else
                          "lower --min-margin, sample more answers per prompt, or use a stronger judge")
                         + "; the previous output (if any) was left as it was", path=", ".join(paths))
    kto = []
    if kto_out:
        for c, tag in kto_rows:
            conv = _conversation(c["messages"])
            conv.messages.append({"role": "assistant", "content": c["text"]})
            conv.kto_tag = tag
            kto.append(from_conversation(conv, "kto", cfg.fmt))
        n_d = sum(1 for _, t in kto_rows if t)
        n_u = len(kto_rows) - n_d
        weights = None
        if n_d and n_u:
            # KTO paper: keep lambda_D * n_D / (lambda_U * n_U) in [1, 4/3]; here exactly 1
            weights = ({"kto_chosen_weight": 1.0, "kto_rejected_weight": round(n_d / n_u, 3)} if n_d >= n_u else
                       {"kto_chosen_weight": round(n_u / n_d, 3), "kto_rejected_weight": 1.0})
        summary["kto"] = {"out": kto_out, "rows": len(kto), "desirable": n_d, "undesirable": n_u,
                          "threshold": cfg.kto_threshold, "suggested_weights": weights,
                          "dataset_info_entry": infer_entry(kto).entry}
    if not pairs:   # KTO rows only: the pairs file (and its sidecar) of an earlier run stay as they were
        summary["out"] = summary["sidecar"] = None
    with atomic_files() as group:   # all outputs land together, or none
        if pairs:
            f = group.open(out)
            if out.endswith(".json"):
                json.dump(pairs, f, ensure_ascii=False, indent=1)
            else:
                for p in pairs:
                    f.write(dumps(p))
            if sidecar:
                f = group.open(sidecar)
                for s in side:
                    f.write(dumps(s))
            json.dump(summary, group.open(out + ".summary.json"), indent=2)
        if kto_out:
            f = group.open(kto_out)
            for k in kto:
                f.write(dumps(k))
    if pairs:
        note_output(out, "pairs")
    if kto_out:
        note_output(kto_out, "kto")
    return summary


def format_summary(s: dict) -> str:
    """The console lines for a pairs summary (summaries.PairsSummary)."""
    lines = [f"{s['pairs']} pairs from {s['prompts']} prompts ({s['strategy']}, min margin {s['min_margin']})"]
    if s.get("pair_yield"):
        y = s["pair_yield"]
        lines.append(f"pair yield {y['rate']:.0%}: {y['with_right_and_wrong']} of {y['prompts']} prompts have a right and "
                     f"a wrong answer" + (f"; no pair: {y['no_pair']}" if y["no_pair"] else ""))
    if s["excluded_candidates"]:
        lines.append(f"candidates excluded: {s['excluded_candidates']}")
    if s.get("combine"):
        c = s["combine"]
        lines.append(f"combined ({c['policy']}): " + ", ".join(f"{k} {v}" for k, v in c["prompts"].items()) +
                     "; sources: " + "; ".join(f"{x['path']} ({x['kind']}, {x['records']} records)" for x in c["sources"]))
    if s["dropped"]:
        lines.append(f"dropped: {s['dropped']}")
    if s["pairs"]:
        lines.append(f"chosen longer than rejected in {s['chosen_longer_rate']:.0%} of pairs; median length ratio "
                     f"{s['median_length_ratio']}; margin quantiles {s['margin_quantiles']}")
        if s["chosen_longer_rate"] > 0.7:
            lines.append("warning: " + pc.length_bias_message({k: s[k] for k in ("chosen_longer_rate",
                                                                             "median_length_ratio")}))
    if s.get("degenerate"):
        lines.extend(pc.format_degenerate(s["degenerate"]))
    if "kto" in s:
        k = s["kto"]
        lines.append(f"KTO: {k['rows']} rows, {k['desirable']} desirable / {k['undesirable']} undesirable "
                     f"(threshold {k['threshold']}); suggested {k['suggested_weights']}")
    return "\n".join(lines)


# ---------------------------------------------------------------- several sources (humans and judges)

COMBINE: tuple[str, ...] = get_args(Combine)


def combine_sources(paths: list[str], policy: str | None) -> tuple[list[dict], dict]:
    """Judged rows from several files (LLM judge runs and `dsforge review` outputs), by an explicit policy.

    human-overrides: a prompt some human scored takes the human scores for all its candidates; other
        prompts keep the LLM judge's (scores are never mixed within a prompt: the scales differ).
    agree-only: only prompts scored by both; pairs are built from the human scores and kept only
        where the LLM judge also puts chosen strictly above rejected (else dropped: sources_disagree).
    A record is human when judge.kind == "human"; anything else (no kind included) is an LLM judge.
    Returns (rows, report) with per-source counts and per-policy prompt counts for the summary.
    """
    if policy not in COMBINE:
        raise UsageError("several judged files need --combine human-overrides or --combine agree-only"
                         if policy is None else f"unknown --combine policy '{policy}'",
                         "human-overrides: human labels replace the judge's where they exist; agree-only: keep "
                         "only pairs the humans and the judge agree on")
    human: dict[str, dict] = {}
    llm: dict[str, dict] = {}
    sources = []
    for path in paths:
        rows = load_judged(path)
        kinds = Counter("human" if r["judge"].get("kind") == "human" else "llm" for r in rows)
        sources.append({"path": path, "kind": "+".join(sorted(kinds)), "records": len(rows)})
        for r in rows:
            key = r["prompt_id"] + "\n" + r["text"]
            target = human if r["judge"].get("kind") == "human" else llm
            target.setdefault(key, r)   # the same candidate in two files of one kind: the first file wins
    by_prompt: dict[str, dict[str, list[dict]]] = defaultdict(lambda: {"human": [], "llm": []})
    for key, r in human.items():
        by_prompt[r["prompt_id"]]["human"].append(r)
    for key, r in llm.items():
        by_prompt[r["prompt_id"]]["llm"].append(r)
    counts: Counter = Counter()
    out = []
    for pid, src in by_prompt.items():
        has_h = any(r["judge"].get("score") is not None for r in src["human"])
        has_l = any(r["judge"].get("score") is not None for r in src["llm"])
        if policy == "human-overrides":
            counts["from_human" if has_h else "from_llm"] += 1
            out.extend(src["human"] if has_h else src["llm"])
        elif has_h and has_l:
            counts["scored_by_both"] += 1
            for r in src["human"]:
                other = llm.get(pid + "\n" + r["text"])
                out.append({**r, "_second_score": (other or {}).get("judge", {}).get("score")})
        else:
            counts["not_scored_by_both"] += 1
    return out, {"policy": policy, "sources": sources, "prompts": dict(counts)}


def _agreeing(chosen_pairs: list[tuple[dict, dict]], drops: Counter) -> list[tuple[dict, dict]]:
    kept = []
    for c, r in chosen_pairs:
        a, b = c.get("_second_score"), r.get("_second_score")
        if a is None or b is None:
            drops["no_second_opinion"] += 1
        elif a > b:
            kept.append((c, r))
        else:
            drops["sources_disagree"] += 1
    return kept
