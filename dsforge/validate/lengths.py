"""Token-length audit under the target model's tokenizer and chat template.

Mirrors what LLaMA-Factory 0.9.5 does with cutoff_len, which it never reports:
- SFT: turn by turn, `infer_seqlen(source, target, budget)` cuts the prompt or the response;
- pairs (rm/dpo): chosen and rejected are both cut to the budget of the longer one;
- pretraining: texts + EOS are concatenated per preprocessing batch (1000 rows) and cut into
  cutoff_len blocks; the remainder of each batch is thrown away, and zero blocks is a failure.
Needs `transformers` (pip install 'dsforge[hf]'); no torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dsforge.tokenizers import load_tokenizer
from dsforge.validate.reasons import Finding
from dsforge.validate.templates import resolve_template

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


@dataclass(frozen=True)
class LengthOptions:
    """What the length audit measures under: a local tokenizer directory, LLaMA-Factory's cutoff_len (tokens)
    and the template for lengths ('auto': the tokenizer's chat template if it has one; 'chat'; 'none': plain
    concatenation + EOS; a LLaMA-Factory template name counts as 'auto')."""

    tokenizer: str
    cutoff_len: int = 2048
    template: str | None = "auto"


class _Held(list):
    """Findings held back until the pass ends (the audit reports nothing on a dataset that fails to load)."""

    add = list.append


def observe_lengths(checker, report, opts: LengthOptions):
    """Chain the length audit onto a validate RowChecker, so it sees every kept row of the single pass.

    Returns finish(files), to call after the last row: unless the report is fatal it stores the result on
    report.lengths (keys tokenizer, template, cutoff_len, percentiles{prompt,response,total: {p50,p90,p99,max,
    mean}}, response_truncated, prompt_too_long, rows; for pt: pt_tokens, pt_blocks, percentiles.total), counts
    response_truncated/prompt_too_long with their first examples, adds no_pt_blocks when packing yields
    nothing, and for ranking data the token-level pair checks (report.pairs['truncation']). Raises UsageError
    for a tokenizer directory that cannot be loaded or an unknown template.
    """
    la = LengthAudit(opts.tokenizer, opts.cutoff_len, opts.template, report.stage)
    held = _Held()
    pair_hooks: list = []
    tc = None
    if report.stage in ("rm", "dpo"):  # token-level degenerate pairs (dsforge.pairchecks)
        from dsforge.pairchecks import audit_truncation

        tc = audit_truncation(held, opts.tokenizer, opts.cutoff_len, opts.template, pair_hooks.append, audit=la)
    attrs = checker.a
    before = checker.on_kept

    def on_kept(row, prompt, response, path, line):
        if before:
            before(row, prompt, response, path, line)
        system = None
        if attrs.formatting == "alpaca":
            system = row.get(attrs.system) if attrs.system else None
        else:
            msgs = row.get(attrs.messages) or []
            if msgs and isinstance(msgs[0], dict) and msgs[0].get(attrs.role_tag) == attrs.system_tag:
                system = msgs[0].get(attrs.content_tag)
            elif attrs.system:
                system = row.get(attrs.system)
        system = system if isinstance(system, str) else None
        la.add(prompt, response, system, (path, line))
        for hook in pair_hooks:
            hook(prompt, response, system, path, line)

    checker.on_kept = on_kept

    def finish(files: list[str]) -> dict | None:
        if report.fatal:
            return None
        result = la.result()
        report.lengths = result
        for f in held:
            report.add(f)
        if tc is not None:
            report.pairs = {**(report.pairs or {}), "truncation": tc.result()}
        for code, (path, line), detail in la.examples:
            report.examples.setdefault(code, []).append(Finding(code, path, line, detail=detail))
        for code in ("response_truncated", "prompt_too_long"):
            if result.get(code):
                report.counts[code] = result[code]
        if report.stage == "pt" and result.get("pt_blocks") == 0:
            report.add(Finding("no_pt_blocks", files[0] if files else report.name,
                               detail=f"{result['pt_tokens']} tokens in all make no block of cutoff_len "
                               f"{opts.cutoff_len}; LLaMA-Factory fails with 'Cannot find sufficient samples'"))
        return result

    return finish
