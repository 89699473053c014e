"""transformers `generate`: the engine for GPUs without vLLM, and the CPU fallback.

Batching: requests that share max_tokens, stop strings and top_p are left-padded into batches of
`batch_size` prompts (each prompt expanded to its n rows) whatever their seeds, temperatures and n,
so one `generate` call holds up to batch_size x n rows.

Seeds (documented scheme, independent of batching): dsforge samples the token itself, inside a
LogitsProcessor, by inverse CDF with a uniform draw that belongs to the row alone:

    u[row, step] = torch.rand(max_tokens, generator=manual_seed(derive_seed(seed, "row", k)))[step]

for sample index k of a request with seed `seed` (softmax(logits / temperature), top_p applied in
descending-probability order, temperature 0 = argmax); generate then takes that token greedily.
So which requests share a batch, the batch size and the order never change which draw a row
gets. What can still differ is the last bits of a row's logits (padding width and kernel blocking
change the floating-point sums), which moves a draw only when it lands within rounding of a
boundary between two tokens, more often in bfloat16 than in float32; vLLM has the same limit.
A request without a seed gets a fresh random one, and the candidate records it.

mean_logprob is the sampled tokens' log-probability under the model's raw distribution (before
temperature and top_p), as vLLM reports by default.

dtype: bfloat16 on a GPU; on a CPU bfloat16 where the processor has native bf16
(avx512_bf16 / amx_bf16), else float32. `--engine-opt dtype=float32` forces it.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Iterable, Iterator, Literal

from pydantic import PositiveInt

from dsforge.engines import Completion, Engine, EngineOptions, Request, Result, derive_seed, mean


class HFOptions(EngineOptions):
    """--engine-opt keys of the transformers engine: device, dtype (default: default_dtype), batch size, LoRA."""
    batch_size: PositiveInt | None = None   # prompts per generate call (x n rows); default 32 on a GPU, 8 on a CPU
    dtype: Literal["float32", "bfloat16", "float16"] | None = None   # default: see the module docstring
    device: str | None = None         # default: cuda if available, else cpu
    trust_remote_code: bool = False
    lora_path: str | None = None      # a PEFT adapter to apply


def cpu_has_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16; arm64 BF16): torch's own
    probes first, then /proc/cpuinfo's flags (dsforge.hardware.native_bf16)."""
    import torch

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except Exception:  # a probe missing on this build: fall back to the flags
                pass
    from dsforge.hardware import native_bf16

    return native_bf16()[0]   # the CPU's flags (x86 avx512_bf16/amx_bf16, arm bf16)


def default_dtype(device: str) -> str:
    """bfloat16 on a GPU (float16 where it has no bf16), on a CPU with native bf16; else float32."""
    import torch

    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if device == "cpu" and cpu_has_bf16() else "float32"


def row_uniforms(seed: int, index: int, steps: int):
    """The uniform draws of sample `index` of a request seeded `seed`: float32 tensor [steps] on the CPU."""
    import torch

    g = torch.Generator().manual_seed(derive_seed(seed, "row", index))
    return torch.rand(steps, generator=g)


def make_sampler(uniforms, temps, top_p: float, want_logprobs: bool):
    """A LogitsProcessor that draws each row's next token from its own uniforms (see the module docstring)
    and returns scores whose argmax is that token. uniforms: [rows, steps] on the model's device;
    temps: [rows] (0 = greedy). Its .logprobs collects one [rows] tensor per step when asked."""
    import torch
    from transformers import LogitsProcessor

    greedy_rows = bool((temps <= 0).any())
    safe_t = torch.where(temps > 0, temps, torch.ones_like(temps))[:, None]

    class RowSampler(LogitsProcessor):
        def __init__(self):
            self.step = 0
            self.logprobs: list = []

        def __call__(self, input_ids, scores):
            logits = scores.float()
            u = uniforms[:, min(self.step, uniforms.shape[1] - 1)]
            self.step += 1
            probs = torch.softmax(logits / safe_t, dim=-1)
            if top_p < 1.0:
                probs, order = probs.sort(dim=-1, descending=True)
                probs = probs * ((probs.cumsum(-1) - probs) < top_p)
            cdf = probs.cumsum(-1)
            idx = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None]).clamp_(max=cdf.shape[-1] - 1)
            chosen = (order.gather(-1, idx) if top_p < 1.0 else idx).squeeze(-1)
            if greedy_rows:
                chosen = torch.where(temps > 0, chosen, logits.argmax(-1))
            if want_logprobs:
                self.logprobs.append(logits.gather(-1, chosen[:, None]).squeeze(-1) - logits.logsumexp(-1))
            return torch.full_like(scores, float("-inf")).scatter_(-1, chosen[:, None], 0.0)

    return RowSampler()


class HFEngine(Engine):
    """transformers generate with per-row seeded sampling (see the module docstring): the CPU fallback."""
    name = "hf"
    Options = HFOptions

    def __init__(self, model: str, options: HFOptions):
        super().__init__(model, options)
        self.capabilities = {"seed": True, "logprobs": True, "n": True}
        self.tok = self.lm = None

    def open(self) -> "HFEngine":
        """Load tokenizer and model (and the LoRA adapter) on the chosen device and dtype; returns self."""
        return self._captured(self._open)   # transformers' and torch's output: the command's log file

    def _open(self) -> "HFEngine":
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        o = self.options
        self.device = o.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = o.dtype or default_dtype(self.device)
        self.batch_size = max(1, o.batch_size or (32 if self.device.startswith("cuda") else 8))
        self.tok = AutoTokenizer.from_pretrained(self.model, trust_remote_code=o.trust_remote_code)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.lm = AutoModelForCausalLM.from_pretrained(self.model, dtype=getattr(torch, self.dtype),
                                                       trust_remote_code=o.trust_remote_code).to(self.device)
        if o.lora_path:
            from peft import PeftModel

            self.lm = PeftModel.from_pretrained(self.lm, o.lora_path)
        self.lm.eval()
        self.eos = set(self.tok.convert_tokens_to_ids([self.tok.eos_token]) if self.tok.eos_token else [])
        e = getattr(self.lm.generation_config, "eos_token_id", None)
        if e is not None:
            self.eos |= set(e if isinstance(e, list) else [e])
        return self

    def close(self) -> None:
        """Drop the model and tokenizer and release the log capture."""
        self.lm = self.tok = None
        import gc

        gc.collect()
        self._release()

    def describe(self) -> dict:
        """Engine.describe() plus the resolved device, dtype and batch size once open."""
        d = super().describe()
        if self.lm is not None:
            d["resolved"] = {"device": self.device, "dtype": self.dtype, "batch_size": self.batch_size}
        return d

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        """Group requests by sampling settings, generate in batches of batch_size, and yield one Result per
        request with n completions each."""
        if self.lm is None:
            self.open()
        groups: dict = defaultdict(list)
        for r in requests:
            p = r.params
            ids = self.tok.apply_chat_template(r.messages, tokenize=True, add_generation_prompt=True)
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):   # transformers 5 returns a BatchEncoding
                ids = ids["input_ids"]
            groups[(p.max_tokens, tuple(p.stop), p.top_p)].append((list(ids), r))
        bs = self.batch_size
        for (max_tokens, stop, top_p), items in groups.items():
            items.sort(key=lambda it: len(it[0]))   # less padding; results do not depend on the batch
            for i in range(0, len(items), bs):
                yield from self._batch(items[i:i + bs], max_tokens, stop, top_p)

    def _batch(self, items: list, max_tokens: int, stop: tuple, top_p: float) -> list[Result]:
        import torch

        pad = self.tok.pad_token_id
        width = max(len(ids) for ids, _ in items)
        seeds = [r.params.seed if r.params.seed is not None else int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
                 for _, r in items]
        rows_ids, rows_mask, uniforms, temps = [], [], [], []
        for (ids, r), seed in zip(items, seeds):
            for k in range(r.params.n):
                rows_ids.append([pad] * (width - len(ids)) + ids)
                rows_mask.append([0] * (width - len(ids)) + [1] * len(ids))
                uniforms.append(row_uniforms(seed, k, max_tokens + 8))
                temps.append(max(0.0, r.params.temperature))
        dev = self.lm.device
        sampler = make_sampler(torch.stack(uniforms).to(dev), torch.tensor(temps, device=dev), top_p,
                               any(r.params.logprobs for _, r in items))
        kw = dict(max_new_tokens=max_tokens, do_sample=False, pad_token_id=pad, logits_processor=[sampler])
        if stop:
            kw.update(stop_strings=list(stop), tokenizer=self.tok)
        with torch.no_grad():
            out = self.lm.generate(input_ids=torch.tensor(rows_ids, device=dev),
                                   attention_mask=torch.tensor(rows_mask, device=dev), **kw)
        seqs = out[:, width:].tolist()
        lps = torch.stack(sampler.logprobs, 1).tolist() if sampler.logprobs else None
        results, row = [], 0
        for (ids, req), seed in zip(items, seeds):
            comps = []
            for _ in range(req.params.n):
                comps.append(self._completion(seqs[row], lps[row] if lps and req.params.logprobs else None, stop))
                row += 1
            results.append(Result(request=req, completions=comps, prompt_tokens=len(ids), seed_used=seed))
        return results

    def _completion(self, row: list[int], lps: list | None, stop: tuple) -> Completion:
        length, finish = len(row), "length"
        for pos, t in enumerate(row):
            if t in self.eos:
                length, finish = pos + 1, "stop"
                break
            if t == self.tok.pad_token_id:
                length, finish = pos, "stop"
                break
        text = self.tok.decode(row[:length], skip_special_tokens=True)
        if stop and finish == "length":
            for s in stop:
                if s in text:
                    text, finish = text[:text.index(s)], "stop"
        return Completion(text=text, finish_reason=finish, completion_tokens=length,
                          mean_logprob=mean(lps[:length]) if lps else None)
