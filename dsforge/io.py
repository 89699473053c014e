"""Streaming readers with line numbers, atomic writers and file locks.

Readers never load a whole file: JSONL goes line by line, a JSON array is decoded element by
element from a sliding buffer, tables come in record batches. Every record carries the line it
started on so errors can say `file:line`.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from dsforge.errors import InputError, UsageError

JSON_EXTS = {".json", ".jsonl"}
TABLE_EXTS = {".csv", ".parquet", ".arrow"}
TEXT_EXTS = {".txt", ".md", ".markdown"}
BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 20


@dataclass
class SyntaxProblem:
    """A JSON syntax or encoding problem, located and explained in plain words."""

    line: int
    column: int | None
    reason: str
    hint: str
    code: str = "json_syntax"


def explain_json_error(msg: str, doc: str, pos: int) -> tuple[str, str]:
    """Turn a json.JSONDecodeError message into a plain reason and a fix."""
    before = doc[:pos].rstrip()
    nxt = doc[pos:pos + 1]
    if before.endswith(",") and nxt in ("]", "}"):
        closer = "]" if nxt == "]" else "}"
        return (f"trailing comma before '{closer}'", f"delete the comma before '{closer}'; JSON allows none")
    if msg.startswith("Expecting property name") and nxt == "'":
        return ("single-quoted key", "JSON needs double quotes around keys and strings")
    if msg.startswith("Expecting value") and nxt == "'":
        return ("single-quoted string", "JSON needs double quotes around strings")
    if msg.startswith("Unterminated string") or (msg.startswith("Expecting") and pos >= len(doc.rstrip())):
        return ("the JSON value ends early (truncated line or unterminated string)",
                "the file was probably cut off while being written; regenerate it or delete the last line")
    if msg.startswith("Extra data"):
        return ("more than one JSON value on this line",
                "JSONL needs exactly one object per line; split the line or remove the stray text")
    if msg.startswith("Invalid control character"):
        return ("a raw control character (e.g. a newline or tab) inside a string",
                "escape it as \\n or \\t")
    if msg.startswith("Expecting ',' delimiter") or msg.startswith("Expecting ':' delimiter"):
        return (msg.split(":")[0].lower(), "a comma or colon is missing here, or a quote inside a string is not escaped")
    return (msg, "fix the JSON at this position")


class DuplicateKey(ValueError):
    pass


# a \uD800-\uDFFF escape: Python's json takes a lone one (half an emoji), Arrow's JSON Lines reader
# ("The surrogate pair in string is invalid") and UTF-8 output do not
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _lone_surrogate(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _strict_pairs(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise DuplicateKey(dup)
    return d


def _nkeys(obj) -> int:
    """Number of object keys in a parsed JSON value (direct loops: this runs once per row)."""
    if type(obj) is list:
        n = 0
        for x in obj:
            if type(x) in (dict, list):
                n += _nkeys(x)
        return n
    n = len(obj)
    for v in obj.values():
        t = type(v)
        if t is list:
            for x in v:
                tx = type(x)
                if tx is dict:
                    n += len(x)
                    for y in x.values():
                        if type(y) in (dict, list):
                            n += _nkeys(y)
                elif tx is list:
                    n += _nkeys(x)
        elif t is dict:
            n += _nkeys(v)
    return n


try:  # orjson parses ~2-3x faster; stdlib json stays the reference for errors and edge cases
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover
    _fast_loads = None


def iter_jsonl(path: str, problems: list[SyntaxProblem] | None = None, *,
               with_key: bool = False) -> Iterator[tuple]:
    """Yield (line_number, value) for each non-blank line (plus a hash of the raw line if with_key).

    With `problems`, syntax/encoding errors are recorded and reading goes on (validate wants them
    all); without it, the first one raises InputError.
    """
    strict = json.JSONDecoder(object_pairs_hook=_strict_pairs).decode
    fast = _fast_loads
    with open(path, "rb") as f:
        offset = 0
        for lineno, raw in enumerate(f, 1):
            start = offset
            offset += len(raw)
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[3:]
                start += 3
            if not raw.strip():
                continue
            value = None
            if fast is not None:
                try:
                    value = fast(raw)
                    # duplicate keys: orjson keeps the last one silently; a key count below the number of
                    # '":' sequences sends the line to the strict parser, which names the duplicate
                    if type(value) in (dict, list) and raw.count(b'":') > _nkeys(value):
                        value = None
                except ValueError:
                    value = None
            try:
                if value is None:
                    value = strict(raw.decode("utf-8"))
                    if _SURROGATE_ESCAPE.search(raw) and _lone_surrogate(value):
                        p = SyntaxProblem(lineno, None, "a \\uD800-\\uDFFF escape without its pair (half of a "
                                          "surrogate pair, e.g. an emoji cut in two): Arrow refuses the whole file",
                                          "remove the escape or complete the pair", code="lone_surrogate")
                        if problems is None:
                            raise InputError(p.reason, p.hint, path=path, line=lineno) from None
                        problems.append(p)
                        continue
                yield (lineno, value, hash(raw.rstrip())) if with_key else (lineno, value)
            except DuplicateKey as err:
                p = SyntaxProblem(lineno, None, f"key '{err}' appears twice in one object",
                                  "remove one of them (Arrow refuses duplicate keys)", code="duplicate_key")
                if problems is None:
                    raise InputError(p.reason, p.hint, path=path, line=lineno) from None
                problems.append(p)
            except UnicodeDecodeError as err:
                p = SyntaxProblem(lineno, None, f"not UTF-8: byte 0x{raw[err.start]:02x} at byte offset {start + err.start}",
                                  "re-encode the file as UTF-8 (e.g. iconv -f GBK -t UTF-8)", code="encoding")
                if problems is None:
                    raise InputError(p.reason, p.hint, path=path, line=lineno) from None
                problems.append(p)
            except json.JSONDecodeError as err:
                reason, hint = explain_json_error(err.msg, err.doc, err.pos)
                if not raw.endswith(b"\n") and err.msg.startswith(("Unterminated", "Expecting")):
                    reason = "the last line is incomplete (truncated file)"
                p = SyntaxProblem(lineno, err.colno, reason, hint)
                if problems is None:
                    raise InputError(p.reason, p.hint, path=path, line=lineno, column=err.colno) from None
                problems.append(p)


def iter_json_array(path: str, problems: list[SyntaxProblem] | None = None) -> Iterator[tuple[int, object]]:
    """Yield (line_number, element) of a top-level JSON array without loading the file at once.

    A file whose top level is a single object is yielded as one element. Syntax errors stop the
    stream (after one, positions of later elements cannot be trusted).
    """
    decoder = json.JSONDecoder(object_pairs_hook=_strict_pairs)
    ws = re.compile(r"[ \t\n\r]*")

    def fail(line: int, col: int | None, reason: str, hint: str, code: str = "json_syntax"):
        p = SyntaxProblem(line, col, reason, hint, code)
        if problems is None:
            raise InputError(reason, hint, path=path, line=line, column=col)
        problems.append(p)

    with open(path, "rb") as fb:
        head = fb.read(3)
        if head != BOM:
            fb.seek(0)
        f = _Utf8Reader(fb, 3 if head == BOM else 0)
        st = {"buf": "", "mark": 0, "line": 1, "eof": False}  # line number of buf[mark]

        def line_at(p: int) -> int:
            st["line"] += st["buf"].count("\n", st["mark"], p)
            st["mark"] = p
            return st["line"]

        def refill(pos: int) -> int:
            """Append the next chunk, dropping what lies before pos; return pos in the new buffer."""
            if st["eof"]:
                return pos
            line_at(pos)
            chunk = f.read(_CHUNK)
            st["buf"] = st["buf"][pos:] + chunk
            st["mark"] = 0
            if not chunk:
                st["eof"] = True
            return 0

        def where(p: int) -> tuple[int, int]:
            buf = st["buf"]
            return line_at(p), p - (buf.rfind("\n", 0, p) + 1) + 1

        try:
            pos = refill(0)
            buf = st["buf"]
            pos = ws.match(buf, pos).end()
            if pos >= len(buf):
                return  # empty file: the caller reports "no rows"
            if buf[pos] != "[":
                while not st["eof"]:  # a single top-level value: decode it whole
                    pos = refill(pos)
                buf = st["buf"]
                try:
                    value, _ = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as err:
                    fail(*where(err.pos), *explain_json_error(err.msg, buf, err.pos))
                    return
                yield where(pos)[0], value
                return
            pos += 1
            expect_value, first = True, True
            while True:
                buf = st["buf"]
                pos = ws.match(buf, pos).end()
                if pos >= len(buf) - 1 and not st["eof"]:
                    pos = refill(pos)
                    buf = st["buf"]
                    pos = ws.match(buf, pos).end()
                if pos >= len(buf):
                    fail(*where(pos), "the JSON array is not closed (truncated file)",
                         "the file was probably cut off while being written; regenerate it")
                    return
                ch = buf[pos]
                if ch == "]":
                    if expect_value and not first:
                        fail(*where(pos), "trailing comma before ']'", "delete the comma after the last element")
                    return
                if not expect_value:
                    if ch != ",":
                        fail(*where(pos), "expecting ',' between array elements",
                             "a comma is missing between two objects, or an object is not closed")
                        return
                    pos += 1
                    expect_value = True
                    continue
                while True:
                    try:
                        value, end = decoder.raw_decode(buf, pos)
                        break
                    except DuplicateKey as err:
                        fail(line_at(pos), None, f"key '{err}' appears twice in one object",
                             "remove one of them (Arrow refuses duplicate keys)", code="duplicate_key")
                        return
                    except json.JSONDecodeError as err:
                        if not st["eof"]:
                            pos = refill(pos)
                            buf = st["buf"]
                            continue
                        fail(*where(err.pos), *explain_json_error(err.msg, buf, err.pos))
                        return
                if problems is None and _SURROGATE_ESCAPE.search(buf[pos:end].encode("utf-8", "surrogatepass")) \
                        and _lone_surrogate(value):
                    # LLaMA-Factory loads a .json array with one (Python's json), so validate (problems given)
                    # accepts it; every other reader refuses it: no output could be written as UTF-8
                    fail(line_at(pos), None, "a \\uD800-\\uDFFF escape without its pair (half of a surrogate "
                         "pair, e.g. an emoji cut in two)", "remove the escape or complete the pair",
                         code="lone_surrogate")
                    return
                yield line_at(pos), value
                pos = end
                expect_value, first = False, False
        except UnicodeDecodeError as err:
            fail(getattr(err, "dsforge_line", st["line"]), None,
                 f"not UTF-8: byte 0x{err.object[err.start]:02x} at byte offset {getattr(err, 'dsforge_offset', err.start)}",
                 "re-encode the file as UTF-8 (e.g. iconv -f GBK -t UTF-8)", code="encoding")


class _Utf8Reader:
    """Decode a binary stream as UTF-8 chunk by chunk, reporting absolute byte offsets on errors."""

    def __init__(self, fb: IO[bytes], offset: int):
        import codecs

        self.fb = fb
        self.dec = codecs.getincrementaldecoder("utf-8")("strict")
        self.offset = offset
        self.lines = 1

    def read(self, n: int) -> str:
        raw = self.fb.read(n)
        try:
            text = self.dec.decode(raw, final=not raw)
        except UnicodeDecodeError as err:
            err.dsforge_offset = self.offset + err.start
            err.dsforge_line = self.lines + raw.count(b"\n", 0, err.start)
            raise
        self.offset += len(raw)
        self.lines += raw.count(b"\n")
        return text


def iter_json_file(path: str, problems: list[SyntaxProblem] | None = None) -> Iterator[tuple[int, object]]:
    """JSON or JSONL by extension; a `.json` file holding JSON Lines is read as JSONL."""
    if path.endswith(".jsonl"):
        yield from iter_jsonl(path, problems)
        return
    if _looks_like_jsonl(path):
        yield from iter_jsonl(path, problems)
    else:
        yield from iter_json_array(path, problems)


def _looks_like_jsonl(path: str) -> bool:
    """True when the first line alone is a JSON object (a one-line array is not JSONL)."""
    with open(path, "rb") as f:
        first = f.readline()
    try:
        return isinstance(json.loads(first.lstrip(BOM)), dict)
    except ValueError:
        return False


def iter_csv_text(path: str, batch_size: int = 10_000) -> Iterator[tuple[int, dict]]:
    """CSV rows with every cell as text (polars, streamed): raw corpora keep "007" as "007".

    Line numbers assume one line per record (a quoted multi-line cell shifts later numbers).
    """
    import polars as pl

    try:
        n = 1
        for batch in pl.scan_csv(path, infer_schema=False).collect_batches(chunk_size=batch_size):
            for row in batch.to_dicts():
                n += 1
                yield n, row
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputError(f"cannot read csv: {str(err).splitlines()[0]}", "check the file is complete, "
                         "comma-separated and UTF-8", path=path) from None


def iter_table(path: str, batch_size: int = 10_000) -> Iterator[tuple[int, dict]]:
    """Rows of a csv/parquet/arrow file as dicts, streamed in record batches (row numbers are 1-based data rows)."""
    import pyarrow as pa

    ext = Path(path).suffix.lower()
    try:
        if ext == ".parquet":
            import pyarrow.parquet as pq

            batches = pq.ParquetFile(path).iter_batches(batch_size=batch_size)
        elif ext == ".csv":
            import pyarrow.csv as pacsv

            batches = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 22))
        elif ext == ".arrow":
            batches = _iter_arrow(path)
        else:
            raise UsageError(f"{path}: not a table file ({ext})")
        n = 0
        line_offset = 1 if ext == ".csv" else 0  # csv: header is line 1
        for batch in batches:
            for row in batch.to_pylist():
                n += 1
                yield n + line_offset, row
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(f"cannot read {ext[1:]} file: {err}", "check that the file is complete and really is "
                         f"{ext[1:]}", path=path) from None


def _iter_arrow(path: str):
    import pyarrow as pa

    with pa.memory_map(path) as source:
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
            return
        yield from reader


def iter_text_documents(path: str, split: str = "file") -> Iterator[tuple[int, str]]:
    """Documents of a .txt/.md file: the whole file, or paragraphs split on blank lines."""
    try:
        if split == "file":
            with open(path, encoding="utf-8") as f:
                text = f.read().lstrip("\ufeff")
            if text.strip():
                yield 1, text.strip("\n")
            return
        para: list[str] = []
        start = 1
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if lineno == 1:
                    line = line.lstrip("\ufeff")
                if line.strip():
                    if not para:
                        start = lineno
                    para.append(line.rstrip("\n"))
                elif para:
                    yield start, "\n".join(para)
                    para = []
            if para:
                yield start, "\n".join(para)
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8: byte 0x{err.object[err.start]:02x}", "re-encode the file as UTF-8",
                         path=path) from None


def iter_hf_dataset(path: str, split: str | None = None) -> Iterator[tuple[int, dict]]:
    """Rows of a dataset saved with `datasets.save_to_disk` (memory-mapped, not loaded)."""
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(path)
    if isinstance(ds, DatasetDict):
        if split is None:
            split = "train" if "train" in ds else next(iter(ds))
        if split not in ds:
            raise UsageError(f"{path}: no split '{split}'", f"available splits: {', '.join(ds)}")
        ds = ds[split]
    for i, row in enumerate(ds, 1):
        yield i, row


def is_hf_dataset_dir(path: str) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / "dataset_info.json").exists() and (p / "state.json").exists()
                           or (p / "dataset_dict.json").exists())


def expand_inputs(inputs: list[str], exts: set[str] | None = None) -> list[str]:
    """Files named by paths, globs and directories (recursively), sorted, deduplicated.

    Inside a directory, hidden files and folders (.git, editor swap files, dsforge's own temp files
    and stage markers) are skipped; a hidden file named directly is read."""
    out: list[str] = []
    for item in inputs:
        if is_hf_dataset_dir(item):
            out.append(item)
            continue
        matches = sorted(glob.glob(item, recursive=True)) if any(c in item for c in "*?[") else [item]
        if not matches:
            raise UsageError(f"no file matches '{item}'", "check the path or quote the glob")
        for m in matches:
            if os.path.isdir(m) and not is_hf_dataset_dir(m):
                for root, dirs, files in os.walk(m):
                    dirs[:] = [d for d in dirs if not d.startswith(".")]
                    for name in sorted(files):
                        full = os.path.join(root, name)
                        if not name.startswith(".") and (exts is None or Path(name).suffix.lower() in exts):
                            out.append(full)
            elif os.path.exists(m):
                out.append(m)
            else:
                raise UsageError(f"{m}: no such file or directory")
    seen: set[str] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def iter_records(path: str, *, text_split: str = "file") -> Iterator[tuple[int, object]]:
    """Any supported input as (line, record); text files yield {"text": ...}."""
    if is_hf_dataset_dir(path):
        yield from iter_hf_dataset(path)
        return
    ext = Path(path).suffix.lower()
    if ext in JSON_EXTS:
        yield from iter_json_file(path)
    elif ext == ".csv":
        yield from iter_csv_text(path)
    elif ext in TABLE_EXTS:
        yield from iter_table(path)
    elif ext in TEXT_EXTS:
        for line, doc in iter_text_documents(path, text_split):
            yield line, {"text": doc}
    else:
        raise UsageError(f"{path}: unsupported file type '{ext or '(none)'}'",
                         "use .txt/.md, .json/.jsonl, .csv, .parquet, .arrow or a saved HF dataset directory")


# ---------------------------------------------------------------- writing


_HOST = None


def _host_tag() -> str:
    """A short, stable id of this machine, so a shared file system never sees another host's PIDs as ours."""
    global _HOST
    if _HOST is None:
        import hashlib
        import socket

        _HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
    return _HOST


def _owner_tag() -> str:
    return f"{os.getpid()}@{_host_tag()}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True   # someone else's live process (or a PID we cannot judge): leave its files alone
    return True


def clean_stale(path: str | os.PathLike) -> list[str]:
    """Remove what killed writers of `path` left beside it; return the removed paths.

    Only this module's own leftovers for this very output are touched: hidden temp files
    `.NAME.PID@HOST.XXXXXXXX.tmp` and temp folders `.NAME.PID@HOST.XXXXXXXX.d` whose writer
    PID, on this host, is no longer running (kill -9, power loss). Anything else is left alone.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    pat = re.compile(r"\." + re.escape(os.path.basename(path)) + r"\.(\d+)@" + _host_tag() + r"\.[a-z0-9_]+\.(tmp|d)")
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = pat.fullmatch(name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        full = os.path.join(directory, name)
        with contextlib.suppress(OSError):
            if m.group(2) == "d":
                import shutil

                shutil.rmtree(full)
            else:
                os.unlink(full)
            removed.append(full)
    return removed


def _make_temp(path: str) -> tuple[int, str]:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    clean_stale(path)
    return tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{_owner_tag()}.", suffix=".tmp", dir=directory)


def _commit(tmp: str, path: str) -> None:
    if os.path.exists(path):
        with contextlib.suppress(OSError):
            os.chmod(tmp, os.stat(path).st_mode & 0o777)
    else:
        os.chmod(tmp, 0o644)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"):
    """Write to a temp file beside `path` and rename it over `path` only on success.

    A crash, exception or Ctrl-C leaves the old file (or none) untouched, never a half-written one.
    The temp file is `.NAME.PID@HOST.XXXXXXXX.tmp`; after a kill -9 the next write of the same
    path removes it (see `clean_stale`).
    """
    with atomic_files() as group:
        yield group.open(path, mode, encoding)


class AtomicFiles:
    """Several outputs written to temp files and renamed together: all of them, or none (see `atomic_files`)."""

    def __init__(self):
        self._open: list[tuple[IO, str, str]] = []   # (file, temp path, target path)

    def open(self, path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> IO:
        """A new temp file that will replace `path` when the group ends without error."""
        path = os.fspath(path)
        if any(os.path.abspath(t) == os.path.abspath(path) for _, _, t in self._open):
            raise ValueError(f"{path} is opened twice in one atomic group")
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        fd, tmp = _make_temp(path)
        try:
            f = os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        self._open.append((f, tmp, path))
        return f

    def _commit(self) -> None:
        for f, _, _ in self._open:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for _, tmp, path in self._open:
            _commit(tmp, path)

    def name_target(self, err: OSError) -> None:
        """Make `err` name the output the user asked for, not a temp file (a full disk during write())."""
        temps = {tmp: path for _, tmp, path in self._open}
        if err.filename in temps:
            err.filename, err.filename2 = temps[err.filename], None
        elif err.filename is None and self._open and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG,
                                                                    errno.EIO, errno.EROFS):
            err.filename = ", ".join(path for _, _, path in self._open)

    def _abort(self) -> None:
        for f, tmp, _ in self._open:
            with contextlib.suppress(OSError):
                f.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


@contextlib.contextmanager
def atomic_files():
    """Write several related outputs (a file, its sidecar, its summary) so that they land together.

    `with atomic_files() as g: f = g.open(out); s = g.open(out + ".summary.json")`: every file is
    a temp file until the block ends; then all are fsynced and renamed over their targets. An error
    (a full disk, Ctrl-C) before that leaves every previous output exactly as it was.
    """
    group = AtomicFiles()
    try:
        yield group
        group._commit()
    except BaseException as err:
        group._abort()
        if isinstance(err, OSError):
            group.name_target(err)
        raise


def new_temp_dir(path: str | os.PathLike) -> str:
    """Create a private folder beside `path` (`.NAME.PID@HOST.XXXXXXXX.d`) for a result that is
    renamed into place or removed when done; after a kill -9 the next write of `path` removes it
    (see `clean_stale`). Returns its path."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    clean_stale(path)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.{_owner_tag()}.", suffix=".d", dir=directory)


@contextlib.contextmanager
def temp_dir_for(path: str | os.PathLike):
    """A scratch folder from `new_temp_dir(path)`, removed when the block ends."""
    import shutil

    tmp = new_temp_dir(path)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Copy `src` to `dst` atomically (a full disk or a kill never leaves a truncated copy); returns dst."""
    import shutil

    with open(src, "rb") as fsrc, atomic_write(dst, "wb") as fdst:
        shutil.copyfileobj(fsrc, fdst, 1 << 20)
    return os.fspath(dst)


def backup(path: str | os.PathLike, suffix: str = ".bak") -> str | None:
    """Copy `path` to `path + suffix` atomically (a full disk never leaves a truncated backup).

    Returns the backup path, or None when `path` does not exist.
    """
    path = os.fspath(path)
    return copy_file(path, path + suffix) if os.path.exists(path) else None


# ---------------------------------------------------------------- output guard


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when two paths name one file: equal after resolving symlinks, or the same inode (hard links)."""
    a, b = os.fspath(a), os.fspath(b)
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:   # one of them does not exist (yet): then only the resolved paths could match
        return False


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
                "dedup": ("dedup",), "contamination": ("decontaminated",), "tasks": ("tasks",)}
_KIND_WORDS = {"candidates": "a candidates file", "judged": "a judged file", "pairs": "a pairs file",
               "kto": "a KTO file written by pairs", "convert": "an earlier output of convert",
               "report": "an HTML report", "dedup": "an earlier output of dedup",
               "decontaminated": "an earlier output of contamination --drop", "tasks": "an output of dsforge tasks"}


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


def file_digest(path: str) -> dict:
    """sha256, size and line count of a file, in one streaming pass."""
    import hashlib

    h = hashlib.sha256()
    lines = size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            lines += chunk.count(b"\n")
            size += len(chunk)
    return {"sha256": h.hexdigest(), "bytes": size, "lines": lines}


def dumps_row(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, separators=(", ", ": "))


class RowWriter:
    """Write rows as JSONL or as a JSON array (streamed, no BOM), atomically."""

    def __init__(self, f: IO[str], fmt: str):
        self.f, self.fmt, self.n = f, fmt, 0

    def write(self, row: dict) -> None:
        if self.fmt == "jsonl":
            self.f.write(dumps_row(row) + "\n")
        else:
            self.f.write(("[\n  " if self.n == 0 else ",\n  ") + dumps_row(row))
        self.n += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.f.write("\n]\n" if self.n else "[]\n")


@contextlib.contextmanager
def open_rows(path: str):
    """Atomic row writer; the format (.json array or .jsonl) follows the extension."""
    ext = Path(path).suffix.lower()
    if ext not in JSON_EXTS:
        raise UsageError(f"{path}: output must end in .json or .jsonl")
    with atomic_write(path) as f:
        w = RowWriter(f, ext[1:])
        yield w
        w.close()


def file_lock(path: str, timeout: float = 60.0):
    """An inter-process lock beside `path` (path + '.lock')."""
    from filelock import FileLock

    return FileLock(path + ".lock", timeout=timeout)
