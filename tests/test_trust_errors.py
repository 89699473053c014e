"""Issue 10, kinds 4, 6, 7, 8, 10a: user and environment mistakes get one message and exit 1/2 (never
"internal error"), failures are not reported as success, invalid values are refused at parse time,
messages say what is wrong, and no URL credential reaches any file or the console."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.errors import DsforgeError, UsageError, os_error, redact, redact_url
from tests.servers import FakeOpenAI

# ---------------------------------------------------------------- kind 4: every command x bad inputs

# Per command: the arguments with {IN} (the bad input) and {OUT} (an output path). A new command
# must be added here (test_every_command_is_in_the_battery), so the battery keeps covering all.
COMMANDS = {
    "convert": [["{IN}", "--to", "sft", "-o", "{OUT}.jsonl"]],
    "validate": [["{IN}"], ["--dataset-info", "{IN}"]],
    "register": [["{IN}", "--name", "x", "--dataset-dir", "{OUT}"], ["{GOOD}", "--name", "x", "--dataset-dir", "{IN}"]],
    "models": [["path", "{IN}"], ["prepare", "{IN}"]],
    "sample": [["{IN}", "--engine", "openai", "--base-url", "http://127.0.0.1:9/v1", "-m", "x", "-o", "{OUT}.jsonl",
                "--engine-opt", "max_retries=0"]],
    "merge": [["{IN}", "-o", "{OUT}.jsonl"]],
    "judge": [["{IN}", "-m", "x", "--base-url", "http://127.0.0.1:9/v1", "-o", "{OUT}.jsonl", "--engine-opt",
               "max_retries=0"],
              ["{GOOD}", "-m", "x", "--rubric", "{IN}", "-o", "{OUT}.jsonl"]],
    "pairs": [["{IN}", "-o", "{OUT}.jsonl"]],
    "train": [["sft", "--dataset", "x", "--dataset-dir", "{IN}", "--dry-run"],
              ["sft", "-m", "{IN}", "--dataset", "x", "--dataset-dir", "{OUT}", "--dry-run"]],
    "export": [["--adapter", "{IN}", "-o", "{OUT}"], ["-m", "{IN}", "--adapter", "{OUT}", "-o", "{OUT}2"]],
    "serve": [["-m", "{IN}", "--port", "9"]],
    "inspect-model": [["{IN}"]],
    "run": [["{IN}"]],
    "report": [["{IN}", "-o", "{OUT}.html"]],
    "review": [["--stats", "{IN}"], ["{IN}", "--export", "labelstudio", "-o", "{OUT}.json"]],   # never serves
    "dedup": [["{IN}", "-o", "{OUT}.jsonl"]],
    "contamination": [["{IN}", "--against", "{GOOD}"], ["{GOOD}", "--against", "{IN}"]],
    "tasks": [["calibrate", "arith", "-m", "{IN}", "--out", "{OUT}.json"]],   # make reads no file
    "eval": [["--prompts", "{IN}", "-m", "x", "--engine", "openai", "--base-url", "http://127.0.0.1:9/v1",
              "--verifier", "numeric", "-o", "{OUT}.json", "--engine-opt", "max_retries=0"],
             ["--prompts", "{GOOD}", "-m", "x", "--engine", "openai", "--base-url", "http://127.0.0.1:9/v1",
              "--verifier", "numeric", "--baseline", "{IN}", "-o", "{OUT}.json"]],
}

BAD_INPUTS = ["missing", "directory", "not_json", "empty", "binary", "json_scalar", "lone_surrogate"]


def _bad(tmp: Path, kind: str) -> str:
    p = tmp / f"bad_{kind}.jsonl"
    if kind == "missing":
        return str(tmp / "no" / "such.jsonl")
    if kind == "directory":
        p = tmp / "a_dir"
        p.mkdir(exist_ok=True)
        return str(p)
    p.write_bytes({"not_json": b"this is not json\n{oops\n", "empty": b"", "binary": b"\xff\xfe\x00garbage\x80\n",
                   "json_scalar": b"42\n",
                   # half an emoji: Python's json reads it, Arrow and UTF-8 writers do not
                   "lone_surrogate": b'{"instruction": "q\\ud83d", "output": "a"}\n',
                   }[kind])
    return str(p)


def _good(tmp: Path) -> str:
    p = tmp / "good.jsonl"
    p.write_text(json.dumps({"prompt_id": "p", "messages": [{"role": "user", "content": "q"}], "text": "a",
                             "temperature": 0.7, "sample_index": 0}) + "\n")
    return str(p)


def _fill(args, bad, out, good):
    return [a.replace("{IN}", bad).replace("{OUT}", out).replace("{GOOD}", good) for a in args]


def assert_clean_failure(r, what):
    text = r.output + (r.stderr if hasattr(r, "stderr") and isinstance(r.stderr, str) else "")
    assert "internal error" not in text and "Traceback" not in text, (what, text[-2000:])
    assert r.exit_code in (1, 2), (what, r.exit_code, text[-2000:], r.exception)


def test_every_command_is_in_the_battery():
    assert set(cli.commands) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("bad", BAD_INPUTS)
def test_bad_inputs_never_end_in_internal_error(tmp_path, monkeypatch, command, bad):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DSFORGE_DEBUG", raising=False)
    good = _good(tmp_path)
    for args in COMMANDS[command]:
        argv = [command, *_fill(args, _bad(tmp_path, bad), str(tmp_path / "out"), good)]
        r = CliRunner().invoke(cli, argv)
        assert_clean_failure(r, argv)


@pytest.mark.parametrize("command", ["convert", "pairs", "report", "merge", "judge"])
def test_output_into_a_directory_names_it(tmp_path, command):
    good = _good(tmp_path)
    judged = tmp_path / "judged.jsonl"
    judged.write_text(json.dumps({**json.loads(Path(good).read_text()), "judge": {"score": 3}}) + "\n")
    d = tmp_path / "outdir.jsonl"
    d.mkdir()
    argv = {"convert": ["convert", good, "--to", "sft", "-o", str(d)], "pairs": ["pairs", str(judged), "-o", str(d)],
            "report": ["report", str(judged), "-o", str(tmp_path / "x.html")], "merge": ["merge", good, "-o", str(d)],
            "judge": ["judge", good, "-m", "x", "-o", str(d)]}[command]
    if command == "report":
        (tmp_path / "x.html").mkdir()
    r = CliRunner().invoke(cli, argv)
    assert_clean_failure(r, argv)
    assert r.exit_code == 2 and "directory" in r.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_output_directory_names_the_path(tmp_path):
    good = _good(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        r = CliRunner().invoke(cli, ["convert", good, "--to", "sft", "-o", str(ro / "o.jsonl")])
    finally:
        ro.chmod(0o700)
    assert_clean_failure(r, "convert into a read-only dir")
    assert r.exit_code == 1 and str(ro) in r.output and "permission denied" in r.output


@pytest.mark.parametrize("code,exit_code,words", [
    (errno.ENOSPC, 1, "no space left"), (errno.EROFS, 1, "read-only"), (errno.EDQUOT, 1, "quota"),
    (errno.EACCES, 1, "permission denied"), (errno.EISDIR, 2, "is a directory"), (errno.ENOENT, 2, "no such file"),
    (errno.ENOTDIR, 2, "not a directory"), (errno.EIO, 1, "input/output")])
def test_os_errors_raised_inside_a_command_name_the_path(monkeypatch, tmp_path, code, exit_code, words):
    """Whatever OSError a library call raises (disk full, read-only, ...) becomes one message naming the path."""
    import dsforge.convert

    def boom(*a, **k):
        raise OSError(code, os.strerror(code), "/data/out/train.jsonl")

    monkeypatch.setattr(dsforge.convert, "convert", boom)
    r = CliRunner().invoke(cli, ["convert", _good(tmp_path), "--to", "sft", "-o", str(tmp_path / "o.jsonl")])
    assert_clean_failure(r, code)
    assert r.exit_code == exit_code and "/data/out/train.jsonl" in r.output and words in r.output.lower()


def test_full_disk_during_write_names_the_output(tmp_path, monkeypatch):
    """ENOSPC from write() carries no file name: the atomic writer names the output it was writing."""
    from dsforge.io import atomic_write

    target = tmp_path / "t.jsonl"
    target.write_text("good\n")
    with pytest.raises(OSError) as info:
        with atomic_write(target) as f:
            f.write("x")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.filename == str(target)
    assert target.read_text() == "good\n"   # the previous output is left as it was
    assert str(target) in os_error(info.value).message


def test_os_error_without_errno_keeps_its_text():
    e = os_error(OSError("Can't load tokenizer for 'x'. If you were trying ..."))
    assert e.message.startswith("Can't load tokenizer") and e.exit_code == 1


@pytest.mark.parametrize("args", [["validate", "--reasons"], ["validate", "{BIG}", "--json"], ["convert", "--help"],
                                  ["report", "{BIG}", "-o", "{T}/r.html"]])
def test_broken_pipe_ends_quietly(tmp_path, args):
    """`dsforge ... | head`: the reader is gone before dsforge writes; no traceback, no 'internal error',
    the shell's SIGPIPE status 141, and the work itself (report) still done."""
    big = tmp_path / "big.jsonl"
    row = (lambda i: {"prompt_id": f"p{i}", "messages": [{"role": "user", "content": "q"}], "text": "a" * 50}) \
        if args[0] == "report" else (lambda i: {"instruction": f"q{i}", "output": "a" * 50})   # report: candidates
    big.write_text("".join(json.dumps(row(i)) + "\n" for i in range(300)))
    argv = [a.replace("{BIG}", str(big)).replace("{T}", str(tmp_path)) for a in args]
    p = subprocess.Popen([sys.executable, "-m", "dsforge", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()   # like `head` that has exited
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 141, err[-2000:]
    assert "Traceback" not in err and "internal error" not in err and "Exception ignored" not in err, err[-2000:]
    if args[0] == "report":
        assert (tmp_path / "r.html").exists()


def test_rubric_jinja_errors_say_file_and_line(tmp_path):
    c = _good(tmp_path)
    syntax = tmp_path / "syntax.j2"
    syntax.write_text("{# dsforge-rubric min=1 max=10 #}\nRate it.\n---\nQ: {{ question }}\n{{ answer }}\n{% if %}\n")
    undefined = tmp_path / "undef.j2"
    undefined.write_text("{# dsforge-rubric min=1 max=10 #}\nRate it.\n---\n{{ answer }}\n\n{{ nope }}\n")
    for path, line in ((syntax, 6), (undefined, 6)):
        r = CliRunner().invoke(cli, ["judge", c, "-m", "x", "--rubric", str(path), "-o", str(tmp_path / "j.jsonl")])
        assert_clean_failure(r, path)
        assert r.exit_code == 2 and f"{path}:{line}:" in r.output, r.output


@pytest.mark.parametrize("body,line,words", [
    ("{{ answer }} {{ 1/0 }}", 4, "ZeroDivisionError"),                      # errors raised while rendering
    ("{{ answer }} {{ '%d' % answer }}", 4, "TypeError"),
    ("{% extends 'base.html' %}{{ answer }}", 4, "no loader"),
    ("{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}{{ answer }}", 4, "RecursionError"),
])
def test_rubric_template_that_fails_while_rendering_says_file_and_line(tmp_path, body, line, words):
    rub = tmp_path / "r.j2"
    rub.write_text("{# dsforge-rubric min=1 max=10 #}\nRate it.\n---\n" + body + "\n")
    r = CliRunner().invoke(cli, ["judge", _good(tmp_path), "-m", "x", "--rubric", str(rub), "-o", str(tmp_path / "j.jsonl")])
    assert_clean_failure(r, body)
    assert r.exit_code == 2 and f"{rub}:{line}:" in r.output and words in r.output, r.output


@pytest.mark.parametrize("header,words", [("min=nan max=10", "finite"), ("min=0 max=inf", "finite"),
                                          ("min=-inf max=1", "finite")])
def test_rubric_range_must_be_finite(tmp_path, header, words):
    rub = tmp_path / "r.j2"
    rub.write_text("{# dsforge-rubric " + header + " #}\nRate it.\n---\n{{ answer }}\n")
    r = CliRunner().invoke(cli, ["judge", _good(tmp_path), "-m", "x", "--rubric", str(rub), "-o", str(tmp_path / "j.jsonl")])
    assert r.exit_code == 2 and f"{rub}:1:" in r.output and words in r.output, r.output


def test_rubric_with_a_byte_order_mark_loads():
    from dsforge.rubrics import load_rubric
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        rub = Path(d) / "r.j2"
        rub.write_bytes(b"\xef\xbb\xbf{# dsforge-rubric min=1 max=10 #}\nRate it.\n---\n{{ answer }}\n")
        assert (load_rubric(str(rub)).lo, load_rubric(str(rub)).hi) == (1, 10)


@pytest.mark.parametrize("what", ["directory", "other_file"])
def test_judge_cache_that_is_not_a_cache_is_named(tmp_path, what):
    cache = tmp_path / "c"
    if what == "directory":
        cache.mkdir()
    else:
        cache.write_text('{"not": "sqlite"}\n')
    before = None if what == "directory" else cache.read_bytes()
    with FakeOpenAI() as srv:
        r = CliRunner().invoke(cli, ["judge", _good(tmp_path), "-m", "judge-a", "--base-url", srv.url(), *FAST,
                                     "--cache", str(cache), "-o", str(tmp_path / "j.jsonl")])
    assert_clean_failure(r, what)
    assert r.exit_code == 2 and str(cache) in r.output, r.output
    assert before is None or cache.read_bytes() == before
    assert not (tmp_path / "j.jsonl").exists()


@pytest.mark.parametrize("path,words", [("stages[-1].train.stage", "not a recipe path"),
                                        ("stages[x].train.stage", "not a recipe path"),
                                        ("stages[99].train.stage", "indexes 0 to")])
def test_set_path_that_names_nothing_is_a_usage_error(path, words):
    r = CliRunner().invoke(cli, ["run", "demo-tiny", "--set", f"{path}=sft"])
    assert_clean_failure(r, path)
    assert r.exit_code == 2 and words in r.output, r.output


def test_set_value_that_is_not_yaml_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(cli, ["run", "demo-tiny", "--set", "models.judge=[unclosed"])
    assert_clean_failure(r, "--set")
    assert r.exit_code == 2 and "not valid YAML" in r.output


# ---------------------------------------------------------------- kind 6: failure is not success


def test_report_of_an_empty_or_non_run_directory_fails(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hi")
    for d in (empty, other):
        r = CliRunner().invoke(cli, ["report", str(d)])
        assert r.exit_code == 2 and "not a dsforge run directory" in r.output
        assert not (d / "report.html").exists()
    e = tmp_path / "e.jsonl"
    e.write_text("")
    r = CliRunner().invoke(cli, ["report", str(e)])
    assert r.exit_code == 1 and "no rows" in r.output


@pytest.mark.parametrize("row", [{"instruction": "q", "output": "a"},
                                 {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
                                 {"a": 1}])
def test_report_of_a_file_that_is_no_dsforge_output_fails(tmp_path, row):
    f = tmp_path / "data.jsonl"
    f.write_text(json.dumps(row) + "\n")
    r = CliRunner().invoke(cli, ["report", str(f), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 1 and "not a candidates / judged / pairs file" in r.output, r.output
    assert not (tmp_path / "r.html").exists()


FAST = ["--engine-opt", "max_retries=0", "--engine-opt", "backoff=0.01"]


def test_judge_exits_1_when_calls_failed_and_counts_them(tmp_path):
    c = _good(tmp_path)
    out = tmp_path / "j.jsonl"
    with FakeOpenAI(fail_status=500) as srv:
        r = CliRunner().invoke(cli, ["judge", c, "-m", "judge-a", "--base-url", srv.url(), *FAST,
                                     "--engine-opt", "probe=false", "-o", str(out)])
    assert r.exit_code == 1, r.output
    assert "0 of 1 candidates scored" in r.output and "judge calls failed" in r.output
    s = json.loads(Path(str(out) + ".summary.json").read_text())
    assert s["scored"] == 0 and s["failed_calls"] >= 1 and s["calls"] >= s["failed_calls"]   # not "calls 0"


def test_judge_exits_0_when_everything_was_scored(tmp_path):
    c = _good(tmp_path)
    with FakeOpenAI() as srv:
        r = CliRunner().invoke(cli, ["judge", c, "-m", "judge-a", "--base-url", srv.url(), *FAST,
                                     "-o", str(tmp_path / "j.jsonl")])
    assert r.exit_code == 0, r.output
    assert "1 scored, 0 failed" in r.output


# ---------------------------------------------------------------- kind 7: invalid values refused at parse time

@pytest.mark.parametrize("argv,words", [
    (["convert", "{G}", "--to", "sft", "--map", "sytem=x", "-o", "{T}/o.jsonl"], "did you mean 'system'"),
    (["convert", "{G}", "--to", "pt", "--chunk-chars", "0", "-o", "{T}/o.jsonl"], "--chunk-chars"),
    (["convert", "{G}", "--to", "pt", "--chunk-chars", "-5", "-o", "{T}/o.jsonl"], "--chunk-chars"),
    (["convert", "{G}", "--to", "pt", "--max-chars", "0", "-o", "{T}/o.jsonl"], "--max-chars"),
    (["convert", "{G}", "--to", "pt", "--min-chars", "10", "--max-chars", "5", "-o", "{T}/o.jsonl"], "--max-chars"),
    (["convert", "{G}", "--to", "sft", "--eval-ratio", "nan", "--eval-out", "{T}/e.jsonl", "-o", "{T}/o.jsonl"], "finite"),
    (["convert", "{G}", "--to", "sft", "--eval-out", "{T}/e.jsonl", "-o", "{T}/o.jsonl"], "--eval-ratio"),
    (["convert", "{G}", "--to", "sft", "--tokenizer", "{T}", "-o", "{T}/o.jsonl"], "--chunk-tokens"),
    (["convert", "{G}", "--to", "sft", "--map", "text=a", "-o", "{T}/o.jsonl"], "--to pt only"),
    (["convert", "{G}", "--to", "sft", "-o", "{T}/o.csv"], ".jsonl or .json"),
    (["pairs", "{G}", "-o", "{T}/x.csv"], ".jsonl or .json"),
    (["pairs", "{G}", "-o", "{T}/x.jsonl", "--kto-threshold", "3"], "--kto"),
    (["pairs", "{G}", "-o", "{T}/x.jsonl", "--min-margin", "inf"], "finite"),
    (["sample", "{G}", "--temps", "nan", "-o", "{T}/s.jsonl"], "finite"),
    (["sample", "{G}", "--temps", "0.7,inf", "-o", "{T}/s.jsonl"], "finite"),
    (["sample", "{G}", "--temps", "-1", "-o", "{T}/s.jsonl"], "out of range"),
    (["sample", "{G}", "--temps", "0.7,,1.0", "-o", "{T}/s.jsonl"], "empty value"),
    (["sample", "{G}", "--temps", "0.7,", "-o", "{T}/s.jsonl"], "empty value"),
    (["judge", "{G}", "-m", "x", "--price", ",2", "-o", "{T}/j.jsonl"], "empty value"),
    (["sample", "{G}", "--engine", "openai", "--base-url", "localhost:8000", "-o", "{T}/s.jsonl"], "http(s) URL"),
    (["sample", "{G}", "--map", "instrution=q", "-o", "{T}/s.jsonl"], "did you mean 'instruction'"),
    (["sample", "{G}", "-o", "{T}/s.json"], ".jsonl"),
    (["judge", "{G}", "-m", "x", "--temperature", "nan", "-o", "{T}/j.jsonl"], "finite"),
    (["judge", "{G}", "-m", "x", "--price", "1", "-o", "{T}/j.jsonl"], "exactly 2"),
    (["judge", "{G}", "-m", "x", "--price", "1,nan", "-o", "{T}/j.jsonl"], "finite"),
    (["report", "{G}", "-o", "{T}/r.txt"], ".html"),
    (["serve", "--port", "70000"], "--port"),
])
def test_invalid_values_are_usage_errors(tmp_path, argv, words):
    g = _good(tmp_path)
    argv = [a.replace("{G}", g).replace("{T}", str(tmp_path)) for a in argv]
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 2, (argv, r.output)
    assert words in r.output, (argv, r.output)
    assert not any(p.name.startswith(("o.", "x.", "s.", "j.")) for p in tmp_path.iterdir())


@pytest.mark.parametrize("ratio,words", [("0.999", "leaves -o empty"), ("0.001", "leaves --eval-out empty")])
def test_eval_split_that_empties_one_side_is_refused(tmp_path, ratio, words):
    src = tmp_path / "qa.jsonl"
    src.write_text("".join(json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) + "\n" for i in range(4)))
    assert CliRunner().invoke(cli, ["convert", str(src), "--to", "sft", "-o", str(tmp_path / "o.jsonl")]).exit_code == 0
    earlier = (tmp_path / "o.jsonl").read_text()   # convert's own earlier output, which it may replace
    r = CliRunner().invoke(cli, ["convert", str(src), "--to", "sft", "--eval-ratio", ratio, "--eval-out",
                                 str(tmp_path / "e.jsonl"), "-o", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 2 and words in r.output, r.output
    assert (tmp_path / "o.jsonl").read_text() == earlier and not (tmp_path / "e.jsonl").exists()


def test_unbounded_float_options_say_finite_in_help():
    r = CliRunner().invoke(cli, ["pairs", "--help"])
    assert "x<=None" not in r.output and "[finite]" in r.output, r.output


def test_float_options_refuse_nan_everywhere():
    """Every float option of every command refuses nan (click.FloatRange alone lets it through)."""
    def walk(group):
        for cmd in group.commands.values():
            if isinstance(cmd, click.Group):
                yield from walk(cmd)
            else:
                yield cmd
    for cmd in walk(cli):
        for p in cmd.params:
            if isinstance(p, click.Option) and isinstance(p.type, (click.types.FloatParamType,)):
                with pytest.raises(click.BadParameter):
                    p.type.convert("nan", p, None)


# ---------------------------------------------------------------- kind 8: messages that say what is wrong


def test_wrong_model_name_on_a_live_server_lists_the_served_names(tmp_path):
    c = _good(tmp_path)
    with FakeOpenAI(models=("judge-a", "judge-b")) as srv:
        r = CliRunner().invoke(cli, ["judge", c, "-m", "judge-typo", "--base-url", srv.url(), *FAST,
                                     "-o", str(tmp_path / "j.jsonl")])
    assert r.exit_code == 2, r.output
    assert "cannot reach" not in r.output
    assert "'judge-typo' (-m)" in r.output and "judge-a, judge-b" in r.output


def test_no_server_says_cannot_reach(tmp_path):
    from dsforge.procs import free_port

    r = CliRunner().invoke(cli, ["judge", _good(tmp_path), "-m", "x", "--base-url",
                                 f"http://127.0.0.1:{free_port()}/v1", *FAST, "-o", str(tmp_path / "j.jsonl")])
    assert r.exit_code == 1 and "cannot reach" in r.output


def test_model_folder_without_tokenizer_says_which_files(tmp_path):
    m = tmp_path / "model"
    m.mkdir()
    (m / "config.json").write_text("{}")
    r = CliRunner().invoke(cli, ["sample", _good(tmp_path), "-m", str(m), "-o", str(tmp_path / "s.jsonl")])
    assert r.exit_code == 1 and "missing tokenizer files" in r.output and "tokenizer.json" in r.output
    assert "memory" not in r.output
    (m / "config.json").unlink()
    (m / "tokenizer.json").write_text("{}")
    r = CliRunner().invoke(cli, ["inspect-model", str(m)])
    assert r.exit_code == 1 and "missing config.json" in r.output


def test_negative_chunk_chars_blames_chunk_chars_not_overlap(tmp_path):
    from dsforge.convert import ConvertOptions

    with pytest.raises(UsageError) as info:
        ConvertOptions(to="pt", chunk_chars=-5, overlap=0).check()
    assert "--chunk-chars" in info.value.message and "overlap" not in info.value.message


def test_empty_csv_cell_is_named_with_column_and_line(tmp_path):
    f = tmp_path / "qa.csv"
    f.write_text("question,answer\nWhat?,Yes\nWhy?,\n")
    r = CliRunner().invoke(cli, ["convert", str(f), "--to", "sft", "--map", "instruction=question",
                                 "--map", "output=answer", "-o", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 1
    assert f"{f}:3: empty cell in column 'answer'" in r.output


def test_report_with_unknown_completion_tokens_counts_every_candidate(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text("".join(json.dumps({"prompt_id": "p", "text": "x" * i, "completion_tokens": None}) + "\n"
                         for i in range(1, 6)))
    r = CliRunner().invoke(cli, ["report", str(f), "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "r.html").read_text()
    assert "5 candidates" in page and "0 candidates" not in page and "token counts unknown for 5" in page


# ---------------------------------------------------------------- kind 10a: no credential from a URL in any file

SECRET = "sk-SECRET-4242"


def test_redact_url():
    assert redact_url(f"http://user:{SECRET}@host:8000/v1") == "http://***@host:8000/v1"
    assert SECRET not in redact_url(f"https://host/v1?api_key={SECRET}&x=1")
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert redact({"base_url": f"http://u:{SECRET}@h/v1", "api_key": SECRET, "prompt_tokens": 3}) == \
        {"base_url": "http://***@h/v1", "api_key": "***", "prompt_tokens": 3}


def _grep_tree(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


@pytest.mark.parametrize("command", ["judge", "sample"])
@pytest.mark.parametrize("fail", [None, 500])
def test_credentials_in_base_url_reach_no_file_and_no_console(tmp_path, command, fail):
    c = _good(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    with FakeOpenAI(models=("m",), fail_status=fail) as srv:
        url = srv.url(f"user:{SECRET}")
        args = ([c, "-m", "m"] if command == "judge" else [c, "-m", "m", "--engine", "openai", "-n", "1",
                                                          "--temps", "0.7"])
        r = subprocess.run([sys.executable, "-m", "dsforge", command, *args, "--base-url", url, *FAST,
                            "--engine-opt", "probe=false", "-o", str(work / "out.jsonl")],
                           capture_output=True, text=True, timeout=120, cwd=work)
        assert srv.requests, "the server was reached"
    assert r.returncode == (1 if fail else 0), r.stderr[-2000:]
    assert SECRET not in r.stdout and SECRET not in r.stderr
    assert _grep_tree(work) == [] and _grep_tree(tmp_path) == []
    if not fail:
        s = json.loads((work / "out.jsonl.summary.json").read_text())
        assert "***@127.0.0.1" in json.dumps(s)


def test_credentials_in_error_messages_are_redacted(tmp_path):
    from dsforge.procs import free_port

    r = CliRunner().invoke(cli, ["judge", _good(tmp_path), "-m", "x", "--base-url",
                                 f"http://u:{SECRET}@127.0.0.1:{free_port()}/v1", *FAST, "-o", str(tmp_path / "j.jsonl")])
    assert r.exit_code == 1 and "cannot reach" in r.output and SECRET not in r.output


def test_run_manifest_redacts_base_url(tmp_path):
    from dsforge.run import Runner

    class R:   # only what _write_manifest needs
        pass

    runner = Runner.__new__(Runner)
    runner.run_dir = tmp_path
    runner.manifest = {"stages": {"judge": {"options": {"base_url": f"http://u:{SECRET}@h/v1",
                                                        "engine_options": {"api_key": SECRET}}}}}
    runner._write_manifest()
    assert SECRET not in (tmp_path / "manifest.json").read_text()


def test_dsforge_error_exit_codes():
    assert DsforgeError("x").exit_code == 1 and UsageError("x").exit_code == 2


# ------------------------------------------------------------------ absurd counts are refused at parse time

# int options where any large value means "all of it" (nothing is sent or repeated that many times)
UNBOUNDED_OK = {"limit", "chunk_chars", "chunk_tokens", "overlap", "min_chars", "max_chars", "cutoff_len",
                "examples", "max_pairs_per_prompt"}


def _all_params():
    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            for p in cmd.params:
                yield " ".join(path), p
    yield from walk(cli, [])


def test_every_int_option_has_an_upper_bound():
    loose = [f"{cmd} {p.opts[0]}" for cmd, p in _all_params()
             if isinstance(p.type, click.types.IntParamType) and p.name not in UNBOUNDED_OK
             and getattr(p.type, "max", None) is None]
    assert not loose, f"int options without an upper bound: {loose}"


@pytest.mark.parametrize("argv,word", [
    (["sample", "{good}", "-n", "99999999999999999999", "-o", "{out}"], "-n"),
    (["sample", "{good}", "--max-tokens", "1000001", "-o", "{out}"], "--max-tokens"),
    (["sample", "{good}", "--seed", str(2**63), "-o", "{out}"], "--seed"),
    (["merge", "{good}", "-n", "1025", "-o", "{out}"], "-n"),
    (["judge", "{good}", "-m", "x", "--votes", "1000", "-o", "{out}"], "--votes"),
    (["judge", "{good}", "-m", "x", "--max-tokens", "99999999999", "-o", "{out}"], "--max-tokens"),
    (["pairs", "{good}", "--seed", "-1", "-o", "{out}"], "--seed"),
])
def test_absurd_counts_are_usage_errors(tmp_path, argv, word):
    good = _good(tmp_path)
    r = CliRunner().invoke(cli, [a.format(good=good, out=tmp_path / "o.jsonl") for a in argv])
    assert r.exit_code == 2 and "not in the range" in r.output and word in r.output, r.output
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("argv,words", [
    (["review", "{good}", "-o", "{tmp}/r.jsonl", "--annotator", ""], "is not a valid annotator name: the name is empty"),
    (["review", "{good}", "-o", "{tmp}/r.jsonl", "--annotator", "../x"], "not a valid annotator name"),
    (["review", "{good}", "-o", "{tmp}/r.jsonl", "--assign", "a,,b"], "has an empty name"),
    (["review", "{good}", "-o", "{tmp}/r.jsonl", "--assign", "a,"], "has an empty name"),
    (["convert", "{good}", "--to", "sft", "-o", "{tmp}/.jsonl"], "has no file name"),
    (["pairs", "{good}", "-o", ".jsonl"], "has no file name"),
])
def test_empty_names_are_refused(tmp_path, argv, words):
    good = _good(tmp_path)
    r = CliRunner().invoke(cli, [a.format(good=good, tmp=tmp_path) for a in argv])
    assert r.exit_code == 2 and words in r.output, r.output


@pytest.mark.parametrize("command", [["pairs", "{f}", "-o", "{tmp}/p.jsonl"], ["merge", "{f}", "-o", "{tmp}/m.jsonl"],
                                     ["judge", "{f}", "-m", "x", "-o", "{tmp}/j.jsonl"]])
def test_non_utf8_candidates_say_so_with_the_line(tmp_path, command):
    f = tmp_path / "c.jsonl"
    f.write_bytes(b'\n{"prompt_id": "p", "text": "caf\xe9"}\n')
    r = CliRunner().invoke(cli, [a.format(f=f, tmp=tmp_path) for a in command])
    assert r.exit_code == 1 and f"{f}:2" in r.output and "not UTF-8 (byte 0xe9" in r.output, r.output


def test_dataset_clash_shows_every_differing_key_whole(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    long_prompt = "p" * 400
    (d / "dataset_info.json").write_text(json.dumps({"x": {"file_name": "x.jsonl", "columns": {"prompt": long_prompt},
                                                           "tags": {"a": "b"}}}))
    src = tmp_path / "x.jsonl"
    src.write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n")
    r = CliRunner().invoke(cli, ["register", str(src), "--name", "x", "--dataset-dir", str(d)])
    assert r.exit_code == 1 and "with a different entry" in r.output, r.output
    assert long_prompt in r.output and "tags: {\"a\": \"b\"} (registered) -> (absent)" in r.output, r.output


@pytest.mark.parametrize("convert,field,words", [
    ({"to": "pt", "chunk_chars": 0}, "stages[0].convert.chunk_chars", "0 must be >= 1"),
    ({"to": "pt", "chunk_chars": 10, "overlap": -1}, "stages[0].convert.overlap", "-1 must be >= 0"),
    ({"to": "sft", "map": {"sytem": "s"}}, "stages[0].convert.map", "unknown destination 'sytem'"),
    ({"near_dedup": True, "dedup_shingle": "line:3"}, "stages[0].convert.dedup_shingle", "word:K or char:K"),
    ({"near_dedup": True, "dedup_threshold": 1.5}, "stages[0].convert.dedup_threshold", "(0, 1]"),
])
def test_recipe_convert_errors_name_the_recipe_field_not_the_flag(tmp_path, convert, field, words):
    from dsforge.errors import ConfigError
    from dsforge.recipe import load_recipe

    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"name": "x", "inputs": ["a.txt"], "stages": [{"convert": convert}]}))
    with pytest.raises(ConfigError) as e:
        load_recipe(str(p))
    assert f"{field}: " in str(e.value) and words in str(e.value) and "--" not in str(e.value), str(e.value)
