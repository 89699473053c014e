"""Errors a user can cause and fix.

DsforgeError            base: message + hint, exit code 1
├── UsageError          wrong flags or arguments (exit 2)
├── InputError          a file that cannot be read as data (names file, line, column)
└── ConfigError         dataset_info.json / recipe problems (names the key)

The CLI turns these into one clear message and an exit code; anything else is a bug and keeps
its traceback only when DSFORGE_DEBUG=1. Operating-system errors (a missing file, a directory
where a file belongs, a full disk, a read-only file system, a permission) are the user's or the
machine's, never dsforge's: `os_error` turns them into a DsforgeError that names the path and
the fix; a wrong path (ENOENT, ENOTDIR, EISDIR, ENAMETOOLONG) exits 2 like any wrong argument,
the rest (ENOSPC, EDQUOT, EROFS, EACCES, EIO, ...) exit 1.

Secrets: `redact_url` removes credentials from a URL and `redact` does it for every URL inside a
JSON-like value (and masks api_key/token/password fields); every place that records or prints a
URL (summaries, manifests, caches, logs, error messages) goes through them.
"""

from __future__ import annotations

import errno
import os
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class DsforgeError(Exception):
    """A problem the user can fix: `message` says what and where, `hint` how to fix it (or None).

    `str()` gives the message, then "  hint: ..." on its own line. The CLI (dsforge.cli.main)
    prints it and exits with `exit_code` (1 here: bad data or a failed step).
    """

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(DsforgeError):
    """Wrong flags, arguments or paths; exit code 2 (click's usage-error code)."""

    exit_code = 2


class InputError(DsforgeError):
    """A file that cannot be read as data; exit code 1.

    The message is prefixed with "PATH:LINE:COLUMN: " (LINE and COLUMN 1-based, each only when
    given; COLUMN only with LINE); `path`, `line` and `column` stay readable as attributes.
    """

    def __init__(self, message: str, hint: str | None = None, *, path: str | None = None,
                 line: int | None = None, column: int | None = None):
        where = ""
        if path:
            where = path + (f":{line}" if line else "") + (f":{column}" if line and column else "")
        super().__init__(f"{where}: {message}" if where else message, hint)
        self.path, self.line, self.column = path, line, column


class ConfigError(DsforgeError):
    """A dataset_info.json or recipe problem; the message names the key; exit code 1."""


# errno -> (what happened, how to fix it, exit code)
_OS_ERRORS = {
    errno.ENOENT: ("no such file or directory", "check the path (and the current directory)", 2),
    errno.ENOTDIR: ("a part of this path is a file, not a directory", "check the path", 2),
    errno.EISDIR: ("is a directory, a file is needed here", "give a file path, e.g. DIR/name.jsonl", 2),
    errno.ENAMETOOLONG: ("file name too long", "use a shorter name", 2),
    errno.ENOSPC: ("no space left on the device", "free space, or write to another disk (a previous output "
                   "was left as it was)", 1),
    errno.EDQUOT: ("disk quota exceeded", "free space in your quota, or write elsewhere", 1),
    errno.EFBIG: ("file too large for this file system", "write to another file system", 1),
    errno.EROFS: ("read-only file system", "write the output to a writable directory", 1),
    errno.EACCES: ("permission denied", "check the permissions of the file and its directory, or write elsewhere", 1),
    errno.EPERM: ("operation not permitted", "check the permissions of the file and its directory", 1),
    errno.EEXIST: ("already exists", "remove it or choose another name", 1),
    errno.ENOTEMPTY: ("directory not empty", "choose an empty or new directory", 1),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) or pass fewer files at once", 1),
    errno.EIO: ("input/output error", "the disk or network file system failed; check it and rerun", 1),
    errno.EXDEV: ("cannot move across file systems", "keep the output on one file system", 1),
    errno.ELOOP: ("too many levels of symbolic links", "check the symlinks on this path", 1),
}


def os_error(err: OSError) -> DsforgeError:
    """One message for an operating-system error: what happened, on which path, and how to fix it.

    Returns (never raises) a UsageError for a wrong path (ENOENT, ENOTDIR, EISDIR, ENAMETOOLONG,
    EEXIST on a file where a directory belongs), exit 2, else a DsforgeError, exit 1 for the machine
    (full disk, read-only, permission, I/O). Errors without an errno (rare) keep their own text.
    """
    if err.errno is None:   # raised by a library with only a text (transformers, ...)
        text = str(err).strip().splitlines()
        return DsforgeError(text[0][:500] if text else type(err).__name__)
    what, fix, code = _OS_ERRORS.get(err.errno, (err.strerror or type(err).__name__, None, 1))
    paths = [p for p in (err.filename, err.filename2) if p is not None]
    if err.errno == errno.EEXIST and paths and os.path.exists(paths[0]) and not os.path.isdir(paths[0]):
        what, fix, code = "is a file, a directory is needed here", "give a directory path", 2
    where = " -> ".join(str(p) for p in paths)
    msg = f"{where}: {what}" if where else what
    cls = UsageError if code == 2 else DsforgeError
    return cls(msg, fix)


_SECRET_KEYS = re.compile(r"(?:.*[_-])?(?:api[_-]?key|access[_-]?key|token|secret|password|passwd|"
                          r"authorization|sig|signature|credentials?)", re.I)
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")


def redact_url(url: str) -> str:
    """`url` without credentials: userinfo becomes '***' and secret-looking query values '***'.

    Text that is not a URL is returned as it is.

    >>> redact_url("http://user:KEY@host:8000/v1?api_key=x&a=1")
    'http://***@host:8000/v1?api_key=%2A%2A%2A&a=1'
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        secret = [_SECRET_KEYS.fullmatch(k) is not None or k.lower() == "key" for k, _ in pairs]
        if any(secret):
            query = urlencode([(k, "***" if s else v) for (k, v), s in zip(pairs, secret)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """`text` with every URL in it passed through `redact_url` (for messages and logs)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def redact(value):
    """A copy of a JSON-like value (dict/list/str/...) safe to record: URLs lose their credentials,
    values under secret-looking keys (api_key, token, password, ...) become '***'."""
    if isinstance(value, dict):
        return {k: ("***" if isinstance(k, str) and _SECRET_KEYS.fullmatch(k) and isinstance(v, str) and v
                    else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    if isinstance(value, str) and "://" in value:
        return redact_text(value)
    return value
