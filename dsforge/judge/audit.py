"""`dsforge judge --audit`: probe the judge for known biases before trusting it.

    identical   the same answer twice must tie (pairwise) / get the same score (pointwise)
    swapped     a pair asked in both orders must get the same verdict (pairwise only)
    padded      the answer plus content-free filler must not beat the original

Rates are printed and stored in the judge summary; a tiny judge is expected to fail some.
"""

from __future__ import annotations

from dsforge.judge.core import Call, Judge, outcome, reference_of

PADDING = ("\n\nTo summarise, the answer above is complete and correct. It is important to note that this "
           "covers the topic thoroughly. In conclusion, everything stated above is accurate and comprehensive.")


def _probe_items(items: list[dict], m: int) -> list[dict]:
    seen, out = set(), []
    for it in items:
        if it.get("truncated") or it["text"] in seen or not it["text"].strip():
            continue
        seen.add(it["text"])
        out.append(it)
        if len(out) == m:
            break
    return out


def _rate(passed: int, total: int) -> dict:
    return {"passed": passed, "total": total, "rate": passed / total if total else 0.0}


def _outcomes(judge: Judge, calls: list[Call]) -> dict:
    """{call.item: outcome} for the probe calls that parsed, after the judge's usual re-asks."""
    judge.ask(calls, "audit", count_failures=False)
    return {c.item: outcome(c.parsed) for c in calls if "error" not in c.parsed}


def run_audit(judge: Judge, items: list[dict], m: int = 8) -> dict:
    """Probe the judge on up to m distinct, untruncated, non-empty candidates of `items`.

    Returns {"probes": n, "identical", "padded_not_better", "swapped"}, each rate a dict {passed,
    total, rate in [0, 1]} over the probes whose calls parsed ("swapped" is a string in pointwise
    mode). The probe calls are cached and counted in the judge's usage, not in its parse failures."""
    rubric = judge.cfg.rubric
    probes = _probe_items(items, m)
    res: dict = {"probes": len(probes)}
    if rubric.mode == "pointwise":
        calls = []
        for it in probes:
            ref = reference_of(it, judge.cfg.reference_field)
            base = rubric.pointwise_messages(it["messages"], it["text"], ref)
            calls += [Call(item=("orig", id(it)), messages=base, probe="audit"),
                      Call(item=("again", id(it)), messages=base, probe="audit-again"),
                      Call(item=("padded", id(it)), messages=rubric.pointwise_messages(it["messages"], it["text"] + PADDING, ref),
                           probe="audit")]
        score = _outcomes(judge, calls)
        same = [score[("orig", id(i))] == score[("again", id(i))] for i in probes
                if ("orig", id(i)) in score and ("again", id(i)) in score]
        pad = [score[("padded", id(i))] <= score[("orig", id(i))] for i in probes
               if ("orig", id(i)) in score and ("padded", id(i)) in score]
        res["identical"] = _rate(sum(same), len(same))
        res["padded_not_better"] = _rate(sum(pad), len(pad))
        res["swapped"] = "n/a: pointwise scoring sees one answer at a time"
        return res
    by_prompt: dict = {}
    for it in items:
        if not it.get("truncated"):
            by_prompt.setdefault(it["prompt_id"], []).append(it)
    pairs = [(v[0], v[1]) for v in by_prompt.values() if len(v) >= 2 and v[0]["text"] != v[1]["text"]][:m]
    calls = []
    for it in probes:
        msgs = rubric.pairwise_messages(it["messages"], it["text"], it["text"])
        calls.append(Call(item=("identical", id(it)), messages=msgs, probe="audit"))
        calls.append(Call(item=("pad_first", id(it)), probe="audit",
                          messages=rubric.pairwise_messages(it["messages"], it["text"] + PADDING, it["text"])))
        calls.append(Call(item=("pad_second", id(it)), probe="audit",
                          messages=rubric.pairwise_messages(it["messages"], it["text"], it["text"] + PADDING)))
    for a, b in pairs:
        calls.append(Call(item=("ab", id(a)), probe="audit",
                          messages=rubric.pairwise_messages(a["messages"], a["text"], b["text"])))
        calls.append(Call(item=("ba", id(a)), probe="audit",
                          messages=rubric.pairwise_messages(a["messages"], b["text"], a["text"])))
    verdict = _outcomes(judge, calls)
    ident = [verdict[("identical", id(i))] == "tie" for i in probes if ("identical", id(i)) in verdict]
    pad = []
    for i in probes:
        f, s = verdict.get(("pad_first", id(i))), verdict.get(("pad_second", id(i)))
        if f is not None:
            pad.append(f != "A")
        if s is not None:
            pad.append(s != "B")
    swap = []
    for a, _b in pairs:
        v1, v2 = verdict.get(("ab", id(a))), verdict.get(("ba", id(a)))
        if v1 is not None and v2 is not None:
            swap.append(v1 == {"A": "B", "B": "A", "tie": "tie"}[v2])
    res["identical"] = _rate(sum(ident), len(ident))
    res["swapped"] = _rate(sum(swap), len(swap))
    res["padded_not_better"] = _rate(sum(pad), len(pad))
    return res
