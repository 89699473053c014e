"""Difficulty calibration: which level of a task family is right for a model.

Per level, on `n_prompts` generated prompts: greedy pass@1 (lenient `correct` and strict
`format_ok` apart), sampled pass@1 and pass@k over `n_samples` samples at `temperature`
(the unbiased estimator of Chen et al. 2021, "Evaluating Large Language Models Trained on Code"),
and the pair-able fraction: prompts where some samples are right and some wrong, the prompts that
can give a correct-vs-wrong preference pair. The chosen level is the one whose greedy pass@1 lies
in [low, high] (default 15-50%) with the highest pair-able fraction; when none lies in the band,
the level whose greedy pass@1 is nearest to it (said in `reason`).

One engine serves every level: all requests go in one batch.
"""

from __future__ import annotations

import json
import time

from dsforge.engines import Request, SamplingParams, derive_seed
from dsforge.errors import DsforgeError, UsageError
from dsforge.evalstats import pass_at_k   # one estimator for calibrate and eval
from dsforge.tasks import get_family
from dsforge.verify import get_verifier

BAND = (0.15, 0.50)


def choose(levels: dict[str, dict], band: tuple[float, float] = BAND) -> tuple[str, str]:
    """(level, reason): in-band greedy pass@1 with the highest pair-able fraction (ties: nearer 0.3
    pass@1, then the earlier level), else the level nearest the band."""
    lo, hi = band
    inside = [(name, m) for name, m in levels.items() if lo <= m["greedy_pass1"] <= hi]
    if inside:
        name, m = max(inside, key=lambda nm: (nm[1]["pairable"], -abs(nm[1]["greedy_pass1"] - 0.3)))
        return name, (f"greedy pass@1 {m['greedy_pass1']:.0%} is within {lo:.0%}-{hi:.0%} and "
                      f"{m['pairable']:.0%} of prompts can form pairs (highest in the band)")

    def gap(m):
        return lo - m["greedy_pass1"] if m["greedy_pass1"] < lo else m["greedy_pass1"] - hi

    name, m = min(levels.items(), key=lambda nm: (gap(nm[1]), -nm[1]["pairable"]))
    return name, (f"no level has greedy pass@1 within {lo:.0%}-{hi:.0%}; {name} is nearest "
                  f"({m['greedy_pass1']:.0%}, pair-able {m['pairable']:.0%})")


def calibrate(family: str, model: str, *, levels: list[str] | None = None, n_prompts: int = 40, k: int = 8,
              n_samples: int | None = None, temperature: float = 1.0, max_tokens: int = 64, seed: int = 0,
              engine_name: str = "vllm", engine_options: dict | None = None, engine=None,
              band: tuple[float, float] = BAND, keep_replies: bool = False, log=print) -> dict:
    """Probe `model` on each level of `family` and pick one.

    levels: level names (default: all of the family's); n_prompts per level; n_samples (default k)
    samples per prompt at `temperature`, k <= n_samples; max_tokens per reply; engine: an open
    Engine to use (else one `engine_name` engine is opened for all levels and closed); keep_replies:
    also return "replies", one {"level", "id", "instruction", "reference", "format", "temperature",
    "reply", "answer", "correct", "format_ok"} per reply (for inspection and hand labels).
    Returns {"family", "model", "settings", "levels": {level: {"greedy_pass1", "greedy_strict",
    "sampled_pass1", "pass_at_k", "pairable", "all_right", "all_wrong", "prompts",
    "mean_reply_tokens"}}, "chosen", "reason", "seconds"}; fractions are in [0, 1].
    Raises UsageError for an unknown family/level or k > n_samples, DsforgeError (exit 1) when the
    engine fails requests."""
    fam = get_family(family)
    levels = list(levels or fam.levels)
    for name in levels:
        fam.level(name)
    n_samples = n_samples or k
    if k < 1 or n_samples < k:
        raise UsageError(f"--k {k} needs at least k samples per prompt (got {n_samples})", "raise --n-samples or lower --k")
    verifier = get_verifier(fam.verifier)
    rows = {name: fam.make(n_prompts, seed, name) for name in levels}
    requests = []
    for name, level_rows in rows.items():
        for i, row in enumerate(level_rows):
            msgs = [{"role": "user", "content": row["instruction"]}]
            requests.append(Request(msgs, SamplingParams(temperature=0.0, max_tokens=max_tokens, n=1, seed=seed),
                                    tag=(name, i, "greedy")))
            requests.append(Request(msgs, SamplingParams(temperature=temperature, max_tokens=max_tokens, n=n_samples,
                                                         seed=derive_seed(seed, row["id"], temperature)),
                                    tag=(name, i, "sampled")))
    t0 = time.time()
    results = {}

    def collect(eng):
        step = max(1, len(requests) // 10)
        for r in eng.generate(requests):
            results[r.request.tag] = r
            if len(results) % step == 0:
                log(f"calibrate: {len(results)}/{len(requests)} requests answered ({time.time() - t0:.0f} s)")

    if engine is None:
        from dsforge.engines import get_engine

        log(f"calibrate: starting the {engine_name} engine for {model} ...")
        with get_engine(engine_name, model, engine_options) as eng:
            t0 = time.time()
            collect(eng)
    else:
        collect(engine)
    failed = [tag for tag, r in results.items() if r.error]
    if failed or len(results) != len(requests):
        raise DsforgeError(f"calibrate: {len(failed) or len(requests) - len(results)} requests failed "
                         f"({results[failed[0]].error if failed else 'no result'})")
    out, replies = {}, []
    for name, level_rows in rows.items():
        greedy = strict = sampled = pk = pairable = all_right = all_wrong = 0.0
        tokens = []
        for i, row in enumerate(level_rows):
            g = results[(name, i, "greedy")].completions[0]
            v = verifier.check(g.text, row["reference"], row)
            greedy += v.correct
            strict += v.correct and v.format_ok
            comps = results[(name, i, "sampled")].completions
            verdicts = [verifier.check(x.text, row["reference"], row) for x in comps]
            c = sum(x.correct for x in verdicts)
            if keep_replies:
                for temp, x, vx in [(0.0, g, v)] + [(temperature, x, vx) for x, vx in zip(comps, verdicts)]:
                    replies.append({"level": name, "id": row["id"], "instruction": row["instruction"],
                                    "reference": row["reference"], "format": row["format"], "temperature": temp,
                                    "reply": x.text, **vx.to_dict()})
            sampled += c / len(comps)
            pk += pass_at_k(len(comps), c, k)
            pairable += 0 < c < len(comps)
            all_right += c == len(comps)
            all_wrong += c == 0
            tokens += [x.completion_tokens for x in [g, *comps] if x.completion_tokens is not None]
        n = len(level_rows)
        out[name] = {"greedy_pass1": greedy / n, "greedy_strict": strict / n, "sampled_pass1": sampled / n,
                     "pass_at_k": pk / n, "pairable": pairable / n, "all_right": all_right / n,
                     "all_wrong": all_wrong / n, "prompts": n,
                     "mean_reply_tokens": round(sum(tokens) / len(tokens), 1) if tokens else None}
    chosen, reason = choose(out, band)
    return {"family": family, "model": model, "chosen": chosen, "reason": reason, "levels": out,
            "settings": {"n_prompts": n_prompts, "k": k, "n_samples": n_samples, "temperature": temperature,
                         "max_tokens": max_tokens, "seed": seed, "band": list(band), "engine": engine_name,
                         "verifier": fam.verifier},
            "seconds": round(time.time() - t0, 1), **({"replies": replies} if keep_replies else {})}


def format_table(res: dict) -> str:
    """The calibration as a plain-text table, the chosen level marked with '*'."""
    k = res["settings"]["k"]
    head = f"{'level':>7} {'greedy':>7} {'strict':>7} {'sampled':>8} {f'pass@{k}':>8} {'pairable':>9} {'tokens':>7}"
    lines = [f"calibration of {res['family']} on {res['model']} ({res['settings']['n_prompts']} prompts per level, "
             f"{res['settings']['n_samples']} samples at T={res['settings']['temperature']})", head]
    for name, m in res["levels"].items():
        mark = "*" if name == res["chosen"] else " "
        lines.append(f"{mark}{name:>6} {m['greedy_pass1']:>7.0%} {m['greedy_strict']:>7.0%} {m['sampled_pass1']:>8.0%} "
                     f"{m['pass_at_k']:>8.0%} {m['pairable']:>9.0%} {m['mean_reply_tokens'] or 0:>7}")
    lines.append(f"chosen: {res['chosen']} - {res['reason']}")
    return "\n".join(lines)


def write_json(res: dict, out: str) -> None:
    """Write the calibration result atomically as JSON."""
    from dsforge.io import atomic_write, note_output

    with atomic_write(out) as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    note_output(out, "calibration")
