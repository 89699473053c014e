"""Correct-vs-wrong pairs from verifier labels (dsforge.verifier_pairs)."""

import random
from collections import Counter

from dsforge.verifier_pairs import is_verifier_data, no_pair_reason, pair_yield, select_correct_vs_wrong


def cand(text, correct, pid="p"):
    return {"prompt_id": pid, "text": text,
            "judge": {"kind": "verifier", "verifier": "numeric", "correct": correct, "score": float(correct)}}


def test_pairs_are_right_vs_wrong_of_similar_length_each_answer_once_first():
    cands = [cand("43", True), cand("The answer is 43.", True),
             cand("41", False), cand("It is 44, I think so.", False), cand("29 + 14 = 31", False)]
    drops = Counter()
    pairs = select_correct_vs_wrong(cands, 2, random.Random(0), drops)
    assert [(c["text"], r["text"]) for c, r in pairs] == [("43", "41"), ("The answer is 43.", "It is 44, I think so.")]
    assert all(c["judge"]["correct"] and not r["judge"]["correct"] for c, r in pairs)
    assert not drops


def test_k_above_distinct_answers_reuses_answers_but_never_repeats_a_pair():
    cands = [cand("43", True), cand("41", False), cand("44", False), cand("45", False)]
    pairs = select_correct_vs_wrong(cands, 5, random.Random(0), Counter())
    assert len(pairs) == 3   # one right x three wrong: three distinct pairs, no more
    assert len({(c["text"], r["text"]) for c, r in pairs}) == 3


def test_prompts_without_a_pair_are_counted_by_reason():
    groups = {"a": [cand("1", True, "a"), cand("1.", True, "a")],
              "b": [cand("2", False, "b"), cand("3", False, "b")],
              "c": [cand("4", True, "c")],
              "d": [cand("5", True, "d"), cand("6", False, "d")]}
    drops = Counter()
    got = {pid: select_correct_vs_wrong(cs, 1, random.Random(0), drops) for pid, cs in groups.items()}
    assert [pid for pid, p in got.items() if p] == ["d"]
    assert pair_yield(groups, drops) == {"prompts": 4, "with_right_and_wrong": 1, "rate": 0.25,
                                         "no_pair": {"all_right": 1, "all_wrong": 1, "single_candidate": 1}}


def test_degenerate_pairs_are_dropped_with_their_reason():
    cands = [cand("43", True), cand("41", False)]
    drops = Counter()
    assert select_correct_vs_wrong(cands, 1, random.Random(0), drops, check=lambda c, r: "pair_near_identical") == []
    assert drops == {"pair_near_identical": 1, "degenerate": 1}


def test_reason_and_kind_helpers():
    assert no_pair_reason([]) == "no_candidate"
    assert no_pair_reason([cand("1", True), cand("2", False)]) is None
    assert is_verifier_data([cand("1", True)])
    assert not is_verifier_data([{"judge": {"kind": "llm", "score": 3}}])
    assert not is_verifier_data([])


def test_build_pairs_on_verifier_judged_file_reports_pair_yield(tmp_path):
    import json

    from dsforge.pairs import PairConfig, build_pairs, format_summary
    from dsforge.verify import get_verifier

    v = get_verifier("numeric")
    replies = {"What is 29 + 14?": ("43", ["29 + 14 = 43", "43", "29 + 14 = 31", "It is 41.", "44"]),
               "What is 2 + 2?": ("4", ["4", "2 + 2 = 4"]),
               "What is 17 + 25?": ("42", ["17 + 25 = 32", "52"]),
               "What is 9 + 9?": ("18", ["18"])}
    rows = []
    for i, (q, (ref, texts)) in enumerate(replies.items()):
        for j, t in enumerate(texts):
            vd = v.check(t, ref)
            rows.append({"prompt_id": f"p{i}", "messages": [{"role": "user", "content": q}], "text": t,
                         "sample_index": j, "reference": ref,
                         "judge": {"kind": "verifier", "verifier": "numeric", "score": vd.score,
                                   "correct": vd.correct, "format_ok": vd.format_ok, "answer": vd.answer}})
    judged = tmp_path / "judged.jsonl"
    judged.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = build_pairs(str(judged), str(tmp_path / "dpo.jsonl"), PairConfig(max_pairs_per_prompt=2))
    assert s["strategy"] == "correct-vs-wrong" and s["pairs"] == 2
    assert s["pair_yield"] == {"prompts": 4, "with_right_and_wrong": 1, "rate": 0.25,
                               "no_pair": {"all_right": 1, "all_wrong": 1, "single_candidate": 1}}
    out = [json.loads(x) for x in (tmp_path / "dpo.jsonl").read_text().splitlines()]
    assert {(o["chosen"]["value"], o["rejected"]["value"]) for o in out} == {("43", "44"), ("29 + 14 = 43", "29 + 14 = 31")}
    assert "pair yield 25%: 1 of 4 prompts have a right and a wrong answer" in format_summary(s)


def test_correct_vs_wrong_is_a_named_strategy_that_needs_verifier_labels(tmp_path):
    import json

    import pytest

    from dsforge.errors import UsageError
    from dsforge.pairs import PairConfig, build_pairs
    from dsforge.stages import STRATEGIES

    assert "correct-vs-wrong" in STRATEGIES
    rows = [{"prompt_id": "p", "messages": [{"role": "user", "content": "What is 2 + 3?"}], "text": t,
             "sample_index": i, **cand(t, ok)} for i, (t, ok) in enumerate([("5", True), ("6", False)])]
    judged = tmp_path / "judged.jsonl"
    judged.write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = build_pairs(str(judged), str(tmp_path / "dpo.jsonl"), PairConfig(strategy="correct-vs-wrong"))
    assert s["strategy"] == "correct-vs-wrong" and s["pairs"] == 1 and s["pair_yield"]["rate"] == 1.0
    llm = [{**r, "judge": {"kind": "llm", "score": 5.0 - i}} for i, r in enumerate(rows)]
    judged.write_text("".join(json.dumps(r) + "\n" for r in llm))
    with pytest.raises(UsageError, match="needs verifier labels"):
        build_pairs(str(judged), str(tmp_path / "dpo2.jsonl"), PairConfig(strategy="correct-vs-wrong"))


def test_no_pair_from_verifier_labels_says_what_helps_a_verifier_run(tmp_path):
    import json

    import pytest

    from dsforge.errors import InputError
    from dsforge.pairs import PairConfig, build_pairs

    rows = [{"prompt_id": "p", "messages": [{"role": "user", "content": "What is 2 + 3?"}], "text": t,
             "sample_index": i, **cand(t, False)} for i, t in enumerate(["6", "7"])]
    judged = tmp_path / "judged.jsonl"
    judged.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match="no pair survived") as err:
        build_pairs(str(judged), str(tmp_path / "dpo.jsonl"), PairConfig())
    assert "dsforge tasks calibrate" in err.value.hint and "--min-margin" not in err.value.hint
    assert not (tmp_path / "dpo.jsonl").exists()
