"""dsforge.candidates: the one reader/writer of the records between stages, and the dataset_info entry
built once (pairs' summary == what register writes)."""

import json

import pytest

from dsforge import candidates as cands
from dsforge.errors import InputError, UsageError
from dsforge.pairs import PairConfig, build_pairs
from dsforge.records import Candidate, JudgedCandidate, Judgement
from dsforge.register import register


def write(path, rows, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)
    return str(path)


def cand(pid, text, score=None, **extra):
    row = {"prompt_id": pid, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": pid}],
           "text": text, "temperature": 1.0, "sample_index": 0, "truncated": False, **extra}
    if score is not None:
        row["judge"] = {"kind": "verifier", "verifier": "numeric", "score": score, "correct": bool(score),
                        "format_ok": True, "answer": text}
    return row


def test_readers_name_file_line_and_field(tmp_path):
    good = cand("p1", "a")
    f = write(tmp_path / "c.jsonl", [good, {**good, "text": 5}])
    with pytest.raises(InputError) as err:
        cands.load_candidates(f)
    assert err.value.line == 2 and "field 'text'" in err.value.message
    f = write(tmp_path / "d.jsonl", [good, {k: v for k, v in good.items() if k != "messages"}])
    with pytest.raises(InputError, match="has no 'messages'") as err:
        cands.load_candidates(f, reader="review")
    assert err.value.line == 2 and "review" in err.value.hint
    f = write(tmp_path / "j.jsonl", [cand("p1", "a", 1), good])
    with pytest.raises(InputError, match="no 'judge' field") as err:
        cands.load_judged(f)
    assert err.value.line == 2
    bad_kind = cand("p1", "a", 1)
    bad_kind["judge"]["kind"] = "robot"
    with pytest.raises(InputError, match="judge.kind") as err:
        cands.load_judged(write(tmp_path / "k.jsonl", [bad_kind]))
    with pytest.raises(UsageError, match="no candidates"):
        cands.load_candidates(write(tmp_path / "e.jsonl", []))


def test_torn_tail_is_skipped_and_detected(tmp_path):
    f = write(tmp_path / "c.jsonl", [cand("p1", "a")], tail='{"prompt_id": "p2", "te')
    assert cands.ends_torn(f) and [line for line, _ in cands.iter_rows(f)] == [1]
    assert len(cands.load_candidates(f)) == 1
    assert not cands.ends_torn(write(tmp_path / "d.jsonl", [cand("p1", "a")]))
    (tmp_path / "x.jsonl").write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(InputError, match="not UTF-8"):
        list(cands.iter_rows(str(tmp_path / "x.jsonl")))


def test_written_rows_round_trip_byte_for_byte(tmp_path):
    rows = [cand("p1", "é ✓", 1, reference="3", fields={"format": "number"}), cand("p1", "b", 0)]
    f = tmp_path / "j.jsonl"
    with open(f, "w", encoding="utf-8") as fh:
        assert cands.write_rows(fh, rows) == 2
    data = f.read_bytes()
    assert "é ✓".encode() in data   # not ASCII-escaped
    back = cands.load_judged(str(f))
    assert back == rows and "".join(map(cands.dumps, back)).encode() == data
    for r in back:
        JudgedCandidate.model_validate(r)
        Candidate.model_validate(r)


@pytest.mark.parametrize("fmt", ["sharegpt", "alpaca"])
def test_pairs_summary_entry_is_the_entry_register_writes(tmp_path, fmt):
    rows = [cand(f"p{i}", t, s) for i in range(3) for t, s in (("right", 1), ("wrong", 0))]
    judged = write(tmp_path / "judged.jsonl", rows)
    out, kto = str(tmp_path / "pairs.jsonl"), str(tmp_path / "kto.jsonl")
    s = build_pairs(judged, out, PairConfig(fmt=fmt, kto_threshold=1.0), kto_out=kto)
    assert s["pairs"] == 3 and s["dataset_info_entry"]["ranking"] is True
    reg = register(out, "pairs", str(tmp_path / "data"))
    assert {k: v for k, v in reg.entry.items() if k != "file_name"} == s["dataset_info_entry"]
    reg = register(kto, "kto", str(tmp_path / "data"))
    assert {k: v for k, v in reg.entry.items() if k != "file_name"} == s["kto"]["dataset_info_entry"]


def test_stage_summaries_validate_against_their_models(tmp_path):
    from dsforge import summaries

    rows = [cand(f"p{i}", t, s) for i in range(3) for t, s in (("right", 1), ("wrong", 0))]
    out = str(tmp_path / "pairs.jsonl")
    s = build_pairs(write(tmp_path / "judged.jsonl", rows), out, PairConfig())
    summaries.check("pairs", s)
    summaries.check("pairs", json.loads(open(out + ".summary.json").read()))
    with pytest.raises(Exception, match="pairs"):
        summaries.check("pairs", {k: v for k, v in s.items() if k != "pairs"})


def test_one_candidate_walks_from_candidates_to_a_registered_pairs_file(tmp_path):
    """Candidates carrying a reference -> judge --verifier -> pairs -> register -> report, every file read
    through dsforge.candidates and every summary valid against dsforge.summaries (no stage special-cases
    the verifier)."""
    from click.testing import CliRunner

    from dsforge import summaries
    from dsforge.cli import cli

    rows = [cand(f"p{i}", t, reference=str(40 + i), fields={"format": "number"})
            for i in range(3) for t in (str(40 + i), "29 + 14 = 31")]
    c = write(tmp_path / "c.jsonl", rows)
    assert all(r["reference"] for r in cands.load_candidates(c))
    j, p = str(tmp_path / "j.jsonl"), str(tmp_path / "pairs.jsonl")
    r = CliRunner().invoke(cli, ["judge", c, "--verifier", "numeric", "-o", j])
    assert r.exit_code == 0, r.output
    judged = cands.load_judged(j)
    assert [x["judge"]["correct"] for x in judged] == [True, False] * 3 and judged[0]["reference"] == "40"
    assert all(set(x["judge"]) <= set(Judgement.model_fields) for x in judged)   # every judge key is listed
    summaries.check("judge", json.loads(open(j + ".summary.json").read()))
    r = CliRunner().invoke(cli, ["pairs", j, "-o", p])
    assert r.exit_code == 0, r.output
    s = summaries.check("pairs", json.loads(open(p + ".summary.json").read()))
    assert s["pairs"] == 3
    reg = register(p, "walk", str(tmp_path / "data"))
    assert reg.report.would_train == 3
    r = CliRunner().invoke(cli, ["report", j, "-o", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "r.html").read_text()
    assert "Verifier accuracy per temperature" in page and "T=1.0: 50% lenient, 50% strict of 6" in page
