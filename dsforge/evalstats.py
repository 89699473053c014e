"""Statistics for `dsforge eval`: intervals and paired tests over per-item 0/1 outcomes.

Everything here is a thin call into scipy (Wilson score interval, exact binomial test, the
bootstrap), so the numbers are the library's, not hand-written estimators:

    wilson(k, n)                 95% Wilson score interval of a proportion
    pass_at_k(n, c, k)           the unbiased pass@k estimator of Chen et al. (2021)
    paired_difference(a, b)      mean(a) - mean(b) with a paired bootstrap interval
    mcnemar(a, b)                McNemar's exact test on the discordant pairs

scipy is imported on use, so `dsforge --help` stays fast.
"""

from __future__ import annotations

import math

from dsforge.errors import UsageError


def _scipy_stats():
    try:
        from scipy import stats
    except ImportError:
        raise UsageError("dsforge eval needs scipy for its intervals and tests", "pip install scipy (a dsforge dependency)") from None
    return stats


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float] | tuple[None, None]:
    """Wilson score interval (no continuity correction) for k successes of n, as fractions in [0, 1].

    (None, None) when n == 0. Uses scipy.stats.binomtest(...).proportion_ci(method="wilson").
    """
    if n == 0:
        return None, None
    ci = _scipy_stats().binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021).

    Needs 1 <= k <= n; the product form avoids huge binomials.
    """
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n (k={k}, n={n})")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def paired_difference(a: list[float], b: list[float], *, confidence: float = 0.95, n_resamples: int = 10_000,
                      seed: int = 0) -> dict:
    """mean(a) - mean(b) over paired items (a[i] and b[i] are one item) with a paired bootstrap interval.

    a, b: equal-length sequences of per-item outcomes (0/1 or scores). Returns {"diff", "ci_low",
    "ci_high", "n", "n_resamples", "seed", "method"} (fractions, not points). The interval is
    scipy.stats.bootstrap(paired=True, method="percentile") with a seeded generator, so a rerun gives
    the same interval; every item difference equal (e.g. an adapter that changes nothing) gives a
    zero-width interval at that value.
    """
    import numpy as np

    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length ({len(a)} vs {len(b)})")
    n = len(a)
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out = {"n": n, "n_resamples": n_resamples, "seed": seed, "method": "paired bootstrap (percentile)"}
    if n == 0:
        return {**out, "diff": None, "ci_low": None, "ci_high": None}
    diff = float(x.mean() - y.mean())
    d = x - y
    if np.all(d == d[0]) or n < 2:   # the bootstrap distribution is one point
        return {**out, "diff": diff, "ci_low": float(d[0]) if n else None, "ci_high": float(d[0]) if n else None}
    res = _scipy_stats().bootstrap((x, y), lambda u, v, axis=-1: u.mean(axis=axis) - v.mean(axis=axis),
                                   paired=True, vectorized=True, confidence_level=confidence,
                                   n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    return {**out, "diff": diff, "ci_low": float(res.confidence_interval.low),
            "ci_high": float(res.confidence_interval.high)}


def mean_ci(values: list[float], *, confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0) -> dict:
    """mean(values) with a seeded percentile bootstrap interval (scipy.stats.bootstrap):
    {"mean", "ci_low", "ci_high", "n"}; a constant sample gives a zero-width interval."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
    m = float(x.mean())
    if np.all(x == x[0]):
        return {"mean": m, "ci_low": m, "ci_high": m, "n": len(x)}
    res = _scipy_stats().bootstrap((x,), np.mean, vectorized=True, confidence_level=confidence,
                                   n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    return {"mean": m, "ci_low": float(res.confidence_interval.low), "ci_high": float(res.confidence_interval.high),
            "n": len(x)}


def mcnemar(new: list[bool], old: list[bool]) -> dict:
    """McNemar's exact test for paired 0/1 outcomes (new[i] and old[i] are one item).

    Returns {"b", "c", "both", "neither", "p"}: b = items right now and wrong before (gained),
    c = wrong now and right before (lost); p = two-sided exact binomial test of b against
    b + c at 0.5 (scipy.stats.binomtest), 1.0 when there are no discordant pairs.
    """
    if len(new) != len(old):
        raise ValueError(f"paired samples differ in length ({len(new)} vs {len(old)})")
    b = sum(1 for x, y in zip(new, old) if x and not y)
    c = sum(1 for x, y in zip(new, old) if y and not x)
    both = sum(1 for x, y in zip(new, old) if x and y)
    p = 1.0 if b + c == 0 else float(_scipy_stats().binomtest(b, b + c, 0.5).pvalue)
    return {"b": b, "c": c, "both": both, "neither": len(new) - b - c - both, "p": min(1.0, p)}


def pct(x: float | None, digits: int = 1) -> str:
    """A fraction as percent text ('31.2'), '-' for None."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"
