"""Any OpenAI-compatible server through the `openai` client: vllm serve, llamafactory-cli api, OpenAI.

- bounded concurrency (asyncio semaphore), results yielded as they finish;
- retries (tenacity) with exponential backoff + jitter on 429, 5xx, timeouts and dropped connections
  (Retry-After honoured); other 4xx fail the request at once with the server's message; the openai
  client's own retries are off (max_retries=0) so every retry is counted by cause;
- servers that return fewer than `n` choices (ignore `n`) get follow-up requests until the
  requested number of answers exists; the result says so (meta.n_emulated);
- an optional probe at open() finds out whether the server honours `seed` and `logprobs`
  (llamafactory-cli api ignores both), so candidates never claim a seed that did nothing.

The API key is taken from the option or OPENAI_API_KEY and never written anywhere.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from typing import Iterator

from dsforge.engines import Completion, Engine, EngineOptions, Request, Result, mean
from dsforge.errors import DsforgeError, UsageError, redact, redact_text, redact_url

_DONE = object()


class OpenAIOptions(EngineOptions):
    """--engine-opt keys of the openai engine (unknown keys are errors)."""
    base_url: str | None = None       # default: OPENAI_BASE_URL, then http://127.0.0.1:8000/v1
    api_key: str | None = None        # default: OPENAI_API_KEY, then "EMPTY" (local servers)
    concurrency: int = 16
    timeout: float = 120.0            # seconds per HTTP request
    max_retries: int = 6
    backoff: float = 0.5              # first retry delay; doubles, plus up to `backoff` of jitter, up to backoff_max
    backoff_max: float = 20.0
    probe: bool = True                # check seed/logprobs support at open()
    extra_body: dict | None = None    # server-specific fields, e.g. {"top_k": 50}


RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIEngine(Engine):
    """Any OpenAI-compatible chat server; see the module docstring. `stats` counts requests (attempts),
    retries, retry_causes {cause: count}, prompt_tokens and completion_tokens over the engine's life."""
    name = "openai"
    Options = OpenAIOptions

    def __init__(self, model: str, options: OpenAIOptions):
        super().__init__(model, options)
        self.base_url = options.base_url or os.environ.get("OPENAI_BASE_URL") or "http://127.0.0.1:8000/v1"
        self._api_key = options.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.capabilities = {"seed": None, "logprobs": None, "n": None}
        self.stats = {"requests": 0, "retries": 0, "retry_causes": {}, "prompt_tokens": 0, "completion_tokens": 0}

    def describe(self) -> dict:
        """Engine.describe() plus base_url, with the API key and any credential in a URL left out."""
        d = super().describe()
        d["options"].pop("api_key", None)
        d["base_url"] = self.base_url
        return redact(d)   # no credential from a URL or an option reaches a summary or manifest

    def _client(self):
        import openai

        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key, max_retries=0,
                                  timeout=self.options.timeout)

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> "OpenAIEngine":
        """Probe the server (unless probe=false) for seed and logprobs support; DsforgeError / UsageError when
        it cannot be reached, does not serve the model, or refuses the key."""
        if self.options.probe:
            self.capabilities.update(asyncio.run(self._probe()))
        return self

    async def _probe(self) -> dict:
        """Same seed twice and another seed once, at temperature 1: equal/equal/different means
        the server honours seed; two different answers under one seed mean it ignores it."""
        client = self._client()
        msgs = [{"role": "user", "content": "Write one unusual English word, then a random number."}]

        async def ask(seed):
            r = await self._create(client, msgs, dict(temperature=1.0, top_p=1.0, max_tokens=12, n=1, seed=seed,
                                                      logprobs=True))
            return r

        try:
            a = await ask(1234)
            b = await ask(1234)
            c = await ask(98765)
        except Exception as err:  # noqa: BLE001
            raise await self._probe_error(client, err) from None
        finally:
            await client.close()
        ta, tb, tc = (x.choices[0].message.content for x in (a, b, c))
        seed = None if ta == tb == tc else (ta == tb)
        logprobs = a.choices[0].logprobs is not None and bool(getattr(a.choices[0].logprobs, "content", None))
        return {"seed": seed, "logprobs": logprobs}

    async def _probe_error(self, client, err: BaseException) -> DsforgeError:
        """Why the first requests failed: no server, a model name it does not serve, or its own error."""
        import openai

        url = redact_url(self.base_url)
        if not isinstance(err, openai.APIStatusError):
            return DsforgeError(f"cannot reach the OpenAI-compatible server at {url}: {_describe(err)}",
                                "start one (dsforge serve, vllm serve, llamafactory-cli api) or set --base-url / "
                                "OPENAI_BASE_URL")
        try:   # the server answered: does it serve this model?
            served = [m.id async for m in client.models.list()]
        except Exception:  # noqa: BLE001 - servers without /models: report the original error
            served = None
        if served is not None and self.model not in served:
            return UsageError(f"the server at {url} does not serve a model named '{self.model}' (-m)",
                              f"it serves: {', '.join(served) or '(nothing)'}; pass one of these with -m")
        if err.status_code in (401, 403):
            return DsforgeError(f"the server at {url} refused the API key ({_describe(err)})",
                                "pass --api-key or set OPENAI_API_KEY")
        return DsforgeError(f"the server at {url} answered the first request with an error: {_describe(err)}",
                            "check the server's log; --engine-opt probe=false skips this check")

    # ------------------------------------------------------------------ requests

    async def _create(self, client, messages, kw: dict):
        kw = {k: v for k, v in kw.items() if v is not None}
        if not kw.get("logprobs"):
            kw.pop("logprobs", None)
            kw.pop("top_logprobs", None)
        if not kw.get("stop"):
            kw.pop("stop", None)
        extra = self.options.extra_body or None
        return await client.chat.completions.create(model=self.model, messages=messages, extra_body=extra, **kw)

    async def _with_retries(self, client, messages, kw, meta) -> object:
        """One chat completion, retried by tenacity on what `_retryable` accepts (429, 5xx, timeouts,
        dropped connections): exponential backoff with jitter from `backoff` up to `backoff_max`, never
        sooner than the server's Retry-After; at most max_retries retries, then the last error is raised.
        Every attempt counts in stats["requests"], every retry in stats["retries"] and, by cause, in
        stats["retry_causes"] and meta["retries"]."""
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

        o = self.options

        def count_retry(state) -> None:
            cause = _cause(state.outcome.exception())
            self.stats["retries"] += 1
            self.stats["retry_causes"][cause] = self.stats["retry_causes"].get(cause, 0) + 1
            meta.setdefault("retries", []).append(cause)

        backoff = wait_exponential(multiplier=o.backoff, max=o.backoff_max) + wait_random(0, o.backoff)
        retrying = AsyncRetrying(retry=retry_if_exception(_retryable), stop=stop_after_attempt(o.max_retries + 1),
                                 wait=_NotBeforeRetryAfter(backoff, o.backoff_max), before_sleep=count_retry,
                                 reraise=True)
        async for attempt in retrying:
            with attempt:
                self.stats["requests"] += 1
                return await self._create(client, messages, kw)

    async def _one(self, client, req: Request) -> Result:
        p = req.params
        res = Result(request=req)
        kw = dict(temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens, n=p.n, seed=p.seed,
                  stop=list(p.stop) or None, logprobs=p.logprobs or p.top_logprobs > 0 or None,
                  top_logprobs=p.top_logprobs or None, response_format=p.response_format)
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        try:
            while len(res.completions) < p.n:
                want = p.n - len(res.completions)
                resp = await self._with_retries(client, req.messages, {**kw, "n": want}, res.meta)
                if not resp.choices:
                    raise ValueError("the server returned no choices")
                if len(resp.choices) < want:
                    res.meta["n_emulated"] = True
                    self.capabilities["n"] = False
                elif self.capabilities["n"] is None and want > 1:
                    self.capabilities["n"] = True
                for ch in resp.choices[:want]:
                    res.completions.append(_completion(ch, len(resp.choices) == 1))
                if resp.usage is not None:
                    if res.prompt_tokens is None:
                        res.prompt_tokens = resp.usage.prompt_tokens
                    usage["prompt_tokens"] += resp.usage.prompt_tokens or 0
                    usage["completion_tokens"] += resp.usage.completion_tokens or 0
                    if len(resp.choices) == 1 and res.completions[-1].completion_tokens is None:
                        res.completions[-1].completion_tokens = resp.usage.completion_tokens
        except Exception as err:  # noqa: BLE001 - recorded per request, the run goes on
            res.error = _describe(err)
            res.meta["error_cause"] = _cause(err)
        res.meta["usage"] = usage
        self.stats["prompt_tokens"] += usage["prompt_tokens"]
        self.stats["completion_tokens"] += usage["completion_tokens"]
        res.seed_used = p.seed if self.capabilities.get("seed") else None
        return res

    async def _run_all(self, requests: list[Request], out: queue.Queue) -> None:
        client = self._client()
        sem = asyncio.Semaphore(max(1, self.options.concurrency))

        async def guarded(req):
            async with sem:
                out.put(await self._one(client, req))

        try:
            await asyncio.gather(*(guarded(r) for r in requests))
        finally:
            await client.close()

    def generate(self, requests: list[Request]) -> Iterator[Result]:
        """Send every request with bounded concurrency and yield each Result as it finishes (any order); a
        request that fails for good yields a Result with `error` set, the others go on."""
        out: queue.Queue = queue.Queue()

        def runner():
            try:
                asyncio.run(self._run_all(requests, out))
            except BaseException as err:  # noqa: BLE001 - handed to the consumer
                out.put(err)
            out.put(_DONE)

        thread = threading.Thread(target=runner, name="dsforge-openai", daemon=True)
        thread.start()
        while True:
            item = out.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
        thread.join()


def _completion(choice, single: bool) -> Completion:
    text = choice.message.content or ""
    lps = None
    toks = None
    content = getattr(choice.logprobs, "content", None) if choice.logprobs is not None else None
    if content:
        lps = [t.logprob for t in content]
        toks = [(t.token, t.logprob, {a.token: a.logprob for a in (t.top_logprobs or [])}) for t in content]
    finish = choice.finish_reason
    if finish not in ("stop", "length", None):
        finish = "stop" if finish in ("eos", "stop_sequence", "end_turn") else finish
    return Completion(text=text, finish_reason=finish, completion_tokens=len(lps) if lps else None,
                      mean_logprob=mean(lps) if lps else None, token_logprobs=toks)


def _cause(err: BaseException) -> str:
    import openai

    if isinstance(err, openai.APITimeoutError):
        return "timeout"
    if isinstance(err, openai.APIConnectionError):
        return "connection"
    if isinstance(err, openai.APIStatusError):
        return f"http_{err.status_code}"
    return type(err).__name__


def _describe(err: BaseException) -> str:
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return redact_text(f"{_cause(err)}: {msg}")[:500]


def _retryable(err: BaseException) -> bool:
    """Whether a failed request is worth another try: a timeout, a dropped connection, 429, 408/409/425, 5xx."""
    import openai

    if isinstance(err, (openai.APITimeoutError, openai.APIConnectionError)):
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code in RETRYABLE_STATUS or err.status_code >= 500
    return False


class _NotBeforeRetryAfter:
    """A tenacity wait: `base`'s delay, raised to the server's Retry-After (capped at `cap` seconds)."""

    def __init__(self, base, cap: float):
        self.base, self.cap = base, cap

    def __call__(self, state) -> float:
        delay = self.base(state)
        after = _retry_after(state.outcome.exception()) if state.outcome is not None else None
        return max(delay, min(after, self.cap)) if after is not None else delay


def _retry_after(err) -> float | None:
    resp = getattr(err, "response", None)
    try:
        value = resp.headers.get("retry-after") if resp is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
