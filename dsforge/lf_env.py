"""LLaMA-Factory's own environment, seen from dsforge: finding its interpreter, probing it, and
running `dsforge/lf/launch.py` (`llamafactory-cli` plus the torchaudio stand-in) there.

LLaMA-Factory usually lives in its own environment (its transformers pin differs from vLLM's). Where
to find it, in order: --lf-python, DSFORGE_LF_PYTHON, the interpreter of `llamafactory-cli` on PATH,
./.venv-lf, this interpreter. Everything here talks to that interpreter through a subprocess; nothing
imports llamafactory in-process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from dsforge import procs
from dsforge.errors import DsforgeError, UsageError

LAUNCH = Path(__file__).parent / "lf" / "launch.py"
LF_REQUIREMENTS = Path(__file__).resolve().parent / "data" / "requirements" / "llamafactory.txt"   # in the wheel
LF_INSTALL = ("install LLaMA-Factory in its own environment (scripts/setup.sh --lf does: pip install --no-deps "
              f"llamafactory==0.9.5, then pip install -r {LF_REQUIREMENTS}), or point dsforge at one: --lf-python "
              "/path/to/env/bin/python or DSFORGE_LF_PYTHON")
def _can_import_lf(python: str) -> bool:
    try:
        r = subprocess.run([python, "-c", "import importlib.util,sys; sys.exit(importlib.util.find_spec('llamafactory') is None)"],
                           capture_output=True, timeout=60)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_lf_python(explicit: str | None = None) -> str:
    """The interpreter of an environment that can import llamafactory, looked for in the order of the
    module docstring. UsageError (with the install hint) when a named one (--lf-python,
    DSFORGE_LF_PYTHON) lacks it or none is found."""
    cands = []
    if explicit:
        cands.append(("--lf-python", explicit))
    if os.environ.get("DSFORGE_LF_PYTHON"):
        cands.append(("DSFORGE_LF_PYTHON", os.environ["DSFORGE_LF_PYTHON"]))
    cli = shutil.which("llamafactory-cli")
    if cli:
        try:
            first = open(cli, encoding="utf-8", errors="replace").readline()
            if first.startswith("#!"):
                cands.append(("llamafactory-cli on PATH", first[2:].strip().split()[0]))
        except OSError:
            pass
    cands.append(("./.venv-lf", os.path.abspath(os.path.join(".venv-lf", "bin", "python"))))
    cands.append(("this interpreter", sys.executable))
    for origin, py in cands:
        if os.path.exists(py) and _can_import_lf(py):
            return py
        if origin in ("--lf-python", "DSFORGE_LF_PYTHON"):
            raise UsageError(f"{origin} {py} has no LLaMA-Factory (cannot import llamafactory)", LF_INSTALL)
    raise UsageError("llamafactory-cli not found (LLaMA-Factory is not installed in any environment dsforge knows)",
                     LF_INSTALL)


def lf_environment(python: str) -> dict:
    """What LLaMA-Factory's interpreter holds (dsforge/lf/envcheck.py): its version, the package pins it
    checks at start, the versions installed, the pins they break, and whether an installed openai fails
    to import. {} when the check itself cannot run."""
    try:
        r = subprocess.run([python, str(Path(LAUNCH).with_name("envcheck.py"))], capture_output=True, text=True,
                           timeout=120)
        return json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else {}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def environment_problems(python: str, env: dict) -> tuple[str | None, DsforgeError | None]:
    """(one-line note naming every version LLaMA-Factory was not released for, or None; the error for an
    openai that is installed but cannot be imported, or None)."""
    note = err = None
    if env.get("mismatches"):
        have = ", ".join(f"{name} {ver}" for _, name, ver in env["mismatches"])
        want = " ".join(f"'{req}'" for req, _, _ in env["mismatches"])
        note = (f"LLaMA-Factory {env.get('llamafactory')} checks for {want} and its environment has {have}; dsforge "
                f"starts it with DISABLE_VERSION_CHECK=1, so if training fails, suspect this first: "
                f"{python} -m pip install {want}")
    if env.get("openai_error"):
        err = DsforgeError(f"openai is installed in LLaMA-Factory's environment ({python}) but cannot be imported "
                           f"({env['openai_error']}); TRL imports it whenever it is installed, so training would "
                           f"fail at start", f"repair it ({python} -m pip install -U openai) or remove it "
                           f"({python} -m pip uninstall openai)")
    return note, err


def lf_parse_check(python: str, cfg: dict, version: str | None = None) -> str | None:
    """Run LLaMA-Factory's own argument parsing (`get_train_args`, no model loading; dsforge/lf/check_args.py)
    on `cfg` in its interpreter. Raises UsageError with LLaMA-Factory's message when it rejects the
    configuration; returns a note (the check could not run) or None when it parsed."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(cfg, f)
    try:
        r = subprocess.run([python, str(Path(LAUNCH).with_name("check_args.py")), f.name], capture_output=True,
                           text=True, timeout=300, env=child_env())
        verdict = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None
    except (OSError, ValueError, subprocess.TimeoutExpired) as err:
        return f"LLaMA-Factory's own argument check could not run ({err})"
    finally:
        os.unlink(f.name)
    if not isinstance(verdict, dict):
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return f"LLaMA-Factory's own argument check could not run ({last})"
    if not verdict.get("ok"):
        raise UsageError(f"LLaMA-Factory {version or ''} rejects this configuration: {verdict.get('error')}".replace("  ", " "),
                         "fix the --set value or the recipe key (dsforge train ... --dry-run checks again)")
    return None


def lf_version(python: str) -> str | None:
    """The llamafactory version installed for `python` (e.g. '0.9.5'), None when it cannot be read."""
    r = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('llamafactory'))"],
                       capture_output=True, text=True)
    return r.stdout.strip() or None


def child_env() -> dict:
    """This process's environment plus DISABLE_VERSION_CHECK=1 and PYTHONUNBUFFERED=1 (unless set): the
    environment of every LLaMA-Factory and vLLM child dsforge starts."""
    env = dict(os.environ)
    env.setdefault("DISABLE_VERSION_CHECK", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class ChildOutput:
    """A child's output on its way to the console: every line goes to the log file; a Python
    traceback stays out of the console and only its last line, the error, is kept (`last_error`)
    for the summary, which names the log. torchrun's `[rankN]:` prefixes are understood."""

    _PREFIX = re.compile(r"^\[(?:rank|default)\d+\]:\s?")
    _CHAIN = ("During handling of the above exception", "The above exception was the direct cause")

    def __init__(self, echo, log_path: str | None = None):
        self.echo = echo
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None
        self.state: str | None = None     # None, "frames" (inside a traceback), "after" (its exception line)
        self.last_error: str | None = None

    def line(self, line: str) -> None:
        """Take one line of the child's output (with or without its newline)."""
        if self.log:
            self.log.write(line if line.endswith("\n") else line + "\n")
        text = self._PREFIX.sub("", line.rstrip("\n"))
        if text.startswith("Traceback (most recent call last)") or (self.state and text.startswith(self._CHAIN)):
            self.state = "frames"
            return
        if self.state == "frames":
            if not text.strip() or text[0].isspace():
                return
            self.state = "after"           # the exception line ends the traceback (a chained one may follow)
            self.last_error = text.strip()[:500]
            return
        if self.state == "after" and not text.strip():
            return
        self.state = None
        self.echo(line.rstrip("\n"))

    def close(self) -> None:
        """Close the log file."""
        if self.log:
            self.log.close()


def run_lf(python: str, args: list[str], log_path: str | None = None, echo=print,
           env: dict | None = None) -> tuple[int, str | None]:
    """Run launch.py with args in its own process group (`env` added to child_env()); its output goes to
    `log_path` and to `echo` (tracebacks only to the log). Ctrl-C or SIGTERM stop LLaMA-Factory and every
    process it started. Returns (exit code, its last error line or None)."""
    cmd = [python, str(LAUNCH), *args]
    out = ChildOutput(echo, log_path)
    proc = procs.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**child_env(), **(env or {})},
                       text=True, errors="replace", bufsize=1)
    try:
        for line in proc.stdout:
            out.line(line)
        return proc.wait(), out.last_error
    finally:
        procs.stop_group(proc, timeout=30)
        out.close()
