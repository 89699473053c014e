"""`dsforge sample`: several answers per prompt from the target model over a temperature grid.

Output: one JSONL line per distinct candidate, with full provenance. The file is append-only
while running; a group (prompt, temperature) is written in one write() once all its n answers
exist, so a rerun after a crash or kill -9 finds complete groups, drops a torn last line and any
partial group (rewriting the file atomically), and samples only what is missing. Each
(prompt, temperature, sample index) ends up exactly once: as a line, or as a duplicate counted
in the line of the identical answer it collapsed into.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from dsforge import __version__, logs
from dsforge.candidates import dumps, ends_torn, in_shard, iter_rows, write_rows
from dsforge.engines import Request, Result, SamplingParams, derive_seed
from dsforge.errors import InputError, UsageError
from dsforge.formats.rows import ConversionError
from dsforge.io import atomic_write, expand_inputs, guard_kind, guard_outputs, iter_records
from dsforge.prompts import prompt_messages
from dsforge.prompts import prompt_record as _prompt_record  # noqa: F401 (old name; evaluate imports it)
from dsforge.records import prompt_id
from dsforge.stages import SampleConfig as StageSampleConfig

@dataclass
class Prompt:
    """One distinct prompt to sample: its id (records.prompt_id), OpenAI-role messages ending on the user
    turn, where it was read, and what its candidates inherit from the row."""

    prompt_id: str
    messages: list[dict]
    source: str          # file:line of its first occurrence
    carried: dict = field(default_factory=dict)   # keys added to each candidate: reference, fields (Candidate)


SampleConfig = StageSampleConfig   # the sample stage's one config model (dsforge.stages)


# ---------------------------------------------------------------- prompts


def _carried(rec: dict, carry: tuple[str, ...], stats: Counter) -> dict:
    """What a prompt row hands on to its candidates: its `reference` (when it has one) and the named fields."""
    out = {"reference": rec["reference"]} if "reference" in rec else {}
    if carry:
        out["fields"] = {name: rec[name] for name in carry if name in rec}
        for name in carry:
            if name not in rec:
                stats["carry_missing:" + name] += 1
    return out


def read_prompts(inputs: list[str], *, mapping: dict | None = None, system: str | None = None,
                 shard: tuple[int, int] | None = None, limit: int | None = None,
                 skip_bad: bool = False, stats: Counter | None = None, carry: tuple[str, ...] = ()) -> list[Prompt]:
    """Prompts from any readable file: alpaca (instruction+input), sharegpt/openai conversations
    (the last user turn is answered, earlier turns are context; a trailing assistant answer is
    dropped), or a plain column (--map instruction=COLUMN; prompt/question/query/text are tried).

    Each Prompt carries its row's `reference` and the fields named in `carry` (see records.Candidate);
    a duplicate prompt keeps its first row. Counts go to `stats`: rows, duplicate_prompts, other_shards,
    bad_rows, carry_missing:NAME. Raises InputError at FILE:LINE for a row that is no prompt (unless
    skip_bad), UsageError when a `carry` field is in none of the prompt rows.
    """
    mapping = dict(mapping or {})
    keys: set = set()
    stats = stats if stats is not None else Counter()
    seen: dict[str, Prompt] = {}
    for path in expand_inputs(inputs):
        for line, rec in iter_records(path):
            try:
                msgs = prompt_messages(rec, mapping, system)
            except ConversionError as err:
                if skip_bad:
                    stats["bad_rows"] += 1
                    continue
                raise InputError(str(err) + (f" (field '{err.field}')" if err.field else ""), err.hint,
                                 path=path, line=line) from None
            pid = prompt_id(msgs)
            stats["rows"] += 1
            if pid in seen:
                stats["duplicate_prompts"] += 1
                continue
            if shard and not in_shard(pid, shard):
                stats["other_shards"] += 1
                continue
            seen[pid] = Prompt(pid, msgs, f"{path}:{line}", _carried(rec, carry, stats))
            keys.update(rec)
            if limit and len(seen) >= limit:
                break
        else:
            continue
        break
    for name in carry:
        if seen and stats["carry_missing:" + name] == len(seen):
            raise UsageError(f"--carry {name}: none of the prompt rows has a field '{name}'",
                             "name fields the rows have: " + ", ".join(sorted(map(str, keys))[:12]))
    return list(seen.values())


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'I/N' -> (i, n) with 0 <= i < n; None for no text. UsageError (exit 2) otherwise."""
    if not text:
        return None
    i, sep, n = text.partition("/")
    try:
        i, n = int(i), int(n)
    except ValueError:
        i, n = -1, 0
    if not sep or n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text!r} is not I/N with 0 <= I < N", "e.g. --shard 0/8 ... --shard 7/8")
    return i, n


# ---------------------------------------------------------------- the candidates file


@dataclass
class Existing:
    """What a resumed run finds in OUT: complete groups (kept), lines of partial groups, a torn tail."""

    complete: set = field(default_factory=set)     # {(prompt_id, temperature)}
    keep: list = field(default_factory=list)       # raw lines of complete groups
    dropped_lines: int = 0
    torn: bool = False


def scan_existing(path: str, cfg: SampleConfig) -> Existing:
    """Read an existing candidates file for a resume: a (prompt, temperature) group is complete when its
    lines and their duplicate_indices account for cfg.n answers. UsageError when a line was sampled with
    other settings (another fingerprint), InputError at FILE:LINE for a damaged line."""
    ex = Existing()
    if not os.path.exists(path):
        return ex
    ex.torn = ends_torn(path)
    groups: dict[tuple, list] = defaultdict(list)
    fp = cfg.fingerprint()
    for line, row in iter_rows(path):
        if row.get("run") != fp:
            raise UsageError(f"{path}:{line} was sampled with other settings (run {row.get('run')}, now {fp}): "
                             f"model/engine/n/top_p/max_tokens/seed/stop/system differ",
                             "write to a new --out, or pass --overwrite to start this file again")
        groups[(row["prompt_id"], float(row["temperature"]))].append(row)
    for key, rows in groups.items():
        if sum(1 + len(r.get("duplicate_indices", [])) for r in rows) == cfg.n:
            ex.complete.add(key)
            ex.keep.extend(rows)
        else:
            ex.dropped_lines += len(rows)
    return ex


def collapse(res: Result) -> list[tuple[int, object, list[int]]]:
    """Identical answers to one request collapse into the first; returns (index, completion, dup indices)."""
    first: dict[str, int] = {}
    out: list = []
    for i, c in enumerate(res.completions):
        if c.text in first:
            out[first[c.text]][2].append(i)
            continue
        first[c.text] = len(out)
        out.append((i, c, []))
    return out


def candidate_rows(res: Result, prompt: Prompt, cfg: SampleConfig, run: str) -> list[dict]:
    """One records.Candidate dict per distinct answer of `res` (identical answers collapse into the
    first, their indices in duplicate_indices); the prompt's reference and carried fields come last,
    and only when present, so files without them stay byte-for-byte as before."""
    p = res.request.params
    rows = []
    for idx, c, dups in collapse(res):
        rows.append({
            "prompt_id": prompt.prompt_id, "messages": prompt.messages, "text": c.text,
            "model": cfg.model, "engine": cfg.engine, "temperature": p.temperature, "top_p": p.top_p,
            "max_tokens": p.max_tokens, "seed": res.seed_used, "sample_index": idx, "duplicate_indices": dups,
            "finish_reason": c.finish_reason, "truncated": c.finish_reason == "length",
            "prompt_tokens": res.prompt_tokens, "completion_tokens": c.completion_tokens,
            "mean_logprob": round(c.mean_logprob, 5) if c.mean_logprob is not None else None,
            "source": prompt.source, "run": run, "n_emulated": bool(res.meta.get("n_emulated")),
            **prompt.carried,
        })
    return rows


# ---------------------------------------------------------------- the run


def sample(inputs: list[str], out: str, cfg: SampleConfig, *, engine=None, engine_options: dict | None = None,
           mapping: dict | None = None, shard: tuple[int, int] | None = None, limit: int | None = None,
           skip_bad: bool = False, overwrite: bool = False, progress: bool = True, log=None) -> dict:
    """Sample every prompt of `inputs` at each of cfg.temps, cfg.n answers each, into `out` (.jsonl), resuming it.

    One line per distinct answer (records.Candidate); a (prompt, temperature) group is written in one
    write(), so a kill leaves whole groups (and maybe a torn line, repaired on the next run). `engine`: an
    opened Engine to use (else one is made from cfg.engine and closed at the end); `mapping`: --map;
    `shard` (i, n); `limit`: first N prompts; `overwrite`: start OUT again (the old file stays until
    the new one has candidates). Returns the summary (summaries.SampleSummary; also OUT.summary.json):
    prompts, candidates_written, duplicates_collapsed, truncated, failed_requests, failure_causes,
    groups_resumed/sampled, tokens and seconds (engine_start_s, generate_s, total_s), tokens_per_s,
    prompts_with_reference, carry, carry_missing. Raises UsageError (bad settings, OUT of another kind or
    sampled with other settings, no prompts) and InputError (a bad prompt row at FILE:LINE)."""
    log = log or logs.say
    if cfg.n < 1 or not cfg.temps:
        raise UsageError("need -n >= 1 and at least one temperature")
    for t in cfg.temps:
        if t < 0:
            raise UsageError(f"temperature {t} is negative")
    if not out.endswith(".jsonl"):
        raise UsageError(f"{out}: the candidates file must be .jsonl (it is appended to while sampling)")
    guard_outputs([("PROMPTS", f) for f in expand_inputs(inputs)], {"-o": out, "summary": out + ".summary.json"})
    guard_kind(out, "sample")   # resuming onto (or --overwrite of) anything but a candidates file is refused
    t_start = time.time()
    stats: Counter = Counter()
    prompts = read_prompts(inputs, mapping=mapping, system=cfg.system, shard=shard, limit=limit,
                           skip_bad=skip_bad, stats=stats, carry=tuple(getattr(cfg, "carry", None) or ()))
    if not prompts:
        raise UsageError("no prompts to sample", "check the input files, --map and --shard")
    work = out   # the file appended to; with --overwrite a hidden sibling that replaces `out` only at the end
    if overwrite and os.path.exists(out):
        work = os.path.join(os.path.dirname(out), "." + os.path.basename(out) + ".overwrite.jsonl")
        if os.path.exists(work):
            os.unlink(work)
    try:
        return _sample_into(work, out, prompts, stats, cfg, engine, engine_options, shard, t_start, log, progress)
    finally:
        if work != out and os.path.exists(work):   # failed or interrupted: the old file stays as it was
            os.unlink(work)


def _sample_into(work, out, prompts, stats, cfg, engine, engine_options, shard, t_start, log, progress) -> dict:
    run = cfg.fingerprint()
    ex = scan_existing(work, cfg)
    if ex.torn or ex.dropped_lines:
        with atomic_write(work) as f:
            for row in ex.keep:
                f.write(dumps(row))
        log(f"resume: kept {len(ex.complete)} complete (prompt, temperature) groups; dropped "
            f"{ex.dropped_lines} lines of unfinished groups{' and a torn last line' if ex.torn else ''}")
    elif ex.complete:
        log(f"resume: {len(ex.complete)} (prompt, temperature) groups already done, sampling the rest")

    by_id = {p.prompt_id: p for p in prompts}
    todo = [(p, t) for p in prompts for t in cfg.temps if (p.prompt_id, float(t)) not in ex.complete]

    def requests():
        for p, t in todo:
            sp = SamplingParams(temperature=t, top_p=cfg.top_p, max_tokens=cfg.max_tokens, n=cfg.n,
                                seed=derive_seed(cfg.seed, p.prompt_id, t), stop=tuple(cfg.stop),
                                logprobs=cfg.logprobs)
            yield Request(messages=p.messages, params=sp, tag=p.prompt_id)

    counts = Counter(groups_skipped=len(prompts) * len(cfg.temps) - len(todo))
    owned = engine is None
    gen_time = 0.0
    engine_start = 0.0
    log_path = None
    if todo:
        if owned:
            from dsforge.engines import get_engine

            engine = get_engine(cfg.engine, cfg.model, engine_options)
            t0 = time.time()
            log(f"starting the {cfg.engine} engine for {cfg.model} ...")
            with logs.log_file(out + ".log"):   # the engine's own output goes there (-v: to the console)
                engine.open()
            log_path = logs.current_log()
            engine_start = time.time() - t0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="sampling", unit=" req", file=logs.console(), disable=None, mininterval=1.0)
        t0 = time.time()
        try:
            with open(work, "a", encoding="utf-8") as f:
                for res in engine.generate(requests()):
                    if res.error or len(res.completions) < cfg.n:
                        counts["failed_requests"] += 1
                        counts["error:" + str(res.meta.get("error_cause", "short"))] += 1
                    else:
                        rows = candidate_rows(res, by_id[res.request.tag], cfg, run)
                        write_rows(f, rows)   # the whole group in one write()
                        f.flush()
                        counts["groups_done"] += 1
                        counts["candidates"] += len(rows)
                        counts["duplicates"] += sum(len(r["duplicate_indices"]) for r in rows)
                        counts["truncated"] += sum(r["truncated"] for r in rows)
                        counts["completion_tokens"] += sum(c.completion_tokens or 0 for c in res.completions)
                        counts["prompt_tokens"] += res.prompt_tokens or 0
                        if res.meta.get("n_emulated"):
                            counts["n_emulated"] += 1
                    if bar is not None:
                        bar.update(1)
                        el = time.time() - t0
                        bar.set_postfix_str(f"{counts['completion_tokens'] / max(el, 1e-9):.0f} tok/s", refresh=False)
                os.fsync(f.fileno())
        finally:
            gen_time = time.time() - t0
            if bar is not None:
                bar.close()
            if owned:
                engine.close()
    if work != out:
        if counts["candidates"]:
            os.replace(work, out)
        else:
            log(f"--overwrite: no candidate was sampled, so {out} was left as it was")
    summary = {
        "dsforge": __version__, "out": out, "model": cfg.model, "engine": cfg.engine, "run": run,
        "temperatures": list(cfg.temps), "n": cfg.n, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens,
        "seed": cfg.seed, "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "prompts": len(prompts), "input_rows": stats["rows"], "duplicate_prompts": stats["duplicate_prompts"],
        "bad_rows": stats["bad_rows"], "groups_resumed": counts["groups_skipped"],
        "prompts_with_reference": sum("reference" in p.carried for p in prompts),
        "carry": list(getattr(cfg, "carry", None) or ()),
        "carry_missing": {k[14:]: v for k, v in stats.items() if k.startswith("carry_missing:")},
        "groups_sampled": counts["groups_done"], "failed_requests": counts["failed_requests"],
        "failure_causes": {k[6:]: v for k, v in counts.items() if k.startswith("error:")},
        "candidates_written": counts["candidates"], "duplicates_collapsed": counts["duplicates"],
        "truncated": counts["truncated"], "prompt_tokens": counts["prompt_tokens"],
        "completion_tokens": counts["completion_tokens"], "n_emulated_requests": counts["n_emulated"],
        "engine_start_s": round(engine_start, 2), "generate_s": round(gen_time, 2),
        "tokens_per_s": round(counts["completion_tokens"] / gen_time, 1) if gen_time else None,
        "total_s": round(time.time() - t_start, 2), "log": log_path,
    }
    if engine is not None:
        summary["engine_info"] = engine.describe()
    with atomic_write(out + ".summary.json") as f:
        json.dump(summary, f, indent=2)
    return summary


def format_summary(s: dict) -> str:
    """The console lines for a sample summary (summaries.SampleSummary)."""
    line = (f"sampled {s['prompts']} prompts x {len(s['temperatures'])} temperatures x n={s['n']}: "
            f"{s['candidates_written']} candidates written ({s['duplicates_collapsed']} duplicates collapsed, "
            f"{s['truncated']} truncated at max_tokens), {s['completion_tokens']} tokens in {s['generate_s']} s"
            f" ({s['tokens_per_s'] or 0} tok/s; engine start {s['engine_start_s']} s)")
    if s["groups_resumed"]:
        line += f"; {s['groups_resumed']} groups were already done"
    if s["failed_requests"]:
        line += (f"\n{s['failed_requests']} requests failed ({s['failure_causes']}); nothing of them was written: "
                 f"rerun the same command to retry them")
    if s.get("n_emulated_requests"):
        line += f"\nthe server ignored n for {s['n_emulated_requests']} requests; dsforge sent follow-up requests"
    if s.get("log"):
        line += f"\nengine log: {s['log']}"
    return line


# ---------------------------------------------------------------- merge shards


def merge(shards: list[str], out: str, *, n: int | None = None, temps: list[float] | None = None,
          prompts: list[Prompt] | None = None, prompt_files: list[str] = ()) -> dict:
    """Join shard outputs, check that they share settings, hold no (prompt, temperature) twice,
    and that every group is complete (and, given the prompts, that every prompt is covered).
    prompt_files: where `prompts` came from (only so that `out` can never replace one of them)."""
    guard_outputs([("SHARD", p) for p in shards] + [("--prompts", p) for p in prompt_files], {"-o": out})
    guard_kind(out, "merge")
    runs: set = set()
    groups: dict[tuple, list] = defaultdict(list)
    where: dict[tuple, str] = {}
    problems = []
    for path in shards:
        if not os.path.exists(path):
            raise UsageError(f"{path}: no such shard file")
        seen_here = set()
        for line, row in iter_rows(path):
            if not isinstance(row.get("prompt_id"), str) or not isinstance(row.get("temperature"), (int, float)):
                raise InputError("not a candidate (needs prompt_id and a numeric temperature)",
                                 "merge joins the outputs of `dsforge sample --shard`", path=path, line=line)
            key = (row["prompt_id"], float(row["temperature"]))
            if key in where and key not in seen_here:
                problems.append(f"{path}:{line}: prompt {key[0]} at T={key[1]} is also in {where[key]}")
                continue
            where[key] = path
            seen_here.add(key)
            runs.add(row.get("run"))
            groups[key].append(row)
    if len(runs) > 1:
        problems.append(f"shards were sampled with different settings (runs {sorted(map(str, runs))})")
    n_req = n
    incomplete = []
    for key, rows in groups.items():
        got = sum(1 + len(r.get("duplicate_indices", [])) for r in rows)
        want = n_req or got
        if n_req is None:
            n_req = got
        if got != want:
            incomplete.append(key)
    if incomplete:
        problems.append(f"{len(incomplete)} (prompt, temperature) groups are incomplete, e.g. {incomplete[0]}: "
                        f"rerun that shard's sample command")
    if prompts is not None:
        want_temps = temps or sorted({k[1] for k in groups})
        missing = [(p.prompt_id, t) for p in prompts for t in want_temps if (p.prompt_id, float(t)) not in groups]
        if missing:
            problems.append(f"{len(missing)} (prompt, temperature) groups are missing, e.g. {missing[0]} "
                            f"(a shard was not run or not passed)")
    if not groups:   # nothing to merge is a failure, not an empty success
        problems.append("the shards hold no candidates")
    if problems:
        raise UsageError("cannot merge:\n  " + "\n  ".join(problems[:20]))
    with atomic_write(out) as f:
        for rows in groups.values():
            for r in rows:
                f.write(dumps(r))
    return {"shards": len(shards), "groups": len(groups), "candidates": sum(len(v) for v in groups.values()),
            "prompts": len({k[0] for k in groups})}
