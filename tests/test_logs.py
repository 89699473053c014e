"""Third-party output goes to a log file, the console keeps dsforge's own lines (dsforge.logs), -v shows all."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsforge import logs
from dsforge.cli import cli

ROOT = Path(__file__).resolve().parent.parent

# every way a library writes: python print/logging/warnings, raw fd writes, a subprocess, a forked
# multiprocessing child (vLLM's engine core is one), a spawned one; then dsforge's own line
NOISY = textwrap.dedent("""
    import logging, multiprocessing as mp, os, subprocess, sys, warnings
    from dsforge import logs

    def child(tag):
        print(tag + "-print"); sys.stdout.flush()
        os.write(2, (tag + "-fd2\\n").encode())

    if __name__ == "__main__":
        with logs.log_file(sys.argv[1]):
            with logs.capture() as cap:
                print("lib-print")
                logging.warning("lib-logging")
                warnings.warn("lib-warning")
                os.write(1, b"lib-fd1\\n")
                subprocess.run(["sh", "-c", "echo sub-out; echo sub-err >&2"])
                for method in ("fork", "spawn"):
                    p = mp.get_context(method).Process(target=child, args=(method,))
                    p.start(); p.join()
                logs.say("dsforge-own")
                print(logs.current_log() == sys.argv[1], file=logs.console())
        print("after")
""")
THIRD_PARTY = ("lib-print", "lib-logging", "lib-warning", "lib-fd1", "sub-out", "sub-err", "fork-print", "fork-fd2",
               "spawn-print", "spawn-fd2")


def _noisy(tmp_path, **env):
    script = tmp_path / "noisy.py"
    script.write_text(NOISY)
    log = tmp_path / "out" / "x.log"
    run_env = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    r = subprocess.run([sys.executable, str(script), str(log)], capture_output=True, text=True, env=run_env,
                       cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    return r, log


def test_capture_sends_every_kind_of_third_party_output_to_the_log(tmp_path):
    r, log = _noisy(tmp_path)
    console = r.stdout + r.stderr
    assert r.stdout.splitlines() == ["after"]
    assert r.stderr.splitlines() == ["dsforge-own", "True"]
    text = log.read_text()
    for word in THIRD_PARTY:
        assert word in text and word not in console, word
    assert "dsforge-own" not in text


def test_verbose_keeps_everything_on_the_console(tmp_path):
    r, log = _noisy(tmp_path, DSFORGE_VERBOSE="1")
    console = r.stdout + r.stderr
    for word in THIRD_PARTY + ("dsforge-own", "after"):
        assert word in console, word
    assert not log.exists()


def test_capture_without_a_log_file_or_nested_does_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("DSFORGE_VERBOSE", raising=False)
    with logs.capture() as cap:          # a library caller who named no log: console untouched
        assert logs.current_log() is None and cap.console is None
    with logs.log_file(tmp_path / "outer.log"):
        with logs.log_file(tmp_path / "inner.log"):   # the outermost (e.g. a run's) wins
            c = logs.Capture()
        assert c.path == str(tmp_path / "outer.log")


def test_cli_verbose_flag_reaches_children(monkeypatch):
    monkeypatch.delenv("DSFORGE_VERBOSE", raising=False)
    r = CliRunner().invoke(cli, ["-v", "models", "path"])
    assert r.exit_code in (0, 1) and os.environ.get("DSFORGE_VERBOSE") == "1"
    assert logs.verbose()
    logs.set_verbose(False)
    assert "--verbose" in CliRunner().invoke(cli, ["--help"]).output


@pytest.mark.parametrize("verbose", [False, True])
def test_child_lines_keep_losses_and_errors(verbose, monkeypatch):
    monkeypatch.setenv("DSFORGE_VERBOSE", "1" if verbose else "0")
    seen = []
    echo = logs.child_echo(seen.append)
    lines = ["[WARNING|tokenization_utils_base.py:1234] >> some warning",
             "{'loss': 0.6931, 'grad_norm': 1.2, 'epoch': 0.5}",
             "[dsforge] preprocessing 22 rows",
             "ValueError: Cannot find valid samples",
             "Running tokenizer on dataset: 100%|##########| 22/22"]
    for line in lines:
        echo(line)
    if verbose:
        assert seen == lines
    else:
        assert [s.strip() for s in seen] == lines[1:4]


def test_last_error_names_the_line(tmp_path):
    log = tmp_path / "e.log"
    log.write_text("INFO start\nValueError: out of memory while allocating KV cache\nINFO shutdown\n")
    assert logs.last_error(str(log)) == "ValueError: out of memory while allocating KV cache"
    assert logs.last_error(str(tmp_path / "missing.log")) is None


@pytest.mark.slow
@pytest.mark.vllm
def test_real_sample_console_has_only_dsforge_lines(tmp_path, smollm2):
    """One real vLLM engine start through the CLI: the console holds dsforge's lines only; vLLM's
    (main process and engine-core process) are in OUT.log."""
    pytest.importorskip("vllm")
    out = tmp_path / "c.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("DSFORGE_VERBOSE", "VLLM_LOGGING_LEVEL")}
    r = subprocess.run([sys.executable, "-m", "dsforge", "sample", str(ROOT / "dsforge/data/demo/prompts.jsonl"),
                        "--temps", "0.7", "-n", "1", "--max-tokens", "8", "-m", smollm2, "-o", str(out)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    console = (r.stdout + r.stderr).splitlines()
    own = ("starting the vllm engine", "sampled ", "engine log: ", "candidates: ")
    assert [line for line in console if not line.startswith(own)] == [], console
    assert len(console) == 4, console
    text = (tmp_path / "c.jsonl.log").read_text()
    assert "(EngineCore" in text and "(MainProcess" in text      # both processes' vLLM logging
    assert "Loading safetensors checkpoint shards" in text      # a child's tqdm, written straight to fd 2
    assert f"engine log: {out}.log" in r.stdout
