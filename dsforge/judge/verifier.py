"""`dsforge judge --verifier KIND`: label each candidate by a program (dsforge.verify), no model called.

The judged row is the LLM judge's record with judge = {"kind": "verifier", "verifier": SPEC,
"score", "correct", "format_ok", "answer"}, so pairs, report and run read it without a special case.
"""

from __future__ import annotations

from dsforge.errors import InputError
from dsforge.judge.core import JudgeConfig, missing_reference, reference_of


def judge_verified(cfg: JudgeConfig, rows: list[tuple[int, dict]], path: str) -> list[dict]:
    """Check every (line, candidate) of the file `path` with cfg.verifier; returns the judged rows in
    order. Truncated candidates get score None, error "truncated_not_judged" unless
    cfg.include_truncated. Raises UsageError for a bad verifier spec and InputError at PATH:LINE for
    a candidate without a reference (naming --reference-field) or a reply the verifier fails on."""
    from dsforge.verify import get_verifier

    verifier = get_verifier(cfg.verifier)
    out = []
    for line, row in rows:
        j = {"kind": "verifier", "verifier": cfg.verifier}
        if row.get("truncated") and not cfg.include_truncated:
            out.append({**row, "judge": {**j, "score": None, "error": "truncated_not_judged"}})
            continue
        reference = reference_of(row, cfg.reference_field)
        if reference is None and verifier.needs_reference:
            raise missing_reference(cfg, path, line)
        try:   # the strict rule may come in a carried field (`sample --carry format`)
            verdict = verifier.check(row["text"], reference, {**(row.get("fields") or {}), **row})
        except InputError as err:   # e.g. an unknown `format` rule in the row
            raise InputError(err.message, err.hint, path=path, line=line) from None
        except Exception as err:  # noqa: BLE001 - a python: verifier is user code
            raise InputError(f"verifier {cfg.verifier!r} failed: {type(err).__name__}: {err}",
                             "fix the verifier function (it gets reply, reference, row)", path=path, line=line) from None
        out.append({**row, "judge": {**j, **verdict.to_dict()}})
    return out
