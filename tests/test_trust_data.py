"""Issue 10, kinds 1, 2 and 9: no command writes over its input or a good earlier result, names are
never paths, and killed writers leave nothing behind that the next run does not clean.

Every command is driven through the real CLI; a judge server that answers or fails on the test's
own schedule is tests.servers.FakeOpenAI (a real HTTP server; the openai client talks to it over a socket).
"""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dsforge import io as dio
from dsforge.cli import cli
from dsforge.errors import UsageError
from dsforge.names import check_name, name_problem
from dsforge.recipe import load_recipe
from tests.servers import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent
FAQ = str(ROOT / "dsforge" / "data" / "demo" / "faq.csv")
Q = [{"role": "user", "content": "Q?"}]


def invoke(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def write_jsonl(path, rows):
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def candidate_rows(texts=("a", "b", "c", "d")):
    return [{"prompt_id": "p1", "messages": Q, "text": t, "temperature": 1.0, "sample_index": i,
             "duplicate_indices": [], "truncated": False, "finish_reason": "stop", "run": "r"}
            for i, t in enumerate(texts)]


def judged_rows(scores=(5, 1, 3, 2), model="j"):
    return [{**c, "judge": {"model": model, "rubric": "additive", "rubric_hash": RUBRIC_HASH, "mode": "pointwise",
                            "score": s}} for c, s in zip(candidate_rows(), scores)]


from dsforge.rubrics import BUILTIN  # noqa: E402

RUBRIC_HASH = BUILTIN["additive"]().hash


@pytest.fixture
def files(tmp_path):
    """One file of every kind the commands read."""
    f = {
        "raw": write_jsonl(tmp_path / "raw.jsonl", [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(4)]),
        "prompts": write_jsonl(tmp_path / "prompts.jsonl", [{"instruction": "q1"}, {"instruction": "q2"}]),
        "cands": write_jsonl(tmp_path / "cands.jsonl", candidate_rows()),
        "judged": write_jsonl(tmp_path / "judged.jsonl", judged_rows()),
        "sft": write_jsonl(tmp_path / "sft.jsonl", [{"conversations": [{"from": "human", "value": "q"},
                                                                      {"from": "gpt", "value": "a"}]}]),
    }
    return f


def _link(tmp_path, target, how):
    if how == "same":
        return target
    p = tmp_path / f"{how}-{Path(target).name}"
    (os.symlink if how == "symlink" else os.link)(target, p)
    return str(p)


# every command, with one of its outputs (or sidecars) landing on one of its inputs; {x} is the input
CLASHES = {
    "convert -o": (["convert", "{raw}", "--to", "sft", "-o", "{raw}"], "raw"),
    "convert --eval-out": (["convert", "{raw}", "--to", "sft", "-o", "{tmp}/o.jsonl", "--eval-ratio", "0.5",
                            "--eval-out", "{raw}"], "raw"),
    "sample -o": (["sample", "{prompts}", "--engine", "openai", "--base-url", "http://127.0.0.1:9/v1", "-m", "x",
                   "-o", "{prompts}"], "prompts"),
    "merge -o": (["merge", "{cands}", "-o", "{cands}"], "cands"),
    "merge --prompts": (["merge", "{cands}", "--prompts", "{prompts}", "-o", "{prompts}"], "prompts"),
    "judge -o": (["judge", "{cands}", "-m", "j", "--base-url", "http://127.0.0.1:9/v1", "-o", "{cands}"], "cands"),
    "judge --cache": (["judge", "{cands}", "-m", "j", "--base-url", "http://127.0.0.1:9/v1", "-o", "{tmp}/j.jsonl",
                       "--cache", "{cands}"], "cands"),
    "pairs -o": (["pairs", "{judged}", "-o", "{judged}"], "judged"),
    "pairs --kto": (["pairs", "{judged}", "-o", "{tmp}/p.jsonl", "--kto", "{judged}", "--kto-threshold", "3"],
                    "judged"),
    "report -o": (["report", "{judged}", "-o", "{judged}"], "judged"),
    "register": (["register", "{sft}", "--name", "d", "--dataset-dir", "{tmp}"], "sft"),   # FILE = dataset_info.json
    "review -o": (["review", "{cands}", "-o", "{cands}", "--annotator", "a"], "cands"),
    "review --import": (["review", "{cands}", "--import", "{judged}", "-o", "{judged}"], "judged"),
}


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
@pytest.mark.parametrize("case", sorted(CLASHES))
def test_no_command_writes_over_its_input(tmp_path, files, case, how):
    args, victim = CLASHES[case]
    src = files[victim]
    if case == "register":   # the file to register is the dataset_info.json it would be written into
        os.replace(src, tmp_path / "dataset_info.json")
        src = files[victim] = str(tmp_path / "dataset_info.json")
    before = Path(src).read_bytes()
    alias = _link(tmp_path, src, how)
    # the input by its own name; the output (the last place it appears) through the link
    last = max(i for i, a in enumerate(args) if a == "{" + victim + "}")
    real = [a.format(**{**files, "tmp": str(tmp_path), victim: alias if i == last else src})
            for i, a in enumerate(args)]
    r = invoke(real)
    assert r.exit_code == 2, r.output
    assert "Error:" in r.output and "Traceback" not in r.output
    assert Path(src).read_bytes() == before
    assert not [n for n in os.listdir(tmp_path) if n.endswith((".tmp", ".cache.sqlite"))]


@pytest.mark.parametrize("args", [
    ["pairs", "{judged}", "-o", "{tmp}/p.jsonl", "--kto", "{tmp}/p.jsonl", "--kto-threshold", "3"],
    ["judge", "{cands}", "-m", "j", "--base-url", "http://127.0.0.1:9/v1", "-o", "{tmp}/j.jsonl",
     "--cache", "{tmp}/j.jsonl.summary.json"],
    ["pairs", "{judged}", "-o", "{tmp}/p.jsonl", "--kto", "{tmp}/p.jsonl.sidecar.jsonl", "--kto-threshold", "3"],
])
def test_outputs_and_sidecars_may_not_collide(tmp_path, files, args):
    r = invoke([a.format(**files, tmp=tmp_path) for a in args])
    assert r.exit_code == 2 and "are the same file" in r.output, r.output


def test_report_replaces_only_an_earlier_report(tmp_path, files):
    page = tmp_path / "mine.html"   # the user's own page, not an input
    page.write_text("<p>my notes</p>\n")
    r = invoke(["report", files["judged"], "-o", page])
    assert r.exit_code == 2 and "not an HTML report" in r.output
    assert page.read_text() == "<p>my notes</p>\n"
    out = tmp_path / "r.html"
    assert invoke(["report", files["judged"], "-o", out]).exit_code == 0
    assert invoke(["report", files["judged"], "-o", out]).exit_code == 0   # its own earlier report: fine


def test_report_of_a_run_never_overwrites_its_manifest_or_stage_files(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "run_dir": str(tmp_path / "run"), "inputs": [FAQ], "stages": [
        {"convert": {"to": "sft", "map": {"instruction": "question", "output": "answer"}, "skip_bad": True}}]}))
    assert invoke(["run", recipe, "--no-report"]).exit_code == 0
    for victim in ("manifest.json", "01-convert/data.jsonl"):
        before = (tmp_path / "run" / victim).read_bytes()
        r = invoke(["report", tmp_path / "run", "-o", tmp_path / "run" / victim])
        assert r.exit_code == 2, r.output
        assert (tmp_path / "run" / victim).read_bytes() == before


def test_run_refuses_inputs_inside_its_own_stage_folders(tmp_path):
    run = tmp_path / "run"
    (run / "01-convert").mkdir(parents=True)
    inp = run / "01-convert" / "faq.csv"
    inp.write_bytes(Path(FAQ).read_bytes())
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "run_dir": str(run), "inputs": [str(inp)], "stages": [
        {"convert": {"to": "sft", "map": {"instruction": "question", "output": "answer"}, "skip_bad": True}}]}))
    r = invoke(["run", recipe])
    assert r.exit_code == 2 and "stage folder" in r.output, r.output
    assert inp.read_bytes() == Path(FAQ).read_bytes()


@pytest.mark.parametrize("where", ["run_dir", "dataset_dir"])
def test_run_refuses_an_input_folder_that_holds_its_own_outputs(tmp_path, where):
    (tmp_path / "faq.csv").write_bytes(Path(FAQ).read_bytes())
    register = {"name": "faq_sft", **({"dataset_dir": str(tmp_path / "data")} if where == "dataset_dir" else {})}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "run_dir": str(tmp_path / ("run" if where == "run_dir" else "../r")),
                                      "inputs": [str(tmp_path)], "stages": [
        {"convert": {"to": "sft", "map": {"instruction": "question", "output": "answer"}, "skip_bad": True}},
        {"register": register}]}))
    r = invoke(["run", recipe])
    words = "contains the run directory" if where == "run_dir" else "contains the register faq_sft dataset_dir"
    assert r.exit_code == 2 and words in r.output, r.output
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


def test_input_folders_skip_hidden_files(tmp_path):
    from dsforge.io import expand_inputs

    for rel in ("a.jsonl", ".b.jsonl", ".git/c.jsonl", "sub/d.jsonl", "sub/.e.jsonl.123@h.x.tmp"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}\n")
    assert [Path(p).relative_to(tmp_path).as_posix() for p in expand_inputs([str(tmp_path)])] == ["a.jsonl", "sub/d.jsonl"]
    assert expand_inputs([str(tmp_path / ".b.jsonl")]) == [str(tmp_path / ".b.jsonl")]   # named: read


def test_train_and_export_refuse_an_output_dir_that_is_an_input(tmp_path, files, lf_py):
    d = tmp_path / "data"
    assert invoke(["register", files["sft"], "--name", "s", "--dataset-dir", d]).exit_code == 0
    r = invoke(["train", "sft", "--dataset", "s", "--dataset-dir", d, "-o", d, "--dry-run"])
    assert r.exit_code == 2 and "--dataset-dir" in r.output, r.output
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    r = invoke(["export", "--adapter", adapter, "-o", adapter, "--lf-python", lf_py])
    assert r.exit_code == 2 and "--adapter" in r.output, r.output
    assert os.listdir(adapter) == ["adapter_config.json"]


# ------------------------------------------------------------------ failed runs leave what was there


def test_failed_pairs_run_leaves_the_previous_good_output(tmp_path, files):
    out = tmp_path / "p.jsonl"
    assert invoke(["pairs", files["judged"], "-o", out]).exit_code == 0
    before = {p: p.read_bytes() for p in tmp_path.glob("p.jsonl*")}
    assert len(before) == 3   # pairs, sidecar, summary
    r = invoke(["pairs", files["judged"], "-o", out, "--min-margin", "10"])
    assert r.exit_code == 1 and "no pair survived" in r.output
    assert {p: p.read_bytes() for p in tmp_path.glob("p.jsonl*")} == before


@pytest.fixture
def judge_server():
    """A real OpenAI-compatible server on 127.0.0.1 whose replies the test sets (fail_status: every call fails)."""
    with FakeOpenAI(models=("j",)) as srv:
        yield srv


def judge_args(files, out, server, *extra):
    return ["judge", files["cands"], "-m", "j", "--base-url", server.url(), "--no-logprobs", "--engine-opt",
            "max_retries=0", "--engine-opt", "probe=false", "-o", out, *extra]


def test_judge_rerun_with_a_failing_server_keeps_every_good_score(tmp_path, files, judge_server):
    out = tmp_path / "j.jsonl"
    assert invoke(judge_args(files, out, judge_server, "--cache", "none")).exit_code == 0
    good = [json.loads(line)["judge"]["score"] for line in out.read_text().splitlines()]
    assert good == [4, 4, 4, 4]
    judge_server.fail_status = 500   # the server now fails every call
    r = invoke(judge_args(files, out, judge_server, "--cache", "none"))
    assert r.exit_code == 1 and "kept 4 earlier score" in r.output, r.output   # never a silent exit 0
    assert [json.loads(line)["judge"]["score"] for line in out.read_text().splitlines()] == good
    assert json.loads((tmp_path / "j.jsonl.summary.json").read_text())["kept_previous"] == 4
    # another judge's scores are never mixed in, nor replaced by failures: nothing is written
    before = out.read_bytes()
    r = invoke(judge_args(files, out, judge_server, "--cache", "none", "--rubric", "aspects"))
    assert r.exit_code == 1 and "not replacing those scores" in r.output, r.output
    assert out.read_bytes() == before


def test_judge_refuses_to_replace_a_file_that_is_not_a_judged_file(tmp_path, files, judge_server):
    r = invoke(judge_args(files, files["sft"], judge_server))
    assert r.exit_code == 2 and "not a judged file" in r.output, r.output


def test_judge_that_fails_its_probe_leaves_no_cache_and_no_output(tmp_path, files, judge_server):
    out = tmp_path / "j.jsonl"
    judge_server.fail_status = 500
    r = invoke(["judge", files["cands"], "-m", "j", "--base-url", judge_server.url(), "--engine-opt", "max_retries=0",
                "-o", out])
    assert r.exit_code == 1, r.output
    assert sorted(os.listdir(tmp_path)) == sorted(Path(f).name for f in files.values())


def _enospc_on_fsync(monkeypatch, after: int = 0):
    """os.fsync raises ENOSPC from its (after+1)-th call on, like a disk that fills up."""
    real, calls = os.fsync, {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("after", [0, 1, 2])
def test_full_disk_while_writing_pairs_leaves_every_previous_output(tmp_path, files, monkeypatch, after):
    out = tmp_path / "p.jsonl"
    kto = tmp_path / "k.jsonl"
    assert invoke(["pairs", files["judged"], "-o", out, "--kto", kto, "--kto-threshold", "3"]).exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    _enospc_on_fsync(monkeypatch, after)
    r = invoke(["pairs", files["judged"], "-o", out, "--kto", kto, "--kto-threshold", "4", "--seed", "3"])
    assert r.exit_code == 1 and "no space left" in r.output.lower(), r.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before   # no temp file either


def test_full_disk_during_register_leaves_dataset_info_and_its_backup_whole(tmp_path, files, monkeypatch):
    d = tmp_path / "data"
    assert invoke(["register", files["sft"], "--name", "a", "--dataset-dir", d]).exit_code == 0
    assert invoke(["register", files["sft"], "--name", "b", "--dataset-dir", d]).exit_code == 0
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    assert json.loads(before["dataset_info.json.bak"]) == {"a": json.loads(before["dataset_info.json"])["a"]}
    _enospc_on_fsync(monkeypatch)   # the backup is the first file written
    r = invoke(["register", files["sft"], "--name", "c", "--dataset-dir", d])
    assert r.exit_code == 1, r.output
    after = {p.name: p.read_bytes() for p in d.iterdir() if not p.name.endswith(".lock")}
    assert after == {k: v for k, v in before.items() if not k.endswith(".lock")}


# ------------------------------------------------------------------ run's register stage


def _register_recipe(tmp_path, data_dir, name="faq", fname="r.yaml", **reg):
    recipe = tmp_path / fname
    recipe.write_text(yaml.safe_dump({"name": "t", "run_dir": str(tmp_path / "run"), "inputs": [FAQ], "stages": [
        {"convert": {"to": "sft", "map": {"instruction": "question", "output": "answer"}, "skip_bad": True}},
        {"register": {"name": name, "dataset_dir": str(data_dir), **reg}}]}))
    return recipe


def test_run_register_obeys_the_same_clash_rules_as_register(tmp_path, files):
    shared = tmp_path / "shared"
    assert invoke(["register", files["sft"], "--name", "faq", "--dataset-dir", shared]).exit_code == 0
    (shared / "faq.jsonl").write_bytes(Path(files["sft"]).read_bytes())   # someone else's faq.jsonl
    before = {p.name: p.read_bytes() for p in shared.iterdir()}
    recipe = _register_recipe(tmp_path, shared)
    r = invoke(["run", recipe, "--no-report"])
    assert r.exit_code == 1 and "already exists with other content" in r.output, r.output
    assert {p.name: p.read_bytes() for p in shared.iterdir()} == before
    r = invoke(["run", recipe, "--no-report", "--set", "stages[1].register.force=true"])
    assert r.exit_code == 0 and "(replaced;" in r.output, r.output
    info = json.loads((shared / "dataset_info.json").read_text())
    assert info["faq"]["file_name"] == "faq.jsonl" and (shared / "faq.jsonl").read_bytes() != before["faq.jsonl"]


def test_run_register_replaces_only_its_own_earlier_result(tmp_path):
    data = tmp_path / "d"
    recipe = _register_recipe(tmp_path, data)
    r = invoke(["run", recipe, "--no-report"])
    assert r.exit_code == 0 and "(added;" in r.output, r.output
    r = invoke(["run", recipe, "--no-report", "--set", "stages[0].convert.shuffle=true"])   # new content, same name
    assert r.exit_code == 0 and "(replaced;" in r.output, r.output
    (data / "faq.jsonl").write_text((data / "faq.jsonl").read_text() + "\n")   # edited by hand since
    r = invoke(["run", recipe, "--no-report", "--set", "stages[0].convert.seed=4", "--set",
                "stages[0].convert.shuffle=true"])
    assert r.exit_code == 1 and "already exists with other content" in r.output, r.output


# ------------------------------------------------------------------ kind 2: names are names

BAD_NAMES = ["../../x", "/tmp/abs", "a/b", "a\\b", " spaced ", "spaced ", "", ".hidden", "a,b", "..", "a..b",
             "x" * 101, "tab\tname", "-dash"]
GOOD_NAMES = ["my_dpo-v2.1", "faq", "データ", "_x", "A1"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused_everywhere(tmp_path, files, name):
    assert name_problem(name)
    with pytest.raises(UsageError):
        check_name(name)
    d = tmp_path / "data"
    r = invoke(["register", files["sft"], "--name", name, "--dataset-dir", d])
    assert r.exit_code == 2 and "not a valid name" in r.output, r.output
    assert not d.exists()
    # in a recipe, written there or given with --set, and as the run's own name
    recipe = _register_recipe(tmp_path, d, name=name)
    good = _register_recipe(tmp_path, d, fname="good.yaml")
    for args in (["run", recipe], ["run", good, "--set", f"stages[1].register.name={json.dumps(name)}"]):
        r = invoke(args)
        assert r.exit_code == 1 and "is not a valid name" in r.output, r.output
    doc = yaml.safe_load(recipe.read_text())
    doc["name"], doc["stages"][1]["register"]["name"] = name, "ok"
    doc.pop("run_dir")
    recipe.write_text(yaml.safe_dump(doc))
    with pytest.raises(Exception, match="not a valid name"):
        load_recipe(str(recipe))
    assert not (tmp_path / "run").exists() and not d.exists() and not (tmp_path.parent / "x").exists()


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names_pass(tmp_path, files, name):
    assert name_problem(name) is None
    r = invoke(["register", files["sft"], "--name", name, "--dataset-dir", tmp_path / "data"])
    assert r.exit_code == 0, r.output


def test_served_name_is_checked():
    from dsforge.train import serve_command

    with pytest.raises(UsageError, match="--name"):
        serve_command(str(ROOT), name="../x")


# ------------------------------------------------------------------ kind 9: litter after kill -9

HOLD = """
import sys, time
from dsforge import io as dio
out, kind = sys.argv[1], sys.argv[2]
if kind == "file":
    with dio.atomic_write(out) as f:
        f.write("x" * 100000); f.flush(); print("ready", flush=True); time.sleep(600)
else:   # like convert --shuffle: a scratch folder, then the output's temp file
    with dio.temp_dir_for(out) as d, dio.atomic_write(out) as f:
        open(d + "/bucket", "w").write("x"); f.write("x"); f.flush(); print("ready", flush=True); time.sleep(600)
"""


def _killed_writer(out, kind):
    """A real writer of `out` killed with SIGKILL in the middle of its write."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(out), kind], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    p.kill()
    p.wait()


def _live_writer(out, kind):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(out), kind], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def test_next_run_of_the_same_command_cleans_what_kill_9_left(tmp_path, files):
    out = tmp_path / "o.jsonl"
    live = _live_writer(out, "file")    # a writer still running keeps its temp file
    _killed_writer(out, "both")         # a temp file and convert --shuffle's scratch folder
    _killed_writer(tmp_path / "other.jsonl", "file")   # another output's leftovers are not ours to remove
    try:
        hidden = sorted(n for n in os.listdir(tmp_path) if n.startswith("."))
        assert len(hidden) == 4 and any(n.endswith(".d") for n in hidden), hidden
        r = invoke(["convert", files["raw"], "--to", "sft", "--shuffle", "-o", out])
        assert r.exit_code == 0, r.output
        left = sorted(n for n in os.listdir(tmp_path) if n.startswith("."))
        assert len(left) == 2 and all(str(live.pid) in n or n.startswith(".other.jsonl.") for n in left), left
    finally:
        live.kill()
        live.wait()
    assert dio.clean_stale(out) and not [n for n in os.listdir(tmp_path) if n.startswith(".o.jsonl.")]


def test_atomic_files_land_together_or_not_at_all(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("old a")
    with pytest.raises(RuntimeError):
        with dio.atomic_files() as g:
            g.open(a).write("new a")
            g.open(b).write("new b")
            raise RuntimeError("fails before the end")
    assert a.read_text() == "old a" and not b.exists() and os.listdir(tmp_path) == ["a"]
    with dio.atomic_files() as g:
        g.open(a).write("new a")
        g.open(b).write("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")


# ------------------------------------------------------------------ an output of another kind is never replaced

# every writer, with -o (or --kto / --eval-out) on an existing file of another kind; {x} is the victim
OTHER_KIND = {
    "sample -o": ["sample", "{prompts}", "--engine", "openai", "--base-url", "http://127.0.0.1:9/v1", "-m", "x",
                  "-o", "{x}"],
    "sample --overwrite": ["sample", "{prompts}", "--engine", "openai", "--base-url", "http://127.0.0.1:9/v1",
                           "-m", "x", "--overwrite", "-o", "{x}"],
    "merge -o": ["merge", "{cands}", "-o", "{x}"],
    "pairs -o": ["pairs", "{judged}", "-o", "{x}"],
    "pairs --kto": ["pairs", "{judged}", "-o", "{tmp}/p.jsonl", "--kto", "{x}", "--kto-threshold", "3"],
    "convert -o": ["convert", "{raw}", "--to", "sft", "-o", "{x}"],
    "convert --eval-out": ["convert", "{raw}", "--to", "sft", "-o", "{tmp}/o.jsonl", "--eval-ratio", "0.5",
                           "--eval-out", "{x}"],
    "judge -o": ["judge", "{cands}", "-m", "j", "--base-url", "http://127.0.0.1:9/v1", "-o", "{x}"],
}
VICTIMS = {"sample -o": "sft", "sample --overwrite": "sft", "merge -o": "judged", "pairs -o": "sft",
           "pairs --kto": "cands", "convert -o": "sft", "convert --eval-out": "cands", "judge -o": "cands"}


@pytest.mark.parametrize("case", sorted(OTHER_KIND))
def test_no_command_replaces_an_existing_file_of_another_kind(tmp_path, files, case):
    victim = tmp_path / ("victim" + Path(files[VICTIMS[case]]).suffix)
    victim.write_bytes(Path(files[VICTIMS[case]]).read_bytes())
    before = victim.read_bytes()
    r = invoke([a.format(**files, tmp=tmp_path, x=victim) for a in OTHER_KIND[case]])
    assert r.exit_code == 2, r.output
    assert f"{victim} already exists and is not" in r.output and "not replacing it" in r.output, r.output
    assert "run None" not in r.output and "Traceback" not in r.output
    assert victim.read_bytes() == before


def test_convert_replaces_its_own_output_but_not_once_edited(tmp_path, files):
    out = tmp_path / "o.jsonl"
    assert invoke(["convert", files["raw"], "--to", "sft", "-o", out]).exit_code == 0
    assert invoke(["convert", files["raw"], "--to", "sft", "-o", out]).exit_code == 0   # its own output: rerun
    out.write_text(out.read_text() + json.dumps({"instruction": "mine", "output": "hand-written"}) + "\n")
    r = invoke(["convert", files["raw"], "--to", "sft", "-o", out])
    assert r.exit_code == 2 and "did not write (or one edited since)" in r.output, r.output
    assert "hand-written" in out.read_text()


def test_pairs_and_merge_rerun_onto_their_own_output(tmp_path, files):
    for args in (["pairs", files["judged"], "-o", tmp_path / "p.jsonl"],
                 ["pairs", files["judged"], "-o", tmp_path / "p2.jsonl", "--kto", tmp_path / "k.jsonl",
                  "--kto-threshold", "3"],
                 ["merge", files["cands"], "-o", tmp_path / "m.jsonl"]):
        assert invoke(args).exit_code == 0
        assert invoke(args).exit_code == 0
    assert dio.output_kind(str(tmp_path / "p.jsonl")) == "pairs"
    assert dio.output_kind(str(tmp_path / "m.jsonl")) == "candidates"


def test_failed_sample_overwrite_keeps_the_old_candidates(tmp_path, files):
    out = tmp_path / "c.jsonl"
    out.write_bytes(Path(files["cands"]).read_bytes())
    before = out.read_bytes()
    with FakeOpenAI(models=("m",), fail_status=500) as srv:
        r = invoke(["sample", files["prompts"], "--engine", "openai", "--base-url", srv.url(), "-m", "m",
                    "--engine-opt", "max_retries=0", "--engine-opt", "probe=false", "--no-logprobs",
                    "--overwrite", "-o", out])
    assert r.exit_code != 0 and "Traceback" not in r.output, r.output
    assert out.read_bytes() == before
    assert not [n for n in os.listdir(tmp_path) if "overwrite" in n]
    with FakeOpenAI(models=("m",), reply="an answer") as srv:
        r = invoke(["sample", files["prompts"], "--engine", "openai", "--base-url", srv.url(), "-m", "m", "-n", "1",
                    "--temps", "0", "--engine-opt", "probe=false", "--no-logprobs", "--overwrite", "-o", out])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 2 and {x["text"] for x in rows} == {"an answer"}
