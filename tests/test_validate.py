import json

from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.validate import REASONS, check_entry, format_report, validate_path


def write(tmp_path, name, rows):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(p)


def S(*m, **extra):
    return {"conversations": [{"from": f, "value": v} for f, v in m], **extra}


def test_inferred_sharegpt_counts_and_reasons(tmp_path):
    p = write(tmp_path, "a.jsonl", [S(("human", "q"), ("gpt", "a")), S(("human", "q2")),
                                    S(("gpt", "a"), ("human", "q")), S(("human", "q"), ("gpt", "a"))])
    r = validate_path(p)
    assert (r.rows, r.would_train, r.stage) == (4, 2, "sft")
    assert r.counts == {"message_count": 1, "role_order": 1, "duplicate_row": 1}
    assert r.examples["role_order"][0].line == 3
    assert "turn 1 has role \"gpt\"" in r.examples["role_order"][0].detail


def test_type_conflict_is_fatal_and_names_both_places(tmp_path):
    p = write(tmp_path, "a.jsonl", [{"instruction": "q", "input": "", "output": "a"},
                                    {"instruction": "q", "input": "", "output": ["a"]}])
    r = validate_path(p)
    assert r.fatal and r.would_train == 0
    d = r.examples["type_conflict"][0].detail
    assert "'output' is array here but string at" in d and ":1" in d


def test_kto_string_tag_dropped_not_trained(tmp_path):
    p = write(tmp_path, "k.jsonl", [S(("human", "q"), ("gpt", "a"), kto_tag="true"),
                                    S(("human", "q"), ("gpt", "b"), kto_tag="false")])
    r = validate_path(p, stage="kto", entry={"file_name": "k.jsonl", "formatting": "sharegpt",
                                             "columns": {"messages": "conversations", "kto_tag": "kto_tag"}})
    assert r.would_train == 0 and r.counts["kto_tag_type"] == 2


def test_chosen_equals_rejected_and_stage_mismatch(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "same"},
             "rejected": {"from": "gpt", "value": "same"}}]
    p = write(tmp_path, "r.jsonl", rows)
    r = validate_path(p)
    assert r.stage == "dpo" and r.would_train == 1 and r.counts["chosen_equals_rejected"] == 1
    r2 = validate_path(p, stage="sft")
    assert r2.fatal and "stage_mismatch" in r2.counts


def test_entry_typo_suggestions():
    fs = check_entry({"file_name": "a.json", "format": "sharegpt", "columns": {"mesages": "c"}, "ranking": "false"},
                     "sft", "x")
    details = " | ".join(f.detail for f in fs)
    assert "did you mean 'formatting'?" in details
    assert "did you mean 'columns.messages'" in details or "did you mean 'messages'" in details
    assert any(f.code == "ranking_not_bool" for f in fs)


def test_media_placeholder_mismatch_depends_on_the_template(tmp_path):
    # measured with LLaMA-Factory 0.9.5 (tests/lf_corpus.py media_*): a text-only template keeps placeholders
    # without media, but raises on any media file; a multimodal template raises on a count mismatch
    p = write(tmp_path, "m.jsonl", [S(("human", "<image><image>describe"), ("gpt", "a cat"), images=["a.png"])])
    r = validate_path(p)
    assert r.fatal and r.counts["media_unsupported"] == 1
    r = validate_path(p, template="llava")
    assert r.fatal and r.counts["media_count_crash"] == 1 and "llava" in format_report(r)


def test_every_reason_has_severity_and_fix():
    for code, (sev, what, fix) in REASONS.items():
        assert sev in ("fatal", "drop", "warn") and what and fix, code


def test_length_audit_flags_truncation(tmp_path, tiny_tokenizer):
    long = "hello world " * 60
    p = write(tmp_path, "l.jsonl", [S(("human", "q"), ("gpt", "a")), S(("human", "q"), ("gpt", long)),
                                    S(("human", long * 2), ("gpt", "a"))])
    res = CliRunner().invoke(cli, ["validate", p, "--tokenizer", tiny_tokenizer, "--cutoff-len", "64", "--json"])
    rep = json.loads(res.output)[0]
    assert rep["lengths"]["response_truncated"] == 1
    assert rep["lengths"]["prompt_too_long"] == 1
    assert rep["lengths"]["percentiles"]["response"]["max"] > 64


def test_length_audit_reads_each_file_once(tmp_path, tiny_tokenizer, monkeypatch):
    # the audit observes validate's single pass: turning it on opens the file no more often than without it
    import builtins

    from dsforge.validate import LengthOptions

    long = "hello world " * 60
    p = write(tmp_path, "l.jsonl", [S(("human", "q"), ("gpt", "a")), S(("human", "q"), ("gpt", long))])
    real_open, opened = builtins.open, []

    def counting_open(file, *a, **kw):
        if str(file) == p:
            opened.append(file)
        return real_open(file, *a, **kw)

    monkeypatch.setattr(builtins, "open", counting_open)
    plain = validate_path(p)
    without = len(opened)
    opened.clear()
    r = validate_path(p, lengths=LengthOptions(tiny_tokenizer, 64))
    assert without > 0 and len(opened) == without
    assert plain.lengths is None and r.lengths["rows"] == 2 and r.lengths["response_truncated"] == 1
    assert r.counts["response_truncated"] == 1 and r.examples["response_truncated"][0].line == 2
    fatal = write(tmp_path, "f.jsonl", [S(("human", "q"), ("gpt", long)), S(("human", 1), ("gpt", long))])
    r = validate_path(fatal, lengths=LengthOptions(tiny_tokenizer, 64))
    assert r.fatal and r.lengths is None and "response_truncated" not in r.counts   # nothing loads: no audit


# ---------------------------------------------------------------- CLI behaviour


def test_cli_exit_codes(tmp_path):
    good = write(tmp_path, "g.jsonl", [{"instruction": "q", "input": "", "output": "a"}])
    bad = write(tmp_path, "b.jsonl", [{"instruction": "q", "input": "", "output": "a"}, {"instruction": "q", "input": ""}])
    run = CliRunner().invoke
    assert run(cli, ["validate", good]).exit_code == 0
    r = run(cli, ["validate", bad])
    assert r.exit_code == 1 and "would train 1 of 2 rows" in r.output and "b.jsonl:2" in r.output
    r = run(cli, ["validate"])
    assert r.exit_code == 2 and "nothing to validate" in r.output
    r = run(cli, ["validate", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "no such file" in r.output and "Traceback" not in r.output


def test_cli_trailing_comma_message(tmp_path):
    p = tmp_path / "t.json"
    p.write_text('[{"instruction": "q", "input": "", "output": "a"},\n]')
    r = CliRunner().invoke(cli, ["validate", str(p)])
    assert r.exit_code == 1
    assert "trailing comma before ']' (line 2, column 1)" in r.output


def test_cli_dataset_info_all_entries(tmp_path):
    write(tmp_path, "a.jsonl", [{"instruction": "q", "input": "", "output": "a"}])
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "good": {"file_name": "a.jsonl"},
        "typo": {"file_name": "a.jsonl", "formating": "sharegpt"},
        "gone": {"file_name": "nope.jsonl"}}))
    r = CliRunner().invoke(cli, ["validate", "--dataset-info", str(tmp_path), "--json"])
    reps = {x["name"]: x for x in json.loads(r.output)}
    assert r.exit_code == 1
    assert reps["good"]["would_train"] == 1 and not reps["good"]["fatal"]
    assert reps["typo"]["fatal"] and "did you mean 'formatting'" in json.dumps(reps["typo"]["examples"])
    assert "file_missing" in reps["gone"]["counts"]


def test_cli_dataset_info_syntax_error(tmp_path):
    (tmp_path / "dataset_info.json").write_text('{"a": {"file_name": "x.json"},}')
    r = CliRunner().invoke(cli, ["validate", "--dataset-info", str(tmp_path)])
    assert r.exit_code == 1 and "trailing comma" in r.output and "Traceback" not in r.output
