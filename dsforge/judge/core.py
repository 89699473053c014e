"""The judge core: the judge's settings, one call through the engine (with the cache), parsing votes."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from dsforge import logs
from dsforge.engines import Request, SamplingParams
from dsforge.judge.cache import Cache
from dsforge.rubrics import Rubric, expected_score, parse_reply


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
