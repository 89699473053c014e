"""dsforge review without a browser: the event log (fsync, undo, torn line), the judged records it
makes, modes, assignment, the CLI's server life (SIGTERM), `pairs --combine`, `--stats`, the judge's
slot bias and "not compared" counts, Label Studio / Argilla round trips."""

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.review import interop, stats
from dsforge.review.server import Session, make_app, open_session
from dsforge.review.store import events_path
from tests.review_data import write_candidates
from tests.test_review_browser import WAIT, start_server, stop_server


def session(tmp_path, mode="score", prompts=4, **kw) -> Session:
    src = write_candidates(tmp_path / "judged.jsonl", prompts=prompts)
    return open_session(src, str(tmp_path / "reviewed.jsonl"), annotator="alice", mode=mode, **kw)


def label_all(s: Session, annotator: str, values, n_items: int):
    """Label n items the way the page does (current item, display order); values(i, slot) -> value,
    slot = the candidate's sample_index in score/rank mode (display orders differ per annotator)."""
    for i in range(n_items):
        v = s.view(annotator)
        item = v["item"]
        if s.ds.mode == "pairwise":
            c = item["candidates"]
            verdict = values(i, 0)
            s.act({"annotator": annotator, "action": "label", "item": item["key"], "value": verdict,
                   "cand": c[1]["cid"] if verdict == "B" else c[0]["cid"], "first": c[0]["cid"], "seconds": 2})
            continue
        for c in item["candidates"]:
            s.act({"annotator": annotator, "action": "label", "item": item["key"], "cand": c["cid"],
                   "value": values(i, s.ds.by_cid[c["cid"]]["sample_index"]), "seconds": 1.5})


def records(s: Session) -> list[dict]:
    s.stop()
    with open(s.out) as f:
        return [json.loads(x) for x in f]


def test_score_mode_records_undo_and_reopen(tmp_path):
    s = session(tmp_path)
    label_all(s, "alice", lambda i, slot: 5 - slot, 2)
    assert s.view("alice")["done"] == 2
    s.act({"annotator": "alice", "action": "undo"})          # retracts the last score of item 2
    v = s.view("alice")
    assert v["done"] == 1 and v["item"]["index"] == 1         # item 2 is shown again
    recs = records(s)
    assert {r["prompt_id"] for r in recs} == {s.ds.items[0].prompt_id}
    j = recs[0]["judge"]
    assert j["kind"] == "human" and j["annotator"] == "alice" and j["mode"] == "score"
    assert sorted(r["judge"]["score"] for r in recs) == [3.0, 4.0, 5.0] and j["seconds"] == 4.5
    assert recs[0]["prior_judge"]["kind"] == "llm"
    from dsforge.candidates import load_judged
    from dsforge.records import Judgement

    assert load_judged(s.out) == recs and set(j) <= set(Judgement.model_fields)   # the typed record, every key listed
    evs = [json.loads(x) for x in open(events_path(s.out))]
    assert evs[0]["ev"] == "header" and evs[-1]["ev"] == "undo"
    # reopening continues where alice stopped: item 2, with two of its three answers scored
    s2 = open_session(s.ds.path, s.out, annotator="alice", mode="score")
    v2 = s2.view("alice")
    assert v2["item"]["index"] == 1 and sum(c["label"] is not None for c in v2["item"]["candidates"]) == 2


def test_torn_last_line_is_cut_on_reopen(tmp_path):
    s = session(tmp_path)
    label_all(s, "alice", lambda i, slot: 3, 1)
    s.stop()
    with open(events_path(s.out), "ab") as f:
        f.write(b'{"ev": "label", "id": "x", "annot')         # a crash mid-write
    s2 = open_session(s.ds.path, s.out, annotator="alice", mode="score")
    assert s2.log.torn_dropped and s2.view("alice")["done"] == 1
    label_all(s2, "alice", lambda i, slot: 2, 1)             # appends after the cut, file stays valid JSONL
    assert all(json.loads(x) for x in open(events_path(s.out)))
    assert s2.view("alice")["done"] == 2


def test_mode_mismatch_and_bad_actions_are_refused(tmp_path):
    from dsforge.errors import UsageError

    s = session(tmp_path)
    label_all(s, "alice", lambda i, slot: 3, 1)
    with pytest.raises(UsageError, match="score labels"):
        open_session(s.ds.path, s.out, annotator="alice", mode="rank")
    item = s.view("alice")["item"]
    for body in ({"action": "label", "value": 9}, {"action": "label", "value": "best"}, {"action": "fly"},
                 {"action": "label", "value": 3, "cand": "nope"}):
        with pytest.raises(UsageError):
            s.act({"annotator": "alice", "item": item["key"], "cand": item["candidates"][0]["cid"], **body})
    with pytest.raises(UsageError, match="annotator name"):
        s.act({"annotator": "../x", "action": "undo"})


def test_rank_and_flag(tmp_path):
    s = session(tmp_path, mode="rank", prompts=2)
    item = s.view("alice")["item"]
    c = item["candidates"]
    s.act({"annotator": "alice", "action": "flag", "item": item["key"], "cand": c[2]["cid"], "reason": "cut off"})
    s.act({"annotator": "alice", "action": "label", "item": item["key"], "cand": c[0]["cid"], "value": "best"})
    assert s.view("alice")["done"] == 1     # two usable answers left: the best implies the worst
    recs = {r["text"]: r["judge"] for r in records(s)}
    by_cid = {x["cid"]: x for x in c}
    text = {cid: s.ds.by_cid[cid]["text"] for cid in by_cid}
    assert recs[text[c[0]["cid"]]]["score"] == 1.0 and recs[text[c[1]["cid"]]]["score"] == 0.5
    flagged = recs[text[c[2]["cid"]]]
    assert flagged["score"] is None and flagged["error"] == "flagged_unusable" and flagged["flags"] == ["cut off"]


def test_pairwise_records_win_rates(tmp_path):
    s = session(tmp_path, mode="pairwise", prompts=1, max_pairs_per_prompt=3)
    assert len(s.ds.items) == 3
    label_all(s, "alice", lambda i, slot: ["A", "B", "tie"][i], 3)
    recs = records(s)
    assert sorted(r["judge"]["score"] for r in recs) == sorted(
        r["judge"]["score"] for r in recs) and len(recs) == 3
    games = [g for r in recs for lab in r["judge"]["labels"] for g in lab["games"]]
    assert len(games) == 6 and sum(g["result"] for g in games) == 3.0   # each game gives 1 point in total
    assert sum(g["shown_first"] for g in games) == 3


def test_assignment_with_overlap(tmp_path):
    s = session(tmp_path, prompts=40, assign=["alice", "bob"], overlap=0.25)
    a, b = s.assign["alice"], s.assign["bob"]
    assert a | b == {it.key for it in s.ds.items}
    assert 4 <= len(a & b) <= 18       # about a quarter of 40 get two annotators
    assert s.view("alice")["total"] == len(a)
    from dsforge.errors import UsageError

    with pytest.raises(UsageError, match="no assigned items"):
        s.view("carol")


def test_http_hardening(tmp_path):
    from starlette.testclient import TestClient

    s = session(tmp_path)
    c = TestClient(make_app(s), base_url="http://127.0.0.1:9")
    r = c.get("/")
    assert r.status_code == 200 and "script-src 'self'" in r.headers["content-security-policy"]
    assert c.post("/api/act", data={"annotator": "alice", "action": "undo"}).status_code == 415
    assert TestClient(make_app(s), base_url="http://evil.example").get("/api/state").status_code == 400
    assert c.get("/static/../store.py").status_code == 404
    assert c.get("/api/state", params={"annotator": "<x>"}).status_code == 400


def _post(url, body):
    req = urllib.request.Request(url + "api/act", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=WAIT))


def test_cli_server_stops_cleanly_on_sigterm_and_guards_outputs(tmp_path):
    src = write_candidates(tmp_path / "c.jsonl", prompts=3, judge=False)
    out = str(tmp_path / "reviewed.jsonl")
    proc, url = start_server(src, out, "--annotator", "alice")
    try:
        state = json.load(urllib.request.urlopen(url + "api/state?annotator=alice", timeout=WAIT))
        item = state["item"]
        for c in item["candidates"]:
            _post(url, {"annotator": "alice", "action": "label", "item": item["key"], "cand": c["cid"], "value": 4})
        # a second server on the same output is refused (exit 2), and -o = input too
        second = CliRunner().invoke(cli, ["review", src, "-o", out, "--port", "0"])
        assert second.exit_code == 2 and "another dsforge review is serving" in second.output
    finally:
        rest = stop_server(proc)
    assert proc.returncode == 0, rest
    assert "stopped: 3 decisions" in rest
    recs = [json.loads(x) for x in open(out)]
    assert len(recs) == 3 and {r["judge"]["score"] for r in recs} == {4.0}
    r = CliRunner().invoke(cli, ["review", src, "-o", src])
    assert r.exit_code == 2 and "is the input" in r.output
    other = tmp_path / "other.jsonl"
    other.write_text("{}\n")
    r = CliRunner().invoke(cli, ["review", src, "-o", str(other)])
    assert r.exit_code == 2 and "was not written by dsforge review" in r.output


def test_cli_port_in_use(tmp_path):
    import socket

    src = write_candidates(tmp_path / "c.jsonl", prompts=1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = CliRunner().invoke(cli, ["review", src, "-o", str(tmp_path / "r.jsonl"), "--port", str(port)])
    assert r.exit_code == 2 and "cannot listen" in r.output and "--port 0" in r.output


# ---------------------------------------------------------------- two annotators + an LLM judge


def two_annotators(tmp_path):
    """alice and bob score the same 6 prompts; bob disagrees on one answer of each of two prompts."""
    s = session(tmp_path, prompts=6)
    label_all(s, "alice", lambda i, slot: [5, 3, 1][slot], 6)
    label_all(s, "bob", lambda i, slot: [5, 3, 1][slot] if i >= 2 else [4, 3, 1][slot], 6)
    return s, records(s)


def test_stats_two_annotators_and_judge(tmp_path):
    s, recs = two_annotators(tmp_path)
    out = CliRunner().invoke(cli, ["review", "--stats", s.out, s.ds.path, "--json"])
    assert out.exit_code == 0, out.output
    st = json.loads(out.output)
    ia = st["inter_annotator"]
    assert ia["annotators"] == ["alice", "bob"] and ia["units_labelled_twice"] == 18
    p = ia["pairs"][0]
    assert p["units"] == 18 and p["agreement"] == round(16 / 18, 4)
    # display orders differ per annotator, so compare against the labels themselves
    a = [lab["score"] for r in recs for lab in r["judge"]["labels"] if lab["annotator"] == "alice"]
    b = [lab["score"] for r in recs for lab in r["judge"]["labels"] if lab["annotator"] == "bob"]
    assert p["cohen_kappa"] == stats.cohen_kappa(a, b) and 0.5 < p["cohen_kappa"] < 1
    assert ia["krippendorff_alpha"] is not None and 0.5 < ia["krippendorff_alpha"] < 1
    judges = {j["run"]: j for j in st["judges"]}
    assert len(judges) == 1   # the judged file; the reviewed file's prior_judge (same scores) is not counted twice
    j = next(iter(judges.values()))
    assert j["pairs_compared"] == 18 and j["accuracy"] is not None and j["cohen_kappa"] is not None
    assert set(st["time"]) == {"alice", "bob"} and st["time"]["alice"]["median_seconds"] == 4.5
    text = CliRunner().invoke(cli, ["review", "--stats", s.out, s.ds.path]).output
    assert "alice vs bob: 18 shared units" in text and "Krippendorff's alpha (ordinal)" in text


def test_cohen_kappa_textbook():
    # 50 units: 20 yes/yes, 15 no/no, 5 yes/no, 10 no/yes -> po 0.7, pe 0.5 -> kappa 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert stats.cohen_kappa(a, b) == 0.4
    assert stats.cohen_kappa(["x", "x"], ["x", "x"]) is None


@pytest.mark.parametrize("policy", ["human-overrides", "agree-only"])
def test_pairs_combine_human_and_judge(tmp_path, policy):
    s, recs = two_annotators(tmp_path)
    out = tmp_path / f"pairs-{policy}.jsonl"
    r = CliRunner().invoke(cli, ["pairs", s.ds.path, s.out, "--combine", policy, "-o", str(out)])
    assert r.exit_code in (0, 1), r.output
    summary = json.loads(open(str(out) + ".summary.json").read()) if out.exists() else None
    assert f"combined ({policy})" in r.output
    if policy == "human-overrides":
        assert summary["combine"]["prompts"] == {"from_human": 6}
        side = [json.loads(x) for x in open(str(out) + ".sidecar.jsonl")]
        assert len(side) == 6 and all(x["judge"]["kind"] == "human" for x in side)
    else:
        assert "scored_by_both 6" in r.output
        assert "sources_disagree" in r.output or (summary and summary["pairs"] > 0)
    r2 = CliRunner().invoke(cli, ["pairs", s.ds.path, s.out, "-o", str(tmp_path / "x.jsonl")])
    assert r2.exit_code == 2 and "--combine" in r2.output


def test_judge_pairwise_reports_first_slot_and_not_compared(tmp_path):
    from dsforge.engines import Completion, Engine, EngineOptions, Result
    from dsforge.judge import JudgeConfig, format_summary, judge_file
    from dsforge.rubrics import BUILTIN

    class AlwaysA(Engine):
        name = "always-a"

        def __init__(self):
            super().__init__("judge", EngineOptions())

        def generate(self, requests):
            for req in requests:
                yield Result(request=req, completions=[Completion(text='{"rationale": "r", "winner": "A"}',
                                                                  finish_reason="stop")] * req.params.n,
                             meta={"usage": {"prompt_tokens": 1, "completion_tokens": 1}})

    src = write_candidates(tmp_path / "c.jsonl", prompts=3, judge=False)
    cfg = JudgeConfig(judge_model="j", rubric=BUILTIN["pairwise"](), max_pairs_per_prompt=1)
    s = judge_file(src, str(tmp_path / "j.jsonl"), cfg, engine=AlwaysA(), progress=False, cache_path=None,
                   log=lambda m: None)
    assert s["first_slot_rate"] == 1.0 and s["swap_consistency"] == 0.0
    assert s["slot_picks"] == {"first": 6, "second": 0, "tie": 0}
    assert s["not_compared"] == 3 and s["failed"] == 0     # one answer per prompt left out of the one pair
    rows = [json.loads(x) for x in open(tmp_path / "j.jsonl")]
    assert all(r["judge"]["kind"] == "llm" for r in rows)
    text = format_summary(s)
    assert "first-slot pick rate 100.0%" in text and "3 candidates not compared" in text


# ---------------------------------------------------------------- Label Studio / Argilla files


@pytest.mark.parametrize("fmt", ["labelstudio", "argilla"])
def test_export_import_round_trip(tmp_path, fmt):
    src = write_candidates(tmp_path / "c.jsonl", prompts=2, judge=True)
    out = str(tmp_path / "tasks.json")
    r = CliRunner().invoke(cli, ["review", src, "--export", fmt, "-o", out])
    assert r.exit_code == 0, r.output
    tasks = json.load(open(out))
    assert len(tasks) == 6
    for i, t in enumerate(tasks):   # two people label everything elsewhere
        if fmt == "labelstudio":
            assert t["data"]["answer"] and os.path.exists(out + ".labeling-config.xml")
            t["annotations"] = [{"completed_by": u, "lead_time": 3.0, "was_cancelled": False,
                                 "result": [{"from_name": "score", "to_name": "answer", "type": "rating",
                                             "value": {"rating": 1 + (i + u) % 5}}]} for u in (1, 2)]
        else:
            assert t["fields"]["answer"] and t["suggestions"]["score"]["agent"] == "llm-judge"
            t["responses"] = {"score": [{"value": 1 + (i + u) % 5, "user_id": f"u{u}"} for u in (1, 2)]}
    json.dump(tasks, open(out, "w"))
    reviewed = str(tmp_path / "reviewed.jsonl")
    r = CliRunner().invoke(cli, ["review", src, "--import", out, "-o", reviewed])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in open(reviewed)]
    assert len(recs) == 6 and all(r["judge"]["annotators"] == 2 for r in recs)
    assert {lab["annotator"][:3] for r in recs for lab in r["judge"]["labels"]} == {"ls-" if fmt == "labelstudio"
                                                                                    else "arg"}
    st = stats.compute([reviewed])
    assert st["inter_annotator"]["pairs"][0]["units"] == 6


def test_report_shows_review_stats(tmp_path):
    s, _ = two_annotators(tmp_path)
    html_out = tmp_path / "report.html"
    r = CliRunner().invoke(cli, ["report", s.out, "--out", str(html_out)])
    assert r.exit_code == 0, r.output
    page = html_out.read_text()
    assert "Human review: agreement and time" in page and "alice vs bob: 18 shared units" in page


@pytest.mark.parametrize("labels", [
    [1], "just a string", [{"data": [1, 2], "annotations": [{"result": []}]}],
    [{"data": {"item": "x"}, "annotations": [{"result": [5]}]}],
    [{"fields": ["not", "an", "object"], "responses": {"score": [{"value": 3, "user_id": "u"}]}}],
    [{"fields": {"answer": "a"}, "responses": {"score": [7]}}],
])
def test_import_of_labels_with_an_unexpected_shape_is_one_error_and_writes_nothing(tmp_path, labels):
    src = write_candidates(tmp_path / "c.jsonl", prompts=2, judge=True)
    bad = tmp_path / "labels.json"
    bad.write_text(json.dumps(labels))
    reviewed = tmp_path / "reviewed.jsonl"
    r = CliRunner().invoke(cli, ["review", src, "--import", str(bad), "-o", str(reviewed)])
    assert r.exit_code == 1, r.output
    assert "labels.json" in r.output and "internal error" not in r.output.lower() and "Traceback" not in r.output
    assert not reviewed.exists() and not list(tmp_path.glob("reviewed*events*"))
