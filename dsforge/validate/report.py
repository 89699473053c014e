"""A validation report (counts per reason, first examples, would-train) and its human text."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from dsforge.pairchecks import format_pairs
from dsforge.validate.reasons import REASONS, Finding


@dataclass
class Report:
    """What validate found in one dataset: rows read, rows kept, counts per reason code, the first
    `max_examples` findings per code, and the observers' results (lengths, pairs).
    """

    name: str
    stage: str
    entry: dict
    files: list[str]
    inferred: str | None = None
    rows: int = 0
    kept: int = 0
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[Finding]] = field(default_factory=dict)
    lengths: dict | None = None
    max_examples: int = 5
    template: str | None = None  # the LLaMA-Factory template the template-dependent rules assumed
    notes: list[str] = field(default_factory=list)  # what entry keys such as num_samples/split do to the rows
    pairs: dict | None = None  # ranking files: similarity, length bias, truncation checks (dsforge.pairchecks)

    def add(self, f: Finding) -> None:
        """Count a finding; keep it as an example while fewer than max_examples of its code are kept."""
        self.counts[f.code] += 1
        ex = self.examples.setdefault(f.code, [])
        if len(ex) < self.max_examples:
            ex.append(f)

    @property
    def fatal(self) -> bool:
        """True when LLaMA-Factory would fail the whole dataset (any fatal reason)."""
        return any(REASONS[c][0] == "fatal" for c in self.counts)

    @property
    def would_train(self) -> int:
        """Rows LLaMA-Factory would train on: kept rows, 0 when fatal."""
        return 0 if self.fatal else self.kept

    @property
    def dropped(self) -> int:
        """Number of findings of severity drop (rows LLaMA-Factory silently drops)."""
        return sum(n for c, n in self.counts.items() if REASONS[c][0] == "drop")

    @property
    def warnings(self) -> int:
        """Number of findings of severity warn (rows kept, probably data bugs)."""
        return sum(n for c, n in self.counts.items() if REASONS[c][0] == "warn")

    @property
    def ok(self) -> bool:
        """True when nothing is fatal, no row is dropped and at least one row would train."""
        return not self.fatal and self.dropped == 0 and self.kept > 0

    def to_dict(self) -> dict:
        """JSON form (validate --json): name, stage, files, entry, inferred, rows, would_train, fatal, dropped,
        warnings, counts {code: {n, severity, reason, hint}}, examples {code: [Finding.to_dict()]}, lengths,
        template, notes, pairs.
        """
        return {
            "name": self.name, "stage": self.stage, "files": self.files, "entry": self.entry,
            "inferred": self.inferred, "rows": self.rows, "would_train": self.would_train,
            "fatal": self.fatal, "dropped": self.dropped, "warnings": self.warnings,
            "counts": {c: {"n": n, "severity": REASONS[c][0], "reason": REASONS[c][1], "hint": REASONS[c][2]}
                       for c, n in sorted(self.counts.items())},
            "examples": {c: [f.to_dict() for f in fs] for c, fs in self.examples.items()},
            "lengths": self.lengths, "template": self.template, "notes": self.notes,
            "pairs": self.pairs,
        }



def format_report(r: Report, *, examples: int = 5) -> str:
    """The human summary: verdict first, then counts per reason, then the first offending rows."""
    lines = [f"{r.name}  (stage {r.stage})"]
    if r.inferred:
        lines.append(f"  inferred format: {r.inferred}; entry: {json.dumps(r.entry, ensure_ascii=False)}")
    pct = f" ({100 * r.would_train / r.rows:.1f}%)" if r.rows and r.would_train <= r.rows else ""
    verdict = "OK" if r.ok else ("FAILS" if r.fatal or not r.would_train else "PARTLY USABLE")
    lines.append(f"  {verdict}: LLaMA-Factory would train {r.would_train} of {r.rows} rows{pct}")
    for note in r.notes:
        lines.append(f"  entry: {note}")
    if r.template:
        lines.append(f"  template-dependent rules (media, tools, thought/tool-call markers) assume template {r.template}")
    if r.fatal:
        lines.append("  the whole dataset fails to load in LLaMA-Factory (fatal problems below)")
    for sev, title in (("fatal", "fatal"), ("drop", "dropped rows"), ("warn", "warnings (rows kept)")):
        items = [(c, n) for c, n in r.counts.most_common() if REASONS[c][0] == sev]
        if items:
            lines.append(f"  {title}: " + ", ".join(f"{c} {n}" for c, n in items))
    if r.lengths:
        lines.extend("  " + ln for ln in format_lengths(r.lengths))
    if r.pairs:
        lines.extend("  " + ln for ln in format_pairs(r.pairs))
    shown = 0
    for sev in ("fatal", "drop", "warn"):
        for code, n in r.counts.most_common():
            if REASONS[code][0] != sev or shown >= examples * 3:
                continue
            fs = r.examples.get(code, [])[:examples]
            if not fs:
                continue
            lines.append(f"  [{sev}] {code}: {REASONS[code][1]}")
            for f in fs:
                lines.append(f"    {f.render()}")
                shown += 1
            if n > len(fs):
                lines.append(f"    ... and {n - len(fs)} more")
            lines.append(f"    fix: {REASONS[code][2]}")
    return "\n".join(lines)


def format_lengths(lengths: dict) -> list[str]:
    """Text lines for the length audit's result (dsforge.validate.lengths.LengthAudit.result)."""
    out = [f"lengths ({lengths['tokenizer']}, template {lengths['template']}, cutoff_len {lengths['cutoff_len']}):"]
    for key in ("prompt", "response", "total"):
        p = lengths.get("percentiles", {}).get(key)
        if p:
            out.append(f"  {key:<8} tokens p50 {p['p50']}  p90 {p['p90']}  p99 {p['p99']}  max {p['max']}")
    for key, label in (("response_truncated", "responses cut by cutoff_len"),
                       ("prompt_too_long", "prompts cut by cutoff_len")):
        if key in lengths:
            out.append(f"  {label}: {lengths[key]}")
    if "pt_blocks" in lengths:
        out.append(f"  packing yields {lengths['pt_blocks']} blocks of {lengths['cutoff_len']} tokens "
                   f"({lengths['pt_tokens']} tokens)")
    return out
