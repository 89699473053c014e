"""`dsforge judge`: score sampled candidates with a judge LLM, resumably, never inventing a score.

Every judge call goes through a content-hash cache (SQLite, WAL, one commit per call): key =
judge model + rubric hash + sampling parameters + messages + attempt number. A rerun after a
crash replays finished calls from the cache for free and only sends the rest. Failed calls
(after the engine's own retries) are not cached, so a rerun tries them again.

Replies are parsed client-side (JSON with the rationale first, else a trailing "Score: N"),
range-checked, and retried with a fresh sample a bounded number of times; what still cannot be
parsed is recorded as a failure with its raw text and cause. No parse, no score.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import math
import os
import random
import sqlite3
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from dsforge import __version__, logs
from dsforge.engines import Request, SamplingParams, derive_seed
from dsforge.errors import DsforgeError, InputError, UsageError
from dsforge.io import atomic_files, guard_kind, guard_outputs
from dsforge.rubrics import Rubric, expected_score, parse_reply
from dsforge.sample import read_candidates


@dataclass
class JudgeConfig:
    judge_model: str
    rubric: Rubric
    engine: str = "openai"
    temperature: float = 0.0
    votes: int = 1
    max_tokens: int = 256
    parse_retries: int = 2
    structured: bool = True          # ask for response_format json_schema
    logprobs: bool = True            # expected score from top logprobs where the server gives them
    seed: int = 0
    max_pairs_per_prompt: int = 12   # pairwise: comparisons per prompt (each asked in both orders)
    include_truncated: bool = False
    prices: tuple[float, float] | None = None  # USD per 1M (prompt, completion) tokens


class Cache:
    """The SQLite call cache. The file is created at the first stored call, never before: a judge
    that fails before answering anything leaves no empty cache behind."""

    def __init__(self, path: str | None):
        self.path = path
        self.db = None
        self.hits = self.misses = 0

    def _connect(self, create: bool):
        if self.db is None and self.path and (create or os.path.exists(self.path)):
            if os.path.isdir(self.path):   # sqlite would only say 'unable to open database file'
                raise IsADirectoryError(errno.EISDIR, "Is a directory", self.path)
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            db = None
            try:
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL, t REAL)")
            except sqlite3.DatabaseError as err:   # another file given as --cache, or a damaged cache
                if db is not None:
                    db.close()
                what = "not a judge cache (SQLite)" if "not a database" in str(err) else f"cannot use it as the judge cache ({err})"
                raise UsageError(f"--cache {self.path}: {what}",
                                 "give --cache a new file path (dsforge creates it), or remove this file if it is a "
                                 "damaged cache") from None
            self.db = db
        return self.db

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def get(self, key: str):
        if self._connect(create=False) is None:
            return None
        row = self.db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict) -> None:
        if self._connect(create=True) is not None:
            self.db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?)", (key, json.dumps(value), time.time()))

    def close(self):
        if self.db is not None:
            self.db.close()
            self.db = None


@dataclass
class Call:
    """One judge call: its messages, where the parsed result goes, and its attempt number."""
    item: object
    messages: list[dict]
    attempt: int = 0
    swapped: bool = False
    probe: str = ""                 # audit probes: part of the cache key, not of the sampling
    result: dict | None = None      # {"texts": [...], "logprobs": [...], "usage": {...}} or {"error": ...}


@dataclass
class Stats:
    counts: Counter = field(default_factory=Counter)
    first_try_failures: Counter = field(default_factory=Counter)
    final_failures: Counter = field(default_factory=Counter)
    usage: Counter = field(default_factory=Counter)


class Judge:
    def __init__(self, cfg: JudgeConfig, engine, cache: Cache, log=None, progress: bool = True):
        self.cfg, self.engine, self.cache = cfg, engine, cache
        self.log = log or logs.say
        self.progress = progress
        self.stats = Stats()
        self.structured = cfg.structured

    # ------------------------------------------------------------ calls with cache

    def _params(self, attempt: int) -> SamplingParams:
        c = self.cfg
        temp = c.temperature if attempt == 0 else max(c.temperature, 0.7)   # re-asks sample afresh
        if c.votes > 1 and temp == 0:
            temp = 0.7
        return SamplingParams(temperature=temp, top_p=1.0, max_tokens=c.max_tokens, n=c.votes,
                              seed=c.seed + attempt, logprobs=c.logprobs, top_logprobs=5 if c.logprobs else 0,
                              response_format=self.cfg.rubric.response_format() if self.structured else None)

    def _key(self, call: Call, params: SamplingParams) -> str:
        return Cache.key(self.cfg.judge_model, self.cfg.rubric.hash, params.key(), call.messages, call.attempt,
                         *([call.probe] if call.probe else []))

    def run_calls(self, calls: list[Call], desc: str) -> None:
        todo = []
        for call in calls:
            params = self._params(call.attempt)
            hit = self.cache.get(self._key(call, params))
            if hit is not None:
                self.cache.hits += 1
                call.result = hit
                self._account(hit, cached=True)
            else:
                self.cache.misses += 1
                todo.append((call, params))
        if not todo:
            return
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=desc, unit=" call", file=logs.console(), disable=None, mininterval=1.0)
        reqs = [Request(messages=c.messages, params=p, tag=i) for i, (c, p) in enumerate(todo)]
        retry_plain = []
        for res in self.engine.generate(reqs):
            call, params = todo[res.request.tag]
            if res.error and self.structured and "http_400" in res.error and params.response_format:
                retry_plain.append(call)   # the server rejects response_format: ask without it
                continue
            self._store(call, params, res)
            if bar is not None:
                bar.update(1)
        if retry_plain:
            self.log(f"the judge server rejected response_format ({len(retry_plain)} calls); "
                     f"asking without it and parsing the reply text")
            self.structured = False
            again = [(c, self._params(c.attempt)) for c in retry_plain]
            for res in self.engine.generate([Request(messages=c.messages, params=p, tag=i)
                                             for i, (c, p) in enumerate(again)]):
                self._store(*again[res.request.tag], res)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()

    def _store(self, call: Call, params: SamplingParams, res) -> None:
        if res.error:
            call.result = {"error": res.error, "cause": res.meta.get("error_cause", "api_error")}
            self.stats.counts["api_failures"] += 1
            self.stats.usage["failed_calls"] += 1   # attempted, counted in "calls" too
            return
        value = {"texts": [c.text for c in res.completions],
                 "logprobs": [c.token_logprobs for c in res.completions],
                 "usage": res.meta.get("usage") or {"prompt_tokens": res.prompt_tokens or 0,
                                                    "completion_tokens": sum(c.completion_tokens or 0
                                                                             for c in res.completions)}}
        self.cache.put(self._key(call, params), value)
        call.result = value
        self._account(value, cached=False)

    def _account(self, value: dict, cached: bool) -> None:
        u = value.get("usage") or {}
        scope = "cached_" if cached else ""
        self.stats.usage[scope + "prompt_tokens"] += u.get("prompt_tokens") or 0
        self.stats.usage[scope + "completion_tokens"] += u.get("completion_tokens") or 0
        self.stats.usage[scope + "calls"] += 1


# ---------------------------------------------------------------- pointwise


def _parse_votes(call: Call, rubric: Rubric) -> dict:
    """All votes of one call parsed; the item's score is the mean of the valid votes."""
    if "error" in call.result:
        return {"error": call.result["cause"], "raw": [], "votes": []}
    votes, errors, exp, rats = [], [], [], []
    for text, lps in zip(call.result["texts"], call.result["logprobs"] or [None] * len(call.result["texts"])):
        p = parse_reply(text, rubric)
        if p.error:
            errors.append(p.error)
            continue
        votes.append(p.score if rubric.mode == "pointwise" else p.winner)
        rats.append(p.rationale)
        if rubric.mode == "pointwise":
            e = expected_score(lps, p.score, rubric)
            if e is not None:
                exp.append(e)
        if p.parts:
            votes[-1] = {"score": p.score, **p.parts}
    out = {"raw": call.result["texts"], "votes": votes, "vote_errors": errors, "rationale": rats[0] if rats else None}
    if not votes:
        out["error"] = errors[0] if errors else "no_votes"
    if exp:
        out["expected_score"] = sum(exp) / len(exp)
    return out


def judge_pointwise(judge: Judge, items: list[dict]) -> list[dict]:
    cfg, rubric = judge.cfg, judge.cfg.rubric
    eligible = [it for it in items if cfg.include_truncated or not it.get("truncated")]
    judge.stats.counts["skipped_truncated"] = len(items) - len(eligible)
    results: dict[int, dict] = {}
    pending = [Call(item=id(it), messages=rubric.pointwise_messages(it["messages"], it["text"])) for it in eligible]
    by_id = {id(it): it for it in eligible}
    attempts: dict[int, list] = defaultdict(list)
    for attempt in range(cfg.parse_retries + 1):
        if not pending:
            break
        for c in pending:
            c.attempt = attempt
            c.result = None
        judge.run_calls(pending, "judging" if attempt == 0 else f"re-asking ({attempt})")
        nxt = []
        for c in pending:
            parsed = _parse_votes(c, rubric)
            attempts[c.item].append(parsed)
            if "error" in parsed:
                if attempt == 0:
                    judge.stats.first_try_failures[parsed["error"]] += 1
                if "error" in c.result:   # API failure after the engine's retries: not re-asked now
                    results[c.item] = parsed
                    continue
                nxt.append(Call(item=c.item, messages=c.messages))
            else:
                results[c.item] = parsed
        pending = nxt
    for c in pending:
        results[c.item] = attempts[c.item][-1]
    out = []
    for it in items:
        j = {"kind": "llm", "model": cfg.judge_model, "rubric": rubric.name, "rubric_hash": rubric.hash, "mode": "pointwise"}
        if id(it) not in by_id:
            j.update(score=None, error="truncated_not_judged")
        else:
            r = results[id(it)]
            tries = attempts[id(it)]
            j["attempts"] = len(tries)
            if "error" in r:
                j.update(score=None, error=r["error"], raw=[t for a in tries for t in a.get("raw", [])][-3:])
                judge.stats.final_failures[r["error"]] += 1
            else:
                scores = [v["score"] if isinstance(v, dict) else v for v in r["votes"]]
                j.update(score=round(sum(scores) / len(scores), 4), votes=r["votes"], rationale=r["rationale"],
                         raw=r["raw"][:1])
                if r.get("expected_score") is not None:
                    j["expected_score"] = round(r["expected_score"], 4)
        out.append({**it, "judge": j})
    return out


# ---------------------------------------------------------------- pairwise


def judge_pairwise(judge: Judge, items: list[dict]) -> tuple[list[dict], list[dict]]:
    """Compare candidates of a prompt in both orders; agreement is a verdict, disagreement a tie.
    Each candidate's score is its win rate (ties count half), in [0, 1]."""
    cfg, rubric = judge.cfg, judge.cfg.rubric
    groups: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        if cfg.include_truncated or not it.get("truncated"):
            groups[it["prompt_id"]].append(i)
    pairs = []
    for pid, idx in groups.items():
        combos = list(itertools.combinations(idx, 2))
        # one draw per prompt: its pairs do not depend on the other prompts in the file (or shard)
        random.Random(derive_seed(cfg.seed, "pairs", pid)).shuffle(combos)
        pairs.extend(combos[:cfg.max_pairs_per_prompt])
    calls = []
    for a, b in pairs:
        prompt = items[a]["messages"]
        calls.append(Call(item=(a, b), messages=rubric.pairwise_messages(prompt, items[a]["text"], items[b]["text"])))
        calls.append(Call(item=(a, b), swapped=True,
                          messages=rubric.pairwise_messages(prompt, items[b]["text"], items[a]["text"])))
    for attempt in range(cfg.parse_retries + 1):
        todo = [c for c in calls if c.result is None or ("error" not in c.result and "error" in _parse_votes(c, rubric))]
        if attempt and not todo:
            break
        for c in todo:
            c.attempt = attempt
            c.result = None
        judge.run_calls(todo, "comparing" if attempt == 0 else f"re-asking ({attempt})")
        if attempt == 0:
            for c in todo:
                p = _parse_votes(c, rubric)
                if "error" in p:
                    judge.stats.first_try_failures[p["error"]] += 1
    verdicts = {}
    by_pair = defaultdict(dict)
    for c in calls:
        by_pair[c.item]["swapped" if c.swapped else "straight"] = _parse_votes(c, rubric)
    comparisons = []
    wins = defaultdict(float)
    games = Counter()
    consistent = decided = 0
    slots = Counter()   # which slot each parsed call picked: a judge that always says "A" is position-biased
    for (a, b), r in by_pair.items():
        s, w = r["straight"], r["swapped"]
        rec = {"prompt_id": items[a]["prompt_id"], "a": a, "b": b}
        if "error" in s or "error" in w:
            rec.update(verdict=None, error=s.get("error") or w.get("error"))
            judge.stats.final_failures[rec["error"]] += 1
        else:
            v1 = Counter(s["votes"]).most_common(1)[0][0]
            raw2 = Counter(w["votes"]).most_common(1)[0][0]
            v2 = {"A": "B", "B": "A", "tie": "tie"}[raw2]
            for raw in (v1, raw2):
                slots[{"A": "first", "B": "second"}.get(raw, "tie")] += 1
            decided += 1
            consistent += v1 == v2
            verdict = v1 if v1 == v2 else "tie"
            rec.update(verdict=verdict, straight=v1, swapped=v2, consistent=v1 == v2)
            games[a] += 1
            games[b] += 1
            wins[a] += 1.0 if verdict == "A" else 0.5 if verdict == "tie" else 0.0
            wins[b] += 1.0 if verdict == "B" else 0.5 if verdict == "tie" else 0.0
        comparisons.append(rec)
        verdicts[(a, b)] = rec
    judge.stats.counts["comparisons"] = len(by_pair)
    judge.stats.counts["swap_consistent"] = consistent
    judge.stats.counts["swap_decided"] = decided
    judge.stats.counts.update({f"slot_{k}": v for k, v in slots.items()})
    in_pair = {x for p in pairs for x in p}
    out = []
    for i, it in enumerate(items):
        j = {"kind": "llm", "model": cfg.judge_model, "rubric": rubric.name, "rubric_hash": rubric.hash, "mode": "pairwise"}
        if games[i]:
            j.update(score=round(wins[i] / games[i], 4), games=games[i], wins=wins[i])
        else:
            # left out of every comparison by --max-pairs-per-prompt: not compared, which is no failure
            j.update(score=None, error="truncated_not_judged" if it.get("truncated") and not cfg.include_truncated
                     else "no_valid_comparison" if i in in_pair else "not_compared")
        out.append({**it, "judge": j})
    return out, comparisons


# ---------------------------------------------------------------- summary helpers


def spearman(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None

    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2 + 1
            i = j + 1
        return r

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    vy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return round(cov / (vx * vy), 4) if vx and vy else None


def load_candidates(path: str) -> list[dict]:
    items = []
    for line, row in read_candidates(path):
        for key in ("prompt_id", "messages", "text"):
            if key not in row:
                raise InputError(f"candidate has no '{key}'", "judge reads the output of dsforge sample",
                                 path=path, line=line)
        items.append(row)
    if not items:
        raise UsageError(f"{path}: no candidates")
    return items


def _candidate_key(row: dict) -> str:
    return Cache.key(row.get("prompt_id"), row.get("temperature"), row.get("sample_index"), row.get("text"))


def _judge_config_id(j: dict) -> tuple:
    return j.get("model"), j.get("rubric_hash"), j.get("mode")


def previous_scores(out: str) -> dict[str, dict]:
    """Good earlier results in an existing judged file: {candidate key: row} for rows with a score.

    Raises UsageError when `out` exists but is not a dsforge judged file (it is never replaced).
    """
    if not os.path.exists(out):
        return {}
    keep = {}
    try:
        for line, row in read_candidates(out):
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
        if _judge_config_id(old["judge"]) == _judge_config_id(j):
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
                   "comparisons": out + ".comparisons.jsonl" if cfg.rubric.mode == "pairwise" else None})
    guard_kind(out, "judge")


def judge_file(candidates: str, out: str, cfg: JudgeConfig, *, engine=None, engine_options: dict | None = None,
               cache_path: str | None = "auto", audit: bool = False, progress: bool = True, log=None,
               shard: tuple[int, int] | None = None) -> dict:
    """Judge the candidates file into `out` (+ OUT.summary.json, OUT.comparisons.jsonl in pairwise mode).

    Rerunning onto an existing `out` keeps its valid scores where this run failed (see
    `keep_good_scores`); the outputs are written together and atomically, so a failure leaves the
    previous ones as they were. No output may be an input (the candidates, a custom rubric file).
    shard (i, n): judge only the candidates whose prompt id falls in slice i of n (`sample.in_shard`).
    """
    log = log or logs.say
    t0 = time.time()
    if cache_path == "auto":
        cache_path = out + ".cache.sqlite"
    pairwise = cfg.rubric.mode == "pairwise"
    check_outputs(candidates, out, cfg, cache_path)
    items = load_candidates(candidates)
    if shard:
        from dsforge.sample import in_shard

        items = [it for it in items if in_shard(it["prompt_id"], shard)]
    previous = previous_scores(out)
    owned = engine is None
    if owned:
        from dsforge.engines import get_engine

        engine = get_engine(cfg.engine, cfg.judge_model, engine_options)
        with logs.log_file(out + ".log"):   # an in-process engine's own output goes there (-v: the console)
            engine.open()
    cache = Cache(cache_path)   # opened after the engine: a judge that fails its probe leaves no cache file
    judge = Judge(cfg, engine, cache, log=log, progress=progress)
    audit_res = None
    try:
        if audit:
            from dsforge.audit import run_audit

            audit_res = run_audit(judge, items)
        if pairwise:
            judged, comparisons = judge_pairwise(judge, items)
        else:
            judged, comparisons = judge_pointwise(judge, items), None
    finally:
        if owned:
            engine.close()
        cache.close()
    kept = keep_good_scores(judged, previous, out)
    if kept:
        log(f"kept {kept} earlier score(s) from {out} for candidates the judge failed on this time")
    summary = summarize(judged, judge, cfg, time.time() - t0)
    summary.update(candidates=candidates, out=out, cache=cache_path, dsforge=__version__, kept_previous=kept,
                   engine_info=engine.describe() if engine is not None else None,
                   shard=f"{shard[0]}/{shard[1]}" if shard else None)
    if audit_res is not None:
        summary["audit"] = audit_res
    _write_judged(out, judged, comparisons, summary)
    return summary


def _write_judged(out: str, judged: list[dict], comparisons: list[dict] | None, summary: dict) -> None:
    with atomic_files() as group:
        f = group.open(out)
        for row in judged:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        if comparisons is not None:
            f = group.open(out + ".comparisons.jsonl")
            for rec in comparisons:
                f.write(json.dumps(rec) + "\n")
        json.dump(summary, group.open(out + ".summary.json"), indent=2)


_SUMMED = ("calls", "cached_calls", "failed_calls", "prompt_tokens", "completion_tokens", "cache_hits",
           "cache_misses", "comparisons", "swap_decided", "kept_previous")


def merge_judged(paths: list[str], out: str, items: list[dict], cfg: JudgeConfig, *, candidates: str) -> dict:
    """Join the judged shard files of one run (`judge --ray`) into `out`, in the candidates' order.

    Checks: every candidate of `items` is in exactly one shard row (by prompt id, temperature, sample
    index and text) and nothing else is; every row was judged with cfg's model, rubric and mode.
    Writes `out`, OUT.summary.json (the shards' summaries added up; score statistics recomputed from
    the merged rows) and, pairwise, OUT.comparisons.jsonl (a/b renumbered to rows of `out`), together
    and atomically. A good score
    already in `out` is kept where the shards failed (`keep_good_scores`). Returns the summary with
    "shards": len(paths). Raises DsforgeError (nothing written) when a check fails."""
    pairwise = cfg.rubric.mode == "pairwise"
    check_outputs(candidates, out, cfg)
    want = Counter(_candidate_key(it) for it in items)
    order: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        order[_candidate_key(it)].append(i)
    merged: list = [None] * len(items)
    problems, comparisons, summaries = [], [] if pairwise else None, []
    config = (cfg.judge_model, cfg.rubric.hash, cfg.rubric.mode)
    for path in paths:
        where = []   # shard row j -> its index in `items` (a comparison's a/b are shard row numbers)
        for line, row in read_candidates(path):
            key = _candidate_key(row)
            where.append(None)
            if not isinstance(row.get("judge"), dict) or _judge_config_id(row["judge"]) != config:
                problems.append(f"{path}:{line} was judged with other settings than this run "
                                f"({_judge_config_id(row.get('judge') or {})} vs {config})")
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


def merge_summaries(summaries: list[dict], judged: list[dict], cfg: JudgeConfig) -> dict:
    """One summary for a run judged in shards: counters added up, score statistics from `judged`."""
    s = _row_stats(judged, cfg)
    for k in _SUMMED:
        if any(k in x for x in summaries):
            s[k] = sum(x.get(k) or 0 for x in summaries)
    for k in ("parse_failures_first_try", "failures_final", "slot_picks"):
        if any(k in x for x in summaries):
            total = Counter()
            for x in summaries:
                total.update(x.get(k) or {})   # update, not +: a zero count stays
            s[k] = dict(total)
    s["structured_output"] = all(x.get("structured_output") for x in summaries)
    s["seconds"] = max(x.get("seconds") or 0 for x in summaries)   # the shards ran side by side
    s["engine_info"] = summaries[0].get("engine_info")
    if cfg.rubric.mode == "pairwise":
        d = s.get("swap_decided") or 0
        s["swap_consistency"] = (round(sum((x.get("swap_consistency") or 0) * (x.get("swap_decided") or 0)
                                           for x in summaries) / d, 4) if d else None)
        picks = s.get("slot_picks") or {}
        fs = (picks.get("first") or 0) + (picks.get("second") or 0)
        s["first_slot_rate"] = round(picks.get("first", 0) / fs, 4) if fs else None
    if cfg.prices:
        s["cost_usd"] = round(sum(x.get("cost_usd") or 0 for x in summaries), 6)
    return s


def summarize(judged: list[dict], judge: Judge, cfg: JudgeConfig, seconds: float) -> dict:
    st = judge.stats
    s = _row_stats(judged, cfg)
    s.update({
        "parse_failures_first_try": dict(st.first_try_failures),
        "failures_final": dict(st.final_failures),
        "structured_output": judge.structured,
        "calls": st.usage["calls"] + st.usage["cached_calls"] + st.usage["failed_calls"],
        "cached_calls": st.usage["cached_calls"], "failed_calls": st.usage["failed_calls"],
        "prompt_tokens": st.usage["prompt_tokens"], "completion_tokens": st.usage["completion_tokens"],
        "cache_hits": judge.cache.hits, "cache_misses": judge.cache.misses, "seconds": round(seconds, 2),
    })
    if cfg.rubric.mode == "pairwise":
        d = st.counts["swap_decided"]
        s["comparisons"] = st.counts["comparisons"]
        s["swap_decided"] = d
        s["swap_consistency"] = round(st.counts["swap_consistent"] / d, 4) if d else None
        picks = {k: st.counts[f"slot_{k}"] for k in ("first", "second", "tie")}
        s["slot_picks"] = picks   # per call (each pair is asked in both orders)
        s["first_slot_rate"] = (round(picks["first"] / (picks["first"] + picks["second"]), 4)
                                if picks["first"] + picks["second"] else None)
    if cfg.prices:
        s["cost_usd"] = round(s["prompt_tokens"] / 1e6 * cfg.prices[0] + s["completion_tokens"] / 1e6 * cfg.prices[1], 6)
    return s


def _row_stats(judged: list[dict], cfg: JudgeConfig) -> dict:
    """The summary fields that follow from the judged rows alone."""
    scored = [r for r in judged if r["judge"].get("score") is not None]
    by_t = defaultdict(list)
    for r in scored:
        by_t[str(r.get("temperature"))].append(r["judge"]["score"])
    hist = Counter()
    for r in scored:
        hist[str(round(r["judge"]["score"], 1))] += 1
    s = {
        "judge_model": cfg.judge_model, "rubric": cfg.rubric.name, "rubric_hash": cfg.rubric.hash,
        "mode": cfg.rubric.mode, "votes": cfg.votes, "items": len(judged), "scored": len(scored),
        "not_judged_truncated": sum(1 for r in judged if r["judge"].get("error") == "truncated_not_judged"),
        "failed": sum(1 for r in judged if r["judge"].get("score") is None
                      and r["judge"].get("error") not in ("truncated_not_judged", "not_compared")),
        "not_compared": sum(1 for r in judged if r["judge"].get("error") == "not_compared"),
        "mean_score_by_temperature": {t: round(sum(v) / len(v), 4) for t, v in sorted(by_t.items())},
        "score_histogram": dict(sorted(hist.items(), key=lambda kv: float(kv[0]))),
        "spearman_score_length": spearman([r["judge"]["score"] for r in scored], [len(r["text"]) for r in scored]),
    }
    return s


def format_summary(s: dict) -> str:
    lines = [f"judged {s['items']} candidates with {s['judge_model']} ({s['rubric']}, {s['mode']}): "
             f"{s['scored']} scored, {s['failed']} failed, {s['not_judged_truncated']} truncated not judged"]
    if s["parse_failures_first_try"] or s["failures_final"]:
        lines.append(f"parse failures: first try {s['parse_failures_first_try'] or 0}, final {s['failures_final'] or 0}")
    if s.get("swap_consistency") is not None:
        fs = s.get("first_slot_rate")
        sp = s.get("slot_picks") or {}
        lines.append(f"pairwise: {s['comparisons']} comparisons, swap-consistency {s['swap_consistency']:.1%}, "
                     f"first-slot pick rate " + (f"{fs:.1%} ({sp.get('first')} of {sp.get('first', 0) + sp.get('second', 0)} "
                                                 f"decisive calls; 50% = no position bias)" if fs is not None else "n/a"))
    if s.get("not_compared"):
        lines.append(f"{s['not_compared']} candidates not compared (left out of every pair by --max-pairs-per-prompt)")
    lines.append(f"mean score by temperature: {s['mean_score_by_temperature']}; "
                 f"Spearman(score, length) = {s['spearman_score_length']}")
    lines.append(f"calls {s['calls']} ({s['cached_calls']} from the cache, free; {s.get('failed_calls', 0)} failed), "
                 f"new tokens {s['prompt_tokens']} in / "
                 f"{s['completion_tokens']} out, {s['seconds']} s" +
                 (f", est. cost ${s['cost_usd']}" if "cost_usd" in s else ""))
    if "audit" in s:
        a = s["audit"]
        lines.append("audit: " + ", ".join(f"{k} {v['rate']:.0%} ({v['passed']}/{v['total']})"
                                           for k, v in a.items() if isinstance(v, dict) and v.get("total")))
    return "\n".join(lines)
