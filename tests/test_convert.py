import json
import os

import pytest
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.convert import ConvertOptions, convert
from dsforge.errors import InputError
from dsforge.validate import validate_path


def lines(p):
    return [json.loads(x) for x in open(p, encoding="utf-8")]


@pytest.fixture
def qa_csv(tmp_path):
    p = tmp_path / "qa.csv"
    rows = ["question,answer"] + [f"q{i},a{i}" for i in range(200)] + ["q5,a5", "q7,a7"]
    p.write_text("\n".join(rows) + "\n")
    return str(p)


def test_csv_to_sharegpt_with_dedup_and_grouped_split(tmp_path, qa_csv):
    out, ev = str(tmp_path / "sft.jsonl"), str(tmp_path / "eval.jsonl")
    s = convert([qa_csv], out, ConvertOptions(to="sft", fmt="sharegpt", mapping={"instruction": "question",
                "output": "answer"}, eval_ratio=0.2, eval_out=ev, seed=1))
    assert s.read == 202 and s.skipped["duplicate"] == 2
    assert s.written + s.eval_written == 200 and 20 < s.eval_written < 60
    train_q = {r["conversations"][0]["value"] for r in lines(out)}
    eval_q = {r["conversations"][0]["value"] for r in lines(ev)}
    assert not train_q & eval_q
    assert validate_path(out).ok and validate_path(ev).ok


def test_split_groups_rows_sharing_a_prompt(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"instruction": f"q{i % 10}", "output": f"a{i}"}) + "\n" for i in range(100)))
    out, ev = str(tmp_path / "t.jsonl"), str(tmp_path / "e.jsonl")
    convert([str(src)], out, ConvertOptions(to="sft", fmt="alpaca", eval_ratio=0.3, eval_out=ev, seed=3))
    assert not {r["instruction"] for r in lines(out)} & {r["instruction"] for r in lines(ev)}


def test_shuffle_is_seeded_and_keeps_every_row(tmp_path, qa_csv):
    outs = []
    for i, seed in enumerate((1, 1, 2)):
        o = str(tmp_path / f"s{i}.jsonl")
        convert([qa_csv], o, ConvertOptions(to="sft", mapping={"instruction": "question", "output": "answer"},
                                            shuffle=True, seed=seed))
        outs.append([r["conversations"][0]["value"] for r in lines(o)])
    assert outs[0] == outs[1] != outs[2]
    assert sorted(outs[0]) == sorted(outs[2]) and len(outs[0]) == 200


def test_text_to_pt_chunks_with_overlap(tmp_path):
    d = tmp_path / "docs"
    d.mkdir()
    (d / "a.md").write_text("word " * 300)
    (d / "b.txt").write_text("short\n\nsecond paragraph here\n")
    out = str(tmp_path / "pt.json")
    s = convert([str(d)], out, ConvertOptions(to="pt", chunk_chars=200, overlap=40, min_chars=10))
    rows = json.load(open(out))
    assert all(len(r["text"]) <= 200 for r in rows) and s.skipped.get("too_short", 0) == 0
    assert any("second paragraph" in r["text"] for r in rows)
    r = validate_path(out)
    assert r.stage == "pt" and r.ok


def test_token_chunking(tmp_path, tiny_tokenizer):
    (tmp_path / "a.txt").write_text(" ".join(f"doc{i} lorem{i % 7} ipsum {i * 13}" for i in range(60)))
    out = str(tmp_path / "pt.jsonl")
    convert([str(tmp_path / "a.txt")], out, ConvertOptions(to="pt", chunk_tokens=32, overlap=8, tokenizer=tiny_tokenizer))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer)
    lens = [len(tok(r["text"], add_special_tokens=False)["input_ids"]) for r in lines(out)]
    assert len(lens) > 3 and max(lens) <= 33


def test_csv_cells_stay_text(tmp_path):
    src = tmp_path / "ids.csv"
    src.write_text('question,answer\n"agent 007?",007\n')
    out = str(tmp_path / "o.jsonl")
    convert([str(src)], out, ConvertOptions(to="sft", fmt="alpaca", mapping={"instruction": "question", "output": "answer"}))
    assert lines(out)[0]["output"] == "007"


def test_parquet_and_hf_dataset_inputs(tmp_path):
    import datasets
    import polars as pl

    pl.DataFrame({"q": ["a", "b"], "r": ["x", "y"]}).write_parquet(tmp_path / "t.parquet")
    datasets.Dataset.from_dict({"q": ["c"], "r": ["z"]}).save_to_disk(str(tmp_path / "hf"))
    out = str(tmp_path / "o.jsonl")
    s = convert([str(tmp_path / "t.parquet"), str(tmp_path / "hf")], out,
                ConvertOptions(to="sft", fmt="alpaca", mapping={"instruction": "q", "output": "r"}))
    assert s.written == 3 and [r["output"] for r in lines(out)] == ["x", "y", "z"]


def test_ranking_and_kto_targets(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"prompt": "q", "good": "a", "bad": "b", "ok": "yes"}) + "\n")
    out = str(tmp_path / "r.jsonl")
    convert([str(src)], out, ConvertOptions(to="ranking", mapping={"instruction": "prompt", "chosen": "good",
                                                                   "rejected": "bad"}))
    assert validate_path(out).stage == "dpo" and validate_path(out).ok
    out2 = str(tmp_path / "k.jsonl")
    convert([str(src)], out2, ConvertOptions(to="kto", fmt="alpaca", mapping={"instruction": "prompt", "output": "good",
                                                                              "kto_tag": "ok"}))
    assert lines(out2)[0]["kto_tag"] is True and validate_path(out2).stage == "kto"


def test_bad_row_names_file_line_and_leaves_old_output(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"instruction": "q", "output": "a"}) + "\n" + json.dumps({"instruction": "q2"}) + "\n")
    out = tmp_path / "o.jsonl"
    convert([str(src)], str(out), ConvertOptions(to="sft", skip_bad=True))   # an earlier good output of convert
    precious = out.read_text()
    with pytest.raises(InputError) as e:
        convert([str(src)], str(out), ConvertOptions(to="sft"))
    assert f"{src}:2" in str(e.value) and "--skip-bad" in str(e.value)
    assert out.read_text() == precious
    assert sorted(os.listdir(tmp_path)) == ["in.jsonl", "o.jsonl"]
    s = convert([str(src)], str(out), ConvertOptions(to="sft", skip_bad=True))
    assert s.written == 1 and s.skipped == {"bad_row:output": 1}


def test_cli_convert_usage_errors(tmp_path):
    r = CliRunner().invoke(cli, ["convert", "x.csv", "--to", "sft", "-o", str(tmp_path / "o.jsonl"), "--map", "bad"])
    assert r.exit_code == 2 and "DEST=SOURCE" in r.output
    r = CliRunner().invoke(cli, ["convert", str(tmp_path / "nope.csv"), "--to", "sft", "-o", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 2 and "no such file" in r.output
    r = CliRunner().invoke(cli, ["convert", "a.txt", "--to", "pt", "--chunk-tokens", "5", "-o", "o.jsonl"])
    assert r.exit_code == 2 and "--tokenizer" in r.output
