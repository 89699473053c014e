"""Validate one dataset: its entry, its files in LLaMA-Factory's order, the rows it selects (split,
num_samples), every row through the row mirror, and the observers (pair checks, length audit) in the same
single pass."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dsforge.errors import UsageError
from dsforge.infer import STAGE_FOR_KIND
from dsforge.lf_templates import resolve_template
from dsforge.records import STAGES, LFAttrs
from dsforge.validate.entry import check_entry, load_dataset_info, stage_for_entry, suggest
from dsforge.validate.files import _find_files, _iter_file, infer_path, lf_file_order
from dsforge.validate.lengths import LengthOptions, observe_lengths
from dsforge.validate.pairs import observe_pairs
from dsforge.validate.reasons import Finding
from dsforge.validate.report import Report
from dsforge.validate.rows import RowChecker


def validate_files(files: list[str], entry: dict, stage: str, *, name: str = "(file)",
                   inferred: str | None = None, max_examples: int = 5, display_files: list[str] | None = None,
                   progress=None, template: str | None = None, media_dir: str | None = None,
                   seed: int = 42, pair_checks: dict | None = None, lengths: LengthOptions | None = None) -> Report:
    """Validate the files of one dataset (in LLaMA-Factory's read order) against an entry and a stage.

    `template` is the LLaMA-Factory template of the run (None: its text-only default rules); `media_dir` is
    where LLaMA-Factory resolves media paths (its default is dataset_dir); `seed` is the run's seed, which
    decides the rows a `num_samples` entry draws; `pair_checks` are dsforge.validate.pairs.observe_pairs options
    for ranking data (max_similarity, method, warn_above); `lengths` turns on the token-length audit
    (dsforge.validate.lengths), which observes the same single pass over the rows (each file is read once).
    `progress(n)` is called with the number of rows checked since its last call. Raises UsageError for an
    unknown stage or template, or a tokenizer that cannot be loaded.
    """
    if stage not in STAGES:
        raise UsageError(f"unknown stage '{stage}'", f"use one of {', '.join(STAGES)}")
    label, tmpl = resolve_template(template)
    report = Report(name, stage, entry, display_files or files, inferred=inferred, max_examples=max_examples,
                    template=label)
    for f in check_entry(entry, stage, name):
        report.add(f)
    checker = RowChecker(LFAttrs.from_entry(entry), stage, report, template=tmpl, media_dir=media_dir)
    finish_pairs = observe_pairs(checker, report, **(pair_checks or {})) if stage in ("rm", "dpo") else None
    finish_lengths = observe_lengths(checker, report, lengths) if lengths is not None else None
    exts = {Path(p).suffix.lower().lstrip(".") for p in files}
    if len(exts) > 1:
        report.add(Finding("mixed_file_types", files[0], detail=f"file types {sorted(exts)} in one dataset"))
    items = ((item, path) for path in files for item in _iter_file(path, report))
    selecting = isinstance(entry, dict) and (entry.get("split", "train") != "train" or "num_samples" in entry)
    order = None
    if selecting:
        items = list(items)
        order = select_rows(entry, len(items), report, name, seed)
        if order is None:  # the selection itself fails in LLaMA-Factory
            report.rows = len(items)
            return report
    pending = 0
    seen: set[int] = set()
    for i in order or ():
        item, path = items[i]
        checker.check(item[1], item[0], path, item[2] if len(item) > 2 else None, repeat=i in seen)
        seen.add(i)
    for item, path in (() if selecting else items):
        checker.check(item[1], item[0], path, item[2] if len(item) > 2 else None)
        pending += 1
        if pending == 4096 and progress is not None:
            progress(pending)
            pending = 0
    if progress is not None and pending:
        progress(pending)
    checker.finish(files)
    if finish_pairs:
        finish_pairs()
    if selecting:
        report.rows = len(items)
    if report.rows == 0 and not report.fatal:
        report.add(Finding("empty_file", files[0] if files else name))
    elif report.kept == 0 and not report.fatal:
        report.add(Finding("no_valid_rows", name, detail=f"none of the {report.rows} rows would train under stage "
                           f"{stage}; LLaMA-Factory stops with 'Cannot find valid samples'"))
    if finish_lengths:
        finish_lengths(files)
    return report


def select_rows(entry: dict, n: int, report: Report, name: str, seed: int = 42) -> list[int] | None:
    """The row indices LLaMA-Factory 0.9.5 loads from a local file of n rows, in order: `split` (datasets'
    split syntax, e.g. train[:100]) then `num_samples` (loader.py: a seeded permutation, topped up by drawing
    with replacement). Adds findings and notes to `report`; None when the selection itself fails."""
    from datasets import ReadInstruction

    split = entry.get("split", "train")
    try:
        spans = ReadInstruction.from_spec(str(split)).to_absolute({"train": n})
    except (ValueError, AssertionError) as err:
        report.add(Finding("unknown_split", name, field="split", detail=f"split {json.dumps(split)}: {err} (a local "
                           "file has only the split 'train')"))
        return None
    idx = [i for sp in spans for i in range(sp.from_, sp.to)]
    if split != "train":
        report.add(Finding("split_slice", name, field="split", detail=f"split {json.dumps(split)} loads {len(idx)} "
                           f"of the {n} rows"))
        report.notes.append(f"split {split}: {len(idx)} of {n} rows")
    k = entry.get("num_samples")
    if k is None:
        return idx
    if type(k) is not int or k <= 0:
        report.add(Finding("bad_num_samples", name, field="num_samples", detail=f"num_samples is {json.dumps(k)}, "
                           "not a positive integer"))
        return None
    import numpy as np

    rng = np.random.RandomState(seed)  # LLaMA-Factory seeds numpy's global generator with the run's seed
    pick = list(rng.permutation(len(idx))[:k])
    if k > len(pick):
        pick += list(rng.choice(len(idx), k - len(pick)))
    repeats = k - len(set(pick))
    what = (f"oversamples: all {len(idx)} rows once plus {repeats} repeats drawn at random" if k > len(idx) else
            f"trains a random {k} of the {len(idx)} rows (seed {seed}; another seed draws other rows, so which bad "
            "rows survive changes from run to run)")
    report.add(Finding("num_samples_resample", name, field="num_samples", detail=f"num_samples {k} {what}"))
    report.notes.append(f"num_samples {k}: {what}")
    return [idx[int(i)] for i in pick]


def validate_path(path: str, *, stage: str | None = None, entry: dict | None = None, **kw) -> Report:
    """Validate one file (or LLaMA-Factory dataset directory); infer the entry when none is given.

    `stage` defaults to the stage the inferred kind is for (sft when the file cannot be read); media paths
    resolve beside the file unless `media_dir` is given; other keywords are validate_files'. Returns the
    Report. Raises UsageError when `path` does not exist or the format cannot be told from the rows.
    """
    files = _find_files(path)
    inferred = None
    if entry is None:
        try:
            inf = infer_path(path)
        except Exception as err:  # noqa: BLE001 - an unreadable file: validate reports why below
            from dsforge.errors import DsforgeError

            if isinstance(err, DsforgeError) and "cannot tell the format" in err.message:
                raise
            inf = None
        if inf is None:
            entry, kind = {"file_name": os.path.basename(path.rstrip("/")), "formatting": "alpaca"}, "sft"
            inferred = "unknown (the file could not be read)"
        else:
            entry, kind = {"file_name": os.path.basename(path.rstrip("/")), **inf.entry}, inf.kind
            inferred = inf.describe()
        if stage is None:  # an explicit stage is validated as asked; the findings say what does not fit
            stage = STAGE_FOR_KIND[kind]
    stage = stage or "sft"
    kw.setdefault("media_dir", os.path.dirname(os.path.abspath(path.rstrip("/"))))  # as if registered beside it
    return validate_files(files, entry, stage, name=kw.pop("name", path), inferred=inferred,
                          display_files=[path] if os.path.isdir(path) else None, **kw)


def validate_registered(info_path: str, name: str, stage: str | None = None, **kw) -> Report:
    """Validate dataset `name` of a dataset_info.json (file or its dataset_dir) exactly as LLaMA-Factory would
    load it; `stage` defaults to the one the entry is evidently for (stage_for_entry); other keywords are
    validate_files'. An entry without a local file_name, or whose file is missing, gets a Report with the
    entry findings (and file_missing). Raises ConfigError for an unreadable dataset_info.json and UsageError
    for an unknown name (with the closest registered name)."""
    info = load_dataset_info(info_path)
    dataset_dir = info_path if os.path.isdir(info_path) else os.path.dirname(os.path.abspath(info_path))
    if name not in info:
        s = suggest(name, info)
        raise UsageError(f"no dataset '{name}' in {info_path}" + (f"; did you mean '{s}'?" if s else ""),
                         f"registered names: {', '.join(list(info)[:20])}")
    entry = info[name]
    if stage is None:
        stage = stage_for_entry(entry)
    file_name = entry.get("file_name") if isinstance(entry, dict) else None
    if not file_name:
        report = Report(name, stage, entry if isinstance(entry, dict) else {}, [])
        for f in check_entry(entry, stage, name):
            report.add(f)
        return report
    local = os.path.join(dataset_dir, file_name)
    if not os.path.exists(local):
        report = Report(name, stage, entry, [local])
        for f in check_entry(entry, stage, name):
            report.add(f)
        report.add(Finding("file_missing", local, detail=f"file_name '{file_name}' resolves to {local}, which does "
                           "not exist"))
        return report
    kw.setdefault("media_dir", dataset_dir)
    return validate_files(lf_file_order(local), entry, stage, name=name,
                          display_files=[local] if os.path.isdir(local) else None, **kw)
