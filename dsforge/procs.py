"""Every process dsforge starts, and how it stops on Ctrl-C (SIGINT) and SIGTERM.

kill, timeout, Slurm, Kubernetes and systemd stop a job with SIGTERM. One mechanism covers every
command:

- `handle_sigterm()` (the CLI entry calls it) turns SIGTERM into `Terminated`, a KeyboardInterrupt,
  so it takes Ctrl-C's path: `finally` blocks run, partial files are left as they were, and the
  children below are stopped. C extensions can swallow an exception raised by a signal handler
  (pyzmq's poll inside vLLM's start-up does, measured), so the first SIGINT/SIGTERM also starts a
  watchdog: after GRACE_S it stops every descendant itself, and if dsforge is still alive
  LAST_RESORT_S later, it exits (143 / 130) without further clean-up.
- `start()` puts a child (a vLLM server, LLaMA-Factory) in its own process group and `stop_group()`
  stops that whole group (SIGTERM, then SIGKILL), so the child's own children go too.
- `ChildWatch` finds the processes a library started inside dsforge (vLLM's engine core) so they
  can be stopped even when the library's own shutdown never ran.
- `stopping_children()` wraps the CLI: on the way out after a signal, any descendant still alive
  is stopped (the backstop), and the exit status is 130 after SIGINT, 143 after SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from typing import Iterator

EXIT_SIGINT = 128 + signal.SIGINT     # 130, as shells report it
EXIT_SIGTERM = 128 + signal.SIGTERM   # 143

# helpers of the multiprocessing module: they exit by themselves when their parent does, and
# stopping them early would stop them from cleaning up shared memory
_SELF_EXITING = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")

GRACE_S = 10.0          # the main thread's own clean-up normally starts within milliseconds
LAST_RESORT_S = 30.0    # after the watchdog stopped the children: then the process exits regardless

_terminated: int | None = None
_watchdog_started = False


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived. A KeyboardInterrupt, so every clean-up path written for Ctrl-C runs for it too."""


def _watchdog(code: int) -> None:
    time.sleep(GRACE_S)
    stop_processes(_descendants(), timeout=20)   # even if the main thread never saw the signal
    time.sleep(LAST_RESORT_S)
    # the main thread is stuck where the signal's exception was swallowed (e.g. a long pyzmq poll)
    msg = "Interrupted: every child process was stopped; dsforge exits without further clean-up.\n"
    try:
        from dsforge import logs

        logs.say(msg.rstrip())
    except Exception:  # noqa: BLE001 - the exit below matters more than the message
        with contextlib.suppress(OSError):
            os.write(2, msg.encode())
    os._exit(code)


def _start_watchdog(code: int) -> None:
    global _watchdog_started
    if not _watchdog_started:
        _watchdog_started = True
        threading.Thread(target=_watchdog, args=(code,), name="dsforge-signal-watchdog", daemon=True).start()


def _on_sigterm(signum, frame) -> None:
    global _terminated
    if _terminated is not None:   # already stopping: let the clean-up finish
        return
    _terminated = signum
    _start_watchdog(EXIT_SIGTERM)
    raise Terminated(f"signal {signum}")


def _on_sigint(signum, frame) -> None:
    _start_watchdog(EXIT_SIGINT)
    raise KeyboardInterrupt   # as Python's default handler does, every time


def handle_sigterm() -> None:
    """Make SIGTERM raise `Terminated` in the main thread (once; later SIGTERMs are ignored while
    clean-up runs), SIGINT raise KeyboardInterrupt as usual, and either start the watchdog that
    stops every descendant if the exception got lost. Call it from the main thread, before any
    child starts."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:   # not when SIGINT is ignored
        signal.signal(signal.SIGINT, _on_sigint)


def terminated() -> bool:
    """Whether SIGTERM has arrived in this process (after handle_sigterm)."""
    return _terminated is not None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it; another process may take it before use)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], **popen_kw) -> subprocess.Popen:
    """subprocess.Popen(cmd, **popen_kw) in a new session (its own process group), so stop_group()
    reaches the child's children and a terminal's Ctrl-C reaches dsforge only, which then stops it."""
    return subprocess.Popen(cmd, start_new_session=True, **popen_kw)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def stop_group(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Stop a process started by start() (or with start_new_session=True) and every process of its
    group: SIGTERM to the group, SIGKILL to what is left after `timeout` seconds. Returns once the
    child is reaped; safe to call twice and on a child that already exited (its group may not have)."""
    pgid = proc.pid
    deadline = time.monotonic() + timeout
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    while _group_alive(pgid) and time.monotonic() < deadline:   # the child exited; wait for the rest of its group
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _descendants():
    import psutil

    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def _self_exiting(p) -> bool:
    import psutil

    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return True
    return any(s in cmd for s in _SELF_EXITING)


def stop_processes(procs: list, timeout: float = 30.0) -> None:
    """SIGTERM each psutil.Process in `procs`, SIGKILL those still alive after `timeout` seconds."""
    import psutil

    procs = [p for p in procs if not _self_exiting(p)]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=10)


def with_descendants(procs: list) -> list:
    """The psutil.Process objects in `procs` that still run, and all their descendants."""
    import psutil

    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            if p.is_running():
                out += [p, *p.children(recursive=True)]
    return out


class ChildWatch:
    """The processes this one gains from now on (e.g. the engine core a library starts in-process),
    so they can be stopped even when the library's own shutdown did not run or did not finish."""

    def __init__(self) -> None:
        self.before = {p.pid for p in _descendants()}

    def new(self) -> list:
        """psutil.Process objects of the descendants started since this watch was made."""
        return [p for p in _descendants() if p.pid not in self.before]

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the descendants started since this watch was made (SIGTERM, then SIGKILL)."""
        stop_processes(self.new(), timeout)


@contextlib.contextmanager
def stopping_children() -> Iterator[None]:
    """Around a CLI run: after SIGINT or SIGTERM, stop every descendant still alive (the backstop
    for children whose own clean-up was cut short) and exit 130 (SIGINT) or 143 (SIGTERM)."""
    interrupted = False
    try:
        yield
    except SystemExit as exc:
        interrupted = terminated() or exc.code == EXIT_SIGINT
        if terminated():
            raise SystemExit(EXIT_SIGTERM) from None
        raise
    except KeyboardInterrupt:   # outside the command's own handler (e.g. while parsing options)
        interrupted = True
        raise SystemExit(EXIT_SIGTERM if terminated() else EXIT_SIGINT) from None
    finally:
        if interrupted:
            old = signal.signal(signal.SIGINT, signal.SIG_IGN)   # a second Ctrl-C cannot cut the clean-up
            try:
                stop_processes(_descendants(), timeout=30)
            finally:
                signal.signal(signal.SIGINT, old)
