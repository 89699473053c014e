import pytest

from dsforge.formats import ConversionError, entry_for, from_conversation, to_conversation
from dsforge.records import prompt_id

MULTI = {"conversations": [{"from": "system", "value": "be nice"}, {"from": "human", "value": "q1"},
                           {"from": "gpt", "value": "a1"}, {"from": "human", "value": "q2"},
                           {"from": "gpt", "value": "a2"}]}


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "openai"])
def test_round_trip_is_lossless(fmt):
    conv = to_conversation(MULTI)
    row = from_conversation(conv, "sft", fmt)
    back = to_conversation(row)
    assert back.messages == conv.messages and back.system == "be nice"


def test_multiturn_to_alpaca_uses_history():
    row = from_conversation(to_conversation(MULTI), "sft", "alpaca")
    assert row == {"instruction": "q2", "input": "", "output": "a2", "system": "be nice", "history": [["q1", "a1"]]}


def test_tool_turns_cannot_become_alpaca():
    rec = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "",
                         "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
                        {"role": "tool", "content": "r"}, {"role": "assistant", "content": "a"}]}
    conv = to_conversation(rec)
    with pytest.raises(ConversionError, match="only user/assistant turns") as e:
        from_conversation(conv, "sft", "alpaca")
    assert "use --format sharegpt" in e.value.hint
    row = from_conversation(conv, "sft", "sharegpt")
    assert [m["from"] for m in row["conversations"]] == ["human", "function_call", "observation", "gpt"]


def test_mapping_and_numbers_from_csv():
    conv = to_conversation({"question": "2+2?", "answer": 4}, {"instruction": "question", "output": "answer"})
    assert conv.messages[-1] == {"role": "assistant", "content": "4"}


def test_ranking_rows_per_format():
    conv = to_conversation({"prompt": "q", "good": "a", "bad": "b"},
                           {"instruction": "prompt", "chosen": "good", "rejected": "bad"})
    sg = from_conversation(conv, "ranking", "sharegpt")
    assert sg == {"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"},
                  "rejected": {"from": "gpt", "value": "b"}}
    al = from_conversation(conv, "ranking", "alpaca")
    assert al == {"instruction": "q", "input": "", "chosen": "a", "rejected": "b"}


def test_kto_labels_are_coerced_to_booleans():
    for raw, want in (("true", True), ("No", False), (1, True), ("good", True), ("bad", False)):
        conv = to_conversation({"instruction": "q", "output": "a", "label": raw})
        assert from_conversation(conv, "kto", "alpaca")["kto_tag"] is want
    with pytest.raises(ConversionError, match="true/false"):
        to_conversation({"instruction": "q", "output": "a", "label": "maybe"})


def test_missing_answer_and_empty_answer_are_errors():
    with pytest.raises(ConversionError, match="no assistant answer") as e:
        from_conversation(to_conversation({"instruction": "q"}), "sft", "sharegpt")
    assert "--map output=" in e.value.hint
    with pytest.raises(ConversionError, match="empty answer"):
        from_conversation(to_conversation({"instruction": "q", "output": " "}), "sft", "sharegpt")


def test_prompt_id_is_stable_and_content_based():
    a = prompt_id([{"role": "user", "content": "hi"}])
    assert a == prompt_id([{"role": "user", "content": "hi", "extra": 1}])
    assert a != prompt_id([{"role": "user", "content": "hi!"}])
    assert len(a) == 16


def test_entry_for_openai_spells_tags():
    e = entry_for("sft", "openai")
    assert e["tags"]["role_tag"] == "role" and e["columns"] == {"messages": "messages"}
