"""The rounds part of `dsforge report`: per round (0 = the base model) held-out accuracy with its interval, the
paired difference vs the base and McNemar's p, and what the round trained on (pair yield, pairs, chosen-longer
rate, reply length), read from the run manifest's `rounds` (dsforge.run.Runner); and the accuracy-per-round plot."""

from __future__ import annotations

from dsforge.plots import svg_points_ci


def round_rows(manifest: dict) -> list[dict]:
    """[{round, metric, lenient, strict (each {acc, ci_low, ci_high} in %), reply_tokens, diff, diff_low, diff_high,
    p (McNemar, lenient), controls {stem: lenient % (diff)}, pair_yield, pairs, chosen_longer}] for every round with
    an eval, round 0 first; [] for a run without rounds. Fractions become percentages, missing values None."""
    rows = []
    for t, stages in sorted((manifest.get("rounds") or {}).items(), key=lambda kv: int(kv[0])):
        ev = ((stages.get("eval") or {}).get("summary")) or {}
        files = ev.get("files") or {}
        s = files.get(ev.get("metric")) or {}
        if "pass1" not in s:
            continue
        pct = lambda a: {k: round(100 * a[k], 1) for k in ("acc", "ci_low", "ci_high")}  # noqa: E731
        b = (s.get("baseline") or {}).get("lenient") or {}
        ps = ((stages.get("pairs") or {}).get("summary")) or {}
        controls = {}
        for stem, c in files.items():
            if stem != ev.get("metric") and "pass1" in c:
                d = (c.get("baseline") or {}).get("lenient")
                controls[stem] = f"{100 * c['pass1']['lenient']['acc']:.1f}" + (f" ({100 * d['diff']:+.1f})" if d else "")
        rows.append({"round": int(t), "metric": ev.get("metric"), "lenient": pct(s["pass1"]["lenient"]),
                     "strict": pct(s["pass1"]["strict"]), "reply_tokens": s.get("reply_tokens_mean"),
                     "diff": round(100 * b["diff"], 1) if b else None,
                     "diff_low": round(100 * b["ci_low"], 1) if b else None,
                     "diff_high": round(100 * b["ci_high"], 1) if b else None,
                     "p": f"{b['mcnemar']['p']:.2g}" if b else None, "controls": controls,
                     "pair_yield": (ps.get("pair_yield") or {}).get("rate"), "pairs": ps.get("pairs"),
                     "chosen_longer": ps.get("chosen_longer_rate")})
    return rows


def accuracy_figure(rows: list[dict]) -> tuple[str, str, str] | None:
    """(title, svg, caption) of held-out accuracy per round, lenient and strict with their 95% intervals, the
    base model as round 0; None without rounds."""
    if not rows:
        return None
    xs = [r["round"] for r in rows]
    series = {k: [(r[k]["acc"], r[k]["ci_low"], r[k]["ci_high"]) for r in rows] for k in ("lenient", "strict")}
    last = rows[-1]
    cap = (f"{rows[0]['metric']}: lenient (the answer is right) and strict (right and in the asked form), greedy "
           f"pass@1 in %, 95% Wilson intervals; round 0 is the base model.")
    if last.get("diff") is not None:
        cap += (f" Round {last['round']} vs base: {last['diff']:+.1f} points [{last['diff_low']:+.1f}, "
                f"{last['diff_high']:+.1f}] (paired bootstrap), McNemar p={last['p']}.")
    return ("Held-out accuracy per round", svg_points_ci(xs, series, "Held-out accuracy per round", "round",
                                                         "accuracy %"), cap)


def format_rounds(rows: list[dict]) -> str:
    """The console table of round_rows: per round held-out lenient/strict accuracy with 95% intervals and, from
    round 1 on, the paired difference vs the base (round 0) with its interval and McNemar's p."""
    out = []
    for r in rows:
        le, st = r["lenient"], r["strict"]
        line = (f"  {'base' if r['round'] == 0 else 'round ' + str(r['round']):<8} {r['metric']}: lenient {le['acc']:.1f}% "
                f"[{le['ci_low']:.1f}, {le['ci_high']:.1f}]  strict {st['acc']:.1f}% [{st['ci_low']:.1f}, {st['ci_high']:.1f}]")
        if r["diff"] is not None:
            line += f"  vs base {r['diff']:+.1f} points [{r['diff_low']:+.1f}, {r['diff_high']:+.1f}], McNemar p={r['p']}"
        if r["controls"]:
            line += "  controls: " + ", ".join(f"{k} {v}" for k, v in r["controls"].items())
        out.append(line)
    return "\n".join(out)
