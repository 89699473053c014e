"""Contamination guard: training rows that overlap evaluation sets.

Two tests, on each train row's prompt and answer (dedup.row_texts) against each eval row's prompt
and answer:
- n-gram overlap, the GPT-3 paper's filter (Brown et al. 2020, appendix C): texts lowercased and
  split on anything not a letter/digit (dedup.tokens); a train text is contaminated when any
  N-gram of it (N=13 by default) occurs in an eval text. An eval text shorter than N tokens is
  matched whole (as a contiguous token run inside the train text), as GPT-3 did for short items;
  eval texts under MIN_TOKENS tokens ("yes", "42") are not n-gram-matched (they would match
  everything) and are counted in `eval_texts_short`.
- near-duplicates: MinHash (rensa) signature + LSH bands of each eval text; a train text whose
  estimated Jaccard similarity with an eval text reaches the threshold is contaminated.

The eval index lives in memory (hashes of its n-grams and its signatures: eval sets are small);
train files are streamed once. Report: every hit with file:line on both sides (examples capped,
counts not).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterator

from dsforge.dedup import NUM_PERM, Shingling, Signer, check_threshold, records, row_texts, tokens
from dsforge.errors import UsageError

MIN_TOKENS = 3
MAX_EXAMPLES = 50
FIELDS = ("prompt", "answer")


def _h(toks) -> int:
    return hash(" ".join(toks))


@dataclass
class ContaminationOptions:
    """ngram: N of the overlap test (0 turns it off); threshold: Jaccard of the near-duplicate test
    (None turns it off); fields: which train texts to check."""

    ngram: int = 13
    threshold: float | None = 0.8
    shingle: str = "word:3"
    fields: tuple[str, ...] = FIELDS

    def check(self) -> None:
        """Raise UsageError (exit 2) for an ngram outside 0..64, a threshold outside (0, 1], both tests
        off, or a shingle spec that is not word:K / char:K."""
        if self.ngram < 0 or self.ngram > 64:
            raise UsageError(f"--ngram {self.ngram} must be between 1 and 64 (0: no n-gram test)",
                             "13 is the GPT-3 paper's choice")
        if self.threshold is not None:
            check_threshold(self.threshold)
        if not self.ngram and self.threshold is None:
            raise UsageError("both tests are off (--ngram 0 and --no-near)", "keep at least one")
        Shingling.parse(self.shingle)


class EvalIndex:
    """N-gram hashes and MinHash LSH bands of every eval text; `match(text)` -> (method, eval id, detail)."""

    def __init__(self, opts: ContaminationOptions):
        opts.check()
        self.opts = opts
        self.locs: list[str] = []            # eval id -> "file:line field"
        self.grams: dict[int, int] = {}      # hash of an N-gram (or of a short whole text) -> eval id
        self.short_lengths: set[int] = set()
        self.short = 0
        self.texts = 0
        self.signer = Signer(Shingling.parse(opts.shingle), opts.threshold, NUM_PERM) if opts.threshold else None
        self.bands: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(self.signer.b)] \
            if self.signer else []
        self.sigs: dict[int, object] = {}

    def add_files(self, files: list[str]) -> None:
        """Index the prompt and answer text of every row of `files` (eval ids in reading order).

        Raises InputError (exit 1, file:line) for a row that is not an object or files with no row.
        """
        batch: list[tuple[int, str]] = []
        for fi, line, rec in records(files):
            for name, text in zip(FIELDS, row_texts(rec)):
                if not text.strip():
                    continue
                eid = len(self.locs)
                self.locs.append(f"{files[fi]}:{line} {name}")
                self.texts += 1
                self._add_ngrams(eid, tokens(text))
                if self.signer:
                    batch.append((eid, text))
        if self.signer and batch:
            for s in range(0, len(batch), 4096):
                part = batch[s:s + 4096]
                sigs, empty = self.signer.sign([t for _, t in part])
                bands = self.signer.bands(sigs)
                for k, (eid, _) in enumerate(part):
                    if empty[k]:
                        continue
                    self.sigs[eid] = sigs[k]
                    for j, h in enumerate(bands[k].tolist()):
                        self.bands[j][h].append(eid)

    def _add_ngrams(self, eid: int, toks: list[str]) -> None:
        n = self.opts.ngram
        if not n:
            return
        if len(toks) < n:
            if len(toks) < MIN_TOKENS:
                self.short += 1
                return
            self.short_lengths.add(len(toks))
            self.grams.setdefault(_h(toks), eid)
            return
        for i in range(len(toks) - n + 1):
            self.grams.setdefault(_h(toks[i:i + n]), eid)

    def match_ngram(self, toks: list[str]) -> tuple[int, str] | None:
        """(eval id, the shared n-gram joined by spaces) of the first overlap of the token list `toks`
        (dedup.tokens), or None. Short eval texts (MIN_TOKENS..N-1 tokens) match as whole runs."""
        g = self.grams
        for n in ([self.opts.ngram] if self.opts.ngram else []) + sorted(self.short_lengths):
            for i in range(len(toks) - n + 1):
                eid = g.get(_h(toks[i:i + n]))
                if eid is not None:
                    return eid, " ".join(toks[i:i + n])
        return None

    def match_near(self, sigs, bands, k: int) -> tuple[int, float] | None:
        """(eval id, estimated Jaccard in [0, 1]) of the first eval text sharing an LSH band with row `k`
        and reaching the threshold, or None.

        `sigs` [n, num_perm] and `bands` [n, b] come from the index's Signer.sign / Signer.bands.
        """
        import numpy as np

        seen = set()
        for j, h in enumerate(bands[k].tolist()):
            for eid in self.bands[j].get(h, ()):
                if eid in seen:
                    continue
                seen.add(eid)
                sim = float(np.mean(self.sigs[eid] == sigs[k]))
                if sim >= self.opts.threshold:
                    return eid, sim
        return None


@dataclass
class ContaminationReport:
    """Summary written to OUT.contamination.json (stable keys, version 1)."""

    train: list[str]
    against: list[str]
    options: dict
    rows: int = 0
    contaminated: int = 0
    by_method: Counter = field(default_factory=Counter)   # "ngram" / "near" -> rows
    by_field: Counter = field(default_factory=Counter)    # "prompt" / "answer" -> rows
    eval_texts: int = 0
    eval_texts_short: int = 0
    hits: list = field(default_factory=list)              # examples: train, eval (file:line field), method, detail
    out: str | None = None
    kept: int | None = None

    def to_dict(self) -> dict:
        """The JSON summary: {kind: "contamination", version: 1, train, against (file lists), options
        {ngram, threshold, shingle, fields, min_tokens}, rows, contaminated, by_method {ngram|near: rows},
        by_field {prompt|answer: rows}, eval_texts, eval_texts_short, hits [{train, eval, field, method,
        detail}] (at most MAX_EXAMPLES), out, kept (rows written; None without out)}."""
        return {"kind": "contamination", "version": 1, "train": self.train, "against": self.against,
                "options": self.options, "rows": self.rows, "contaminated": self.contaminated,
                "by_method": dict(self.by_method), "by_field": dict(self.by_field), "eval_texts": self.eval_texts,
                "eval_texts_short": self.eval_texts_short, "hits": self.hits, "out": self.out, "kept": self.kept}


class Guard:
    """Checks rows against an EvalIndex in batches; `check(rows)` -> list of hit dicts or None per row.

    Building it reads every --against file (UsageError, exit 2, when they name no file; InputError,
    exit 1, for an unreadable row).
    """

    def __init__(self, against: list[str], opts: ContaminationOptions):
        from dsforge import io as dio

        files = dio.expand_inputs(against, dio.JSON_EXTS | dio.TABLE_EXTS | dio.TEXT_EXTS)
        if not files:
            raise UsageError("--against names no evaluation file", "pass eval .jsonl/.json/.csv/.parquet files")
        self.files = files
        self.index = EvalIndex(opts)
        self.index.add_files(files)
        self.opts = opts

    def check(self, rows: list) -> list[dict | None]:
        """One result per row: None when clean, else {"field", "eval", "method", "detail"}: the first
        n-gram hit (prompt, then answer), else the first near-duplicate hit; the stronger evidence is
        the one reported."""
        idx = self.index
        texts = [row_texts(r) for r in rows]
        out: list[dict | None] = [None] * len(rows)
        fields = [(fi, name) for fi, name in enumerate(FIELDS) if name in self.opts.fields]
        for fi, name in fields if self.opts.ngram else ():
            for k, tx in enumerate(texts):
                if out[k] is None and tx[fi].strip():
                    m = idx.match_ngram(tokens(tx[fi]))
                    if m:
                        out[k] = {"field": name, "eval": idx.locs[m[0]], "method": "ngram", "detail": m[1][:200]}
        for fi, name in fields if idx.signer and idx.sigs else ():
            todo = [k for k in range(len(rows)) if out[k] is None and texts[k][fi].strip()]
            if not todo:
                continue
            sigs, empty = idx.signer.sign([texts[k][fi] for k in todo])
            bands = idx.signer.bands(sigs)
            for j, k in enumerate(todo):
                m = None if empty[j] else idx.match_near(sigs, bands, j)
                if m:
                    out[k] = {"field": name, "eval": idx.locs[m[0]], "method": "near", "detail": f"jaccard~{m[1]:.2f}"}
        return out


def check_files(train: list[str], against: list[str], opts: ContaminationOptions, *, out: str | None = None,
                progress: Callable[[int], None] | None = None) -> ContaminationReport:
    """Find train rows that overlap the eval files; with `out`, write the clean rows there (atomic)
    and the report to OUT.contamination.json.

    `train`/`against`: files, globs or directories (JSON/JSONL, csv/parquet, text). `progress` is
    called with the number of rows of each finished batch. Returns the ContaminationReport (keys of
    its to_dict() listed there). Raises UsageError (exit 2) when no train file is found, for bad
    options, or when `out` (or its report) would overwrite an input or a different kind of output;
    InputError (exit 1) for unreadable rows.
    """
    from dsforge import io as dio

    files = dio.expand_inputs(train, dio.JSON_EXTS | dio.TABLE_EXTS | dio.TEXT_EXTS)
    if not files:
        raise UsageError("no training files found", "pass .jsonl/.json/.csv/.parquet files, globs or directories")
    opts.check()
    sidecar = out + ".contamination.json" if out else None
    if out:
        dio.guard_outputs([("TRAIN", f) for f in files] + [("--against", f) for f in against],
                          {"-o": out, "report": sidecar})
        dio.guard_kind(out, "contamination")
    guard = Guard(against, opts)
    rep = ContaminationReport(train=files, against=guard.files, options={
        "ngram": opts.ngram, "threshold": opts.threshold, "shingle": opts.shingle, "fields": list(opts.fields),
        "min_tokens": MIN_TOKENS}, eval_texts=guard.index.texts, eval_texts_short=guard.index.short, out=out)

    def batches() -> Iterator[list[tuple[str, int, object]]]:
        buf = []
        for fi, line, rec in records(files):
            buf.append((files[fi], line, rec))
            if len(buf) >= 2048:
                yield buf
                buf = []
        if buf:
            yield buf

    def clean_rows() -> Iterator[object]:
        for batch in batches():
            results = guard.check([r for _, _, r in batch])
            for (path, line, rec), hit in zip(batch, results):
                rep.rows += 1
                if hit is None:
                    yield rec
                    continue
                rep.contaminated += 1
                rep.by_method[hit["method"]] += 1
                rep.by_field[hit["field"]] += 1
                if len(rep.hits) < MAX_EXAMPLES:
                    rep.hits.append({"train": f"{path}:{line} {hit['field']}", **hit})
            if progress:
                progress(len(batch))

    if out:
        with dio.atomic_files() as af:
            w = dio.RowWriter(af.open(out), "json" if out.lower().endswith(".json") else "jsonl")
            for rec in clean_rows():
                w.write(rec)
            w.close()
            rep.kept = w.n
            json.dump(rep.to_dict(), af.open(sidecar), indent=2, ensure_ascii=False)
        dio.note_output(out, "decontaminated")
    else:
        for _ in clean_rows():
            pass
    return rep


def format_report(rep: ContaminationReport) -> str:
    """Human summary: counts, then each example hit as 'TRAIN file:line field <- EVAL file:line field'."""
    lines = [f"{rep.contaminated} of {rep.rows} training rows overlap the eval set(s) "
             f"({', '.join(f'{k} hits: {v}' for k, v in sorted(rep.by_method.items())) or 'none'}; "
             f"{rep.eval_texts} eval texts, {rep.eval_texts_short} too short to n-gram-match)"]
    for h in rep.hits:
        lines.append(f"  {h['train']}  <-  {h['eval']}  [{h['method']}: {h['detail']}]")
    if rep.contaminated > len(rep.hits):
        lines.append(f"  ... {rep.contaminated - len(rep.hits)} more")
    if rep.out:
        lines.append(f"wrote {rep.kept} clean rows to {rep.out} (report: {rep.out}.contamination.json)")
    return "\n".join(lines)
