"""The pair observer of validate's single pass: text-level degenerate-pair checks (dsforge.pairchecks:
format asymmetry, near-identical answers, length bias) on every kept row of ranking data."""

from __future__ import annotations

from dsforge.pairchecks import PairStats, length_bias_message
from dsforge.validate.reasons import Finding

_DETAIL = {
    "pair_think_one_side": "a <think> block in one answer only",
    "pair_think_empty_vs_full": "an empty <think> block on one side, a filled one on the other",
    "pair_stop_one_side": "a trailing stop/EOS string on one side only",
    "pair_fence_one_side": "a markdown code fence on one side only",
}


def observe_pairs(checker, report, *, max_similarity: float = 0.95, method: str = "ratio",
                  warn_above: float = 0.7):
    """Chain a pair observer onto a validate RowChecker (stage rm); returns finish() that stores the
    result on report.pairs and adds the file-level length-bias warning."""
    stats = PairStats(max_similarity, method, warn_above)
    before = checker.on_kept

    def on_kept(row, prompt, response, path, line):
        if before:
            before(row, prompt, response, path, line)
        chosen, rejected = response[0][1], response[1][1]
        if not (isinstance(chosen, str) and isinstance(rejected, str)) or chosen == rejected:
            return   # chosen_equals_rejected / content_not_string are validate's own findings
        for code in stats.add(chosen, rejected):
            detail = _DETAIL.get(code) or f"similarity {stats.sims[-1]:.3f} >= {max_similarity} ({method})"
            report.add(Finding(code, path, line, detail=detail))

    checker.on_kept = on_kept

    def finish() -> dict:
        res = stats.result()
        report.pairs = {**(report.pairs or {}), **res}
        if res["length_bias"]["warn"]:
            report.add(Finding("pair_length_bias", report.files[0] if report.files else report.name,
                               detail=length_bias_message(res["length_bias"])))
        return res

    return finish
