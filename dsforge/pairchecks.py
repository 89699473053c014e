"""Degenerate preference pairs: checks over (prompt messages, chosen, rejected) that find pairs with no signal.

A DPO pair teaches nothing when its two answers are the same tokens once LLaMA-Factory has cut them to
cutoff_len (the loss sits at ln 2), and it teaches the wrong thing when the answers differ only in form
(a `<think>` block, a stop string, a code fence on one side). `validate` runs these on ranking files and
`pairs` applies them before it writes. Pure functions; the token-level `TruncationCheck` (it needs a tokenizer)
lives in dsforge.tokenizers and is re-exported here.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from typing import get_args

from dsforge.stages import Similarity
from dsforge.tokenizers import TruncationCheck, lf_messages  # noqa: F401 - re-exported

# reason code -> what it means; validate registers them (severity warn: LLaMA-Factory trains these rows)
FORMAT_REASONS = ("pair_think_one_side", "pair_think_empty_vs_full", "pair_stop_one_side", "pair_fence_one_side")
STOP_STRINGS = ("</s>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|end_of_text|>")
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.S)
_FENCE = re.compile(r"^\s*(```|~~~)", re.M)
SIM_METHODS: tuple[str, ...] = get_args(Similarity)


def thought_state(text: str) -> str | None:
    """None when the text has no `<think>` block, 'empty' when every block is blank, else 'full'."""
    blocks = _THINK.findall(text)
    if not blocks:
        return None
    return "full" if any(b.strip() for b in blocks) else "empty"


def ends_with_stop(text: str) -> str | None:
    """The stop/EOS string the text ends with (trailing whitespace ignored), or None."""
    t = text.rstrip()
    return next((s for s in STOP_STRINGS if t.endswith(s)), None)


def format_asymmetry(chosen: str, rejected: str) -> list[str]:
    """Reason codes (from FORMAT_REASONS) for formatting present on one answer of a pair and not the other."""
    out = []
    tc, tr = thought_state(chosen), thought_state(rejected)
    if (tc is None) != (tr is None):
        out.append("pair_think_one_side")
    elif tc is not None and tc != tr:
        out.append("pair_think_empty_vs_full")
    if (ends_with_stop(chosen) is None) != (ends_with_stop(rejected) is None):
        out.append("pair_stop_one_side")
    if bool(_FENCE.search(chosen)) != bool(_FENCE.search(rejected)):
        out.append("pair_fence_one_side")
    return out


def similarity(a: str, b: str, method: str = "ratio") -> float:
    """Similarity of two answers in [0, 1]; 1 means the same text after whitespace normalisation.

    ratio: normalized Indel edit-distance similarity (rapidfuzz; difflib's ratio when rapidfuzz is missing);
    jaccard: overlap of the sets of lower-cased word tokens. Raises ValueError for another method (a
    caller's bug: the CLI's click.Choice and pairs' config check spell the user's error).
    """
    a, b = " ".join(a.split()), " ".join(b.split())
    if method == "jaccard":
        sa, sb = set(a.lower().split()), set(b.lower().split())
        return 1.0 if not sa and not sb else len(sa & sb) / len(sa | sb)
    if method != "ratio":
        raise ValueError(f"unknown similarity method {method!r}; use one of {SIM_METHODS}")
    try:
        from rapidfuzz.distance import Indel
    except ImportError:  # pragma: no cover - rapidfuzz is a core dependency
        import difflib

        return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
    return Indel.normalized_similarity(a, b)


def quantiles(values: list[float], qs=(0, 10, 25, 50, 75, 90, 100)) -> dict:
    """Nearest-rank quantiles {q (percent): value rounded to 4 places} of a list (numpy; empty dict for
    an empty list)."""
    if not values:
        return {}
    import numpy as np

    cut = np.percentile(np.asarray(values), qs, method="nearest")   # elements of `values`: ints stay ints
    return {q: round(v.item(), 4) for q, v in zip(qs, cut)}


def length_bias(chosen_lens: list[int], rejected_lens: list[int], warn_above: float = 0.7) -> dict:
    """Share of pairs whose chosen is longer, the median chosen/rejected length ratio, and a warning flag.

    Lengths in any unit (characters or tokens), paired by position; `warn` is true when the share
    exceeds `warn_above`. Returns {pairs, chosen_longer_rate (0..1, 4 places), median_length_ratio
    (chosen / max(1, rejected), 4 places), warn}; both rates are None when there is no pair.
    """
    ratios = [c / max(1, r) for c, r in zip(chosen_lens, rejected_lens)]
    if not ratios:
        return {"pairs": 0, "chosen_longer_rate": None, "median_length_ratio": None, "warn": False}
    rate = sum(c > r for c, r in zip(chosen_lens, rejected_lens)) / len(ratios)
    return {"pairs": len(ratios), "chosen_longer_rate": round(rate, 4),
            "median_length_ratio": round(statistics.median(ratios), 4), "warn": rate > warn_above}


def length_bias_message(lb: dict) -> str:
    """The pair_length_bias warning text for a length_bias() result."""
    return (f"chosen is longer than rejected in {lb['chosen_longer_rate']:.0%} of pairs (median length ratio "
            f"{lb['median_length_ratio']}); DPO will learn length. Consider dsforge pairs --max-length-ratio or "
            "--length-tiered")


class PairStats:
    """Collects text-level checks over pairs: format asymmetry, similarity distribution, length bias.

    `add` returns the reason codes of one pair (near-identical included when similarity >= max_similarity).
    Lengths are counted in characters. Raises ValueError for a method not in SIM_METHODS.
    """

    def __init__(self, max_similarity: float = 0.95, method: str = "ratio", warn_above: float = 0.7):
        if method not in SIM_METHODS:
            raise ValueError(f"unknown similarity method {method!r}")
        self.max_similarity, self.method, self.warn_above = max_similarity, method, warn_above
        self.counts: Counter = Counter()
        self.sims: list[float] = []
        self.clens: list[int] = []
        self.rlens: list[int] = []

    def add(self, chosen: str, rejected: str) -> list[str]:
        """Record one pair (texts); returns its reason codes (format asymmetry, pair_near_identical)."""
        reasons = format_asymmetry(chosen, rejected)
        sim = similarity(chosen, rejected, self.method)
        self.sims.append(sim)
        if sim >= self.max_similarity:
            reasons.append("pair_near_identical")
        self.clens.append(len(chosen))
        self.rlens.append(len(rejected))
        self.counts.update(reasons)
        return reasons

    def result(self) -> dict:
        """{similarity {method, threshold, quantiles {q: value}}, length_bias (see length_bias), counts {reason: n}}."""
        return {"similarity": {"method": self.method, "threshold": self.max_similarity,
                               "quantiles": quantiles(self.sims)},
                "length_bias": length_bias(self.clens, self.rlens, self.warn_above),
                "counts": dict(self.counts)}


def format_pairs(res: dict) -> list[str]:
    """Text lines for validate's report: length bias, similarity quantiles, truncation counts.

    `res` is PairStats.result(), optionally with "truncation" {cutoff_len, template, counts} from
    TruncationCheck.result(); parts that are missing or empty give no line.
    """
    out = []
    lb = res.get("length_bias") or {}
    if lb.get("pairs"):
        out.append(f"pairs: chosen longer in {lb['chosen_longer_rate']:.0%} of {lb['pairs']}, median length ratio "
                   f"{lb['median_length_ratio']}")
    sim = res.get("similarity")
    if sim and sim["quantiles"]:
        out.append(f"pairs: chosen/rejected similarity ({sim['method']}) quantiles "
                   + "  ".join(f"p{q} {v}" for q, v in sim["quantiles"].items()))
    tr = res.get("truncation")
    if tr:
        out.append(f"pairs at cutoff_len {tr['cutoff_len']} ({tr['template']}): "
                   + (", ".join(f"{k} {v}" for k, v in sorted(tr["counts"].items())) or "no degenerate pair"))
    return out


NEAR_ZERO = 0.05   # a margin within 5% of the judge's observed score range is "near zero"


def margin_summary(margins: list[float], score_range: list[float] | None, near_zero: float = NEAR_ZERO) -> dict:
    """Quantiles of the written pairs' score margins and how many are near zero (<= near_zero x score range).

    `score_range` is [min, max] of the judge's observed scores (None: range 0, so only margins <= 0
    count). Returns {quantiles {q: value}, near_zero (count), near_zero_below (the bound, 4 places)}.
    """
    span = (score_range[1] - score_range[0]) if score_range else 0
    return {"quantiles": quantiles(margins), "near_zero": sum(m <= near_zero * span for m in margins),
            "near_zero_below": round(near_zero * span, 4)}


def format_degenerate(d: dict) -> list[str]:
    """Text lines for `dsforge pairs`: degenerate-pair counts, similarity and margin distributions.

    `d` is PairStats.result() plus an optional "margin" (margin_summary()); missing parts give no line.
    """
    out = []
    if d.get("counts"):
        out.append("degenerate candidate pairs (checked before taking a pair): "
                   + ", ".join(f"{k} {v}" for k, v in sorted(d["counts"].items())))
    q = d.get("similarity", {}).get("quantiles")
    if q:
        out.append(f"answer similarity ({d['similarity']['method']}) quantiles: "
                   + "  ".join(f"p{k} {v}" for k, v in q.items()))
    m = d.get("margin")
    if m and m["quantiles"]:
        out.append(f"near-zero margins (<= {m['near_zero_below']}): {m['near_zero']} of the written pairs")
    return out
