"""transformers `generate`: the fallback when vLLM is not available (any CPU, any platform).

Requests are grouped by identical sampling parameters, left-padded into batches of
`batch_size` prompts and generated with num_return_sequences=n. Each request's seed is honoured
exactly when batch_size is 1 (torch's generator is per call, not per row); with larger batches
the batch is seeded from its first request, and candidates record seed=None so nothing claims a
reproducibility it does not have.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Iterator

from dsforge.engines import Completion, Engine, EngineOptions, Request, Result, mean


class HFOptions(EngineOptions):
    batch_size: int = 8
    dtype: str = "float32"            # float32 | bfloat16 | float16
    device: str | None = None         # default: cuda if available, else cpu
    trust_remote_code: bool = False
    lora_path: str | None = None      # a PEFT adapter to apply


class HFEngine(Engine):
    name = "hf"
    Options = HFOptions

    def __init__(self, model: str, options: HFOptions):
        super().__init__(model, options)
        self.capabilities = {"seed": options.batch_size == 1, "logprobs": True, "n": True}
        self.tok = self.lm = None

    def open(self) -> "HFEngine":
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        o = self.options
        self.device = o.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tok = AutoTokenizer.from_pretrained(self.model, trust_remote_code=o.trust_remote_code)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.lm = AutoModelForCausalLM.from_pretrained(self.model, dtype=getattr(torch, o.dtype),
                                                       trust_remote_code=o.trust_remote_code).to(self.device)
        if o.lora_path:
            from peft import PeftModel

            self.lm = PeftModel.from_pretrained(self.lm, o.lora_path)
        self.lm.eval()
        return self

    def close(self) -> None:
        self.lm = self.tok = None
        import gc

        gc.collect()

    def generate(self, requests: Iterable[Request]) -> Iterator[Result]:
        if self.lm is None:
            self.open()
        groups: dict = defaultdict(list)
        for r in requests:
            groups[r.params].append(r)
        bs = max(1, self.options.batch_size)
        for params, reqs in groups.items():
            for i in range(0, len(reqs), bs):
                yield from self._batch(params, reqs[i:i + bs])

    def _batch(self, p, reqs: list[Request]) -> list[Result]:
        import torch

        texts = [self.tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in reqs]
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        if reqs[0].params.seed is not None:
            torch.manual_seed(reqs[0].params.seed)
        greedy = p.temperature <= 0
        kw = dict(max_new_tokens=p.max_tokens, num_return_sequences=p.n, do_sample=not greedy,
                  pad_token_id=self.tok.pad_token_id, return_dict_in_generate=True, output_scores=p.logprobs)
        if not greedy:
            kw.update(temperature=p.temperature, top_p=p.top_p, top_k=0)
        if p.stop:
            kw.update(stop_strings=list(p.stop), tokenizer=self.tok)
        with torch.no_grad():
            out = self.lm.generate(**enc, **kw)
        width = enc["input_ids"].shape[1]
        seqs = out.sequences[:, width:]
        trans = None
        if p.logprobs:
            trans = self.lm.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        eos = set(self.tok.convert_tokens_to_ids([self.tok.eos_token]) if self.tok.eos_token else [])
        if getattr(self.lm.generation_config, "eos_token_id", None) is not None:
            e = self.lm.generation_config.eos_token_id
            eos |= set(e if isinstance(e, list) else [e])
        results = []
        for j, req in enumerate(reqs):
            comps = []
            for k in range(p.n):
                row = seqs[j * p.n + k].tolist()
                length, finish = len(row), "length"
                for pos, t in enumerate(row):
                    if t in eos:
                        length, finish = pos + 1, "stop"
                        break
                    if t == self.tok.pad_token_id and t not in eos:
                        length, finish = pos, "stop"
                        break
                text = self.tok.decode(row[:length], skip_special_tokens=True)
                if p.stop and finish == "length":
                    for s in p.stop:
                        if s in text:
                            text, finish = text[:text.index(s)], "stop"
                lps = trans[j * p.n + k][:length].tolist() if trans is not None else None
                comps.append(Completion(text=text, finish_reason=finish, completion_tokens=length,
                                        mean_logprob=mean(lps) if lps else None))
            prompt_len = int(enc["attention_mask"][j].sum())
            results.append(Result(request=req, completions=comps, prompt_tokens=prompt_len,
                                  seed_used=req.params.seed if self.capabilities["seed"] else None))
        return results
