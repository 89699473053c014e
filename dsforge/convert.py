"""Convert raw corpora into LLaMA-Factory pretrain / SFT / ranking / KTO files.

Streaming throughout: records are read one at a time, deduplicated with an 8-byte digest per row,
split into train/eval by a hash of the prompt (so rows sharing a prompt never straddle the
split), and shuffled with an on-disk bucket shuffle, so memory stays flat as inputs grow.
Outputs are written atomically: a failure leaves no partial file.

`--dedup near` and `--split-group near` add a planning pass (dsforge.dedup: MinHash signatures
only, no text kept) before the writing pass: near-duplicates are dropped (the first of each
cluster kept) and near-duplicate prompts share one side of the split. `--decontaminate EVAL`
drops rows that overlap an eval file (dsforge.contamination), counted as `contaminated`.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from array import array
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable, Iterator

from dsforge import io as dio
from dsforge.errors import InputError, UsageError
from dsforge.formats import ConversionError, entry_for, from_conversation, to_conversation
from dsforge.formats.pt import chunk_chars, chunk_tokens, token_offsets
from dsforge.records import prompt_id
from dsforge.stages import MAP_DESTS, TARGETS, ConvertConfig  # noqa: F401 (TARGETS, MAP_DESTS: re-exported)

SHUFFLE_BUCKETS = 64


ConvertOptions = ConvertConfig   # the convert stage's one config model (dsforge.stages)


@dataclass
class ConvertStats:
    """What a convert run did: counts of records read and rows written per split, skipped rows per
    reason, the first errors, and the dataset_info entry for the written rows (see to_dict)."""

    inputs: int = 0
    read: int = 0
    written: int = 0
    eval_written: int = 0
    skipped: Counter = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)
    near_dedup: dict | None = None        # dsforge.dedup.DedupReport.to_dict() of the dropped near-duplicates
    contamination: list = field(default_factory=list)   # first hits: {"train", "field", "eval", "method", "detail"}
    entry: dict = field(default_factory=dict)
    out: str = ""
    eval_out: str | None = None

    def to_dict(self) -> dict:
        """The summary: {inputs (files), read (records), written (train rows), eval_written, skipped
        {reason: rows} (too_short, too_long, bad_row:FIELD, duplicate, near_duplicate, contaminated),
        first_errors (at most 5 "file:line: message"), out, eval_out, entry (dataset_info entry),
        near_dedup (dedup report dict or None), contamination (at most 20 hits {train, field, eval,
        method, detail})}."""
        return {"inputs": self.inputs, "read": self.read, "written": self.written,
                "eval_written": self.eval_written, "skipped": dict(self.skipped),
                "first_errors": self.first_errors, "out": self.out, "eval_out": self.eval_out,
                "entry": self.entry, "near_dedup": self.near_dedup, "contamination": self.contamination}


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


def _fraction(key: str, seed: int) -> float:
    h = hashlib.blake2b(f"{seed}:{key}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def _empty_cells(rec: dict, mapping: dict[str, str]) -> list[str]:
    """Columns the conversion reads (mapped sources, or dsforge names left unmapped) that hold an
    empty value: a blank CSV/parquet cell arrives as None or ''."""
    read = set(mapping.values()) | (set(MAP_DESTS) - set(mapping))
    return [k for k, v in rec.items() if k in read and (v is None or (isinstance(v, str) and not v.strip()))]


def _pt_rows(path: str, line: int, rec: dict, opts: ConvertOptions, offsets) -> Iterator[tuple[str, str]]:
    """(group key, text) pairs for one input record."""
    col = opts.mapping.get("text", "text")
    text = rec.get(col)
    if text is None:
        raise ConversionError(f"no '{col}' field", col, f"map the text column: --map text=COLUMN (columns: "
                              f"{sorted(rec)[:10]})")
    if not isinstance(text, str):
        raise ConversionError(f"'{col}' is {type(text).__name__}, expected text", col)
    group = f"{path}:{line}"
    if opts.chunk_chars:
        pieces = chunk_chars(text, opts.chunk_chars, opts.overlap)
    elif opts.chunk_tokens:
        pieces = chunk_tokens(text, opts.chunk_tokens, opts.overlap, offsets)
    else:
        pieces = iter([text])
    for p in pieces:
        yield group, p


def _near_plan(rows, stats: ConvertStats, opts: ConvertOptions, files: list[str], at: list[int]):
    """Planning pass(es) over the converted rows for --dedup near / --split-group near; only
    signatures are kept (dsforge.dedup). Returns (drop mask or None, prompt-cluster first row per
    row or None, set of first rows with members); stats are left as they were."""
    import numpy as np

    from dsforge import dedup

    want_drop, want_split = opts.near_dedup, bool(opts.eval_ratio) and opts.split_group == "near"
    if not (want_drop or want_split):
        return None, None, set()
    nopts = opts.near_options()
    signer = nopts.signer()
    saved = (stats.read, Counter(stats.skipped), list(stats.first_errors))

    def cluster(on: str):
        fidx, lines = array("i"), array("q")   # where each row came from, 12 bytes a row

        def texts():
            for _, row in rows():
                fidx.append(at[0])
                lines.append(at[1])
                yield dedup.identity_text(row, on)

        cl = dedup.find_clusters(texts(), signer)
        stats.read, stats.skipped, stats.first_errors = saved[0], Counter(saved[1]), list(saved[2])
        return cl, (fidx, lines)

    drop = rep = None
    firsts: set[int] = set()
    if want_drop:
        cl, locs = cluster(nopts.on)
        drop = cl.is_dropped()
        stats.near_dedup = dedup.report_for(cl, lambda i: f"{files[locs[0][i]]}:{locs[1][i]}", files, None, nopts,
                                            signer).to_dict()
        if nopts.on == "prompt" and want_split:
            rep = cl.rep
    if want_split and rep is None:
        rep = cluster("prompt")[0].rep
    if rep is not None:
        firsts = set(np.unique(rep[rep != np.arange(len(rep))]).tolist())
    return drop, rep, firsts


def convert(inputs: list[str], out: str, opts: ConvertOptions,
            progress: Callable[[int], None] | None = None) -> ConvertStats:
    """Convert `inputs` (files, globs, directories) into `out` (and `opts.eval_out`).

    `progress` is called with 1 per record read. Outputs are written atomically (all or none) and
    never replace an input or another command's output. Returns the ConvertStats (keys in its
    to_dict()). Raises UsageError (exit 2) for bad options (ConvertConfig.check), no input files, an
    output that would replace an input or a different kind of file, or an --eval-ratio that leaves
    one split empty (LLaMA-Factory cannot load an empty file: "Cannot find valid samples");
    InputError (exit 1, file:line) for a row that cannot be converted (without --skip-bad), an
    unreadable file, or when no row is left to write.
    """
    opts.check()
    files = dio.expand_inputs(inputs, dio.JSON_EXTS | dio.TABLE_EXTS | dio.TEXT_EXTS)
    if not files:
        raise UsageError("no input files found", "pass files, globs or directories of .txt/.md/.json/.jsonl/.csv/.parquet")
    dio.guard_outputs([("INPUT", f) for f in files] + [("--decontaminate", f) for f in opts.decontaminate],
                      {"-o": out, "--eval-out": opts.eval_out})
    dio.guard_kind(out, "convert")
    dio.guard_kind(opts.eval_out, "convert", "--eval-out")
    stats = ConvertStats(inputs=len(files), out=out, eval_out=opts.eval_out)
    offsets = token_offsets(opts.tokenizer) if opts.chunk_tokens else None
    seen: set[bytes] = set()
    features = {"system": False, "history": False, "tools": False}

    at = [0, 0]   # (file index, line) of the record rows() is at

    def rows() -> Iterator[tuple[str, dict]]:
        for fi, path in enumerate(files):
            for line, rec in dio.iter_records(path, text_split=opts.text_split):
                at[:] = fi, line
                stats.read += 1
                if progress:
                    progress(1)
                try:
                    if not isinstance(rec, dict):
                        raise ConversionError(f"row is {type(rec).__name__}, not an object")
                    if opts.to == "pt":
                        for group, text in _pt_rows(path, line, rec, opts, offsets):
                            if len(text) < opts.min_chars:
                                stats.skipped["too_short"] += 1
                                continue
                            if opts.max_chars and len(text) > opts.max_chars:
                                stats.skipped["too_long"] += 1
                                continue
                            yield group, {"text": text}
                        continue
                    conv = to_conversation(rec, opts.mapping, system=opts.system)
                    row = from_conversation(conv, opts.to, opts.fmt)
                    features["system"] |= "system" in row
                    features["history"] |= "history" in row
                    features["tools"] |= "tools" in row
                    yield prompt_id(conv.prompt_messages()), row
                except ConversionError as err:
                    where = f"{path}:{line}"
                    empty = _empty_cells(rec, opts.mapping) if isinstance(rec, dict) else []
                    if empty:   # a blank cell, not a missing column: say so
                        err = ConversionError(f"empty cell in column '{empty[0]}' ({err})", err.field,
                                              "fill the cell, or drop the row")
                    if not opts.skip_bad:
                        raise InputError(str(err), (err.hint or "fix the row") + "; or pass --skip-bad to skip "
                                         "such rows and count them", path=path, line=line) from None
                    stats.skipped[f"bad_row:{err.field or 'row'}"] += 1
                    if len(stats.first_errors) < 5:
                        stats.first_errors.append(f"{where}: {err}")

    guard = None
    if opts.decontaminate:
        from dsforge.contamination import ContaminationOptions, Guard

        guard = Guard(list(opts.decontaminate), ContaminationOptions())
    near_drop, near_rep, near_firsts = _near_plan(rows, stats, opts, files, at)
    group_of_first: dict[int, str] = {}

    with ExitStack() as stack:
        tmpdir = None
        if opts.shuffle:
            tmpdir = stack.enter_context(dio.temp_dir_for(out))
            buckets = {s: [open(os.path.join(tmpdir, f"{s}{i}"), "w", encoding="utf-8")
                           for i in range(SHUFFLE_BUCKETS)] for s in ("train", "eval")}
            rng = random.Random(opts.seed)
        else:
            writers = {"train": stack.enter_context(dio.open_rows(out))}
            if opts.eval_out:
                writers["eval"] = stack.enter_context(dio.open_rows(opts.eval_out))
        for i, (group, row) in enumerate(rows()):
            if near_rep is not None:   # the split groups near-duplicate prompts: the cluster's first row's group
                if i in near_firsts:
                    group_of_first[i] = group
                elif near_rep[i] != i:
                    group = group_of_first[int(near_rep[i])]
            if near_drop is not None and near_drop[i]:
                stats.skipped["near_duplicate"] += 1
                continue
            if guard is not None:
                hit = guard.check([row])[0]
                if hit is not None:
                    stats.skipped["contaminated"] += 1
                    if len(stats.contamination) < 20:
                        stats.contamination.append({"train": f"{files[at[0]]}:{at[1]} {hit['field']}", **hit})
                    continue
            if opts.limit is not None and stats.written + stats.eval_written >= opts.limit:
                break   # --limit: the first N rows, nothing more is read
            line = json.dumps(row, ensure_ascii=False, separators=(", ", ": "))
            if opts.dedup:
                d = _digest(line)
                if d in seen:
                    stats.skipped["duplicate"] += 1
                    continue
                seen.add(d)
            split = "eval" if opts.eval_ratio and _fraction(group, opts.seed) < opts.eval_ratio else "train"
            if split == "eval":
                stats.eval_written += 1
            else:
                stats.written += 1
            if opts.shuffle:
                buckets[split][rng.randrange(SHUFFLE_BUCKETS)].write(line + "\n")
            else:
                writers[split].write(row)
        if stats.written + stats.eval_written == 0:  # raised inside the writers: no empty file replaces a good one
            reasons = ", ".join(f"{k} {v}" for k, v in stats.skipped.items())
            raise InputError("no rows to write", f"every input row was skipped ({reasons})" if reasons
                             else "the inputs hold no rows", path=", ".join(files[:3]))
        for split, n, option in (("train", stats.written, "-o"), ("eval", stats.eval_written, "--eval-out")):
            if opts.eval_out and n == 0:   # an empty file LLaMA-Factory could not load ('Cannot find valid samples')
                raise UsageError(f"--eval-ratio {opts.eval_ratio:g} leaves {option} empty: all "
                                 f"{stats.written + stats.eval_written} rows went to the "
                                 f"{'eval' if split == 'train' else 'training'} split (the split is by prompt)",
                                 "choose an --eval-ratio that leaves rows on both sides, or drop --eval-out")
        if opts.shuffle:
            for split, target in (("train", out), ("eval", opts.eval_out)):
                for fh in buckets[split]:
                    fh.close()
                if target is None:
                    continue
                with dio.open_rows(target) as w:
                    for i in range(SHUFFLE_BUCKETS):
                        with open(os.path.join(tmpdir, f"{split}{i}"), encoding="utf-8") as fh:
                            lines = fh.readlines()
                        rng.shuffle(lines)
                        for ln in lines:
                            w.write(json.loads(ln))
    for target in (out, opts.eval_out):
        if target:
            dio.note_output(target, "convert")
    media = ()
    stats.entry = entry_for(opts.to, opts.fmt, system=features["system"], history=features["history"],
                            tools=features["tools"], media=media)
    return stats
