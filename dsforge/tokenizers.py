"""Tokenizers below the stages: loading a local Hugging Face tokenizer, and LLaMA-Factory 0.9.5's
tokenization mirrored for what it never reports about cutoff_len:
- SFT: turn by turn, `infer_seqlen(source, target, budget)` cuts the prompt or the response;
- pairs (rm/dpo): chosen and rejected are both cut to the budget of the longer one (TruncationCheck);
- pretraining: texts + EOS are concatenated per preprocessing batch (1000 rows) and cut into
  cutoff_len blocks; the remainder of each batch is thrown away, and zero blocks is a failure.
Used by validate's length audit (dsforge.validate.lengths), pairs' truncation check, report and pt chunking.
Needs `transformers` (pip install 'dsforge[hf]'); no torch. The hub is never contacted.
"""

from __future__ import annotations

import os
from collections import Counter
from functools import lru_cache

from dsforge.errors import UsageError


@lru_cache(maxsize=4)
def load_tokenizer(path: str):
    """The tokenizer of the local directory `path` (a transformers tokenizer; cached, 4 most recent paths).

    Raises UsageError when `path` is not a directory, transformers is not installed, or the directory holds
    no loadable tokenizer (tokenizer.json / tokenizer_config.json).
    """
    if not os.path.isdir(path):
        raise UsageError(f"tokenizer {path!r} is not a local directory",
                         "the hub is not used at run time: point --tokenizer at a downloaded model/tokenizer folder")
    try:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from transformers import AutoTokenizer
    except ImportError:
        raise UsageError("the length audit needs transformers", "pip install 'dsforge[hf]'") from None
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - many loader failure types; all mean "not a tokenizer dir"
        raise UsageError(f"cannot load a tokenizer from {path}: {err}".splitlines()[0],
                         "the directory needs tokenizer.json or tokenizer_config.json") from None


PT_BATCH = 1000


def infer_seqlen(source_len: int, target_len: int, cutoff_len: int) -> tuple[int, int]:
    """LLaMA-Factory's truncation rule (processor_utils.infer_seqlen, 0.9.5)."""
    if target_len * 2 < cutoff_len:
        max_target_len = cutoff_len
    elif source_len * 2 < cutoff_len:
        max_target_len = cutoff_len - source_len
    else:
        max_target_len = int(cutoff_len * (target_len / (source_len + target_len)))
    new_target_len = min(max_target_len, target_len)
    max_source_len = max(cutoff_len - new_target_len, 0)
    new_source_len = min(max_source_len, source_len)
    return new_source_len, new_target_len


def _pct(values: list[int]) -> dict | None:
    """Token-length summary of `values`: {p50, p90, p99 (nearest-rank, numpy), max, mean (1 decimal)};
    None for no values."""
    if not values:
        return None
    import numpy as np

    q = np.percentile(np.asarray(values), [50, 90, 99], method="nearest")
    return {"p50": int(q[0]), "p90": int(q[1]), "p99": int(q[2]), "max": int(max(values)),
            "mean": round(sum(values) / len(values), 1)}


_ROLE = {"user": "user", "assistant": "assistant", "observation": "tool", "function": "assistant", "system": "system"}


def lf_messages(prompt: list, system: str | None) -> list[dict]:
    """LLaMA-Factory (role, content) prompt turns -> OpenAI-role dicts, system first."""
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": _ROLE.get(r, r), "content": c} for r, c in prompt]


class LengthAudit:
    """Collects kept rows from the validator, tokenizes them in batches, simulates truncation."""

    def __init__(self, tokenizer_path: str, cutoff_len: int, template: str, stage: str):
        self.tok = load_tokenizer(tokenizer_path)
        self.path, self.cutoff, self.stage = tokenizer_path, cutoff_len, "rm" if stage == "dpo" else stage
        if template not in ("auto", "chat", "none"):  # a LLaMA-Factory template name: render with the tokenizer's
            from dsforge.lf_templates import resolve_template

            resolve_template(template)  # unknown names are a usage error
            template = "auto"
        if template == "auto":
            template = "chat" if getattr(self.tok, "chat_template", None) else "none"
        self.template = template
        self.buf: list = []
        self.prompt_lens: list[int] = []
        self.resp_lens: list[int] = []
        self.total_lens: list[int] = []
        self.truncated = 0
        self.prompt_cut = 0
        self.examples: list = []
        self.pt_tokens = 0
        self.pt_blocks = 0
        self.pt_batch_tokens = 0
        self.pt_rows_in_batch = 0

    # -- feeding
    def add(self, prompt: list, response: list, system: str | None, where: tuple[str, int]) -> None:
        """Queue one kept row: prompt/response as LLaMA-Factory (role, content) lists, `where` = (path, line);
        tokenized 256 rows at a time.
        """
        self.buf.append((prompt, response, system, where))
        if len(self.buf) >= 256:
            self.flush()

    def _count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self.tok(texts, add_special_tokens=False)["input_ids"]]

    def _render(self, msgs: list[dict], gen: bool) -> str:
        if self.template == "none":
            return "".join(m["content"] for m in msgs)
        return self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)

    def flush(self) -> None:
        """Tokenize the queued rows and apply LLaMA-Factory's truncation (SFT/pairs) or packing (pt)."""
        items, self.buf = self.buf, []
        if not items:
            return
        if self.stage == "pt":
            eos = self.tok.eos_token or ""
            lens = self._count([p[0][1] + eos for p, _, _, _ in items])
            for n in lens:
                self.pt_tokens += n
                self.pt_batch_tokens += n
                self.pt_rows_in_batch += 1
                self.total_lens.append(n)
                if self.pt_rows_in_batch == PT_BATCH:
                    self._close_pt_batch()
            return
        # For each row: token lengths of (prompt prefix, each response) via rendered prefixes.
        texts: list[str] = []
        plan = []
        for prompt, response, system, where in items:
            msgs = lf_messages(prompt, system)
            start = len(texts)
            texts.append(self._render(msgs, True) if self.template == "chat" else self._render(msgs, False))
            answers = [c for _, c in response if c]  # kto keeps one real answer and one empty slot
            for ans in answers:
                texts.append(self._render(msgs + [{"role": "assistant", "content": ans}], False))
            plan.append((start, len(answers), where))
        lens = self._count(texts)
        eos_extra = 1 if self.template == "none" else 0
        for start, n_ans, where in plan:
            src = lens[start]
            tgts = [max(lens[start + 1 + i] - src, 0) + eos_extra for i in range(n_ans)]
            tgt = max(tgts) if tgts else 0
            new_src, new_tgt = infer_seqlen(src, tgt, self.cutoff)
            self.prompt_lens.append(src)
            self.resp_lens.append(tgt)
            self.total_lens.append(src + tgt)
            if new_tgt < tgt:
                self.truncated += 1
                if len(self.examples) < 5:
                    self.examples.append(("response_truncated", where, f"response {tgt} tokens, kept {new_tgt} "
                                          f"(prompt {src}, cutoff_len {self.cutoff})"))
            if new_src < src:
                self.prompt_cut += 1
                if len(self.examples) < 10:
                    self.examples.append(("prompt_too_long", where, f"prompt {src} tokens cut to {new_src} "
                                          f"(cutoff_len {self.cutoff}); the end of the prompt is lost"))

    def _close_pt_batch(self) -> None:
        self.pt_blocks += self.pt_batch_tokens // self.cutoff
        self.pt_batch_tokens = 0
        self.pt_rows_in_batch = 0

    def result(self) -> dict:
        """The audit (flushes first): tokenizer (folder name), template, cutoff_len, percentiles {prompt, response,
        total: {p50, p90, p99, max, mean} in tokens}, response_truncated, prompt_too_long, rows; for stage pt
        instead pt_tokens, pt_blocks and percentiles.total only.
        """
        self.flush()
        out = {"tokenizer": os.path.basename(os.path.abspath(self.path)), "template": self.template,
               "cutoff_len": self.cutoff, "percentiles": {}}
        if self.stage == "pt":
            if self.pt_rows_in_batch:
                self._close_pt_batch()
            out.update(pt_tokens=self.pt_tokens, pt_blocks=self.pt_blocks)
            out["percentiles"]["total"] = _pct(self.total_lens)
            return out
        out["percentiles"] = {"prompt": _pct(self.prompt_lens), "response": _pct(self.resp_lens),
                              "total": _pct(self.total_lens)}
        out.update(response_truncated=self.truncated, prompt_too_long=self.prompt_cut, rows=len(self.total_lens))
        return out


class TruncationCheck:
    """Chosen/rejected token ids as LLaMA-Factory 0.9.5 builds them (processor/pairwise.py), then cut.

    LF encodes prompt and each answer under the template, computes
    `infer_seqlen(len(prompt), max(len(chosen), len(rejected)), cutoff_len)` and cuts both answers to the
    same budget. Reasons per pair: pair_identical_after_cutoff (the kept answer ids are equal),
    pair_response_emptied (an answer keeps no token), pair_prompt_no_room (the prompt alone fills cutoff_len).
    The template is the tokenizer's chat template (or plain concatenation + EOS for 'none'), as in
    LengthAudit. Needs transformers.
    """

    def __init__(self, tokenizer: str, cutoff_len: int, template: str = "auto", audit=None):
        """`audit`: a LengthAudit already loaded on this tokenizer and template (the length audit), reused
        instead of loading the tokenizer a second time."""
        self._la = audit if audit is not None else LengthAudit(tokenizer, cutoff_len, template, "rm")
        self.cutoff = cutoff_len
        self.counts: Counter = Counter()
        self.lens: dict[str, list[int]] = {"chosen": [], "rejected": []}

    @property
    def template(self) -> str:
        """The template the lengths are measured under: 'chat' (the tokenizer's chat template) or 'none'."""
        return self._la.template

    def ids(self, messages: list[dict], chosen: str, rejected: str) -> tuple[list[int], list[int], list[int]]:
        """(prompt_ids, chosen_ids, rejected_ids) before truncation; messages are OpenAI-role dicts."""
        la, tok = self._la, self._la.tok
        if la.template == "none":
            p = tok("".join(m["content"] for m in messages), add_special_tokens=False)["input_ids"]
            eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
            c = tok(chosen, add_special_tokens=False)["input_ids"] + eos
            r = tok(rejected, add_special_tokens=False)["input_ids"] + eos
            return p, c, r
        texts = [la._render(messages, True)] + [la._render(messages + [{"role": "assistant", "content": a}], False)
                                                for a in (chosen, rejected)]
        p, fc, fr = tok(texts, add_special_tokens=False)["input_ids"]
        n = len(p)
        return p, fc[n:] if fc[:n] == p else fc[len(_common(p, fc)):], fr[n:] if fr[:n] == p else fr[len(_common(p, fr)):]

    def check(self, messages: list[dict], chosen: str, rejected: str) -> list[str]:
        """Reason codes for one pair after LLaMA-Factory's truncation."""
        p, c, r = self.ids(messages, chosen, rejected)
        src, tgt = infer_seqlen(len(p), max(len(c), len(r)), self.cutoff)
        self.lens["chosen"].append(len(p) + len(c))
        self.lens["rejected"].append(len(p) + len(r))
        out = []
        if len(p) >= self.cutoff:
            out.append("pair_prompt_no_room")
        if (c or r) and (not c[:tgt] or not r[:tgt]):
            out.append("pair_response_emptied")
        elif c != r and c[:tgt] == r[:tgt]:
            out.append("pair_identical_after_cutoff")
        self.counts.update(out)
        return out

    def result(self) -> dict:
        """{cutoff_len, template, counts {reason: pairs}, token_lengths {chosen, rejected: {p50, p90, p99, max,
        mean} of prompt + answer tokens}}."""
        return {"cutoff_len": self.cutoff, "template": self.template, "counts": dict(self.counts),
                "token_lengths": {k: _pct(v) for k, v in self.lens.items()}}


def _common(a: list[int], b: list[int]) -> list[int]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]
