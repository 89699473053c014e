"""The judge core: the judge's settings, calls through the engine (with the cache), parsing votes, and the
one re-ask loop (`Judge.ask`) that pointwise, pairwise and the audit share."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from dsforge import logs
from dsforge.engines import Request, SamplingParams
from dsforge.errors import InputError, UsageError
from dsforge.judge.cache import Cache
from dsforge.rubrics import Rubric, expected_score, parse_reply


@dataclass
class JudgeConfig:
    """What a judge run asks and how: judge model, rubric, engine name, sampling (temperature, votes =
    replies per call, max_tokens), parse_retries (re-asks of an unparseable reply), structured output,
    logprobs, seed, pairwise pairs per prompt, whether truncated candidates are judged, and prices in
    USD per 1M (prompt, completion) tokens for the cost estimate.

    With `verifier` (a dsforge.verify spec: exact | numeric | math | regex:P | python:M:F) no model is
    called: each reply is checked against the candidate's `reference_field`; judge_model and rubric
    are then unused. Raises UsageError when neither a verifier nor a judge model with a rubric is set."""
    judge_model: str = ""
    rubric: Rubric | None = None
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
    verifier: str | None = None      # judge by a program (dsforge.verify), not a model
    reference_field: str = "reference"

    def __post_init__(self):
        if not self.verifier and (not self.judge_model or self.rubric is None):
            raise UsageError("a judge needs a judge model and a rubric, or a verifier",
                             "dsforge judge CANDIDATES -m MODEL ..., or --verifier numeric")

    @property
    def mode(self) -> str:
        """The judging mode: verifier, or the rubric's (pointwise | pairwise)."""
        return "verifier" if self.verifier else self.rubric.mode

    def config_id(self) -> tuple:
        """What makes two judgements comparable: ("verifier", spec) or (model, rubric hash, mode);
        `judge_config_id` of the rows this config writes."""
        return ("verifier", self.verifier) if self.verifier else (self.judge_model, self.rubric.hash, self.rubric.mode)


def from_stage(o, judge_model: str = "", prices: tuple[float, float] | None = None) -> JudgeConfig:
    """The library JudgeConfig of a judge stage config `o` (dsforge.stages.JudgeConfig: the CLI's options or a
    recipe's judge entry): the rubric loaded (rubrics.load_rubric: UsageError for a bad rubric), `judge_model`
    as the engine should see it (resolved path or served name); with o.verifier no model and no rubric."""
    from dsforge.rubrics import load_rubric

    if o.verifier:
        return JudgeConfig(verifier=o.verifier, reference_field=o.reference_field, include_truncated=o.include_truncated)
    return JudgeConfig(judge_model=judge_model, rubric=load_rubric(o.rubric, o.mode), engine=o.engine,
                       temperature=o.temperature, votes=o.votes, max_tokens=o.max_tokens, parse_retries=o.parse_retries,
                       structured=o.structured, logprobs=o.logprobs, seed=o.seed,
                       max_pairs_per_prompt=o.max_pairs_per_prompt, include_truncated=o.include_truncated,
                       prices=prices, reference_field=o.reference_field)


def reference_of(row: dict, field: str):
    """The candidate's reference answer: row[field], else row["fields"][field] (prompt-row fields
    that `sample --carry` copied); None when the candidate has neither."""
    if row.get(field) is not None:
        return row[field]
    return (row.get("fields") or {}).get(field)


def missing_reference(cfg: JudgeConfig, path: str, line: int) -> InputError:
    """The error for a candidate at PATH:LINE without the reference answer that cfg's judge needs."""
    who = f"verifier {cfg.verifier}" if cfg.verifier else f"rubric {cfg.rubric.name}"
    return InputError(f"candidate has no reference answer in '{cfg.reference_field}' ({who})",
                      f"sample prompts that carry a '{cfg.reference_field}' field (dsforge tasks make writes "
                      "'reference'), or name the field that holds it: --reference-field FIELD", path=path, line=line)


def judge_config_id(j: dict) -> tuple:
    """JudgeConfig.config_id() of the judge that wrote the `judge` dict `j` of a judged row."""
    if j.get("kind") == "verifier":
        return "verifier", j.get("verifier")
    return j.get("model"), j.get("rubric_hash"), j.get("mode")


@dataclass
class Call:
    """One judge call: its messages, where the parsed result goes, and its attempt number.

    After `Judge.ask`, `tries` holds the parsed votes of every attempt (`parse_votes`' dict), the last
    one being the call's outcome (`parsed`)."""
    item: object
    messages: list[dict]
    attempt: int = 0
    swapped: bool = False
    probe: str = ""                 # audit probes: part of the cache key, not of the sampling
    result: dict | None = None      # {"texts": [...], "logprobs": [...], "usage": {...}} or {"error": ...}
    tries: list[dict] = field(default_factory=list)

    @property
    def parsed(self) -> dict:
        """The last attempt's parse (`parse_votes`' dict); IndexError before the call was asked."""
        return self.tries[-1]


@dataclass
class Stats:
    """Counters of one judge run: counts (api_failures, comparisons, swap_*, slot_*, skipped_truncated),
    parse failures by cause on the first try and after the last re-ask, and token/call usage."""
    counts: Counter = field(default_factory=Counter)
    first_try_failures: Counter = field(default_factory=Counter)
    final_failures: Counter = field(default_factory=Counter)
    usage: Counter = field(default_factory=Counter)


class Judge:
    """A judge bound to an open engine and a call cache; `ask` runs calls with re-asks, `stats` counts."""

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

    def ask(self, calls: list[Call], desc: str, *, count_failures: bool = True) -> None:
        """Run `calls` and re-ask each whose reply does not parse, up to cfg.parse_retries more times,
        with a fresh sample (attempt number in the cache key). A call that failed at the API (after the
        engine's own retries) is not re-asked: a rerun of the command retries it. Every attempt's parse
        is appended to call.tries. count_failures: count first-try parse failures in stats (the audit's
        probes are not the run's failures)."""
        rubric = self.cfg.rubric
        pending = list(calls)
        for attempt in range(self.cfg.parse_retries + 1):
            if not pending:
                break
            for c in pending:
                c.attempt, c.result = attempt, None
            self.run_calls(pending, desc if attempt == 0 else f"re-asking ({attempt})")
            again = []
            for c in pending:
                c.tries.append(parse_votes(c, rubric))
                if "error" in c.parsed:
                    if attempt == 0 and count_failures:
                        self.stats.first_try_failures[c.parsed["error"]] += 1
                    if "error" not in c.result:
                        again.append(c)
            pending = again

    def run_calls(self, calls: list[Call], desc: str) -> None:
        """Answer each call once, from the cache or the engine in one batch; sets call.result. A server
        that rejects response_format (HTTP 400) is asked again without it for the rest of the run."""
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


def parse_votes(call: Call, rubric: Rubric) -> dict:
    """All votes of one answered call parsed: {"raw": [reply texts], "votes": [score | "A"/"B"/"tie" |
    {"score", parts}], "vote_errors": [causes], "rationale": str | None, "expected_score"?: float from
    logprobs} plus "error": cause when no vote parsed (or the API call failed: then raw and votes are
    empty). The item's score is the mean of the valid votes."""
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


def outcome(parsed: dict) -> float | str:
    """The result of one parsed call without "error": pointwise, the mean of its vote scores (rubric
    scale); pairwise, the majority verdict "A", "B" or "tie" (first in reply order on a draw)."""
    votes = [v["score"] if isinstance(v, dict) else v for v in parsed["votes"]]
    if isinstance(votes[0], str):
        return Counter(votes).most_common(1)[0][0]
    return sum(votes) / len(votes)
