"""The token-length audit: an observer of validate's single pass that measures every kept row under the
target model's tokenizer and chat template (dsforge.tokenizers mirrors LLaMA-Factory 0.9.5's tokenization
and cutoff_len truncation, which it never reports), and for ranking data the pairs that truncation makes
degenerate."""

from __future__ import annotations

from dataclasses import dataclass

from dsforge.tokenizers import LengthAudit, TruncationCheck, lf_messages
from dsforge.validate.reasons import Finding


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
    if report.stage in ("rm", "dpo"):  # token-level degenerate pairs (dsforge.tokenizers.TruncationCheck)
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


def audit_truncation(report, tokenizer: str, cutoff_len: int, template: str, observe, audit=None) -> TruncationCheck:
    """Set up the token-level pair check of the length audit (observe_lengths):
    returns the check; `report` is anything with .add(Finding) that receives one finding per degenerate pair;
    `observe(fn)` registers a callback(prompt, response, system, path, line) run on every kept row; `audit`:
    the audit's LengthAudit, whose tokenizer is reused."""
    tc = TruncationCheck(tokenizer, cutoff_len, template, audit)

    def on_pair(prompt, response, system, path, line):
        chosen, rejected = response[0][1], response[1][1]
        if not (isinstance(chosen, str) and isinstance(rejected, str)) or chosen == rejected:
            return
        for code in tc.check(lf_messages(prompt, system), chosen, rejected):
            report.add(Finding(code, path, line, detail=f"{code.replace('pair_', '').replace('_', ' ')} "
                               f"at cutoff_len {cutoff_len} (template {tc.template})"))

    observe(on_pair)
    return tc
