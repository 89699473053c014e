"""`dsforge report RUN_DIR|FILE --out report.html`: one self-contained HTML page with inline SVG plots.

From a run directory: token lengths of the training rows under the target tokenizer with the
cutoff_len line and the share that would be truncated, judge scores per temperature, chosen vs
rejected length, margins, drop reasons per stage, judge parse failures / swap-consistency /
audit, and the training loss. From a single candidates / judged / pairs file: what it holds.
"""

from __future__ import annotations

import json
import os
import statistics
from collections import defaultdict
from pathlib import Path

from dsforge.candidates import read_jsonl
from dsforge.errors import InputError, UsageError
from dsforge.io import atomic_write, guard_kind, guard_outputs
from dsforge.plots import _esc, svg_bars, svg_hist, svg_line, svg_scatter  # noqa: F401 (svg_* re-exported)

def _jsonl(path) -> list[dict]:
    """Rows of a dsforge JSONL output ([] when absent); damage is an InputError at FILE:LINE."""
    return read_jsonl(path, hint="report reads a run directory or a candidates / judged / pairs .jsonl file")


def _json(path: Path) -> dict:
    """A JSON object file dsforge wrote (manifest, summary, marker); damage is an InputError naming it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"damaged JSON ({str(err).splitlines()[0]})",
                         "rerun the stage that wrote it, or remove the file", path=str(path)) from None
    if not isinstance(value, dict):
        raise InputError("not a JSON object", "rerun the stage that wrote it", path=str(path))
    return value


def _token_lengths(pairs: list[dict], model: str | None) -> tuple[list[int], str]:
    """Prompt + longer answer per training row, in tokens of the target tokenizer (chat template applied)."""
    if not pairs:
        return [], "no training rows"
    try:
        from transformers import AutoTokenizer

        from dsforge import models

        tok = AutoTokenizer.from_pretrained(models.resolve(model, prepare_missing=False))
    except Exception as err:  # noqa: BLE001 - the report still renders, with a note
        return [], f"tokenizer unavailable ({type(err).__name__})"
    out = []
    for row in pairs:
        msgs, answers = _row_parts(row)
        answers = [a for a in answers if a] or [row.get("output", "")]
        best = max(len(tok(tok.apply_chat_template(msgs + [{"role": "assistant", "content": a}], tokenize=False),
                               add_special_tokens=False)["input_ids"]) for a in answers)
        out.append(best)
    return out, f"tokenizer of {model}, chat template applied"


def _row_parts(row: dict) -> tuple[list[dict], list]:
    """A written pairs row (sharegpt or alpaca) -> (OpenAI-role prompt messages, [chosen, rejected])."""
    msgs = []
    if row.get("system"):
        msgs.append({"role": "system", "content": row["system"]})
    for m in row.get("conversations", []):
        msgs.append({"role": "user" if m["from"] == "human" else "assistant", "content": m["value"]})
    if not msgs and "instruction" in row:
        msgs.append({"role": "user", "content": row["instruction"]})
    return msgs, [row[k]["value"] if isinstance(row.get(k), dict) else row.get(k) for k in ("chosen", "rejected")]


def _pair_panels(data: dict) -> list[tuple[str, str, str]]:
    """Degenerate-pair counts and chosen vs rejected token lengths under the template, with cutoff_len."""
    from dsforge import pairchecks as pc

    rows = [(m, c, r) for m, (c, r) in map(_row_parts, data["pairs"]) if isinstance(c, str) and isinstance(r, str)]
    if not rows:
        return []
    cutoff = data["cutoff_len"]
    stats = pc.PairStats()
    counts = {}
    for _, c, r in rows:
        stats.add(c, r)
    figs = []
    try:
        from dsforge import models

        tc = pc.TruncationCheck(str(models.resolve(data.get("model"), prepare_missing=False)), cutoff, "auto")
        for m, c, r in rows:
            tc.check(m, c, r)
    except Exception as err:  # noqa: BLE001 - the report still renders, with a note
        tc, note = None, f"tokenizer unavailable ({type(err).__name__}): token-level checks skipped"
    if tc is not None:
        note = f"template {tc.template}, cutoff_len {cutoff}"
        cl, rl = tc.lens["chosen"], tc.lens["rejected"]
        over = sum(max(a, b) > cutoff for a, b in zip(cl, rl))
        figs.append(("Chosen vs rejected: tokens under the template",
                     svg_hist({"chosen": cl, "rejected": rl}, "Prompt + answer tokens, chosen vs rejected",
                              f"tokens ({note})", vline=cutoff, vlabel=f"cutoff_len {cutoff}"),
                     f"{over} of {len(rows)} pairs exceed cutoff_len {cutoff}; LLaMA-Factory cuts both answers to the "
                     f"longer one's budget. Median chosen {statistics.median(cl):.0f}, rejected "
                     f"{statistics.median(rl):.0f} tokens."))
        counts.update({f"file: {k[5:]}": v for k, v in tc.counts.items()})
    counts.update({f"file: {k[5:]}": v for k, v in stats.counts.items()})
    dropped = (data.get("pairs_summary") or {}).get("dropped", {})
    counts.update({f"dropped: {k[5:]}": v for k, v in dropped.items() if k.startswith("pair_")})
    lb = stats.result()["length_bias"]
    sim = stats.result()["similarity"]["quantiles"]
    figs.append(("Degenerate pairs", svg_bars(counts or {"none found": 0}, "Degenerate pairs by reason"),
                 f"{len(rows)} pairs. Format asymmetry and near-identical answers (similarity >= "
                 f"{stats.max_similarity}) counted on the written file ('file:'); 'dropped:' counts candidate pairs "
                 f"dsforge pairs rejected before writing (it then tried the next candidate). Chosen is longer in {lb['chosen_longer_rate']:.0%} of pairs (median length ratio "
                 f"{lb['median_length_ratio']}). Similarity quantiles: "
                 + ", ".join(f"p{q} {v}" for q, v in sim.items()) + "."))
    return figs


def _quality_sidecars(p: Path, manifest: dict | None) -> dict:
    """Near-dup and contamination summaries next to the target: FILE.dedup.json / FILE.contamination.json
    (written by dsforge dedup / contamination --drop), in a run's stage folders, or in convert's summary."""
    found: dict = {"dedup": [], "contamination": []}
    files = [Path(str(p) + ".dedup.json"), Path(str(p) + ".contamination.json")] if not p.is_dir() else \
        sorted(x for d in p.iterdir() if d.is_dir() and d.name[:2].isdigit()
               for x in d.glob("*.json") if x.name.endswith((".dedup.json", ".contamination.json")))
    for f in files:
        if f.is_file():
            s = _json(f)
            if s.get("kind") in found:
                found[s["kind"]].append(s)
    conv = (((manifest or {}).get("stages") or {}).get("convert") or {}).get("summary") or {}
    if conv.get("near_dedup"):
        found["dedup"].append(conv["near_dedup"])
    if conv.get("contamination") or (conv.get("skipped") or {}).get("contaminated"):
        found["contamination"].append({"contaminated": conv["skipped"].get("contaminated", 0),
                                       "rows": conv.get("read"), "hits": conv.get("contamination", []),
                                       "by_method": {}})
    return found


def _quality_panels(data: dict) -> list[tuple[str, str, str]]:
    """Near-duplicate cluster histogram and contamination counts (dsforge.dedup, dsforge.contamination)."""
    figs = []
    q = data.get("quality") or {}
    for d in q.get("dedup", []):
        hist = {f"size {k}": v for k, v in d.get("histogram", {}).items()}
        ex = "; ".join(f"kept {e['kept']}, dropped {', '.join(e['dropped'][:2])}" for e in d.get("examples", [])[:3])
        figs.append(("Near-duplicate clusters", svg_bars(hist, "Near-duplicate clusters by size"),
                     f"{d.get('dropped')} of {d.get('rows')} rows dropped in {d.get('clusters')} clusters "
                     f"(MinHash, Jaccard >= {(d.get('options') or {}).get('threshold')}, "
                     f"{(d.get('options') or {}).get('shingle')} shingles, on {(d.get('options') or {}).get('on')}). "
                     + (f"Examples: {ex}." if ex else "")))
    for c in q.get("contamination", []):
        bars = {f"by {k}": v for k, v in (c.get("by_method") or {}).items()} or {"contaminated": c.get("contaminated", 0)}
        ex = "; ".join(f"{h['train']} <- {h['eval']} ({h['method']})" for h in c.get("hits", [])[:3])
        figs.append(("Eval contamination", svg_bars(bars, "Training rows overlapping eval sets"),
                     f"{c.get('contaminated')} of {c.get('rows')} training rows overlap the eval set(s) "
                     f"({(c.get('options') or {}).get('ngram', 13)}-gram or near-duplicate). " + (f"Examples: {ex}." if ex else "")))
    return figs


def collect(target: str) -> dict:
    """Everything the report shows, from a run directory or one candidates / judged / pairs file: a dict
    with title, stages {kind: done marker}, candidates, judged, pairs, sidecar (rows, read through
    dsforge.candidates), judge_summary, pairs_summary, drops {stage: {reason: count}}, train_log,
    cutoff_len, model, manifest, review_stats, quality. UsageError for a folder that is no run,
    InputError at FILE:LINE for a damaged file or one that is none of the three."""
    data: dict = {"title": target, "stages": {}, "candidates": [], "judged": [], "pairs": [], "sidecar": [],
                  "train_log": [], "cutoff_len": 2048, "model": None, "drops": {}, "judge_summary": None}
    p = Path(target)
    if p.is_dir():
        if not (p / "manifest.json").exists() and not any(x.is_dir() and x.name[:2].isdigit()
                                                            for x in _stage_root(p).iterdir()):
            raise UsageError(f"{target}: not a dsforge run directory (no manifest.json, no stage folders)",
                             "pass the run_dir of `dsforge run`, or a candidates / judged / pairs .jsonl file")
        man = _json(p / "manifest.json") if (p / "manifest.json").exists() else {}
        data["manifest"] = man
        data["title"] = f"dsforge run: {man.get('name', p.name)}"
        data["model"] = (man.get("models") or {}).get("sampler")
        for d in sorted(x for x in _stage_root(p, man).iterdir() if x.is_dir() and x.name[:2].isdigit()):
            kind = d.name.split("-", 1)[1]
            marker = d / ".dsforge-done.json"
            data["stages"][kind] = _json(marker) if marker.exists() else {"status": "not finished"}
            if kind == "sample":
                data["candidates"] = _jsonl(d / "candidates.jsonl")
            elif kind == "judge":
                data["judged"] = _jsonl(d / "judged.jsonl")
                if (d / "judged.jsonl.summary.json").exists():
                    data["judge_summary"] = _json(d / "judged.jsonl.summary.json")
            elif kind == "pairs":
                data["pairs"] = _jsonl(d / "pairs.jsonl")
                data["sidecar"] = _jsonl(d / "pairs.jsonl.sidecar.jsonl")
                if (d / "pairs.jsonl.summary.json").exists():
                    data["pairs_summary"] = _json(d / "pairs.jsonl.summary.json")
                    data["drops"]["pairs"] = data["pairs_summary"].get("dropped", {})
            elif kind == "train":
                state = d / "trainer_state.json"
                if state.exists():
                    data["train_log"] = [h for h in _json(state).get("log_history", []) if "loss" in h]
                cfg = d / "dsforge_train.yaml"
                if cfg.exists():
                    import yaml

                    data["cutoff_len"] = yaml.safe_load(cfg.read_text()).get("cutoff_len", 2048)
        stages = man.get("stages", {})
        if "convert" in stages:
            data["drops"]["convert"] = (stages["convert"]["summary"] or {}).get("skipped", {})
        if "sample" in stages:
            s = stages["sample"]["summary"]
            data["drops"]["sample"] = {"duplicates collapsed": s.get("duplicates_collapsed", 0),
                                       "truncated": s.get("truncated", 0), "failed requests": s.get("failed_requests", 0)}
        if data["judge_summary"]:
            data["drops"]["judge"] = {**{f"parse fail (final): {k}": v for k, v in
                                         data["judge_summary"].get("failures_final", {}).items()},
                                      "truncated not judged": data["judge_summary"].get("not_judged_truncated", 0)}
    else:
        rows = _jsonl(str(p))
        if not rows:
            raise InputError("no rows to report on", "report reads a non-empty candidates / judged / pairs file",
                             path=str(p))
        data["title"] = f"dsforge report: {p.name}"
        if rows and "judge" in rows[0]:
            data["judged"] = data["candidates"] = rows
        elif rows and ("chosen" in rows[0]):
            data["pairs"] = rows
            data["sidecar"] = _jsonl(str(p) + ".sidecar.jsonl")
            if Path(str(p) + ".summary.json").exists():
                data["pairs_summary"] = _json(Path(str(p) + ".summary.json"))
        elif "text" in rows[0]:
            data["candidates"] = rows
        else:   # training data or any other JSON Lines: a page of empty charts would look like a result
            raise InputError(f"not a candidates / judged / pairs file (line 1 has none of 'text', 'judge', 'chosen'; "
                             f"its keys: {', '.join(list(rows[0])[:6]) or 'none'})",
                             "report reads dsforge's sample / judge / pairs outputs or a run directory; "
                             "check training data with dsforge validate", path=str(p), line=1)
        data["model"] = rows[0].get("model") if rows and "model" in rows[0] else None
    data["review_stats"] = _review_stats(p)
    data["quality"] = _quality_sidecars(p, data.get("manifest"))
    return data


def _stage_root(p: Path, man: dict | None = None) -> Path:
    """Where a run's stage folders are: the run itself, or with rounds its last round-T folder that has any,
    T no later than the manifest's last round (a folder of an earlier run with more rounds is not this run's)."""
    last = max((int(k) for k in ((man or {}).get("rounds") or {}) if k.isdigit()), default=None)
    rounds = sorted((x for x in p.glob("round-*") if x.is_dir() and x.name[6:].isdigit()
                     and (last is None or int(x.name[6:]) <= last)), key=lambda x: int(x.name[6:]))
    rounds = [x for x in rounds if any(y.is_dir() and y.name[:2].isdigit() for y in x.iterdir())]
    return rounds[-1] if rounds else p


def _review_stats(p: Path) -> dict | None:
    """`dsforge review --stats` over the human-reviewed files of a run (reviewed*.jsonl) or the file
    itself, with the run's judged.jsonl as the LLM judge; None when there are no human labels."""
    if p.is_dir():
        human = sorted(str(x) for x in p.rglob("reviewed*.jsonl") if not x.name.endswith(".events.jsonl"))
        judged = sorted(str(x) for x in p.rglob("judged.jsonl"))
    else:
        human, judged = [str(p)], []
    if not human:
        return None
    from dsforge.errors import DsforgeError
    from dsforge.review import stats

    try:
        return stats.compute(human + judged)
    except DsforgeError:
        return None   # not a reviewed file: nothing to show


def _verifier_panels(judged: list[dict]) -> list[tuple[str, str, str]]:
    """Verifier-judged candidates: lenient (correct) and strict (correct and format_ok) accuracy per temperature."""
    checked = defaultdict(list)
    for r in judged:
        j = r.get("judge") or {}
        if j.get("kind") == "verifier" and j.get("correct") is not None:
            checked[f"T={r.get('temperature')}"].append(j)
    if not checked:
        return []
    bars, parts = {}, []
    for t, js in sorted(checked.items()):
        lenient = sum(bool(j["correct"]) for j in js) / len(js)
        strict = sum(bool(j["correct"] and j.get("format_ok")) for j in js) / len(js)
        bars[f"{t} lenient %"], bars[f"{t} strict %"] = round(100 * lenient, 1), round(100 * strict, 1)
        parts.append(f"{t}: {lenient:.0%} lenient, {strict:.0%} strict of {len(js)}")
    no_answer = sum(1 for js in checked.values() for j in js if j.get("answer") is None)
    return [("Verifier accuracy", svg_bars(bars, "Verifier accuracy per temperature (%)"),
             "; ".join(parts) + f". Lenient: the answer is right wherever it stands; strict: also in the asked "
             f"form. {no_answer} replies had no answer to extract.")]


def render(data: dict) -> str:
    """The HTML page (a str) for `collect`'s data: figures as (title, inline SVG, caption), rendered through
    the package template data/templates/report.html.j2 with autoescape (only the SVG is marked safe)."""
    figs = []
    lengths, note = _token_lengths(data["pairs"], data.get("model")) if data["pairs"] else ([], "")
    cutoff = data["cutoff_len"]
    if lengths:
        over = sum(v > cutoff for v in lengths)
        figs.append(("Training rows: tokens (prompt + longer answer)",
                     svg_hist({"rows": lengths}, "Token length of training rows", f"tokens ({note})",
                              vline=cutoff, vlabel=f"cutoff_len {cutoff}"),
                     f"{over} of {len(lengths)} rows ({over / len(lengths):.1%}) exceed cutoff_len {cutoff} and would "
                     f"be truncated. Median {statistics.median(lengths):.0f}, max {max(lengths)} tokens."))
    elif data["candidates"]:
        cands = data["candidates"]
        toks = [c["completion_tokens"] for c in cands if c.get("completion_tokens") is not None]
        truncated = sum(bool(c.get("truncated")) for c in cands)
        if len(toks) == len(cands):
            figs.append(("Candidate answer lengths", svg_hist({"answers": toks}, "Answer length (tokens)", "tokens"),
                         f"{len(cands)} candidates; {truncated} hit max_tokens."))
        else:   # the engine did not report token counts for some: show characters for all, and say so
            chars = [len(c.get("text") or "") for c in cands]
            figs.append(("Candidate answer lengths", svg_hist({"answers": chars}, "Answer length (characters)",
                                                               "characters"),
                         f"{len(cands)} candidates; {truncated} hit max_tokens; completion token counts unknown for "
                         f"{len(cands) - len(toks)} (the engine did not report them), so lengths are in characters."))
    figs.extend(_pair_panels(data))
    figs.extend(_quality_panels(data))
    figs.extend(_verifier_panels(data["judged"]))
    if data["judged"]:
        by_t = defaultdict(list)
        for r in data["judged"]:
            if r["judge"].get("score") is not None:
                by_t[f"T={r.get('temperature')}"].append(r["judge"]["score"])
        n_scored = sum(len(v) for v in by_t.values())
        means = ", ".join(f"{k}: {statistics.fmean(v):.2f}" for k, v in sorted(by_t.items()))
        figs.append(("Judge scores per temperature",
                     svg_hist(dict(sorted(by_t.items())), "Judge score histogram per temperature", "score",
                              discrete=True),
                     f"{n_scored} of {len(data['judged'])} candidates scored; mean {means}."))
    if data["sidecar"]:
        cl = [s["chosen"]["len"] for s in data["sidecar"]]
        rl = [s["rejected"]["len"] for s in data["sidecar"]]
        longer = sum(c > r for c, r in zip(cl, rl))
        figs.append(("Chosen vs rejected length", svg_scatter(rl, cl, "Chosen vs rejected length (characters)",
                                                              "rejected length", "chosen length"),
                     f"Chosen is longer in {longer} of {len(cl)} pairs ({longer / len(cl):.0%}); points above the "
                     f"diagonal favour length, which DPO would learn."))
        figs.append(("Margins", svg_hist({"margin": [s["margin"] for s in data["sidecar"]]}, "Score margin of pairs",
                                         "score(chosen) - score(rejected)", bins=10),
                     f"{len(data['sidecar'])} pairs; median margin "
                     f"{statistics.median([s['margin'] for s in data['sidecar']]):g}."))
    drops = {f"{stage}: {k}": v for stage, d in data["drops"].items() for k, v in (d or {}).items() if v}
    if data["drops"]:
        figs.append(("Drop reasons per stage", svg_bars(drops, "Rows / candidates dropped, by stage and reason"),
                     "Everything a stage left out, and why."))
    js = data.get("judge_summary")
    if js:
        first = js.get("parse_failures_first_try", {})
        final = js.get("failures_final", {})
        bars = {**{f"first try: {k}": v for k, v in first.items()}, **{f"final: {k}": v for k, v in final.items()}}
        extra = []
        if js.get("swap_consistency") is not None:
            extra.append(f"swap-consistency {js['swap_consistency']:.1%} over {js['comparisons']} comparisons")
            if js.get("first_slot_rate") is not None:
                extra.append(f"first-slot pick rate {js['first_slot_rate']:.1%} (50% = no position bias)")
        if js.get("audit"):
            a = js["audit"]
            extra.append("audit: " + ", ".join(f"{k} {v['rate']:.0%} ({v['passed']}/{v['total']})"
                                              for k, v in a.items() if isinstance(v, dict)))
        extra.append(f"Spearman(score, length) = {js.get('spearman_score_length')}")
        figs.append(("Judge parse failures", svg_bars(bars, "Judge replies that could not be parsed"),
                     "; ".join(extra)))
    if data["train_log"]:
        figs.append(("Training loss", svg_line([h["step"] for h in data["train_log"]],
                                               [h["loss"] for h in data["train_log"]], "Training loss", "step", "loss"),
                     f"final logged loss {data['train_log'][-1]['loss']:.4f} at step {data['train_log'][-1]['step']}"))
    man = data.get("manifest") or {}
    keys = {"convert": "rows_out", "sample": "candidates_written", "judge": "scored", "pairs": "pairs",
            "register": "would_train", "train": "train_loss", "tasks": "rows", "export": "model", "eval": "metric"}
    stage_rows = [{"kind": kind, "seconds": st.get("seconds"), "key": keys.get(kind),
                   "value": (st.get("summary") or {}).get(keys.get(kind)), "fingerprint": st.get("fingerprint")}
                  for kind, st in (man.get("stages") or {}).items()]
    from dsforge.report_rounds import accuracy_figure, round_rows

    rounds = round_rows(man)
    if accuracy_figure(rounds):
        figs.insert(0, accuracy_figure(rounds))
    review = data.get("review_stats")
    if review:
        from dsforge.review.stats import format_stats

        review = format_stats(review).splitlines()
    return _template().render(title=data["title"], manifest=man, stage_rows=stage_rows, review_lines=review, rounds=rounds,
                              figs=figs, models_json=json.dumps(man.get("models", {})),
                              versions_json=json.dumps(man.get("versions", {})))


def _template():
    """The page template shipped in the package (dsforge/data/templates/report.html.j2), autoescaped."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("dsforge", "data/templates"),
                             autoescape=True, keep_trailing_newline=True)
    return env.get_template("report.html.j2")


def report_inputs(target: str) -> list[str]:
    """The files a report of `target` reads: the file itself, or a run's manifest and stage files."""
    p = Path(target)
    if not p.is_dir():
        return [target]
    files = [str(p / "manifest.json")]
    for d in (x for x in p.rglob("*") if x.is_dir() and x.name[:2].isdigit()):
        files += [os.path.join(root, n) for root, _, names in os.walk(d) for n in names]
    return files


def write_report(target: str, out: str, *, model: str | None = None, cutoff_len: int | None = None) -> str:
    """Render the report of `target` (a run directory or a data file) into `out`, atomically.

    `model` (a model folder or alias) and `cutoff_len` override what the run recorded, for token counts.
    `out` may not be one of the files the report reads, and an existing `out` is replaced only when
    it is an earlier HTML report (UsageError otherwise). Returns `out`.
    """
    if not os.path.exists(target):
        raise UsageError(f"{target}: no such run directory or file")
    guard_outputs([("TARGET", f) for f in report_inputs(target)], {"-o": out})
    guard_kind(out, "report")
    data = collect(target)
    if model:
        data["model"] = model
    if cutoff_len:
        data["cutoff_len"] = cutoff_len
    page = render(data)
    with atomic_write(out) as f:
        f.write(page)
    return out
