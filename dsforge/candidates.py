"""Read and write the candidate records that travel between stages (sample -> judge -> pairs -> report).

Stages import this module and dsforge.records, never each other, to read a candidates or judged
file. Files are JSONL, one record per line, appended while a stage runs:

- `iter_rows` streams (line, dict) pairs; a torn last line (a crash mid-write left no newline) is
  skipped, anything else broken is an InputError naming FILE:LINE. `ends_torn` tells a resuming
  writer that the last line is torn.
- `load_candidates` / `load_judged` read a whole file and check each row against the Candidate /
  JudgedCandidate model (errors name FILE:LINE and the field); rows stay plain dicts, so what is
  written back is byte-for-byte what was read.
- `read_jsonl` is the lenient reader for report (an absent file is []).
- `dumps` / `write_rows` write rows in the one on-disk spelling (UTF-8, ensure_ascii=False, one line).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import IO, Iterable, Iterator

from pydantic import BaseModel, ValidationError

from dsforge.errors import InputError, UsageError
from dsforge.io import dumps_row
from dsforge.records import Candidate, JudgedCandidate

_NOT_OURS = "the file was edited or is not a dsforge candidates file"


def iter_rows(path: str) -> Iterator[tuple[int, dict]]:
    """(line number, row dict) of a candidates or judged file, streamed.

    A torn last line (no trailing newline) and blank lines are skipped. Raises InputError at
    FILE:LINE for a line that is not UTF-8, not JSON, or not a JSON object.
    """
    with open(path, "rb") as f:
        for i, raw in enumerate(f, 1):
            if not raw.endswith(b"\n") or not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except UnicodeDecodeError as err:
                raise InputError(f"not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})",
                                 "dsforge writes UTF-8; the file was edited or is not a dsforge file: re-save it "
                                 "as UTF-8 or rerun the stage that wrote it", path=path, line=i) from None
            except ValueError:
                raise InputError("not a JSON candidate line", _NOT_OURS, path=path, line=i) from None
            if not isinstance(row, dict):
                raise InputError(f"a JSON {type(row).__name__}, not a candidate object", _NOT_OURS,
                                 path=path, line=i)
            yield i, row


def ends_torn(path: str) -> bool:
    """True when a non-empty file's last byte is not a newline (a writer died mid-line)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return False
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def _where(err: ValidationError) -> str:
    e = err.errors()[0]
    loc = ".".join(str(x) for x in e["loc"])
    if e["type"] == "missing":
        return f"has no '{loc}'"
    return f"field '{loc}': {e['msg']}"


def check_row(row: dict, model: type[BaseModel], *, path: str, line: int, hint: str) -> dict:
    """Validate one row against `model`; returns the row unchanged, or raises InputError at FILE:LINE."""
    try:
        model.model_validate(row)
    except ValidationError as err:
        what = "judged candidate" if model is JudgedCandidate else "candidate"
        raise InputError(f"{what} {_where(err)}", hint, path=path, line=line) from None
    return row


def load_candidates(path: str, *, reader: str = "judge") -> list[dict]:
    """Every row of a candidates file (output of `dsforge sample`), checked against records.Candidate.

    A judged file is a candidates file too (its `judge` field is kept). `reader` names the command
    in the hint. Raises InputError at FILE:LINE for a bad row, UsageError for a file with no rows.
    """
    hint = f"{reader} reads the output of dsforge sample"
    rows = [check_row(row, Candidate, path=path, line=line, hint=hint) for line, row in iter_rows(path)]
    if not rows:
        raise UsageError(f"{path}: no candidates")
    return rows


def load_judged(path: str, *, reader: str = "pairs") -> list[dict]:
    """Every row of a judged file (output of `dsforge judge` / `dsforge review`), checked against
    records.JudgedCandidate. Raises InputError at FILE:LINE (e.g. a row without `judge`), UsageError
    for a file with no rows."""
    rows = []
    for line, row in iter_rows(path):
        if not isinstance(row.get("judge"), dict):
            raise InputError("not a judged candidate (no 'judge' field)",
                             f"{reader} reads the output of dsforge judge", path=path, line=line)
        rows.append(check_row(row, JudgedCandidate, path=path, line=line,
                              hint=f"{reader} reads the output of dsforge judge"))
    if not rows:
        raise UsageError(f"{path}: no judged candidates")
    return rows


def read_jsonl(path, *, hint: str = "report reads dsforge's candidates / judged / pairs .jsonl files") -> list[dict]:
    """Rows of any dsforge JSONL output as dicts ([] when `path` is empty or absent); blank lines are
    skipped. A line that is not a JSON object, or a file that is not UTF-8, is an InputError naming
    FILE:LINE (and the column of a JSON syntax error)."""
    if not path or not os.path.exists(path):
        return []
    rows = []
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as err:
                    raise InputError(f"not JSON Lines ({getattr(err, 'msg', err)})", hint,
                                     path=str(path), line=n, column=getattr(err, "colno", None)) from None
                if not isinstance(row, dict):
                    raise InputError(f"a JSON {type(row).__name__}, not an object", hint, path=str(path), line=n)
                rows.append(row)
        except UnicodeDecodeError as err:
            raise InputError(f"not UTF-8 text (byte 0x{err.object[err.start]:02x})", hint, path=str(path)) from None
    return rows


def dumps(row: dict) -> str:
    """One record as its JSONL line (with the newline): dsforge.io's dumps_row, the one row spelling."""
    return dumps_row(row) + "\n"


def write_rows(f: IO[str], rows: Iterable[dict]) -> int:
    """Write rows to an open text file in one write() (a group lands whole or not at all); returns the count."""
    lines = [dumps(r) for r in rows]
    f.write("".join(lines))
    return len(lines)


def in_shard(prompt_id: str, shard: tuple[int, int]) -> bool:
    """True when `prompt_id` (dsforge's hex id; any other string is hashed) falls in shard (i, n)."""
    try:
        h = int(prompt_id, 16)
    except (TypeError, ValueError):
        h = int(hashlib.sha256(str(prompt_id).encode()).hexdigest(), 16)
    return h % shard[1] == shard[0]
