import json

import pytest

from dsforge import io as dio
from dsforge.errors import InputError


def rows(path, **kw):
    problems = []
    out = list(dio.iter_json_file(str(path), problems))
    return out, problems


def test_json_array_lines_are_reported(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('[\n  {"a": 1},\n\n  {"a": 2}\n]\n')
    out, problems = rows(p)
    assert [ln for ln, _ in out] == [2, 4] and not problems


def test_trailing_comma_is_named(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('[\n{"a": 1},\n{"a": 2},\n]')
    out, problems = rows(p)
    assert len(out) == 2
    assert problems[0].reason == "trailing comma before ']'" and problems[0].line == 4


def test_trailing_comma_inside_object(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"a": 1}\n{"a": 1,}\n')
    _, problems = rows(p)
    assert problems[0].line == 2 and "trailing comma before '}'" in problems[0].reason


def test_truncated_last_line(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"a": 1}\n{"a": "unfinis')
    out, problems = rows(p)
    assert len(out) == 1 and problems[0].line == 2 and "truncated" in problems[0].reason


def test_non_utf8_reports_byte_offset(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"a": "x"}\n{"a": "\xc4\xe3"}\n')
    _, problems = rows(p)
    assert problems[0].code == "encoding" and "byte offset 18" in problems[0].reason and problems[0].line == 2


def test_non_utf8_in_json_array(tmp_path):
    p = tmp_path / "a.json"
    p.write_bytes(b'[{"a": "x"},\n{"a": "\xff"}]')
    _, problems = rows(p)
    assert problems and problems[0].code == "encoding" and problems[0].line == 2


def test_duplicate_key(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"a": 1, "a": 2}\n')
    _, problems = rows(p)
    assert problems[0].code == "duplicate_key" and "'a'" in problems[0].reason


def test_large_elements_span_buffer_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(dio.jsonfiles, "_CHUNK", 64)
    data = [{"text": "x" * 500, "i": i} for i in range(20)]
    p = tmp_path / "a.json"
    p.write_text(json.dumps(data, indent=1))
    out, problems = rows(p)
    assert not problems and [r["i"] for _, r in out] == list(range(20))
    assert out[1][0] == 6  # indent=1 puts each object over 4 lines after the opening bracket


def test_jsonl_in_a_json_file_is_read_as_jsonl(tmp_path):
    p = tmp_path / "a.json"
    p.write_text('{"a": 1}\n{"a": 2}\n')
    out, problems = rows(p)
    assert [r for _, r in out] == [{"a": 1}, {"a": 2}] and not problems


def test_strict_mode_raises_with_location(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"a": 1}\n{"a" 1}\n')
    with pytest.raises(InputError) as e:
        list(dio.iter_jsonl(str(p)))
    assert f"{p}:2" in str(e.value)


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    p = tmp_path / "out.jsonl"
    p.write_text("good\n")
    with pytest.raises(RuntimeError):
        with dio.atomic_write(p) as f:
            f.write("half")
            raise RuntimeError("boom")
    assert p.read_text() == "good\n"
    assert [x.name for x in tmp_path.iterdir()] == ["out.jsonl"]


def test_text_paragraph_split(tmp_path):
    p = tmp_path / "a.md"
    p.write_text("\ufeffpara one\nline two\n\n\npara two\n")
    assert list(dio.iter_text_documents(str(p), "paragraph")) == [(1, "para one\nline two"), (5, "para two")]


def test_expand_inputs_dirs_and_globs(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.txt").write_text("x")
    (tmp_path / "d" / "a.md").write_text("x")
    (tmp_path / "d" / "skip.bin").write_text("x")
    got = dio.expand_inputs([str(tmp_path / "d")], dio.TEXT_EXTS)
    assert [p.split("/")[-1] for p in got] == ["a.md", "b.txt"]
    assert dio.expand_inputs([str(tmp_path / "d" / "*.md")]) == [str(tmp_path / "d" / "a.md")]
