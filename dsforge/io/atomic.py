"""Atomic writes: temp file (or folder) beside the target, renamed over it only on success; cleanup of what
killed writers left; JSON/JSONL row writers; file locks; file digests."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from pathlib import Path
from typing import IO

from dsforge.errors import UsageError
from dsforge.io.jsonfiles import JSON_EXTS

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
    """One row as compact JSON text (UTF-8 kept, ', ' and ': ' separators), no newline."""
    return json.dumps(row, ensure_ascii=False, separators=(", ", ": "))


class RowWriter:
    """Write rows as JSONL or as a JSON array (streamed, no BOM), atomically."""

    def __init__(self, f: IO[str], fmt: str):
        self.f, self.fmt, self.n = f, fmt, 0

    def write(self, row: dict) -> None:
        """Write one row (a JSONL line, or the next element of the JSON array)."""
        if self.fmt == "jsonl":
            self.f.write(dumps_row(row) + "\n")
        else:
            self.f.write(("[\n  " if self.n == 0 else ",\n  ") + dumps_row(row))
        self.n += 1

    def close(self) -> None:
        """End the JSON array (nothing to do for JSONL); the file itself is closed by open_rows."""
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
