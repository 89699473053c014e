"""A corpus of valid and invalid LLaMA-Factory datasets, each a known failure mode.

Used by the agreement test: dsforge validate's usable-row count must equal what LLaMA-Factory's
own data pipeline keeps, dataset by dataset.
"""

from __future__ import annotations

import json
import os
import random

A = lambda i, inp, o: {"instruction": i, "input": inp, "output": o}  # noqa: E731
SG = {"formatting": "sharegpt"}
RK = {"formatting": "sharegpt", "ranking": True,
      "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}}
KTO = {"formatting": "sharegpt", "columns": {"messages": "conversations", "kto_tag": "label"}}
OA_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
           "system_tag": "system", "observation_tag": "tool", "function_tag": "function_call"}


def S(*m):
    return {"conversations": [{"from": f, "value": v} for f, v in m]}


def R(c, r, q="q"):
    return {"conversations": [{"from": "human", "value": q}], "chosen": {"from": "gpt", "value": c},
            "rejected": {"from": "gpt", "value": r}}


def jl(rows):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _mixed_sharegpt(n: int, seed: int) -> list:
    """A realistic file: mostly good rows, some broken the ways real data breaks."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        x = rng.random()
        if x < 0.06:
            rows.append(S(("human", f"q{i}")))  # no answer
        elif x < 0.10:
            rows.append(S(("gpt", f"a{i}"), ("human", f"q{i}")))  # swapped roles
        elif x < 0.12:
            rows.append(S(("human", f"q{i}"), ("system", "s"), ("human", "x"), ("gpt", "y")))  # system mid-way
        elif x < 0.15:
            rows.append(S(("system", "be brief"), ("human", f"q{i}"), ("gpt", f"a{i}"), ("human", "more?")))
        else:
            rows.append(S(("human", f"question {i}"), ("gpt", f"answer {i}")) | ({"system": "sys"} if x > 0.9 else {}))
    return rows


def _mixed_alpaca(n: int, seed: int) -> list:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        x = rng.random()
        if x < 0.05:
            rows.append({"instruction": f"q{i}", "input": ""})  # missing output
        elif x < 0.08:
            rows.append(A(f"q{i}", "", None))
        elif x < 0.10:
            rows.append(A("", "", f"a{i}"))  # empty instruction: kept
        else:
            rows.append(A(f"question {i}", "ctx" if x > 0.5 else "", f"answer {i}"))
    return rows


def _kto_rows(n: int, bad: set[int]) -> list:
    out = []
    for i in range(n):
        if i in bad:
            out.append(S(("human", f"q{i}"), ("gpt", f"a{i}"), ("human", "dangling")) | {"label": True})
        else:
            out.append(S(("human", f"q{i}"), ("gpt", f"a{i}")) | {"label": i % 3 != 0})
    return out


def build(root: str) -> list[tuple[str, str]]:
    """Write every case into root (with dataset_info.json); return [(name, stage)]."""
    os.makedirs(root, exist_ok=True)
    info: dict = {}
    specs: list[tuple[str, str]] = []

    def w(name, text, entry=None, stage="sft", ext="jsonl"):
        fn = f"{name}.{ext}"
        with open(os.path.join(root, fn), "wb" if isinstance(text, bytes) else "w",
                  **({} if isinstance(text, bytes) else {"encoding": "utf-8"})) as f:
            f.write(text)
        info[name] = {"file_name": fn, **(entry or {})}
        specs.append((name, stage))

    big = "hello world the quick brown fox " * 40
    # alpaca
    w("ok", jl([A("a", "", "b"), A("c", "d", "e")]))
    w("noinput", jl([{"instruction": "a", "output": "b"}, {"instruction": "c", "output": "d"}]))
    w("int_one", jl([A("a", "", "b"), A("c", "", 5), A("e", "", "f")]))
    w("int_all", jl([A("a", "", 1), A("c", "", 5)]))
    w("null_out", jl([A("a", "", "b"), A("c", "", None)]))
    w("missing_out_one", jl([A("a", "", "b"), {"instruction": "c", "input": ""}]))
    w("empty_instr", jl([A("", "", "b"), A("c", "", "")]))
    w("instr_int", jl([A("a", "", "b"), A(5, "", "b")]))
    w("hist_bad", jl([A("a", "", "b") | {"history": [["q", "r"]]}, A("a", "", "b") | {"history": [["q"]]}]),
      {"columns": {"prompt": "instruction", "query": "input", "response": "output", "history": "history"}})
    w("hist_null", jl([A("a", "", "b") | {"history": None}, A("a", "", "b") | {"history": [["q", "r"]]}]),
      {"columns": {"prompt": "instruction", "query": "input", "response": "output", "history": "history"}})
    w("sys_col_missing", jl([A("a", "", "b")]),
      {"columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}})
    w("format_typo", jl([S(("human", "a"), ("gpt", "b"))]), {"format": "sharegpt"})
    w("dup", jl([A("a", "", "b"), A("a", "", "b")]))
    w("mixed_alpaca", jl(_mixed_alpaca(400, 1)))
    # files and syntax
    w("bom_jsonl", "\ufeff" + jl([A("a", "", "b"), A("c", "", "d")]))
    w("bom_json", "\ufeff" + json.dumps([A("a", "", "b"), A("c", "", "d")]), ext="json")
    w("trailing_comma", '[{"instruction":"a","input":"","output":"b"},\n{"instruction":"c","input":"","output":"d"},\n]',
      ext="json")
    w("arr_ok", json.dumps([A("a", "", "b"), A("c", "", "d")], indent=1), ext="json")
    w("arr_one_line", json.dumps([A("a", "", "b"), A("c", "", "42"), A("e", "", "2024-01-01")]), ext="json")
    w("arr_int_one", json.dumps([A("a", "", "b"), A("c", "", 5)], indent=1), ext="json")
    w("truncated", jl([A("a", "", "b")]) + '{"instruction": "c", "inp')
    w("nonutf8", jl([A("a", "", "b")]).encode() + b'{"instruction": "\xff", "input":"", "output":"x"}\n')
    w("empty_file", "")
    w("empty_array", "[]", ext="json")
    w("blank_lines", jl([A("a", "", "b")]) + "\n\n" + jl([A("c", "", "d")]))
    w("array_line", jl([A("a", "", "b")]) + json.dumps([A("c", "", "d")]) + "\n")
    w("dup_key", '{"instruction":"a","input":"","output":"b","output":"c"}\n')
    w("crlf", jl([A("a", "", "b"), A("c", "", "d")]).replace("\n", "\r\n"))
    w("csv_ok", "instruction,input,output\na,,b\nc,d,e\n", ext="csv")
    w("csv_int_out", "instruction,input,output\na,,1\nc,d,2\n", ext="csv")
    # sharegpt / openai
    w("sg_ok", jl([S(("human", "a"), ("gpt", "b")), S(("system", "s"), ("human", "a"), ("gpt", "b"))]), SG)
    w("sg_odd", jl([S(("human", "a"), ("gpt", "b")), S(("human", "a"))]), SG)
    w("sg_order", jl([S(("human", "a"), ("gpt", "b")), S(("gpt", "a"), ("human", "b"))]), SG)
    w("sg_list_content", jl([S(("human", "a"), ("gpt", "b")),
                             {"conversations": [{"from": "human", "value": ["x"]}, {"from": "gpt", "value": "y"}]}]), SG)
    w("sg_wrong_tags", jl([{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]),
      {"formatting": "sharegpt", "columns": {"messages": "messages"}})
    w("sg_partial_tags", jl([{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]),
      {"formatting": "sharegpt", "columns": {"messages": "messages"}, "tags": {"role_tag": "role", "content_tag": "content"}})
    w("sg_conv_missing", jl([S(("human", "a"), ("gpt", "b")), {"other": 1}]), SG)
    w("sg_conv_empty", jl([S(("human", "a"), ("gpt", "b")), {"conversations": []}]), SG)
    w("sg_value_null", jl([S(("human", "a"), ("gpt", "b")), S(("human", "a"), ("gpt", None))]), SG)
    w("sg_value_int", jl([S(("human", "a"), ("gpt", "b")), S(("human", "a"), ("gpt", 5))]), SG)
    w("sg_role_missing", jl([S(("human", "a"), ("gpt", "b")), {"conversations": [{"value": "a"}, {"from": "gpt", "value": "b"}]}]), SG)
    w("sg_function_not_json", jl([S(("human", "a"), ("function_call", "f"), ("observation", "o"), ("gpt", "b"))]), SG)
    w("sg_function_json", jl([S(("human", "a"), ("function_call", '{"name": "f", "arguments": {}}'),
                                ("observation", "o"), ("gpt", "b"))]), SG)
    w("sg_mixed", jl(_mixed_sharegpt(500, 2)), {**SG, "columns": {"messages": "conversations", "system": "system"}})
    w("oa_ok", jl([{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"},
                                 {"role": "assistant", "content": "b"}]}]),
      {"formatting": "openai", "columns": {"messages": "messages"}, "tags": OA_TAGS})
    w("oa_tool", jl([{"messages": [{"role": "user", "content": "a"},
                                   {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                                   {"role": "tool", "content": "r"}, {"role": "assistant", "content": "b"}]}]),
      {"formatting": "openai", "columns": {"messages": "messages"}, "tags": OA_TAGS})
    w("oa_default_tags", jl([{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]),
      {"formatting": "openai", "columns": {"messages": "messages"}})
    # ranking
    w("rk_ok", jl([R("a", "b"), R("c", "c")]), RK, stage="dpo")
    w("rk_even", jl([R("a", "b"), S(("human", "q"), ("gpt", "x")) | {"chosen": {"from": "gpt", "value": "a"},
                                                                      "rejected": {"from": "gpt", "value": "b"}}]), RK, stage="dpo")
    w("rk_chosen_str", jl([R("a", "b"), {"conversations": [{"from": "human", "value": "q"}], "chosen": "a", "rejected": "b"}]),
      RK, stage="dpo")
    w("rk_human_chosen", jl([R("a", "b"), {"conversations": [{"from": "human", "value": "q"}],
                                           "chosen": {"from": "human", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}}]),
      RK, stage="dpo")
    w("rk_alpaca", jl([{"instruction": "q", "input": "", "chosen": "a", "rejected": "b"},
                       {"instruction": "q", "input": "", "chosen": "a", "rejected": None}]),
      {"ranking": True, "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
      stage="dpo")
    w("rk_noflag", jl([{"instruction": "q", "input": "", "chosen": "a", "rejected": "b"}]),
      {"columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}}, stage="dpo")
    w("sft_on_ranking", jl([A("a", "", "b")]), {"ranking": True}, stage="sft")
    # kto
    w("kto_ok", jl([S(("human", "a"), ("gpt", "b")) | {"label": True}, S(("human", "a"), ("gpt", "c")) | {"label": False}]),
      KTO, stage="kto")
    w("kto_str", jl([S(("human", "a"), ("gpt", "b")) | {"label": True}, S(("human", "a"), ("gpt", "c")) | {"label": "false"}]),
      KTO, stage="kto")
    w("kto_all_str", jl([S(("human", "a"), ("gpt", "b")) | {"label": "true"}, S(("human", "a"), ("gpt", "c")) | {"label": "false"}]),
      KTO, stage="kto")
    w("kto_null", jl([S(("human", "a"), ("gpt", "b")) | {"label": True}, S(("human", "a"), ("gpt", "c")) | {"label": None}]),
      KTO, stage="kto")
    w("kto_alpaca_null", jl([A("a", "", "b") | {"label": True}, A("a", "", "c") | {"label": False}, A("a", "", None) | {"label": False}]),
      {"columns": {"prompt": "instruction", "query": "input", "response": "output", "kto_tag": "label"}}, stage="kto")
    w("kto_neighbour", jl(_kto_rows(30, {7})), KTO, stage="kto")
    w("kto_batches", jl(_kto_rows(2000, set(range(1000, 2000)))), KTO, stage="kto")
    # pretraining
    w("pt_ok", jl([{"text": big}, {"text": "the quick brown fox " * 30}]), {"columns": {"prompt": "text"}}, stage="pt")
    w("pt_small", jl([{"text": "hi"}]), {"columns": {"prompt": "text"}}, stage="pt")
    w("pt_int", jl([{"text": big}, {"text": 5}]), {"columns": {"prompt": "text"}}, stage="pt")
    w("pt_float_int", jl([{"text": big, "n": 1}, {"text": big, "n": 1.5}]), {"columns": {"prompt": "text"}}, stage="pt")
    w("pt_bool_int", jl([{"text": big, "n": 1}, {"text": big, "n": True}]), {"columns": {"prompt": "text"}}, stage="pt")
    w("pt_many", jl([{"text": f"document {i} " + "lorem ipsum dolor " * (i % 17)} for i in range(2500)]),
      {"columns": {"prompt": "text"}}, stage="pt")

    with open(os.path.join(root, "dataset_info.json"), "w") as f:
        json.dump(info, f, indent=1)
    return specs
