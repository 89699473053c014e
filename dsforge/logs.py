"""Third-party output goes to a log file; the console keeps dsforge's own progress and summaries.

vLLM, torch and transformers write from this process (python logging, `warnings`, C++ prints) and
from the processes they fork or spawn (vLLM's engine core and workers write straight to file
descriptors 1 and 2), so python-level logging settings are not enough. While a `Capture` is
active, descriptors 1 and 2 point at the log file (children inherit them), and dsforge writes its
own progress bars through `console()`, a copy of the real stderr. Nothing in the captured section
should write to sys.stdout/sys.stderr expecting the user to see it.

    with logs.log_file(out + ".log"):      # where captured output of this command goes
        ...
        with logs.capture():               # vLLM's life: descriptors 1/2 -> the log file
            bar = tqdm(file=logs.console())

`-v/--verbose` (or DSFORGE_VERBOSE=1) turns capturing off: everything shows on the console.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

_target: list[str] = []          # log files set by log_file(); the outermost one wins
_active: "Capture | None" = None


def set_verbose(flag: bool) -> None:
    """-v: show third-party output on the console instead of capturing it (inherited by child processes)."""
    if flag:
        os.environ["DSFORGE_VERBOSE"] = "1"
    else:
        os.environ.pop("DSFORGE_VERBOSE", None)


def verbose() -> bool:
    """True when -v/--verbose or DSFORGE_VERBOSE (anything but '' or '0') turned capturing off."""
    return os.environ.get("DSFORGE_VERBOSE", "") not in ("", "0")


@contextlib.contextmanager
def log_file(path: str | os.PathLike):
    """Name the log file that captures inside this block write to (unless an outer block named one).

    Yields the log file in force (the outermost block's path, as a str); creates nothing itself.
    """
    _target.append(str(path))
    try:
        yield _target[0]
    finally:
        _target.pop()


def current_log() -> str | None:
    """The log file third-party output goes to right now (None: nothing is captured)."""
    return _active.path if _active else None


def console():
    """The stream for dsforge's own progress bars and messages: the real stderr, also while capturing."""
    return _active.console if _active else sys.stderr


def say(msg: str) -> None:
    """Print one of dsforge's own messages on the console (stderr), also while capturing."""
    print(msg, file=console(), flush=True)


class Capture:
    """Point descriptors 1 and 2 (this process and every child started meanwhile) at a log file.

    start()/stop() bracket an engine's life; nested or verbose captures do nothing. The log is
    appended to, never truncated. OSError (e.g. an unwritable folder) propagates from start()."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = _target[0] if _target else (str(path) if path else None)
        self.console = None
        self._saved: tuple[int, int] | None = None

    def start(self) -> "Capture":
        """Redirect descriptors 1 and 2 to the log (appending; its folder is created) and return self.

        Does nothing when another Capture is active, in verbose mode, or without a path.
        Raises OSError when the log cannot be opened (nothing is redirected then).
        """
        global _active
        if _active is not None or verbose() or not self.path:
            return self
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _flush()
        self._saved = (os.dup(1), os.dup(2))   # not inheritable: children never hold the console
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        self.console = open(self._saved[1], "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None)
                            or "utf-8", errors="replace", closefd=False)
        _active = self
        return self

    def stop(self) -> None:
        """Give descriptors 1 and 2 back to the console; safe to call twice or after a no-op start()."""
        global _active
        if self._saved is None:
            return
        _flush()
        self.console.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._saved, self.console = None, None
        _active = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def capture(path: str | os.PathLike | None = None) -> Capture:
    """A Capture into the log_file() named by the command, else `path`; with neither it does nothing (a
    library caller's console stays as it was)."""
    return Capture(path)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def last_error(path: str | None, limit: int = 300) -> str | None:
    """The last line of a log that looks like an error (for a one-line message naming the log).

    Reads only the log's last 64 kB; returns that line stripped and cut to `limit` characters, or
    None when `path` is None/missing or no line contains 'Error', 'error:' or ' ERROR '.
    """
    if not path or not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 64_000))
        lines = f.read().decode("utf-8", "replace").splitlines()
    for line in reversed(lines):
        if "Error" in line or "error:" in line or " ERROR " in line:
            return line.strip()[:limit]
    return None


CHILD_KEEP = ("{'loss'", "'train_loss'", "[dsforge]", "Error", "rror:")


def child_echo(echo):
    """Filter a child's (LLaMA-Factory's) lines for the console: losses, dsforge's notes and errors.

    Returns a callable line -> None that passes a line (indented two spaces, stripped) to `echo`
    when it contains one of CHILD_KEEP; with -v it returns `echo` itself (every line). The child's
    full output goes to its own log file (dsforge.lf_env.ChildOutput).
    """
    if verbose():
        return echo

    def keep(line: str) -> None:
        if any(k in line for k in CHILD_KEEP):
            echo("  " + line.strip())

    return keep
