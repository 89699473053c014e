"""Contamination guard: 13-gram and near-duplicate hits with file:line on both sides, drop, exit codes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.contamination import ContaminationOptions, check_files

EVAL_Q = "A farmer has 17 sheep and all but 9 run away; how many sheep does the farmer have left at the end of the day?"
EVAL_A = "Nine sheep are left, because all but nine ran away from the farmer during the storm that night."


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def data(tmp_path):
    ev = write(tmp_path / "eval.jsonl", [
        {"instruction": "Unrelated eval question about the boiling point of water at sea level in celsius",
         "output": "100"},
        {"instruction": EVAL_Q, "output": EVAL_A},
    ])
    train = write(tmp_path / "train.jsonl", [
        {"instruction": "Write a haiku about autumn leaves falling in a quiet park", "output": "Leaves drift..."},
        # 13-gram inside a longer prompt (different case and punctuation)
        {"instruction": "Puzzle: " + EVAL_Q.upper().replace(";", " --") + " Answer briefly.", "output": "9"},
        {"instruction": "Tell me a joke about computers and their programmers", "output": "..."},
        # the eval answer, lightly edited, as a train answer: a near-duplicate, shares a 13-gram too
        {"instruction": "Another question", "output": EVAL_A.replace("storm", "thunderstorm")},
        # near-duplicate without any shared 13-gram: every 12th word changed (found with char shingles)
        {"instruction": " ".join(w + ("x" if i % 12 == 11 else "") for i, w in enumerate(EVAL_Q.split())),
         "output": "ok"},
    ])
    return train, ev


def test_ngram_and_near_hits_with_file_line(data, tmp_path):
    train, ev = data
    rep = check_files([train], [ev], ContaminationOptions(shingle="char:5"))
    got = {(h["train"], h["eval"], h["method"]) for h in rep.hits}
    assert got == {(f"{train}:2 prompt", f"{ev}:2 prompt", "ngram"),
                   (f"{train}:4 answer", f"{ev}:2 answer", "ngram"),
                   (f"{train}:5 prompt", f"{ev}:2 prompt", "near")}
    assert rep.rows == 5 and rep.contaminated == 3
    assert rep.eval_texts_short == 1   # the answer "100" is too short to n-gram-match


def test_ngram_only_misses_the_edited_copy(data):
    train, ev = data
    rep = check_files([train], [ev], ContaminationOptions(threshold=None))
    assert rep.contaminated == 2 and set(rep.by_method) == {"ngram"}


def test_short_eval_text_matched_whole(tmp_path):
    ev = write(tmp_path / "e.jsonl", [{"instruction": "capital of burkina faso", "output": "ouagadougou"}])
    train = write(tmp_path / "t.jsonl", [{"instruction": "Q: what is the Capital of Burkina-Faso?", "output": "x"},
                                         {"instruction": "capital of burkina", "output": "y"}])
    rep = check_files([train], [ev], ContaminationOptions(threshold=None))
    assert [h["train"] for h in rep.hits] == [f"{train}:1 prompt"]


def test_cli_exit_codes_and_drop(data, tmp_path):
    train, ev = data
    r = CliRunner().invoke(cli, ["contamination", train, "--against", ev])
    assert r.exit_code == 0, r.output
    assert f"{train}:2 prompt  <-  {ev}:2 prompt" in r.output
    r = CliRunner().invoke(cli, ["contamination", train, "--against", ev, "--fail-on-hit"])
    assert r.exit_code == 1
    out = tmp_path / "clean.jsonl"
    r = CliRunner().invoke(cli, ["contamination", train, "--against", ev, "--drop", "-o", str(out), "--fail-on-hit",
                                 "--shingle", "char:5"])
    assert r.exit_code == 1, r.output
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    assert [k["instruction"][:12] for k in kept] == ["Write a haik", "Tell me a jo"]
    side = json.loads((tmp_path / "clean.jsonl.contamination.json").read_text())
    assert side["kind"] == "contamination" and side["contaminated"] == 3 and side["kept"] == 2
    clean_ev = write(tmp_path / "e2.jsonl", [{"instruction": "nothing in common with the training rows at all here",
                                               "output": "none whatsoever"}])
    r = CliRunner().invoke(cli, ["contamination", train, "--against", clean_ev, "--fail-on-hit"])
    assert r.exit_code == 0 and r.output.startswith("0 of 5")


@pytest.mark.parametrize("args, words", [
    (["--drop"], "--drop and -o"),
    (["-o", "X.jsonl"], "--drop and -o"),
    (["--ngram", "0", "--no-near"], "both tests are off"),
    (["--shingle", "word"], "--shingle"),
    (["--drop", "-o", "TRAIN"], "would destroy the input"),
    (["--drop", "-o", "EVAL"], "would destroy the input"),
])
def test_cli_usage_errors(data, tmp_path, args, words):
    train, ev = data
    args = [{"TRAIN": train, "EVAL": ev}.get(a, a) for a in args]
    args = [str(tmp_path / a) if a == "X.jsonl" else a for a in args]
    r = CliRunner().invoke(cli, ["contamination", train, "--against", ev, *args])
    assert r.exit_code == 2, r.output
    assert words in r.output and "Traceback" not in r.output


def test_ngram_evidence_is_reported_before_near(tmp_path):
    ev = write(tmp_path / "e.jsonl", [{"instruction": EVAL_Q, "output": EVAL_A}])
    # row 2's prompt is a near-duplicate without a shared 13-gram (found first when prompts came first)
    near_prompt = " ".join(w + ("x" if i % 12 == 11 else "") for i, w in enumerate(EVAL_Q.split()))
    train = write(tmp_path / "t.jsonl", [{"instruction": "different words entirely, nothing shared", "output": EVAL_A},
                                         {"instruction": near_prompt, "output": EVAL_A}])
    rep = check_files([train], [ev], ContaminationOptions(shingle="char:5"))
    assert [(h["train"], h["method"]) for h in rep.hits] == [(f"{train}:1 answer", "ngram"), (f"{train}:2 answer", "ngram")]
