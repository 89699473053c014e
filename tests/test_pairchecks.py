"""Degenerate preference pairs: format asymmetry, near-identical answers, length bias, truncation to cutoff_len."""

import json

import pytest
from click.testing import CliRunner

from dsforge import pairchecks as pc
from dsforge.cli import cli
from dsforge.validate import format_report, validate_path


def _row(prompt, chosen, rejected, system=None):
    r = {"conversations": [{"from": "human", "value": prompt}],
         "chosen": {"from": "gpt", "value": chosen}, "rejected": {"from": "gpt", "value": rejected}}
    if system:
        r["system"] = system
    return r


PLANTED = [  # (chosen, rejected, expected reasons)
    ("<think>add them</think>4", "4 is the sum", {"pair_think_one_side"}),
    ("<think>add</think>The answer is four.", "<think> </think>It is 5, I think.", {"pair_think_empty_vs_full"}),
    ("Paris is the capital.<|im_end|>", "Lyon, probably.", {"pair_stop_one_side"}),
    ("Sure, the answer is Paris.</s>", "Berlin is it.", {"pair_stop_one_side"}),
    ("```python\nprint(1)\n```", "Use print with one.", {"pair_fence_one_side"}),
    ("The quick brown fox jumps over the lazy dog.", "The quick brown fox jumps over the lazy dog!",
     {"pair_near_identical"}),
    ("A fine, correct, well explained answer.", "Wrong.", set()),
    ("<think>x</think>```\ncode\n```<|eot_id|>", "plain", {"pair_think_one_side", "pair_stop_one_side",
                                                        "pair_fence_one_side"}),
]


@pytest.mark.parametrize("chosen,rejected,want", PLANTED)
def test_each_planted_pair_gets_exactly_its_reasons(chosen, rejected, want):
    st = pc.PairStats(max_similarity=0.95)
    assert set(st.add(chosen, rejected)) == want


def test_similarity_methods_and_bounds():
    assert pc.similarity("a  b", "a b") == 1.0
    assert pc.similarity("abc", "xyz") == 0.0
    assert pc.similarity("the cat sat", "the cat ran", "jaccard") == pytest.approx(2 / 4)
    with pytest.raises(ValueError):
        pc.similarity("a", "b", "cosine")


def test_length_bias_numbers():
    lb = pc.length_bias([10, 20, 30, 5], [5, 10, 10, 10], warn_above=0.7)
    assert lb == {"pairs": 4, "chosen_longer_rate": 0.75, "median_length_ratio": 2.0, "warn": True}
    assert pc.length_bias([], [])["chosen_longer_rate"] is None


def _write(tmp_path, rows, name="pairs.jsonl"):
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(p)


def test_validate_counts_planted_reasons_with_lines(tmp_path):
    rows = [_row(f"question {i}?", c, r) for i, (c, r, _) in enumerate(PLANTED)]
    p = _write(tmp_path, rows)
    r = validate_path(p, stage="dpo")
    got = {k: v for k, v in r.counts.items() if k.startswith("pair_")}
    assert got == {"pair_think_one_side": 2, "pair_think_empty_vs_full": 1, "pair_stop_one_side": 3,
                   "pair_fence_one_side": 2, "pair_near_identical": 1, "pair_length_bias": 1}
    assert [f.line for f in r.examples["pair_stop_one_side"]] == [3, 4, 8]
    assert r.would_train == len(rows)     # warnings: LLaMA-Factory trains these rows
    lb = r.pairs["length_bias"]
    assert lb["pairs"] == 8 and lb["chosen_longer_rate"] == 0.875 and lb["warn"]
    assert set(r.pairs["similarity"]["quantiles"]) == {0, 10, 25, 50, 75, 90, 100}
    text = format_report(r)
    assert "pair_length_bias" in text and "similarity (ratio) quantiles" in text
    assert f"{p}:1: a <think> block in one answer only" in text


def test_validate_alpaca_ranking_and_no_bias_warning_when_balanced(tmp_path):
    rows = [{"instruction": "q1", "chosen": "short", "rejected": "a much longer answer"},
            {"instruction": "q2", "chosen": "a much longer answer", "rejected": "short"}]
    r = validate_path(_write(tmp_path, rows, "a.jsonl"), stage="rm")
    assert r.pairs["length_bias"]["chosen_longer_rate"] == 0.5
    assert not [c for c in r.counts if c.startswith("pair_")]


def test_sft_file_gets_no_pair_checks(tmp_path):
    rows = [{"instruction": "q", "output": "<think>a</think>b</s>"}]
    r = validate_path(_write(tmp_path, rows, "s.jsonl"), stage="sft")
    assert r.pairs is None


# ---------------------------------------------------------------- truncation under a real tokenizer

SMOL = __import__("pathlib").Path.home() / ".cache" / "dsforge" / "models" / "SmolLM2-135M-Instruct"
CUT = 128
SYSTEM = "You are terse."
SHARED = " ".join(f"step {i}." for i in range(80))   # far more than the budget left after the prompt


def _trunc_rows():
    """(row, expected reasons) under SmolLM2's template at cutoff_len 128."""
    long_prompt = " ".join(f"fact {i}" for i in range(200))
    return [
        (_row("Count.", SHARED + " Done, correct.", SHARED + " Oops, wrong.", SYSTEM), {"pair_identical_after_cutoff"}),
        (_row("Count.", "Correct: " + SHARED, "Wrong: " + SHARED, SYSTEM), set()),
        (_row(long_prompt, "Yes.", "No.", SYSTEM), {"pair_prompt_no_room"}),
        # answers of ~80 tokens (>= cutoff/2) against a ~12k-token prompt: int(128 * 80 / 12080) == 0 tokens each
        (_row(" ".join(f"fact {i}" for i in range(4000)), "A " + SHARED[:300], "B " + SHARED[:300], SYSTEM),
         {"pair_prompt_no_room", "pair_response_emptied"}),
        (_row("Hi", "Hello there.", "Go away.", SYSTEM), set()),
    ]


@pytest.fixture(scope="module")
def smol_tok():
    if not (SMOL / "tokenizer.json").exists():
        pytest.skip("embedded SmolLM2 tokenizer not prepared (scripts/setup.sh)")
    pytest.importorskip("transformers")
    return str(SMOL)


def test_truncation_check_reasons_per_row(smol_tok):
    tc = pc.TruncationCheck(smol_tok, CUT, "auto")
    assert tc.template == "chat"
    for row, want in _trunc_rows():
        msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["conversations"][0]["value"]}]
        assert set(tc.check(msgs, row["chosen"]["value"], row["rejected"]["value"])) == want, row
    assert tc.counts == {"pair_identical_after_cutoff": 1, "pair_prompt_no_room": 2, "pair_response_emptied": 1}


def test_validate_cli_reports_truncation_with_lines(tmp_path, smol_tok):
    p = _write(tmp_path, [r for r, _ in _trunc_rows()])
    res = CliRunner().invoke(cli, ["validate", p, "--stage", "dpo", "--tokenizer", smol_tok,
                                   "--cutoff-len", str(CUT), "--json"])
    rep = json.loads(res.output)[0]
    counts = {k: v["n"] for k, v in rep["counts"].items() if k.startswith("pair_") and "trunc" not in k}
    assert {k: counts.get(k) for k in ("pair_identical_after_cutoff", "pair_prompt_no_room",
                                      "pair_response_emptied")} == {
        "pair_identical_after_cutoff": 1, "pair_prompt_no_room": 2, "pair_response_emptied": 1}
    assert [e["line"] for e in rep["examples"]["pair_identical_after_cutoff"]] == [1]
    tr = rep["pairs"]["truncation"]
    assert tr["cutoff_len"] == CUT and tr["token_lengths"]["chosen"]["max"] > 1000


LF_SCRIPT = r"""
import json, sys, os, tempfile
sys.path.insert(0, sys.argv[4])
import shim; shim.install()
from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer
with tempfile.TemporaryDirectory() as out:
    args = dict(model_name_or_path=sys.argv[2], stage="dpo", do_train=True, finetuning_type="lora", dataset="p",
                dataset_dir=sys.argv[1], template=sys.argv[3], cutoff_len=int(sys.argv[5]), output_dir=out,
                overwrite_cache=True, report_to="none", preprocessing_num_workers=None)
    m, d, t, _, _ = get_train_args(args)
    tm = load_tokenizer(m)
    tmpl = get_template_and_fix_tokenizer(tm["tokenizer"], d)
    ds = get_dataset(tmpl, m, d, t, "rm", tm["tokenizer"], tm["processor"])["train_dataset"]
    for ex in ds:
        c = [i for i in ex["chosen_labels"] if i != -100]
        r = [i for i in ex["rejected_labels"] if i != -100]
        print("PAIR " + json.dumps({"same": c == r, "empty": not c or not r}))
"""


@pytest.mark.llamafactory
@pytest.mark.slow
def test_lf_pairwise_agrees_on_identical_after_cutoff(tmp_path, smol_tok, lf_py):
    """LLaMA-Factory's own pairwise preprocessing (template smollm2) yields equal chosen/rejected label ids
    exactly on the rows dsforge calls pair_identical_after_cutoff (or emptied)."""
    import subprocess

    from tests.conftest import ROOT

    rows = [r for r, _ in _trunc_rows()]
    _write(tmp_path, rows, "p.jsonl")
    (tmp_path / "dataset_info.json").write_text(json.dumps({"p": {
        "file_name": "p.jsonl", "formatting": "sharegpt", "ranking": True,
        "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "system": "system"}}}))
    proc = subprocess.run([lf_py, "-c", LF_SCRIPT, str(tmp_path), smol_tok, "smollm2", str(ROOT / "dsforge" / "lf"),
                           str(CUT)], capture_output=True, text=True, timeout=600)
    got = [json.loads(ln[5:]) for ln in proc.stdout.splitlines() if ln.startswith("PAIR ")]
    assert len(got) == len(rows), proc.stderr[-3000:]
    tc = pc.TruncationCheck(smol_tok, CUT, "auto")
    for row, lf in zip(rows, got):
        msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["conversations"][0]["value"]}]
        ours = set(tc.check(msgs, row["chosen"]["value"], row["rejected"]["value"]))
        assert ("pair_identical_after_cutoff" in ours or "pair_response_emptied" in ours) == lf["same"], (row, lf)
        assert ("pair_response_emptied" in ours) == lf["empty"], (row, lf)


# ---------------------------------------------------------------- dsforge pairs applies the checks


def _judged(tmp_path, prompts, name="j.jsonl"):
    """prompts: list of (question, [(text, score), ...]) -> a judged candidates file."""
    rows = []
    for k, (q, cands) in enumerate(prompts):
        for i, (t, sc) in enumerate(cands):
            rows.append({"prompt_id": f"p{k}", "messages": [{"role": "system", "content": SYSTEM},
                                                            {"role": "user", "content": q}],
                         "text": t, "sample_index": i, "truncated": False,
                         "judge": {"score": sc, "model": "j", "rubric": "additive", "rubric_hash": "h"}})
    p = tmp_path / name
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(p)


PAIR_PROMPTS = [
    ("q0", [("<think>add</think>4", 5), ("4 is it", 1)]),                         # think one side
    ("q1", [("Paris.<|im_end|>", 5), ("Lyon is the capital of France.", 1)]),      # stop one side
    ("q2", [("The quick brown fox jumps over the lazy dog.", 5),
            ("The quick brown fox jumps over the lazy dog!", 4.9)]),               # near identical, near-zero margin
    ("q3", [("A complete and correct answer.", 5), ("No.", 0)]),                   # clean
    ("q4", [("```\nx = 1\n```", 4), ("set x to one", 2)]),                         # fence one side
]


def test_pairs_counts_and_drops_by_reason(tmp_path):
    from dsforge.pairs import PairConfig, build_pairs, format_summary

    j = _judged(tmp_path, PAIR_PROMPTS)
    s = build_pairs(j, str(tmp_path / "a.jsonl"), PairConfig())   # default: count, drop nothing new
    assert s["pairs"] == 5
    assert s["degenerate"]["counts"] == {"pair_think_one_side": 1, "pair_stop_one_side": 1,
                                         "pair_fence_one_side": 1}
    assert s["degenerate"]["margin"]["near_zero"] == 1      # 0.1 <= 5% of the 0..5 range
    s = build_pairs(j, str(tmp_path / "b.jsonl"), PairConfig(max_similarity=0.9, drop_format_asymmetry=True))
    assert s["pairs"] == 1
    assert s["dropped"] == {"pair_think_one_side": 1, "pair_stop_one_side": 1, "pair_near_identical": 1,
                            "pair_fence_one_side": 1, "prompt_without_pair": 4}
    assert set(s["degenerate"]["similarity"]["quantiles"]) == {0, 10, 25, 50, 75, 90, 100}
    text = format_summary(s)
    assert "pair_near_identical 1" in text and "near-zero margins" in text


def test_pairs_jaccard_threshold_and_nothing_left(tmp_path):
    from dsforge.errors import InputError
    from dsforge.pairs import PairConfig, build_pairs

    j = _judged(tmp_path, [("q", [("the cat sat on the mat", 5), ("the cat sat on a mat", 1)])])
    # word sets {the,cat,sat,on,mat} and the same + {a}: Jaccard 5/6 = 0.833
    assert build_pairs(j, str(tmp_path / "a.jsonl"), PairConfig(max_similarity=0.9, similarity="jaccard"))[
        "pairs"] == 1
    with pytest.raises(InputError, match="pair_near_identical"):
        build_pairs(j, str(tmp_path / "b.jsonl"), PairConfig(max_similarity=0.8, similarity="jaccard"))
    assert not (tmp_path / "b.jsonl").exists()


def test_pairs_cli_flags_and_usage_errors(tmp_path):
    j = _judged(tmp_path, PAIR_PROMPTS)
    r = CliRunner().invoke(cli, ["pairs", j, "-o", str(tmp_path / "o.jsonl"), "--max-similarity", "0.9"])
    assert r.exit_code == 0, r.output
    assert "dropped: {'pair_near_identical': 1, 'prompt_without_pair': 1}" in r.output
    assert "degenerate candidate pairs" in r.output
    r = CliRunner().invoke(cli, ["pairs", j, "-o", str(tmp_path / "o2.jsonl"), "--max-similarity", "1.5"])
    assert r.exit_code == 2 and "--max-similarity" in r.output
    r = CliRunner().invoke(cli, ["pairs", j, "-o", str(tmp_path / "o3.jsonl"), "--tokenizer", str(tmp_path)])
    assert r.exit_code == 2 and "--cutoff-len" in r.output and "Traceback" not in r.output


def test_pairs_drops_truncation_degenerate_pairs(tmp_path, smol_tok):
    from dsforge.pairs import PairConfig, build_pairs

    prompts = [("Count.", [(SHARED + " Done, correct.", 5), (SHARED + " Oops, wrong.", 1)]),
               ("Count.", [("Correct: " + SHARED, 5), ("Wrong: " + SHARED, 1)]),
               ("Hi", [("Hello there.", 5), ("Go away.", 1)])]
    j = _judged(tmp_path, prompts)
    s = build_pairs(j, str(tmp_path / "a.jsonl"), PairConfig(tokenizer=smol_tok, cutoff_len=CUT))
    assert s["pairs"] == 2 and s["dropped"] == {"pair_identical_after_cutoff": 1, "prompt_without_pair": 1}
    assert s["degenerate"]["truncation"] == {"cutoff_len": CUT, "template": "chat"}


def test_report_panels_degenerate_counts_and_token_lengths(tmp_path, smol_tok):
    from dsforge.pairs import PairConfig, build_pairs
    from dsforge.report import write_report

    prompts = [("Count.", [(SHARED + " Done, correct.", 5), (SHARED + " Oops, wrong.", 1)]),
               ("Hi", [("<think>greet</think>Hello there.", 5), ("Go away.", 1)])]
    out = str(tmp_path / "p.jsonl")
    build_pairs(_judged(tmp_path, prompts), out, PairConfig())
    page = open(write_report(out, str(tmp_path / "r.html"), model=smol_tok, cutoff_len=CUT)).read()
    assert "Chosen vs rejected: tokens under the template" in page and f"cutoff_len {CUT}" in page
    assert "Degenerate pairs by reason" in page
    assert "file: identical_after_cutoff</text>" in page and "file: think_one_side</text>" in page


def test_validate_cli_thresholds_are_configurable(tmp_path):
    rows = [_row(f"question {i}?", c, r) for i, (c, r, _) in enumerate(PLANTED)]
    p = _write(tmp_path, rows)

    def counts(*flags):
        res = CliRunner().invoke(cli, ["validate", p, "--stage", "dpo", "--json", *flags])
        return {k: v["n"] for k, v in json.loads(res.output)[0]["counts"].items()
                if k in ("pair_near_identical", "pair_length_bias")}

    assert counts() == {"pair_near_identical": 1, "pair_length_bias": 1}
    assert counts("--max-similarity", "0.999", "--length-bias-warn", "0.9") == {}
    # jaccard over word sets: 8 words each, 'dog.' vs 'dog!' differ -> 7/9 = 0.78
    assert counts("--similarity", "jaccard", "--max-similarity", "0.75") == {"pair_near_identical": 1,
                                                                          "pair_length_bias": 1}
    res = CliRunner().invoke(cli, ["validate", p, "--max-similarity", "0"])
    assert res.exit_code == 2 and "--max-similarity" in res.output


@pytest.mark.parametrize("strategy", ["best-vs-worst", "best-vs-mean-2sd", "best-vs-random", "all-pairs"])
def test_pairs_falls_back_to_the_next_rejected_when_the_worst_is_degenerate(tmp_path, strategy):
    from dsforge.pairs import PairConfig, build_pairs

    best = "The quick brown fox jumps over the lazy dog."
    j = _judged(tmp_path, [("q", [(best, 5), ("A different, weaker answer.", 3), (best[:-1] + "!", 1)])])
    out = str(tmp_path / "a.jsonl")
    s = build_pairs(j, out, PairConfig(strategy=strategy, max_similarity=0.9))
    assert s["pairs"] == 1 and s["dropped"].get("pair_near_identical", 0) <= 1
    row = json.loads(open(out).readline())
    assert row["chosen"]["value"] == best and row["rejected"]["value"] == "A different, weaker answer."


def test_pairs_excludes_empty_answers_instead_of_crashing(tmp_path):
    from dsforge.pairs import PairConfig, build_pairs

    j = _judged(tmp_path, [("q", [("A good answer.", 5), ("A weak one.", 3), ("", 1)])])
    s = build_pairs(j, str(tmp_path / "a.jsonl"), PairConfig())
    assert s["pairs"] == 1 and s["excluded_candidates"] == {"empty_text": 1}
