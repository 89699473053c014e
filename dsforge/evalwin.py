"""Pairwise win rate of `dsforge eval --against`: the model's reply vs an earlier eval's reply, per item.

Each item is one comparison asked in both orders through dsforge's pairwise judge
(dsforge.judge.judge_pairwise with the built-in pairwise rubric); orders that disagree are a tie,
as everywhere in dsforge. An unparseable or failed comparison is counted, never given a verdict.
"""

from __future__ import annotations

from dsforge.evalstats import mean_ci, pct


def win_rate(items: list[dict], rows: list[dict], against_items: list[dict], cfg, *, against: str,
             engine=None, engine_options: dict | None = None, log=None) -> dict:
    """Compare rows[i]["reply"] with the against eval's reply of the same id, by the judge cfg.judge_model.

    items: eval items (id, messages); rows: this eval's item results (same order); cfg: EvalConfig.
    Returns {"path", "judge_model", "n", "win", "tie", "loss", "failed", "win_rate", "ci_low",
    "ci_high", "swap_consistency"}: win_rate = (win + tie/2) / (win + tie + loss) with a seeded
    bootstrap interval over items (fractions); swap_consistency = share of decided comparisons
    whose two orders agreed. `engine`: an opened judge engine to reuse.
    """
    from dsforge.engines import get_engine
    from dsforge.judge import Cache, Judge, JudgeConfig, judge_pairwise
    from dsforge.rubrics import load_rubric

    other = {it["id"]: it for it in against_items}
    jitems = []
    for it, row in zip(items, rows):
        # the item id groups the two replies, so two rows with one prompt still make two comparisons
        jitems.append({"prompt_id": it["id"], "messages": it["messages"], "text": row["reply"]})
        jitems.append({"prompt_id": it["id"], "messages": it["messages"], "text": other[it["id"]]["reply"]})
    jcfg = JudgeConfig(judge_model=cfg.judge_model, rubric=load_rubric("pairwise", "pairwise"), engine=cfg.judge_engine,
                       max_pairs_per_prompt=1, include_truncated=True, seed=cfg.seed)
    own = engine is None
    if own:
        model = cfg.judge_model
        if cfg.judge_engine != "openai":
            from dsforge import models

            model = models.resolve(model)
        options = dict(engine_options or {})
        if cfg.judge_engine == "openai" and cfg.base_url:
            options.setdefault("base_url", cfg.base_url)
        engine = get_engine(cfg.judge_engine, model, options).open()
    try:
        judge = Judge(jcfg, engine, Cache(None), log=log, progress=False)
        _, comparisons = judge_pairwise(judge, jitems)
    finally:
        if own:
            engine.close()
    counts = {"win": 0, "tie": 0, "loss": 0, "failed": 0}
    scores, consistent, decided = [], 0, 0
    by_item = {}
    for c in comparisons:
        model_first = c["a"] % 2 == 0   # jitems[2i] is this model's reply
        v = c.get("verdict")
        if v is None:
            counts["failed"] += 1
            by_item[c["prompt_id"]] = None
            continue
        decided += 1
        consistent += bool(c.get("consistent"))
        won = (v == "A") == model_first if v != "tie" else None
        key = "tie" if won is None else "win" if won else "loss"
        counts[key] += 1
        scores.append({"win": 1.0, "tie": 0.5, "loss": 0.0}[key])
        by_item[c["prompt_id"]] = key
    for row in rows:
        row["vs_against"] = by_item.get(row["id"])
    ci = mean_ci(scores, confidence=cfg.confidence, n_resamples=cfg.n_resamples, seed=cfg.seed)
    return {"path": against, "judge_model": cfg.judge_model, "n": len(comparisons), **counts,
            "win_rate": ci["mean"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
            "swap_consistency": consistent / decided if decided else None}


def format_winrate(w: dict) -> str:
    """One console line for a win-rate result."""
    return (f"vs {w['path']} (judge {w['judge_model']}): win {w['win']} / tie {w['tie']} / loss {w['loss']}"
            + (f" / failed {w['failed']}" if w["failed"] else "")
            + f"; win rate {pct(w['win_rate'])}% [{pct(w['ci_low'])}, {pct(w['ci_high'])}], "
              f"swap-consistent {pct(w['swap_consistency'], 0)}%")
