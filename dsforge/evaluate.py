"""`dsforge eval`: how often a model (optionally with a LoRA adapter) answers checkable prompts right.

One pass over a prompts file (rows of `dsforge tasks make`: id, instruction, reference, verifier,
format) with greedy decoding gives pass@1 twice: lenient (the verifier's `correct`: the answer is
right wherever it stands) and strict (`correct` and `format_ok`: the reply also has the asked
form), each with a 95% Wilson interval. Optionally k samples per prompt at temperature T give the
unbiased pass@k. Against an earlier eval of the same prompts (`baseline`, matched by item id) the
paired accuracy difference gets a paired bootstrap interval and McNemar's exact test, item by item,
never two unpaired means. Against an earlier eval of open-ended prompts (`against`), the pairwise
judge (dsforge.judge, both orders) gives win/tie/loss and a win rate (dsforge.evalwin).

Engines are dsforge's own (dsforge.engines): vllm offline (a LoRA adapter through vLLM's LoRA
support) or any OpenAI-compatible server; verifiers come from dsforge.verify.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from dsforge import __version__, logs
from dsforge.engines import Request, SamplingParams, derive_seed, get_engine
from dsforge.errors import InputError, UsageError, redact
from dsforge.evalstats import mcnemar, paired_difference, pass_at_k, pct, wilson
from dsforge.formats.rows import ConversionError
from dsforge.io import atomic_write, expand_inputs, guard_outputs, iter_records
from dsforge.prompts import prompt_messages
from dsforge.stages import EvalConfig   # the config model lives with the other stages' (re-exported here)
from dsforge.records import prompt_id

EVAL_KIND = "dsforge.eval"


# ---------------------------------------------------------------- inputs


def read_items(path: str, cfg: EvalConfig) -> list[dict]:
    """Prompt rows as eval items: [{"id", "prompt_id", "messages", "reference", "verifier", "row"}].

    `id` is the row's "id" (else its prompt_id); an id used twice is an InputError (file:line).
    A row that is not a prompt (no instruction/messages/prompt/question) is an InputError.
    """
    items, seen = [], {}
    for file in expand_inputs([path]):
        for line, rec in iter_records(file):
            try:
                msgs = prompt_messages(rec, system=cfg.system)
            except ConversionError as err:
                raise InputError(f"not a prompt row: {err}", err.hint or "rows carry 'instruction' (or messages) and "
                                 "'reference', as `dsforge tasks make` writes them", path=file, line=line) from None
            pid = prompt_id(msgs)
            iid = str(rec.get("id", pid))
            if iid in seen:
                raise InputError(f"id {iid!r} is used again (first at line {seen[iid]})",
                                 "every item needs its own id: eval pairs results by id", path=file, line=line)
            seen[iid] = line
            items.append({"id": iid, "prompt_id": pid, "messages": msgs, "reference": rec.get(cfg.reference_field),
                          "verifier": rec.get("verifier"), "row": rec, "where": f"{file}:{line}"})
    if not items:
        raise InputError("no prompt rows", "give a JSONL file of prompts (dsforge tasks make ... -o prompts.jsonl)",
                         path=path)
    return items


def load_eval(path: str, label: str = "--baseline") -> dict:
    """An earlier `dsforge eval` output (JSON with kind 'dsforge.eval'); UsageError when it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except ValueError as err:
        raise UsageError(f"{label} {path} is not JSON ({err})", "pass the eval.json an earlier `dsforge eval -o` wrote")
    if not isinstance(doc, dict) or doc.get("kind") != EVAL_KIND or not isinstance(doc.get("items"), list):
        raise UsageError(f"{label} {path} is not an output of dsforge eval",
                         "pass the eval.json an earlier `dsforge eval -o` wrote")
    return doc


SCORING_SETTINGS = ("verifier", "reference_field", "system", "max_tokens")


def settings_differ(other: dict, cfg: EvalConfig) -> str | None:
    """'max_tokens 256 (now 512); ...' for the scoring settings (SCORING_SETTINGS) in which an earlier
    eval doc differs from cfg, else None: a paired difference across them is not the model's alone."""
    old = other.get("config") or {}
    parts = [f"{k} {old.get(k)!r} (now {getattr(cfg, k)!r})" for k in SCORING_SETTINGS
             if k in old and old.get(k) != getattr(cfg, k)]
    return "; ".join(parts) or None


def check_same_items(items: list[dict], other: dict, label: str, path: str) -> None:
    """Refuse (UsageError) unless `other` holds exactly these item ids with the same prompts."""
    mine = {it["id"]: it["prompt_id"] for it in items}
    theirs = {it["id"]: it.get("prompt_id") for it in other["items"]}
    if mine == theirs:
        return
    missing, extra = sorted(set(mine) - set(theirs)), sorted(set(theirs) - set(mine))
    changed = sorted(i for i in set(mine) & set(theirs) if mine[i] != theirs[i])
    parts = [f"{len(missing)} ids not in it (e.g. {missing[0]})" if missing else "",
             f"{len(extra)} ids only in it (e.g. {extra[0]})" if extra else "",
             f"{len(changed)} ids with another prompt (e.g. {changed[0]})" if changed else ""]
    raise UsageError(f"{label} {path} was run on other prompts: " + "; ".join(p for p in parts if p),
                     "compare evals of the same prompts file (a frozen held-out set); rerun the baseline on it")


def _verifiers(items: list[dict], cfg: EvalConfig) -> dict:
    """spec -> Verifier for every spec the items need; UsageError naming the first row without one."""
    specs = {}
    for it in items:
        spec = cfg.verifier or it["verifier"]
        if not spec:
            raise UsageError(f"{it['where']}: no verifier for item {it['id']!r}",
                             "pass --verifier KIND (exact, numeric, math, regex:PATTERN, python:module:function) "
                             "or give rows a 'verifier' field")
        specs[it["id"]] = spec
    from dsforge.verify import check_format, get_verifier

    verifiers = {}
    for it in items:   # a row's own bad spec is named at its FILE:LINE
        spec = specs[it["id"]]
        if spec not in verifiers:
            try:
                verifiers[spec] = get_verifier(spec)
            except UsageError as err:
                raise (err if cfg.verifier else UsageError(f"{it['where']}: {err.message}", err.hint)) from None
    for it in items:   # before any generation: a missing reference or bad format rule would only show after the model ran
        if it["reference"] is None and getattr(verifiers[specs[it["id"]]], "needs_reference", True):
            raise InputError(f"item {it['id']!r} has no '{cfg.reference_field}' and verifier {specs[it['id']]!r} needs one",
                             "give each prompt a reference answer (dsforge tasks make writes one)", path=it["where"])
        rule = (it["row"] or {}).get("format")
        if rule:
            try:
                check_format(rule, "", reference=it["reference"])
            except InputError as err:
                raise InputError(err.message, err.hint, path=it["where"]) from None
    return {"by_item": specs, "verifiers": verifiers}


# ---------------------------------------------------------------- generation


def engine_for(cfg: EvalConfig, engine_options: dict | None = None):
    """The engine (not opened) for cfg: vllm with the adapter as a LoRA (max_lora_rank from its
    adapter_config.json), or openai. UsageError for an adapter on an OpenAI server."""
    options = {**cfg.engine_options, **(engine_options or {})}
    if cfg.engine == "openai" and cfg.base_url:
        options.setdefault("base_url", cfg.base_url)
    model = cfg.model
    if cfg.engine == "vllm":
        from dsforge import models

        model = models.resolve(model)
        if cfg.adapter:
            options.setdefault("lora_path", cfg.adapter)
            options.setdefault("max_lora_rank", adapter_rank(cfg.adapter))
    elif cfg.adapter:
        raise UsageError("--adapter works with --engine vllm only",
                         "serve the adapter (vllm serve MODEL --enable-lora --lora-modules NAME=ADAPTER) and pass -m NAME")
    return get_engine(cfg.engine, model, options)


def adapter_rank(path: str) -> int:
    """The LoRA rank `r` of a PEFT adapter folder (adapter_config.json); UsageError when it is not one."""
    conf = os.path.join(path, "adapter_config.json")
    try:
        with open(conf, encoding="utf-8") as f:
            r = json.load(f).get("r")
    except FileNotFoundError:
        raise UsageError(f"--adapter {path} has no adapter_config.json", "pass the folder a LoRA training wrote "
                         "(LLaMA-Factory's output_dir)") from None
    except ValueError as err:
        raise InputError(f"not JSON: {err}", path=conf) from None
    if not isinstance(r, int) or r < 1:
        raise InputError(f"adapter_config.json has no LoRA rank 'r' ({r!r})", path=conf)
    return r


def generate(engine, jobs: list[tuple], progress: bool = True) -> dict:
    """All jobs in one engine call (vLLM batches them): jobs [(tag, messages, SamplingParams)] ->
    {tag: [Completion]}. Raises DsforgeError (exit 1) when a request failed for good (after the
    engine's retries), naming the first."""
    from dsforge.errors import DsforgeError

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="eval", unit=" req", file=logs.console(), disable=None, mininterval=1.0)
    out, failed = {}, []
    for res in engine.generate([Request(messages=m, params=p, tag=t) for t, m, p in jobs]):
        if res.error:
            failed.append((res.request.tag, res.error))
        out[res.request.tag] = res.completions
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if failed:
        raise DsforgeError(f"{len(failed)} of {len(jobs)} requests failed (e.g. {failed[0][0][0]}: "
                           f"{failed[0][1][:200]})", "check the server and rerun")
    return out


# ---------------------------------------------------------------- scoring


def _verdict(verifier, reply: str, item: dict) -> dict:
    v = verifier.check(reply, item["reference"], row=item["row"])
    return {"answer": v.answer, "correct": bool(v.correct), "format_ok": bool(v.format_ok), "score": v.score}


def accuracy(flags: list[bool], confidence: float = 0.95) -> dict:
    """{"k", "n", "acc", "ci_low", "ci_high"}: a proportion with its Wilson interval (fractions)."""
    k, n = sum(bool(f) for f in flags), len(flags)
    lo, hi = wilson(k, n, confidence)
    return {"k": k, "n": n, "acc": k / n if n else None, "ci_low": lo, "ci_high": hi}


def compare(items: list[dict], base_items: list[dict], cfg: EvalConfig) -> dict:
    """Paired comparison with a baseline, by item id, for "lenient" and "strict":
    {metric: {"diff", "ci_low", "ci_high", "n", ..., "mcnemar": {"b", "c", "both", "neither", "p"}}}."""
    base = {it["id"]: it for it in base_items}
    out = {}
    for metric, flag in (("lenient", lambda r: r["correct"]), ("strict", lambda r: r["correct"] and r["format_ok"])):
        new = [bool(flag(it)) for it in items]
        old = [bool(flag(base[it["id"]])) for it in items]
        d = paired_difference([float(x) for x in new], [float(x) for x in old], confidence=cfg.confidence,
                              n_resamples=cfg.n_resamples, seed=cfg.seed)
        out[metric] = {**d, "mcnemar": mcnemar(new, old)}
    return out


def evaluate(cfg: EvalConfig, prompts: str, out: str | None = None, *, baseline: str | None = None,
             against: str | None = None, engine=None, engine_options: dict | None = None,
             judge_engine=None, judge_options: dict | None = None, log=None, progress: bool = True,
             keep_other_evals: bool = False) -> dict:
    """Evaluate cfg.model (+adapter) on the prompts file; write {"kind", "version", "config", "summary",
    "items"} to `out` (JSON, atomically) and return the summary.

    Summary keys: items, pass1 {"lenient", "strict"} (each {"k", "n", "acc", "ci_low", "ci_high"},
    fractions), pass_k {"k", "samples", "temperature", "pass1", "pass_k"} when cfg.k,
    reply_tokens_mean, reply_chars_mean, truncated, seconds, model, adapter, engine; with `baseline`
    also "baseline" {"path", "lenient", "strict", "settings_differ"} (see compare(); diffs are fractions;
    settings_differ: settings_differ()'s text or None, also logged as a note); with
    `against` "winrate" (see dsforge.evalwin.win_rate). Items keep id, prompt_id, reply, answer,
    correct, format_ok, score, reply_tokens, reply_chars, finish_reason (+ samples, samples_correct).

    Errors: UsageError for a baseline/against of other prompts, a missing verifier, an output that
    is an input or not an earlier eval output; InputError for bad prompt rows. Nothing is written
    on error. `engine` may be an opened engine to reuse (its model/adapter must be cfg's).
    keep_other_evals (the CLI's choice): an existing `out` from another model, adapter or prompts file
    is refused (UsageError) instead of replaced; the runner reruns a changed stage onto its own output.
    """
    log = log or logs.say
    t0 = time.time()
    inputs = {"PROMPTS": prompts, "--baseline": baseline, "--against": against}
    if out:
        guard_outputs(inputs, {"-o": out})
        _guard_previous(out, cfg, prompts, keep_other_evals)
    items = read_items(prompts, cfg)
    base = against_doc = None
    if baseline:
        base = load_eval(baseline, "--baseline")
        check_same_items(items, base, "--baseline", baseline)
        differ = settings_differ(base, cfg)
        if differ:   # a paired difference across other settings measures the settings too: say so
            log(f"note: --baseline {baseline} was run with other settings: {differ}")
    if against:
        against_doc = load_eval(against, "--against")
        check_same_items(items, against_doc, "--against", against)
        if not cfg.judge_model:
            raise UsageError("--against needs --judge-model (the pairwise judge)", "e.g. --judge-model judge --base-url URL")
    checks = _verifiers(items, cfg) if not against or cfg.verifier or all(it["verifier"] for it in items) else None
    own = engine is None
    engine = engine or engine_for(cfg, engine_options)
    served = getattr(engine.options, "lora_path", None)
    if not own and (served and os.path.abspath(served)) != (cfg.adapter and os.path.abspath(cfg.adapter)):
        raise UsageError(f"the engine handed in serves adapter {served!r}, the config asks for {cfg.adapter!r}",
                         "open an engine for the adapter (VLLMEngine(..., llm=shared.llm) shares one vLLM)")
    try:
        if own:
            log(f"starting the {cfg.engine} engine for {cfg.model}" + (f" + {cfg.adapter}" if cfg.adapter else "") + " ...")
            # the engine's own output goes next to the output (-v: the console); without -o, to the console
            with logs.log_file(out + ".log") if out else contextlib.nullcontext():
                engine.open()
        greedy = SamplingParams(temperature=0.0, max_tokens=cfg.max_tokens, n=1, seed=cfg.seed)
        jobs = [((it["id"], "greedy"), it["messages"], greedy) for it in items]
        if cfg.k:   # the pass@k samples go into the same engine call (one batch, shared prompt prefixes)
            n = max(cfg.samples or cfg.k, cfg.k)
            jobs += [((it["id"], "sampled"), it["messages"], SamplingParams(
                temperature=cfg.temperature, max_tokens=cfg.max_tokens, n=n,
                seed=derive_seed(cfg.seed, "eval", it["id"]))) for it in items]
        got = generate(engine, jobs, progress=progress)
    finally:
        if own:
            engine.close()
    rows = []
    for it in items:
        comp = got[(it["id"], "greedy")][0]
        row = {"id": it["id"], "prompt_id": it["prompt_id"], "reply": comp.text, "reference": it["reference"],
               "reply_tokens": comp.completion_tokens, "reply_chars": len(comp.text), "finish_reason": comp.finish_reason}
        if checks:
            ver = checks["verifiers"][checks["by_item"][it["id"]]]
            row.update(_verdict(ver, comp.text, it), verifier=checks["by_item"][it["id"]])
            if cfg.k:
                ok = [_verdict(ver, c.text, it)["correct"] for c in got[(it["id"], "sampled")]]
                row.update(samples=len(ok), samples_correct=sum(ok))
        rows.append(row)
    summary = _summary(rows, cfg, checks is not None)
    if base is not None:
        summary["baseline"] = {"path": baseline, **compare(rows, base["items"], cfg),
                               "settings_differ": settings_differ(base, cfg)}
    if against_doc is not None:
        from dsforge.evalwin import win_rate

        summary["winrate"] = win_rate(items, rows, against_doc["items"], cfg, against=against, engine=judge_engine,
                                      engine_options=judge_options, log=log)
    summary["seconds"] = round(time.time() - t0, 2)
    if out:
        doc = {"kind": EVAL_KIND, "version": __version__, "prompts": os.path.abspath(prompts),
               "config": redact(cfg.model_dump()), "summary": summary, "items": rows}
        with atomic_write(out) as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
    return summary


def _guard_previous(out: str, cfg: EvalConfig, prompts: str, keep_other_evals: bool) -> None:
    """Refuse to replace an existing non-empty file that is not an earlier eval output, or, with
    keep_other_evals, the eval of another model, adapter or prompts file (e.g. a base eval)."""
    if not os.path.isfile(out) or os.path.getsize(out) == 0:
        return
    try:
        doc = load_eval(out, "-o")
    except (UsageError, OSError):
        raise UsageError(f"-o {out} already exists and is not an eval output; not replacing it",
                         f"choose another -o, or delete {out} first if it may go") from None
    if not keep_other_evals:
        return
    old = doc.get("config") or {}
    was = {"model": old.get("model"), "adapter": old.get("adapter"), "prompts": doc.get("prompts")}
    now = {"model": cfg.model, "adapter": cfg.adapter, "prompts": os.path.abspath(prompts)}
    differ = [f"{k} {was[k]!r} (now {now[k]!r})" for k in now if was[k] != now[k]]
    if differ:
        raise UsageError(f"-o {out} is an earlier eval of another run ({'; '.join(differ)}); not replacing it",
                         f"choose another -o, or delete {out} first if it may go")


def _summary(rows: list[dict], cfg: EvalConfig, verified: bool) -> dict:
    toks = [r["reply_tokens"] for r in rows if r["reply_tokens"] is not None]
    s = {"items": len(rows), "model": cfg.model, "adapter": cfg.adapter, "engine": cfg.engine,
         "reply_tokens_mean": round(sum(toks) / len(toks), 2) if toks else None,
         "reply_chars_mean": round(sum(r["reply_chars"] for r in rows) / len(rows), 2),
         "truncated": sum(r["finish_reason"] == "length" for r in rows)}
    if verified:
        s["pass1"] = {"lenient": accuracy([r["correct"] for r in rows], cfg.confidence),
                      "strict": accuracy([r["correct"] and r["format_ok"] for r in rows], cfg.confidence)}
        s["no_answer"] = sum(r["answer"] is None for r in rows)
        if cfg.k:
            n = rows[0]["samples"]
            s["pass_k"] = {"k": cfg.k, "samples": n, "temperature": cfg.temperature,
                           "pass1": sum(pass_at_k(r["samples"], r["samples_correct"], 1) for r in rows) / len(rows),
                           "pass_k": sum(pass_at_k(r["samples"], r["samples_correct"], cfg.k) for r in rows) / len(rows),
                           "items_mixed": sum(0 < r["samples_correct"] < r["samples"] for r in rows)}
    return s


def _acc_text(a: dict) -> str:
    return f"{pct(a['acc'])}% [{pct(a['ci_low'])}, {pct(a['ci_high'])}]"


def format_summary(s: dict) -> str:
    """The console line(s) of an eval summary."""
    head = f"eval {s['items']} items"
    lines = []
    if "pass1" in s:
        head += f": pass@1 lenient {_acc_text(s['pass1']['lenient'])} strict {_acc_text(s['pass1']['strict'])}"
        b = s.get("baseline")
        if b:
            d, m = b["lenient"], b["lenient"]["mcnemar"]
            head += (f" | vs baseline {100 * d['diff']:+.1f} pts [{100 * d['ci_low']:+.1f}, {100 * d['ci_high']:+.1f}], "
                     f"McNemar p={m['p']:.3g} (b={m['b']} gained, c={m['c']} lost)")
            ds, ms = b["strict"], b["strict"]["mcnemar"]
            lines.append(f"strict vs baseline {100 * ds['diff']:+.1f} pts [{100 * ds['ci_low']:+.1f}, "
                         f"{100 * ds['ci_high']:+.1f}], McNemar p={ms['p']:.3g} (b={ms['b']}, c={ms['c']})")
            if b.get("settings_differ"):
                lines.append(f"note: the baseline was run with other settings: {b['settings_differ']}")
        if "pass_k" in s:
            pk = s["pass_k"]
            lines.append(f"sampled (T={pk['temperature']}, {pk['samples']} per item): pass@1 {pct(pk['pass1'])}% "
                         f"pass@{pk['k']} {pct(pk['pass_k'])}%, {pk['items_mixed']} items with right and wrong samples")
    lines.append(f"replies: mean {s['reply_tokens_mean']} tokens, {s['reply_chars_mean']} chars; "
                 f"{s['truncated']} cut at max_tokens" + (f"; {s['no_answer']} with no answer found" if "no_answer" in s else ""))
    if "winrate" in s:
        from dsforge.evalwin import format_winrate

        lines.append(format_winrate(s["winrate"]))
    return "\n".join([head, *lines])


__all__ = ["EvalConfig", "evaluate", "read_items", "load_eval", "compare", "accuracy", "format_summary",
           "engine_for", "adapter_rank"]
