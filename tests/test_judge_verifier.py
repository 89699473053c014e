"""`dsforge judge --verifier`: the judged record, summary and console lines of a program judge, its
mistakes (one message each), and its verdicts on real replies of the embedded model."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.records import JudgedCandidate

REAL = Path(__file__).parent / "data" / "smollm2_replies.jsonl"   # hand-labelled (see test_tasks_real)


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def cand(i, text, reference="43", temperature=0.0, **extra):
    return {"prompt_id": f"p{i // 2}", "messages": [{"role": "user", "content": "What is 29 + 14?"}], "text": text,
            "temperature": temperature, "sample_index": i, "reference": reference, **extra}


def judge(*args):
    return CliRunner().invoke(cli, ["judge", *args])


def rows(path):
    return [json.loads(x) for x in open(path)]


def test_verifier_writes_the_judged_record_summary_and_accuracy_by_temperature(tmp_path):
    c = write(tmp_path / "c.jsonl", [
        cand(0, "43"),                                   # right, in the asked form
        cand(1, "29 + 14 = 43. So the answer is 43."),   # right, but not just the number: lenient only
        cand(2, "29 + 14 = 31", temperature=1.0),        # wrong: the model's answer is after '='
        cand(3, "What is 29 + 14?", temperature=1.0),    # restated question: no answer
        cand(4, "43 and then some more", temperature=1.0, truncated=True, finish_reason="length"),
    ])
    for row in rows(c):
        assert "format" not in row
    out = tmp_path / "j.jsonl"
    r = judge(c, "--verifier", "numeric", "-o", str(out))
    assert r.exit_code == 0, r.output
    got = [x["judge"] for x in rows(out)]
    assert got[0] == {"kind": "verifier", "verifier": "numeric", "correct": True, "format_ok": True, "answer": "43",
                      "score": 1.0}
    assert (got[1]["correct"], got[1]["score"]) == (True, 1.0)
    assert (got[2]["correct"], got[2]["answer"], got[2]["score"]) == (False, "31", 0.0)
    assert (got[3]["correct"], got[3]["answer"]) == (False, None)
    assert got[4] == {"kind": "verifier", "verifier": "numeric", "score": None, "error": "truncated_not_judged"}
    assert [x["text"] for x in rows(out)] == [x["text"] for x in rows(c)]   # candidates kept, in order
    for x in rows(out):
        JudgedCandidate.model_validate(x)   # the record every stage reads
    s = json.load(open(str(out) + ".summary.json"))
    assert (s["kind"], s["mode"], s["verifier"], s["items"], s["scored"], s["not_judged_truncated"]) == \
        ("verifier", "verifier", "numeric", 5, 4, 1)
    assert s["accuracy"] == {"n": 4, "lenient": 0.5, "strict": 0.25} and s["no_answer"] == 1   # numeric: just a number
    assert s["accuracy_by_temperature"] == {"0.0": {"n": 2, "lenient": 1.0, "strict": 0.5},
                                            "1.0": {"n": 2, "lenient": 0.0, "strict": 0.0}}
    assert s["calls"] == 0 and s["failed_calls"] == 0 and s["cache"] is None
    assert not (tmp_path / "j.jsonl.cache.sqlite").exists()
    assert "accuracy: lenient 50.0%" in r.output and "temperature 1.0: lenient 0.0%" in r.output


def test_strict_follows_the_rows_format_rule_and_python_verifiers_give_float_scores(tmp_path, monkeypatch):
    c = write(tmp_path / "c.jsonl", [cand(0, "The answer is <answer>43</answer>", format="answer_tag"),
                                     cand(1, "43", format="answer_tag"),
                                     cand(2, "The answer is 43.", format="number")])
    out = tmp_path / "j.jsonl"
    assert judge(c, "--verifier", "numeric", "-o", str(out)).exit_code == 0
    assert [(x["judge"]["correct"], x["judge"]["format_ok"]) for x in rows(out)] == \
        [(True, True), (True, False), (True, False)]
    s = json.load(open(str(out) + ".summary.json"))
    assert s["accuracy"] == {"n": 3, "lenient": 1.0, "strict": 0.3333}

    (tmp_path / "closeness.py").write_text("def score(reply, reference, row):\n"
                                           "    return max(0.0, 1 - abs(float(reply) - float(reference)) / 10)\n")
    monkeypatch.chdir(tmp_path)
    c2 = write(tmp_path / "c2.jsonl", [cand(0, "43"), cand(1, "40"), cand(2, "30")])
    r = judge(c2, "--verifier", "python:closeness.py:score", "-o", str(tmp_path / "p.jsonl"))
    assert r.exit_code == 0, r.output
    assert [x["judge"]["score"] for x in rows(tmp_path / "p.jsonl")] == [1.0, 0.7, 0.0]
    assert [x["judge"]["correct"] for x in rows(tmp_path / "p.jsonl")] == [True, True, False]


def test_reference_field_reads_carried_fields(tmp_path):
    c = write(tmp_path / "c.jsonl", [{**cand(0, "12"), "reference": None, "fields": {"gold": "12"}},
                                     {**cand(1, "12"), "reference": None, "fields": {"gold": "12", "format": "answer_tag"}}])
    out = tmp_path / "j.jsonl"
    r = judge(c, "--verifier", "numeric", "--reference-field", "gold", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert [(x["judge"]["correct"], x["judge"]["format_ok"]) for x in rows(out)] == [(True, True), (True, False)]


@pytest.mark.parametrize("args,code,msg", [
    (["--verifier", "numeric"], 1, "c.jsonl:2: candidate has no reference answer in 'reference'"),
    (["--verifier", "numeric", "--reference-field", "gold"], 1, "c.jsonl:1: candidate has no reference answer in 'gold'"),
    (["--verifier", "nope"], 2, "nope"),
    (["--verifier", "numeric", "-m", "judge"], 2, "--judge-model does not apply with --verifier"),
    (["--verifier", "numeric", "--mode", "pairwise"], 2, "--mode does not apply with --verifier"),
    (["--verifier", "numeric", "--ray", "auto"], 2, "--ray does not apply with --verifier"),
    ([], 2, "judge needs a judge model (-m MODEL) or a verifier (--verifier KIND)"),
])
def test_mistakes_are_one_message_and_write_nothing(tmp_path, args, code, msg):
    c = write(tmp_path / "c.jsonl", [cand(0, "43"), {**cand(1, "44"), "reference": None}])
    r = judge(c, *args, "-o", str(tmp_path / "j.jsonl"))
    assert r.exit_code == code, r.output
    assert msg in r.output and "Traceback" not in r.output
    if "reference" in msg or "gold" in msg:
        assert "--reference-field" in r.output
    assert not list(tmp_path.glob("j.jsonl*"))


def test_outputs_are_guarded_like_the_llm_judge(tmp_path):
    c = write(tmp_path / "c.jsonl", [cand(0, "43")])
    r = judge(c, "--verifier", "numeric", "-o", c)
    assert r.exit_code == 2 and "Traceback" not in r.output
    other = tmp_path / "notes.jsonl"
    other.write_text('{"a": 1}\n')
    r = judge(c, "--verifier", "numeric", "-o", str(other))
    assert r.exit_code == 2 and other.read_text() == '{"a": 1}\n'
    out = tmp_path / "j.jsonl"
    assert judge(c, "--verifier", "numeric", "-o", str(out)).exit_code == 0
    first = out.read_text()
    assert judge(c, "--verifier", "numeric", "-o", str(out)).exit_code == 0   # a rerun writes the same
    assert out.read_text() == first


def test_a_judged_file_given_as_candidates_is_refused_not_rejudged(tmp_path):
    c = write(tmp_path / "c.jsonl", [cand(0, "43")])
    j = tmp_path / "j.jsonl"
    assert judge(c, "--verifier", "numeric", "-o", str(j)).exit_code == 0
    llm = write(tmp_path / "llm.jsonl", [{**cand(0, "43"), "judge": {"kind": "llm", "score": 4.0}}])
    for judged, kind in ((str(j), "verifier"), (llm, "llm")):
        r = judge(judged, "--verifier", "numeric", "-o", str(tmp_path / "again.jsonl"))
        assert r.exit_code == 1, r.output
        assert f":1: the candidate is already judged (judge.kind '{kind}')" in r.output
        assert "Traceback" not in r.output and not list(tmp_path.glob("again.jsonl*"))


def test_real_replies_of_the_embedded_model_get_their_hand_labels(tmp_path):
    """Replies SmolLM2-135M-Instruct gave to arithmetic/units prompts (vLLM, T 0.7 / 1.0), labelled by hand:
    the judged file carries the labels' verdicts and the summary their rates."""
    real = [json.loads(x) for x in REAL.read_text().splitlines()]
    ids = {r["instruction"]: f"p{i}" for i, r in enumerate(real)}
    c = write(tmp_path / "c.jsonl", [
        {"prompt_id": ids[r["instruction"]], "messages": [{"role": "user", "content": r["instruction"]}],
         "text": r["reply"], "temperature": r["temperature"], "sample_index": i, "reference": r["reference"],
         "fields": {"format": r["format"]}} for i, r in enumerate(real)])
    out = tmp_path / "j.jsonl"
    r = judge(c, "--verifier", "numeric", "-o", str(out))
    assert r.exit_code == 0, r.output
    got = [(x["judge"]["correct"], x["judge"]["format_ok"]) for x in rows(out)]
    assert got == [(x["label_correct"], x["label_format_ok"]) for x in real]
    s = json.load(open(str(out) + ".summary.json"))
    n, right = len(real), sum(x["label_correct"] for x in real)
    strict = sum(x["label_correct"] and x["label_format_ok"] for x in real)
    assert s["accuracy"] == {"n": n, "lenient": round(right / n, 4), "strict": round(strict / n, 4)} and 0 < right < n
    by_t = {t: sum(1 for x in real if str(x["temperature"]) == t) for t in s["accuracy_by_temperature"]}
    assert {t: a["n"] for t, a in s["accuracy_by_temperature"].items()} == by_t and sum(by_t.values()) == n


def test_a_recipe_judge_stage_with_a_verifier_needs_no_judge_model_and_calls_none(tmp_path):
    import yaml

    from dsforge.recipe import load_recipe
    from dsforge.run import Context, run_judge

    doc = {"name": "t", "run_dir": str(tmp_path / "run"), "inputs": [str(tmp_path / "p.jsonl")],
           "stages": [{"sample": {"n": 2}}, {"judge": {"verifier": "numeric"}}, {"pairs": {}}]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    recipe = load_recipe(str(tmp_path / "r.yaml"))   # no models.judge, no base_url: fine for a verifier
    stage = recipe.stages[1].judge
    c = write(tmp_path / "c.jsonl", [cand(0, "43"), cand(1, "31")])
    (tmp_path / "judge").mkdir()
    ctx = Context(recipe=recipe, run_dir=tmp_path, dir=tmp_path / "judge", outputs={"sample": {"path": c}},
                  manifest={}, echo=lambda m: None, log=lambda m: None)
    outputs, summary = run_judge(stage, ctx)
    assert summary["kind"] == "verifier" and summary["accuracy"]["lenient"] == 0.5 and summary["calls"] == 0
    assert [x["judge"]["correct"] for x in rows(outputs["path"])] == [True, False]
