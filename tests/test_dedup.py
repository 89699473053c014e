"""Near-duplicate removal: planted clusters found exactly, every row kind read, guards, convert --dedup near."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.dedup import DedupOptions, Shingling, Signer, find_clusters, row_texts

WORDS = [f"w{i}" for i in range(3000)]


def doc(rng: random.Random, n: int = 60) -> list[str]:
    return [rng.choice(WORDS) for _ in range(n)]


def planted(seed: int = 0, sizes=(1, 2, 3, 1, 4, 1, 2)) -> tuple[list[str], list[int]]:
    """Texts and the expected representative of each: cluster members differ from the first by
    one word at the end (Jaccard ~0.97) and follow it at random later positions."""
    rng = random.Random(seed)
    slots: list[tuple[int, list[str]]] = []
    for c, size in enumerate(sizes):
        base = doc(rng)
        slots.append((c, base))
        for _ in range(size - 1):
            slots.append((c, base[:-1] + [f"variant{rng.random()}"]))
    rng.shuffle(slots)
    first: dict[int, int] = {}
    expect = []
    for i, (c, _) in enumerate(slots):
        expect.append(first.setdefault(c, i))
    return [" ".join(w) for _, w in slots], expect


def test_planted_clusters_found_exactly():
    texts, expect = planted()
    cl = find_clusters(texts, Signer(Shingling.parse("word:3"), 0.8))
    assert cl.rep.tolist() == expect
    assert dict(cl.sizes) == {2: 2, 3: 1, 4: 1}


def test_below_threshold_and_empty_rows_stay_apart():
    rng = random.Random(1)
    a = doc(rng)
    b = a[:30] + doc(rng, 30)            # Jaccard ~0.3
    cl = find_clusters([" ".join(a), " ".join(b), "", "  ", "!!"], Signer(Shingling.parse("word:3"), 0.8))
    assert cl.rep.tolist() == [0, 1, 2, 3, 4]


def test_char_shingles_catch_small_edits():
    tail = " and the sun shines warmly over the green hills of the quiet valley below"
    texts = ["The colour of the sky is blue on a clear day" + tail, "The color of the sky is blue on a clear day" + tail,
             "Completely different sentence here" + tail[:20]]
    cl = find_clusters(texts, Signer(Shingling.parse("char:5"), 0.8))
    assert cl.rep.tolist() == [0, 0, 2]


@pytest.mark.parametrize("spec", ["word", "word:0", "char:x", "line:3", "word:100", ""])
def test_bad_shingle_is_a_usage_error(tmp_path, spec):
    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "x"}\n')
    r = CliRunner().invoke(cli, ["dedup", str(f), "-o", str(tmp_path / "o.jsonl"), "--shingle", spec])
    assert r.exit_code == 2, r.output
    assert "--shingle" in r.output and "Traceback" not in r.output


ROWS = {
    "pt": lambda t, a: {"text": f"{t} {a}"},
    "alpaca": lambda t, a: {"instruction": t, "input": "", "output": a},
    "sharegpt": lambda t, a: {"conversations": [{"from": "human", "value": t}, {"from": "gpt", "value": a}]},
    "openai": lambda t, a: {"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": a}]},
    "ranking": lambda t, a: {"conversations": [{"from": "human", "value": t}],
                             "chosen": {"from": "gpt", "value": a}, "rejected": {"from": "gpt", "value": "no"}},
    "kto": lambda t, a: {"instruction": t, "output": a, "kto_tag": True},
    "candidates": lambda t, a: {"prompt_id": "p", "messages": [{"role": "user", "content": t}], "text": a,
                                "temperature": 0.7},
}


@pytest.mark.parametrize("kind", sorted(ROWS))
def test_dedup_command_every_kind(tmp_path, kind):
    texts, expect = planted(seed=3)
    make = ROWS[kind]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(make(t, "the same answer for all")) + "\n" for t in texts))
    out = tmp_path / "out.jsonl"
    r = CliRunner().invoke(cli, ["dedup", str(src), "-o", str(out), "--on", "prompt"])
    assert r.exit_code == 0, r.output
    kept = [json.loads(x) for x in out.read_text().splitlines()]
    want = [make(t, "the same answer for all") for i, t in enumerate(texts) if expect[i] == i]
    assert kept == want
    rep = json.loads((tmp_path / "out.jsonl.dedup.json").read_text())
    assert rep["kind"] == "dedup" and rep["rows"] == len(texts) and rep["dropped"] == len(texts) - len(want)
    assert rep["histogram"] == {"2": 2, "3": 1, "4": 1}
    ex = rep["examples"][0]
    assert ex["kept"].startswith(f"{src}:") and all(d.startswith(f"{src}:") for d in ex["dropped"])
    line = int(ex["kept"].rsplit(":", 1)[1])
    assert expect[line - 1] == line - 1   # the kept row is the first of its cluster


def test_on_prompt_vs_all():
    row = {"instruction": "same prompt words here for the test of identity", "output": "answer one"}
    other = {**row, "output": "a completely different and much longer answer text that dominates"}
    assert row_texts(row)[0] == row_texts(other)[0]
    s = Signer(Shingling.parse("word:3"), 0.8)
    from dsforge.dedup import identity_text
    assert find_clusters([identity_text(r, "prompt") for r in (row, other)], s).rep.tolist() == [0, 0]
    assert find_clusters([identity_text(r, "all") for r in (row, other)], s).rep.tolist() == [0, 1]


def test_guards_input_and_foreign_output(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "a b c d"}\n{"text": "a b c d"}\n')
    other = tmp_path / "mine.jsonl"
    other.write_text('{"text": "precious"}\n')
    r = CliRunner().invoke(cli, ["dedup", str(src), "-o", str(src)])
    assert r.exit_code == 2 and "would destroy the input" in r.output
    r = CliRunner().invoke(cli, ["dedup", str(src), "-o", str(other)])
    assert r.exit_code == 2 and "not replacing it" in r.output
    assert other.read_text() == '{"text": "precious"}\n'
    out = tmp_path / "o.json"
    assert CliRunner().invoke(cli, ["dedup", str(src), "-o", str(out)]).exit_code == 0
    assert json.loads(out.read_text()) == [{"text": "a b c d"}]
    r = CliRunner().invoke(cli, ["dedup", str(src), "-o", str(out)])   # its own earlier output: replaced
    assert r.exit_code == 0, r.output


def test_dedup_options_checked():
    with pytest.raises(Exception, match="--on"):
        DedupOptions(on="answer").check()


# ---------------------------------------------------------------- convert --dedup near / --split-group near


def near_prompt_rows(n_clusters: int = 40, size: int = 3) -> list[dict]:
    rng = random.Random(7)
    rows = []
    for c in range(n_clusters):
        base = doc(rng, 40)
        for m in range(size):
            words = base if m == 0 else base[:-1] + [f"edit{c}x{m}"]
            rows.append({"instruction": " ".join(words), "output": f"answer {c} {m} {rng.random()}"})
    return rows


def _sides(train, ev) -> dict[str, set[str]]:
    side: dict[str, set[str]] = {}
    for name, path in (("train", train), ("eval", ev)):
        for line in path.read_text().splitlines():
            cluster = json.loads(line)["output"].split()[1]
            side.setdefault(cluster, set()).add(name)
    return side


@pytest.mark.parametrize("args, straddle", [([], True), (["--split-group", "near"], False),
                                            (["--dedup", "near", "--dedup-on", "prompt"], False)])
def test_convert_split_groups_near_duplicate_prompts(tmp_path, args, straddle):
    src = tmp_path / "raw.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in near_prompt_rows()))
    train, ev = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    r = CliRunner().invoke(cli, ["convert", str(src), "--to", "sft", "--format", "alpaca", "-o", str(train), "--eval-ratio", "0.5",
                                 "--eval-out", str(ev), *args])
    assert r.exit_code == 0, r.output
    sides = _sides(train, ev)
    assert any(len(s) == 2 for s in sides.values()) is straddle
    if "--dedup" in args:   # near-duplicate prompts dropped: one row per cluster remains
        assert len(train.read_text().splitlines()) + len(ev.read_text().splitlines()) == 40
        assert "near_duplicate 80" in r.output


def test_convert_dedup_near_report_and_flags(tmp_path):
    src = tmp_path / "raw.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in near_prompt_rows(5)))
    out = tmp_path / "o.jsonl"
    r = CliRunner().invoke(cli, ["convert", str(src), "--to", "sft", "--format", "alpaca", "-o", str(out), "--dedup", "near",
                                 "--dedup-on", "prompt", "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output[r.output.index("{"):])
    assert s["skipped"] == {"near_duplicate": 10} and s["near_dedup"]["histogram"] == {"3": 5}
    assert s["near_dedup"]["examples"][0] == {"size": 3, "kept": f"{src}:1", "dropped": [f"{src}:2", f"{src}:3"]}
    for bad, flag in ((["--dedup-shingle", "x:1"], "--dedup-shingle"), (["--no-dedup"], "--no-dedup")):
        r = CliRunner().invoke(cli, ["convert", str(src), "--to", "sft", "--format", "alpaca", "-o", str(tmp_path / "p.jsonl"),
                                     "--dedup", "near", *bad])
        assert r.exit_code == 2 and flag in r.output, r.output
    # plain --dedup still means exact (the old flag), --no-dedup keeps duplicates
    src.write_text('{"instruction": "q", "output": "a"}\n' * 2)
    for args, n in ((["--dedup"], 1), (["--no-dedup"], 2), ([], 1)):
        r = CliRunner().invoke(cli, ["convert", str(src), "--to", "sft", "--format", "alpaca", "-o", str(out), *args])
        assert r.exit_code == 0, r.output
        assert len(out.read_text().splitlines()) == n


def test_convert_decontaminate(tmp_path):
    src = tmp_path / "raw.jsonl"
    q = "What is the name of the largest moon of Saturn and who discovered it in the seventeenth century"
    src.write_text(json.dumps({"instruction": q, "output": "Titan"}) + "\n"
                   + json.dumps({"instruction": "Name a prime number larger than ten", "output": "11"}) + "\n")
    ev = tmp_path / "eval.jsonl"
    ev.write_text(json.dumps({"question": q.lower() + "?", "answer": "Titan, Huygens"}) + "\n")
    out = tmp_path / "o.jsonl"
    r = CliRunner().invoke(cli, ["convert", str(src), "--to", "sft", "--format", "alpaca", "-o", str(out), "--decontaminate", str(ev)])
    assert r.exit_code == 0, r.output
    assert "contaminated 1" in r.output and f"{src}:1 prompt  <-  {ev}:1 prompt" in r.output
    assert [json.loads(x)["output"] for x in out.read_text().splitlines()] == ["11"]
    r = CliRunner().invoke(cli, ["convert", str(src), "--to", "sft", "--format", "alpaca", "-o", str(ev), "--decontaminate", str(ev)])
    assert r.exit_code == 2 and "would destroy the input" in r.output


def _quality_files(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": f"question {i} about the topic at hand"}],
             "chosen": {"from": "gpt", "value": f"good answer {i}"}, "rejected": {"from": "gpt", "value": "bad"}}
            for i in range(6)]
    src = tmp_path / "raw.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows + rows[:2]))
    pairs = tmp_path / "pairs.jsonl"
    assert CliRunner().invoke(cli, ["dedup", str(src), "-o", str(pairs)]).exit_code == 0
    ev = tmp_path / "eval.jsonl"
    ev.write_text(json.dumps({"question": "question 3 about the topic at hand", "answer": "x"}) + "\n")
    r = CliRunner().invoke(cli, ["contamination", str(pairs), "--against", str(ev), "--drop", "-o",
                                 str(tmp_path / "clean.jsonl")])
    assert r.exit_code == 0, r.output
    import shutil
    shutil.copy(tmp_path / "clean.jsonl.contamination.json", tmp_path / "pairs.jsonl.contamination.json")
    return pairs


def test_report_panels_read_the_sidecars(tmp_path):
    from dsforge import report

    pairs = _quality_files(tmp_path)
    q = report._quality_sidecars(pairs, None)
    assert [d["histogram"] for d in q["dedup"]] == [{"2": 2}] and q["contamination"][0]["contaminated"] == 1
    figs = report._quality_panels({"quality": q})
    assert [f[0] for f in figs] == ["Near-duplicate clusters", "Eval contamination"]
    assert "size 2" in figs[0][1] and "2 of 8 rows dropped in 2 clusters" in figs[0][2]
    assert "1 of 6 training rows overlap" in figs[1][2] and f"{pairs}:4 prompt" in figs[1][2]


@pytest.mark.slow
def test_report_shows_near_dup_and_contamination_panels(tmp_path):
    pairs = _quality_files(tmp_path)
    html = tmp_path / "r.html"
    r = CliRunner().invoke(cli, ["report", str(pairs), "-o", str(html)])
    assert r.exit_code == 0, r.output
    page = html.read_text()
    assert "Near-duplicate clusters" in page and "size 2" in page and "2 of 8 rows dropped in 2 clusters" in page
    assert "Eval contamination" in page and "1 of 6 training rows overlap" in page


def test_recipe_convert_stage_carries_near_dedup_options():
    from dsforge.stages import ConvertConfig   # the recipe's convert entry is the library's config itself

    o = ConvertConfig(near_dedup=True, dedup_on="prompt", decontaminate=["heldout.jsonl"])
    assert (o.near_dedup, o.dedup_on, o.decontaminate) == (True, "prompt", ("heldout.jsonl",))


@pytest.mark.parametrize("bad, code", [("42\n", 1), ('{"text": "a"}\n{oops\n', 1)])
def test_failed_dedup_leaves_the_earlier_output(tmp_path, bad, code):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "one two three four"}\n{"text": "one two three four"}\n')
    out = tmp_path / "o.jsonl"
    assert CliRunner().invoke(cli, ["dedup", str(src), "-o", str(out)]).exit_code == 0
    before = out.read_bytes(), (tmp_path / "o.jsonl.dedup.json").read_bytes()
    src.write_text('{"text": "x y"}\n' + bad)
    r = CliRunner().invoke(cli, ["dedup", str(src), "-o", str(out)])
    assert r.exit_code == code and f"{src}:" in r.output and "Traceback" not in r.output, r.output
    assert (out.read_bytes(), (tmp_path / "o.jsonl.dedup.json").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "o.jsonl", "o.jsonl.dedup.json"]


def test_report_reads_convert_summary_of_a_run(tmp_path):
    from dsforge import report

    man = {"stages": {"convert": {"summary": {
        "read": 10, "skipped": {"near_duplicate": 3, "contaminated": 2},
        "near_dedup": {"kind": "dedup", "rows": 10, "dropped": 3, "clusters": 2, "histogram": {"2": 1, "3": 1},
                       "examples": [], "options": {"threshold": 0.8, "shingle": "word:3", "on": "all"}},
        "contamination": [{"train": "a.jsonl:1 prompt", "eval": "e.jsonl:2 prompt", "method": "ngram",
                           "field": "prompt", "detail": "x"}]}}}}
    q = report._quality_sidecars(tmp_path, man)
    figs = report._quality_panels({"quality": q})
    assert "3 of 10 rows dropped in 2 clusters" in figs[0][2] and "size 3" in figs[0][1]
    assert "2 of 10 training rows overlap" in figs[1][2] and "a.jsonl:1 prompt <- e.jsonl:2 prompt" in figs[1][2]
