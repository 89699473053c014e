"""Judging a candidates file: guards, resume from an earlier judged file, atomic outputs, shard merge."""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict

from dsforge import __version__, logs
from dsforge import candidates as records_io
from dsforge.errors import DsforgeError, InputError, UsageError
from dsforge.io import atomic_files, guard_kind, guard_outputs
from dsforge.judge.cache import Cache
from dsforge.judge.core import Judge, JudgeConfig, judge_config_id, missing_reference, reference_of
from dsforge.judge.pairwise import judge_pairwise
from dsforge.judge.pointwise import judge_pointwise
from dsforge.judge.summary import merge_summaries, summarize
from dsforge.records import Candidate


def load_candidates(path: str) -> list[dict]:
    """Every candidate row of `path` (output of dsforge sample), as dicts checked against
    records.Candidate. Raises InputError at FILE:LINE naming the field, UsageError for a file with no rows."""
    return records_io.load_candidates(path, reader="judge")


def _read(path: str) -> list[tuple[int, dict]]:
    """load_candidates with each row's line number (for errors that point at a candidate)."""
    hint = "judge reads the output of dsforge sample"
    rows = [(line, records_io.check_row(row, Candidate, path=path, line=line, hint=hint))
            for line, row in records_io.iter_rows(path)]
    for line, row in rows[:1]:   # a judged file: judging it again would silently drop its judgements
        if isinstance(row.get("judge"), dict):
            raise InputError(f"the candidate is already judged (judge.kind {row['judge'].get('kind', 'llm')!r})",
                             "give the dsforge sample output it was judged from", path=path, line=line)
    if not rows:
        raise UsageError(f"{path}: no candidates")
    return rows


def _candidate_key(row: dict) -> str:
    return Cache.key(row.get("prompt_id"), row.get("temperature"), row.get("sample_index"), row.get("text"))


def previous_scores(out: str) -> dict[str, dict]:
    """Good earlier results in an existing judged file: {candidate key: row} for rows with a score.

    Raises UsageError when `out` exists but is not a dsforge judged file (it is never replaced).
    """
    if not os.path.exists(out):
        return {}
    keep = {}
    try:
        for line, row in records_io.iter_rows(out):
            if not isinstance(row.get("judge"), dict):
                raise UsageError(f"-o {out} exists and is not a judged file (line {line} has no 'judge' field); "
                                 "not replacing it", "choose another -o")
            if row["judge"].get("score") is not None:
                keep[_candidate_key(row)] = row
    except InputError as err:
        raise UsageError(f"-o {out} exists but cannot be read as a judged file ({err.message}); not replacing it",
                         "choose another -o, or move the file away") from None
    return keep


def keep_good_scores(judged: list[dict], previous: dict[str, dict], out: str) -> int:
    """Replace, in place, each new failure by the earlier valid result for the same candidate.

    A judge run never turns a good score in `out` into a failure: when the earlier score came from
    the same judge model, rubric and mode it is kept (returns how many); when it came from another
    judge the mix would be meaningless, so nothing is written (DsforgeError).
    """
    kept, clash = 0, 0
    for i, row in enumerate(judged):
        j = row["judge"]
        if j.get("score") is not None or j.get("error") == "truncated_not_judged":
            continue
        old = previous.get(_candidate_key(row))
        if old is None:
            continue
        if judge_config_id(old["judge"]) == judge_config_id(j):
            judged[i] = {**row, "judge": old["judge"]}
            kept += 1
        else:
            clash += 1
    if clash:
        raise DsforgeError(f"the judge failed on {clash} candidate(s) that {out} already holds scores for (from "
                           f"another judge model, rubric or mode); not replacing those scores with failures",
                           "fix the judge (see the failures above) and rerun, or write to another -o")
    return kept


def check_outputs(candidates: str, out: str, cfg: JudgeConfig, cache_path: str | None = None) -> None:
    """Refuse (UsageError) outputs that are inputs, and an existing `out` that is not a judged file."""
    guard_outputs({"CANDIDATES": candidates, "--rubric": getattr(cfg.rubric, "source", None)},
                  {"-o": out, "summary": out + ".summary.json", "--cache": cache_path, "log": out + ".log",
                   "comparisons": out + ".comparisons.jsonl" if cfg.mode == "pairwise" else None})
    guard_kind(out, "judge")


def judge_file(candidates: str, out: str, cfg: JudgeConfig, *, engine=None, engine_options: dict | None = None,
               cache_path: str | None = "auto", audit: bool = False, progress: bool = True, log=None,
               shard: tuple[int, int] | None = None) -> dict:
    """Judge the candidates file into `out` (+ OUT.summary.json, OUT.comparisons.jsonl in pairwise mode)
    and return the summary (`summarize`'s keys plus candidates, out, cache, dsforge, kept_previous,
    engine_info, shard, and audit when asked).

    With cfg.verifier no model is called and no cache is kept (`judge_verified`). Rerunning onto an
    existing `out` keeps its valid scores where this run failed (see `keep_good_scores`); the outputs
    are written together and atomically, so a failure leaves the previous ones as they were. No output
    may be an input (the candidates, a custom rubric file). shard (i, n): judge only the candidates
    whose prompt id falls in slice i of n (`dsforge.candidates.in_shard`). Raises UsageError (bad outputs, an
    existing `out` that is not a judged file), InputError (a bad candidate, at FILE:LINE).
    """
    log = log or logs.say
    t0 = time.time()
    if cfg.verifier:
        cache_path = None   # a program's verdict costs nothing to recompute
    elif cache_path == "auto":
        cache_path = out + ".cache.sqlite"
    check_outputs(candidates, out, cfg, cache_path)
    rows = _read(candidates)
    if shard:
        rows = [(line, it) for line, it in rows if records_io.in_shard(it["prompt_id"], shard)]
    if cfg.rubric is not None and cfg.rubric.uses_reference:   # before any call: one clear error, not N failures
        for line, it in rows:
            if reference_of(it, cfg.reference_field) is None and (cfg.include_truncated or not it.get("truncated")):
                raise missing_reference(cfg, candidates, line)
    previous = previous_scores(out)
    judge = engine_info = audit_res = comparisons = None
    if cfg.verifier:
        from dsforge.judge.verifier import judge_verified

        judged = judge_verified(cfg, rows, candidates)
    else:
        items = [it for _, it in rows]
        owned = engine is None
        if owned:
            from dsforge.engines import get_engine

            engine = get_engine(cfg.engine, cfg.judge_model, engine_options)
            with logs.log_file(out + ".log"):   # an in-process engine's own output goes there (-v: the console)
                engine.open()
        cache = None
        try:   # from here on the engine is always closed (a vLLM engine core must not outlive a failed cache)
            cache = Cache(cache_path)   # opened after the engine: a judge that fails its probe leaves no cache file
            judge = Judge(cfg, engine, cache, log=log, progress=progress)
            if audit:
                from dsforge.judge.audit import run_audit

                audit_res = run_audit(judge, items)
            if cfg.mode == "pairwise":
                judged, comparisons = judge_pairwise(judge, items)
            else:
                judged = judge_pointwise(judge, items)
        finally:
            if owned:
                engine.close()
            if cache is not None:
                cache.close()
        engine_info = engine.describe()
    kept = keep_good_scores(judged, previous, out)
    if kept:
        log(f"kept {kept} earlier score(s) from {out} for candidates the judge failed on this time")
    summary = summarize(judged, judge, cfg, time.time() - t0)
    summary.update(candidates=candidates, out=out, cache=cache_path, dsforge=__version__, kept_previous=kept,
                   engine_info=engine_info, shard=f"{shard[0]}/{shard[1]}" if shard else None)
    if audit_res is not None:
        summary["audit"] = audit_res
    _write_judged(out, judged, comparisons, summary)
    return summary


def _write_judged(out: str, judged: list[dict], comparisons: list[dict] | None, summary: dict) -> None:
    with atomic_files() as group:
        f = group.open(out)
        records_io.write_rows(f, judged)
        if comparisons is not None:
            f = group.open(out + ".comparisons.jsonl")
            for rec in comparisons:
                f.write(json.dumps(rec) + "\n")
        json.dump(summary, group.open(out + ".summary.json"), indent=2)


def merge_judged(paths: list[str], out: str, items: list[dict], cfg: JudgeConfig, *, candidates: str) -> dict:
    """Join the judged shard files of one run (`judge --ray`) into `out`, in the candidates' order.

    Checks: every candidate of `items` is in exactly one shard row (by prompt id, temperature, sample
    index and text) and nothing else is; every row was judged with cfg's model, rubric and mode.
    Writes `out`, OUT.summary.json (the shards' summaries added up; score statistics recomputed from
    the merged rows) and, pairwise, OUT.comparisons.jsonl (a/b renumbered to rows of `out`), together
    and atomically. A good score
    already in `out` is kept where the shards failed (`keep_good_scores`). Returns the summary with
    "shards": len(paths). Raises DsforgeError (nothing written) when a check fails."""
    pairwise = cfg.mode == "pairwise"
    check_outputs(candidates, out, cfg)
    want = Counter(_candidate_key(it) for it in items)
    order: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        order[_candidate_key(it)].append(i)
    merged: list = [None] * len(items)
    problems, comparisons, summaries = [], [] if pairwise else None, []
    config = cfg.config_id()
    for path in paths:
        where = []   # shard row j -> its index in `items` (a comparison's a/b are shard row numbers)
        for line, row in records_io.iter_rows(path):
            key = _candidate_key(row)
            where.append(None)
            if not isinstance(row.get("judge"), dict) or judge_config_id(row["judge"]) != config:
                problems.append(f"{path}:{line} was judged with other settings than this run "
                                f"({judge_config_id(row.get('judge') or {})} vs {config})")
            elif not order.get(key):
                problems.append(f"{path}:{line} is " + ("in more than one shard" if want[key] else
                                                         "not a candidate of " + candidates))
            else:
                where[-1] = order[key].pop(0)
                merged[where[-1]] = row
        if pairwise:
            if not os.path.exists(path + ".comparisons.jsonl"):
                problems.append(f"{path}: no comparisons file beside it")
                continue
            with open(path + ".comparisons.jsonl") as f:
                for rec in (json.loads(x) for x in f if x.strip()):
                    try:
                        comparisons.append({**rec, "a": where[rec["a"]], "b": where[rec["b"]]})
                    except (KeyError, IndexError, TypeError):
                        problems.append(f"{path}.comparisons.jsonl names a row its shard does not hold")
        with open(path + ".summary.json") as f:
            summaries.append(json.load(f))
    missing = sum(1 for r in merged if r is None)
    if missing:
        problems.append(f"{missing} candidate(s) of {candidates} are in no shard")
    if problems:
        raise DsforgeError(f"the judge shards do not merge into {out}: " + "; ".join(problems[:5])
                           + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""),
                           "rerun the same command (each shard redoes only what it lacks)")
    kept = keep_good_scores(merged, previous_scores(out), out)
    summary = merge_summaries(summaries, merged, cfg)
    summary.update(candidates=candidates, out=out, shards=len(paths), shard_files=list(paths), dsforge=__version__,
                   kept_previous=summary.get("kept_previous", 0) + kept)
    _write_judged(out, merged, comparisons, summary)
    return summary
