"""`dsforge review --stats`: agreement between annotators, between each LLM judge run and the humans,
and time per item.

Human labels come from `dsforge review` outputs (judge.kind "human", judge.labels per annotator);
every other judged file (and a reviewed file's prior_judge) is an LLM judge run. Humans and judges
are compared on candidate pairs of the same prompt, which works across scales and modes: for each
pair the label is which one is better (or tie), from scores or from direct pairwise verdicts.

- inter-annotator: Cohen's kappa per pair of annotators (on the raw labels: 1-5 scores, best/worst,
  or verdicts) and Krippendorff's alpha over all of them (the `krippendorff` package; ordinal for
  scores and ranks, nominal for verdicts), on the candidates/pairs labelled by two or more people
- judge vs humans: accuracy (the judge prefers the candidate the humans prefer, over the pairs the
  humans did not tie) and Cohen's kappa over better/tie/worse; for pairwise judge runs also
  swap-consistency and first-slot pick rate on the pairs the humans labelled
- time: seconds per item per annotator (median, mean, total)
"""

from __future__ import annotations

import json
import os
import statistics
from collections import Counter, defaultdict
from itertools import combinations

from dsforge.errors import UsageError
from dsforge.review.items import candidate_id
from dsforge.candidates import iter_rows


def cohen_kappa(a: list, b: list) -> float | None:
    """Cohen's kappa of two raters' nominal labels on the same units; None when undefined
    (fewer than 2 units, or chance agreement is 1)."""
    n = len(a)
    if n < 2 or n != len(b):
        return None
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb.get(k, 0) for k in ca) / (n * n)
    return None if pe >= 1 else round((po - pe) / (1 - pe), 4)


def kripp_alpha(units: dict[str, dict[str, object]], level: str) -> float | None:
    """Krippendorff's alpha over units labelled by 2+ annotators ({unit: {annotator: value}}).

    `level`: "nominal" (values coded by category) or "ordinal" (values must be numbers). Returns
    alpha rounded to 4 places, or None with fewer than 2 such units or fewer than 2 distinct values.
    Raises UsageError (exit 2) when the `krippendorff` package is missing (dsforge[review]).
    """
    import numpy as np

    units = {u: v for u, v in units.items() if len(v) >= 2}
    if len(units) < 2:
        return None
    coders = sorted({a for v in units.values() for a in v})
    values = sorted({x for v in units.values() for x in v.values()}, key=str)
    if len(values) < 2:
        return None
    code = {x: i for i, x in enumerate(values)} if level == "nominal" else None
    data = np.full((len(coders), len(units)), np.nan)
    for j, v in enumerate(units.values()):
        for a, x in v.items():
            data[coders.index(a), j] = code[x] if code is not None else float(x)
    try:
        import krippendorff
    except ImportError:
        raise UsageError("--stats needs the krippendorff package", "pip install 'dsforge[review]'") from None
    return round(float(krippendorff.alpha(reliability_data=data, level_of_measurement=level)), 4)


def _pref(x: float, y: float) -> str:
    return "first" if x > y else "second" if x < y else "tie"


def _rows(path: str) -> list[dict]:
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    return [r for _, r in iter_rows(path) if isinstance(r.get("judge"), dict) and "prompt_id" in r]


class Sources:
    """Human labels by annotator and LLM runs, keyed by candidate id."""

    def __init__(self):
        self.mode: set[str] = set()
        self.human: dict[str, dict[str, dict]] = defaultdict(dict)    # annotator -> cid -> label
        self.prompt_of: dict[str, str] = {}
        self.runs: dict[str, dict[str, float]] = {}                     # run name -> cid -> score
        self.run_cmp: dict[str, list[dict]] = {}                        # run name -> comparisons (cids)

    def add_file(self, path: str) -> None:
        """Add one judged file: its human labels (judge.kind "human", and a prior_judge as an LLM run),
        or its LLM judge scores as one run named "PATH (MODEL)", with PATH.comparisons.jsonl when a
        pairwise run left one. Raises UsageError (exit 2) for a missing file or one without judged
        records; InputError (exit 1) for a line that is not a JSON object."""
        rows = _rows(path)
        if not rows:
            raise UsageError(f"{path}: no judged records", "give dsforge review outputs and dsforge judge outputs")
        for r in rows:
            cid = candidate_id(r["prompt_id"], r["text"])
            self.prompt_of[cid] = r["prompt_id"]
            j = r["judge"]
            if j.get("kind") == "human":
                self.mode.add(j.get("mode"))
                for lab in j.get("labels") or []:
                    self.human[lab["annotator"]][cid] = lab
                if isinstance(r.get("prior_judge"), dict):
                    self._llm(f"{path} (prior judge {r['prior_judge'].get('model')})", cid, r["prior_judge"])
            else:
                self._llm(f"{path} ({j.get('model')})", cid, j)
        cmp_path = path + ".comparisons.jsonl"
        if any(r["judge"].get("kind") != "human" and r["judge"].get("mode") == "pairwise" for r in rows) \
                and os.path.exists(cmp_path):
            ids = [candidate_id(r["prompt_id"], r["text"]) for r in rows]
            with open(cmp_path, encoding="utf-8") as f:
                cmps = [json.loads(x) for x in f if x.strip()]
            name = f"{path} ({rows[0]['judge'].get('model')})"
            self.run_cmp[name] = [{**c, "cid_a": ids[c["a"]], "cid_b": ids[c["b"]]} for c in cmps
                                  if c.get("verdict") and max(c["a"], c["b"]) < len(ids)]

    def _llm(self, name: str, cid: str, j: dict) -> None:
        if j.get("score") is not None:
            self.runs.setdefault(name, {})[cid] = j["score"]

    # ------------------------------------------------- human preferences on candidate pairs

    def human_prefs(self, annotator: str) -> dict[tuple[str, str], str]:
        """(cid_lo, cid_hi) -> first/second/tie for one annotator: from direct pairwise games, else scores."""
        labs = self.human[annotator]
        out = {}
        for cid, lab in labs.items():
            for g in lab.get("games") or []:
                lo, hi = sorted((cid, g["vs"]))
                res = g["result"] if cid == lo else 1 - g["result"]
                out[(lo, hi)] = "first" if res == 1 else "second" if res == 0 else "tie"
        if out:
            return out
        by_prompt = defaultdict(list)
        for cid, lab in labs.items():
            if lab.get("score") is not None:
                by_prompt[self.prompt_of[cid]].append((cid, lab["score"]))
        for cands in by_prompt.values():
            for (c1, s1), (c2, s2) in combinations(sorted(cands), 2):
                out[(c1, c2)] = _pref(s1, s2)
        return out


def compute(paths: list[str]) -> dict:
    """All agreement numbers for FILES; raises UsageError when no human labels are among them.

    Returns {files, mode ("score" / "rank" / "pairwise", '/'-joined when mixed), inter_annotator
    {annotators, units_labelled_twice, pairs [{annotators [a, b], units, agreement, cohen_kappa}],
    krippendorff_alpha, alpha_level}, judges [{run, pairs_compared, human_decisive_pairs, accuracy,
    cohen_kappa, swap_consistency?, first_slot_rate?}], time {annotator: {prompts, median_seconds,
    mean_seconds, total_minutes}}}; rates in [0, 1] (4 places), None where undefined.
    """
    src = Sources()
    for p in paths:
        src.add_file(p)
    if not src.human:
        raise UsageError("no human labels in these files", "give at least one dsforge review output (-o of review)")
    if any("(prior judge" not in n for n in src.runs):   # the judged file itself was given: no duplicate run
        src.runs = {n: v for n, v in src.runs.items() if "(prior judge" not in n}
    annotators = sorted(src.human)
    mode = "/".join(sorted(m for m in src.mode if m))
    pairwise = mode == "pairwise"
    # inter-annotator, on raw labels
    raw: dict[str, dict[str, dict]] = {}
    for a in annotators:
        if pairwise:
            raw[a] = {f"{lo}:{hi}": v for (lo, hi), v in src.human_prefs(a).items()}
        else:
            raw[a] = {cid: lab.get("score") for cid, lab in src.human[a].items() if lab.get("score") is not None}
    pairs = []
    for a, b in combinations(annotators, 2):
        common = sorted(set(raw[a]) & set(raw[b]))
        pairs.append({"annotators": [a, b], "units": len(common),
                      "agreement": round(sum(raw[a][u] == raw[b][u] for u in common) / len(common), 4) if common else None,
                      "cohen_kappa": cohen_kappa([raw[a][u] for u in common], [raw[b][u] for u in common])})
    units: dict[str, dict[str, object]] = defaultdict(dict)
    for a in annotators:
        for u, v in raw[a].items():
            units[u][a] = v
    inter = {"annotators": annotators, "units_labelled_twice": sum(len(v) >= 2 for v in units.values()),
             "pairs": pairs, "krippendorff_alpha": kripp_alpha(units, "nominal" if pairwise else "ordinal"),
             "alpha_level": "nominal" if pairwise else "ordinal"}
    # human consensus per candidate pair: majority of annotators (ties where they split evenly)
    votes: dict[tuple, Counter] = defaultdict(Counter)
    for a in annotators:
        for k, v in src.human_prefs(a).items():
            votes[k][v] += 1
    consensus = {}
    for k, c in votes.items():
        top = c.most_common()
        consensus[k] = top[0][0] if len(top) == 1 or top[0][1] > top[1][1] else "tie"
    judges = [_judge_vs_humans(name, scores, src.run_cmp.get(name), consensus, src.prompt_of)
              for name, scores in src.runs.items()]
    for name, cmps in src.run_cmp.items():
        if name not in src.runs:
            judges.append(_judge_vs_humans(name, {}, cmps, consensus, src.prompt_of))
    return {"files": paths, "mode": mode, "inter_annotator": inter, "judges": judges, "time": _time(src, pairwise)}


def _judge_vs_humans(name, scores, cmps, consensus, prompt_of) -> dict:
    judge_pref = {}
    swap = Counter()
    for (lo, hi) in consensus:
        if lo in scores and hi in scores:
            judge_pref[(lo, hi)] = _pref(scores[lo], scores[hi])
    for c in cmps or []:
        lo, hi = sorted((c["cid_a"], c["cid_b"]))
        if (lo, hi) not in consensus:
            continue
        v = c["verdict"]
        winner = {"A": c["cid_a"], "B": c["cid_b"]}.get(v)
        judge_pref[(lo, hi)] = "tie" if winner is None else "first" if winner == lo else "second"
        if c.get("straight") is not None:
            swap["decided"] += 1
            swap["consistent"] += bool(c.get("consistent"))
            for raw in (c["straight"], {"A": "B", "B": "A"}.get(c.get("swapped"), "tie")):
                swap[{"A": "first_slot", "B": "second_slot"}.get(raw, "tie_slot")] += 1
    keys = sorted(judge_pref)
    h = [consensus[k] for k in keys]
    j = [judge_pref[k] for k in keys]
    decisive = [(x, y) for x, y in zip(h, j) if x != "tie"]
    out = {"run": name, "pairs_compared": len(keys), "human_decisive_pairs": len(decisive),
           "accuracy": round(sum(x == y for x, y in decisive) / len(decisive), 4) if decisive else None,
           "cohen_kappa": cohen_kappa(h, j)}
    if swap["decided"]:
        picks = swap["first_slot"] + swap["second_slot"]
        out["swap_consistency"] = round(swap["consistent"] / swap["decided"], 4)
        out["first_slot_rate"] = round(swap["first_slot"] / picks, 4) if picks else None
    return out


def _time(src: Sources, pairwise: bool) -> dict:
    """Seconds per prompt and annotator (a pairwise pair's time is on both its candidates: halved)."""
    out = {}
    for a, labs in src.human.items():
        per_prompt: dict[str, list[float]] = defaultdict(list)
        for cid, lab in labs.items():
            per_prompt[src.prompt_of[cid]].append(lab.get("seconds") or 0.0)
        secs = [sum(v) / 2 if pairwise else max(v) for v in per_prompt.values()]
        out[a] = {"prompts": len(secs), "median_seconds": round(statistics.median(secs), 2) if secs else None,
                  "mean_seconds": round(statistics.fmean(secs), 2) if secs else None,
                  "total_minutes": round(sum(secs) / 60, 2)}
    return out


def format_stats(s: dict) -> str:
    """Plain-text rendering of compute()'s result."""
    ia = s["inter_annotator"]
    lines = [f"human labels ({s['mode']}) by {', '.join(ia['annotators'])}; "
             f"{ia['units_labelled_twice']} units labelled by two or more"]
    for p in ia["pairs"]:
        lines.append(f"  {p['annotators'][0]} vs {p['annotators'][1]}: {p['units']} shared units, agreement "
                     f"{_pct(p['agreement'])}, Cohen's kappa {_num(p['cohen_kappa'])}")
    lines.append(f"  Krippendorff's alpha ({ia['alpha_level']}): {_num(ia['krippendorff_alpha'])}")
    for j in s["judges"]:
        extra = ""
        if "swap_consistency" in j:
            extra = (f", swap-consistency {_pct(j['swap_consistency'])}, first-slot pick rate "
                     f"{_pct(j.get('first_slot_rate'))}")
        lines.append(f"judge {j['run']} vs humans: {j['pairs_compared']} candidate pairs, accuracy "
                     f"{_pct(j['accuracy'])} on {j['human_decisive_pairs']} the humans decided, Cohen's kappa "
                     f"{_num(j['cohen_kappa'])}{extra}")
    for a, t in s["time"].items():
        lines.append(f"time {a}: {t['prompts']} prompts, median {t['median_seconds']} s, mean {t['mean_seconds']} s, "
                     f"total {t['total_minutes']} min")
    return "\n".join(lines)


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"
