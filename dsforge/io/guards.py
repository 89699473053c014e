"""Guards on outputs: no command writes over one of its inputs, over another of its outputs, or over a file
that is not its own earlier output (the ledger of what dsforge wrote, in DSFORGE_CACHE/outputs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dsforge.errors import UsageError
from dsforge.io.atomic import atomic_write, same_file
from dsforge.io.jsonfiles import _CHUNK


def _within(path: str, directory: str) -> bool:
    p, d = os.path.realpath(path), os.path.realpath(directory)
    return p == d or p.startswith(d.rstrip(os.sep) + os.sep) or same_file(path, directory)


def _clean(paths, label: str) -> list[tuple[str, str]]:
    items = paths.items() if isinstance(paths, dict) else (p if isinstance(p, tuple) else (label, p) for p in paths)
    return [(str(label), os.fspath(p)) for label, p in items if p is not None and os.fspath(p) != ""]


def guard_outputs(inputs, outputs, *, output_dirs=None, hint: str | None = None) -> None:
    """Refuse, before anything is written, an output that would replace an input or another output.

    inputs, outputs: {label: path}, or lists of paths or (label, path) pairs; None paths are skipped. Labels name
    the option in the message, e.g. guard_outputs({"CANDIDATES": c}, {"-o": out, "summary":
    out + ".summary.json", "--cache": cache}). Paths are compared after resolving symlinks, and
    by inode (os.path.samefile) so a hard link counts too. output_dirs: {label: folder} whose
    content the command replaces or clears; an input inside one of them is refused as well.
    Raises UsageError (exit 2) naming both paths and what to do instead.
    """
    ins, outs = _clean(inputs, "input"), _clean(outputs, "output")
    fix = hint or "write the output to another path; dsforge never writes over its own input"
    for olabel, out in outs:
        for ilabel, inp in ins:
            if same_file(out, inp):
                raise UsageError(f"{olabel} {out} is the input {ilabel} {inp}: writing it would destroy the input", fix)
    for i, (la, a) in enumerate(outs):
        for lb, b in outs[i + 1:]:
            if same_file(a, b):
                raise UsageError(f"{la} {a} and {lb} {b} are the same file: one output would overwrite the other",
                                 "choose different output paths")
    for dlabel, d in _clean(output_dirs or {}, "folder"):
        for ilabel, inp in ins:
            if _within(inp, d):
                raise UsageError(f"the input {ilabel} {inp} lies in {dlabel} {d}, which this command replaces",
                                 "move the input elsewhere, or choose another output folder")


# ---------------------------------------------------------------- what kind of output a file is
#
# An existing output file is replaced only when it is recognisably an earlier output of the same
# command (`guard_kind`); anything else (a user's SFT file, a judged file given to sample, a
# manifest given to pairs) is refused, whatever --overwrite says. A file is recognised
#   1. by the ledger: every writer calls `note_output(path, kind)` after writing; the ledger
#      (DSFORGE_CACHE/outputs/, one small JSON per resolved path) holds the kind with the file's
#      size and mtime, so a file edited or replaced since is no longer "ours". This is how
#      convert's output (plain LLaMA-Factory rows, nothing inside says who wrote it) is known:
#      convert may rewrite its own earlier output on this machine; a data file it did not write,
#      or one edited since, is refused. No marker file is put beside the data (a dataset folder
#      used as file_name would load it).
#   2. by content, for files written elsewhere or before the ledger: a candidates row has
#      prompt_id + text and no judge; a judged row a judge object; a pairs file has its
#      OUT.summary.json with strategy and sidecar; a report starts with <!doctype html>.
# An empty file is never data, so it may be replaced.

OUTPUT_KINDS = {"sample": ("candidates",), "merge": ("candidates",), "judge": ("judged",),
                "pairs": ("pairs",), "kto": ("kto",), "convert": ("convert",), "report": ("report",),
                "dedup": ("dedup",), "contamination": ("decontaminated",), "tasks": ("tasks",),
                "calibrate": ("calibration",)}
_KIND_WORDS = {"candidates": "a candidates file", "judged": "a judged file", "pairs": "a pairs file",
               "kto": "a KTO file written by pairs", "convert": "an earlier output of convert",
               "report": "an HTML report", "dedup": "an earlier output of dedup",
               "decontaminated": "an earlier output of contamination --drop", "tasks": "an output of dsforge tasks make",
               "calibration": "an output of dsforge tasks calibrate"}


def _ledger_path(path: str) -> Path:
    import hashlib

    root = Path(os.environ.get("DSFORGE_CACHE") or Path.home() / ".cache" / "dsforge")
    return root / "outputs" / (hashlib.sha1(os.path.realpath(path).encode()).hexdigest() + ".json")


def note_output(path: str, kind: str) -> None:
    """Record that dsforge just wrote `path` as an output of `kind` (see OUTPUT_KINDS); never fails a run."""
    try:
        st = os.stat(path)
        led = _ledger_path(path)
        led.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(led) as f:
            json.dump({"path": os.path.realpath(path), "kind": kind, "size": st.st_size,
                       "mtime_ns": st.st_mtime_ns}, f)
    except OSError:
        pass   # without the record, a rerun is refused and says to delete the file: safe


def _first_row(path: str):
    with open(path, "rb") as f:
        head = f.read(_CHUNK)
    if head.lstrip().lower().startswith(b"<!doctype html"):
        return "html"
    for raw in head.splitlines():
        if raw.strip():
            try:
                return json.loads(raw)
            except ValueError:
                return None
    return None


def output_kind(path: str) -> str | None:
    """What dsforge output the existing file `path` is (a key of _KIND_WORDS), or None when unknown."""
    try:
        led = json.loads(_ledger_path(path).read_text())
        st = os.stat(path)
        if led.get("size") == st.st_size and led.get("mtime_ns") == st.st_mtime_ns:
            return led.get("kind")
    except (OSError, ValueError, AttributeError):
        pass
    try:
        row = _first_row(path)
    except OSError:
        return None
    if row == "html":
        return "report"
    if isinstance(row, dict):
        if isinstance(row.get("judge"), dict):
            return "judged"
        if "prompt_id" in row and "text" in row:
            return "candidates"
    try:
        with open(path + ".summary.json", encoding="utf-8") as f:
            s = json.load(f)
        if isinstance(s, dict) and "strategy" in s and "sidecar" in s:
            return "pairs"
    except (OSError, ValueError):
        pass
    return None


def guard_kind(out: str | None, command: str, label: str = "-o") -> None:
    """Refuse (UsageError, exit 2) to replace an existing non-empty `out` that is not an earlier
    output of `command` (a key of OUTPUT_KINDS). Missing and empty files pass."""
    if not out or not os.path.isfile(out) or os.path.getsize(out) == 0:
        return
    kind = output_kind(out)
    if kind in OUTPUT_KINDS[command]:
        return
    want = _KIND_WORDS[OUTPUT_KINDS[command][0]]
    found = _KIND_WORDS.get(kind, "a file dsforge did not write (or one edited since)")
    raise UsageError(f"{label} {out} already exists and is not {want} (it is {found}); not replacing it",
                     f"choose another {label}, or delete {out} first if it may go")

