"""A corpus of valid and invalid LLaMA-Factory datasets, each a known failure mode.

Used by the agreement test: dsforge validate's usable-row count must equal what LLaMA-Factory's
own data pipeline keeps, dataset by dataset.
"""

from __future__ import annotations

import json
import os
import random
import struct
import zlib

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


def png(path: str) -> None:
    """Write a valid 2x2 red PNG (stdlib only)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 2 for _ in range(2))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


TOOL = {"name": "get_weather", "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
SG_TOOLS = {"formatting": "sharegpt", "columns": {"messages": "conversations", "tools": "tools"}}
OA = {"formatting": "openai", "columns": {"messages": "messages", "tools": "tools"}, "tags": OA_TAGS}
RC_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
IMG = {"formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"}, "tags": RC_TAGS}


def M(*m, **extra):
    return {"messages": [{"role": r, "content": c} for r, c in m], **extra}


def FC(name="get_weather", args=None):
    return json.dumps({"name": name, "arguments": args if args is not None else {"city": "Oslo"}})


def OAC(text, args='{"city": "Oslo"}', **fn):
    """An openai assistant message with text and one tool call (arguments as the API writes them: a string)."""
    return {"role": "assistant", "content": text,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": args, **fn}}]}


def build(root: str) -> list[tuple[str, str, str | None]]:
    """Write every case into root (with dataset_info.json); return [(name, stage, template or None)]."""
    os.makedirs(root, exist_ok=True)
    info: dict = {}
    specs: list[tuple[str, str, str | None]] = []

    def w(name, text, entry=None, stage="sft", ext="jsonl", template=None, fn=None):
        fn = fn or f"{name}.{ext}"
        os.makedirs(os.path.dirname(os.path.join(root, fn)), exist_ok=True)
        with open(os.path.join(root, fn), "wb" if isinstance(text, bytes) else "w",
                  **({} if isinstance(text, bytes) else {"encoding": "utf-8"})) as f:
            f.write(text)
        info[name] = {"file_name": fn, **(entry or {})}
        specs.append((name, stage, template))

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

    _issue10(w, root)

    with open(os.path.join(root, "dataset_info.json"), "w") as f:
        json.dump(info, f, indent=1)
    return specs


def _issue10(w, root: str) -> None:
    """Real LLaMA-Factory bug reports (/work/shared/cases/lf-bug-reports, inlined) and more of each kind."""
    ok2 = [S(("human", "a"), ("gpt", "b")), S(("human", "c"), ("gpt", "d"))]
    tools = json.dumps([TOOL])
    weather = S(("human", "Weather in Oslo?"), ("function_call", FC()), ("observation", '{"temp_c": 4}'),
                ("gpt", "It is 4 degrees in Oslo."))
    # 01: a tools value that is not JSON aborts the run (ToolFormatter); where it is never encoded it does not
    w("case01_tools_blank", json.dumps([weather | {"tools": tools}, S(("human", "Say hello."), ("gpt", "Hello!")) |
                                        {"tools": " "}, S(("human", "Name a prime."), ("gpt", "Seven.")) |
                                        {"tools": "[]"}], indent=1), SG_TOOLS, ext="json")
    w("tools_not_json", jl([r | {"tools": t} for r, t in zip(ok2, [tools, "get_weather"])]), SG_TOOLS)
    w("tools_empty_ok", jl([r | {"tools": t} for r, t in zip(ok2, ["", "[]"])]), SG_TOOLS)
    w("tools_dropped_row", jl([ok2[0] | {"tools": tools}, S(("human", "q")) | {"tools": "nope"}]), SG_TOOLS)
    w("tools_object", jl([r | {"tools": json.dumps(TOOL)} for r in ok2]), SG_TOOLS)
    w("tools_no_params", jl([r | {"tools": json.dumps([{"name": "f"}])} for r in ok2]), SG_TOOLS)
    w("tools_no_params_qwen", jl([r | {"tools": json.dumps([{"name": "f"}])} for r in ok2]), SG_TOOLS,
      template="qwen")
    w("tools_alpaca_bad", jl([A("a", "", "b") | {"tools": "{oops"}]),
      {"columns": {"prompt": "instruction", "query": "input", "response": "output", "tools": "tools"}})
    w("tools_openai_list_ok", jl([M(("user", "a"), ("assistant", "b"), tools=[TOOL])]), OA)
    # function-call messages: JSON with name and arguments; thought markers depend on the template
    w("fc_no_arguments", jl([S(("human", "a"), ("function_call", '{"name": "f"}'), ("observation", "o"),
                              ("gpt", "b"))]), SG)
    w("fc_thought_default", jl([S(("human", "a"), ("function_call", "<think>\nplan\n</think>\n\n" + FC()),
                                  ("observation", "o"), ("gpt", "b"))]), SG)
    w("fc_thought_tight", jl([S(("human", "a"), ("function_call", "<think>plan</think>" + FC()),
                                ("observation", "o"), ("gpt", "b"))]), SG)
    w("fc_thought_tight_hy3", jl([S(("human", "a"), ("function_call", "<think>plan</think>" + FC()),
                                    ("observation", "o"), ("gpt", "b"))]), SG, template="hy3")
    # 05: openai assistant text + tool_calls: kept, text lost, string arguments encoded twice (warnings)
    w("case05_oa_text_tool_calls", jl([{"messages": [{"role": "user", "content": f"Weather in {c}?"}, OAC(t),
                                                      {"role": "tool", "content": '{"temp_c": 4}'},
                                                      {"role": "assistant", "content": "It is 4 degrees."}],
                                        "tools": tools} for c, t in (("Oslo", "I will look that up for you."),
                                                                     ("Rome", "Checking Rome now."))]), OA)
    w("oa_trailing_tool", jl([{"messages": [{"role": "user", "content": "a"}, OAC(""),
                                            {"role": "tool", "content": "r"}]}]), OA)
    w("oa_tool_content_null", jl([{"messages": [{"role": "user", "content": "a"}, OAC(""), {"role": "tool", "content": None},
                                                {"role": "assistant", "content": "b"}]}]), OA)
    w("oa_tool_call_no_function", jl([{"messages": [{"role": "user", "content": "a"},
                                                    {"role": "assistant", "content": "", "tool_calls": [{"type": "function"}]},
                                                    {"role": "tool", "content": "r"}, {"role": "assistant", "content": "b"}]}]), OA)
    # 08: media paths resolve against media_dir (= dataset_dir), not the data file's folder
    png(os.path.join(root, "set_a", "pics", "red.png"))
    pic = "<image>What colour is this?"
    w("case08_media_subfolder", jl([M(("user", pic), ("assistant", "Red."), images=["pics/red.png"])]), IMG,
      template="llava", fn="set_a/pictures.jsonl")
    w("media_ok_llava", jl([M(("user", pic), ("assistant", "Red."), images=["set_a/pics/red.png"])]), IMG,
      template="llava")
    w("media_count_llava", jl([M(("user", "<image><image>" + pic), ("assistant", "Red."), images=["set_a/pics/red.png"]),
                               M(("user", "q"), ("assistant", "a"), images=[])]), IMG, template="llava")
    w("media_missing_llava", jl([M(("user", pic), ("assistant", "Red."), images=["set_a/pics/red.png"]),
                                 M(("user", pic), ("assistant", "Blue."), images=["nowhere/blue.png"])]), IMG,
      template="llava")
    w("media_text_template", jl([M(("user", pic), ("assistant", "Red."), images=["set_a/pics/red.png"])]), IMG)
    w("media_placeholder_only", jl([M(("user", pic), ("assistant", "Red."), images=[]),
                                    M(("user", "q"), ("assistant", "a"), images=[])]), IMG)
    # 09: KTO without columns.kto_tag: every row is an SFT row, dropped ("Cannot find valid samples")
    kto_rows = [M(("user", q), ("assistant", a), label=lb) for q, a, lb in
                (("2+2?", "4", True), ("Capital of France?", "Berlin", False), ("Opposite of hot?", "Cold", True))]
    w("case09_kto_unmapped", json.dumps(kto_rows, indent=1), {"formatting": "sharegpt", "columns": {"messages": "messages"},
                                                             "tags": RC_TAGS}, stage="kto", ext="json")
    w("kto_unmapped_alpaca", jl([A("q", "", "a") | {"good": True}, A("r", "", "b") | {"good": False}]), stage="kto")
    # 11: pretraining data used with stage sft
    pt = [{"text": t} for t in ("The river freezes every winter and thaws in April.",
                                "Bread rises because yeast produces gas.",
                                "A lighthouse warns ships of rocks near the coast.")]
    w("case11_pt_as_sft", jl(pt), {"columns": {"prompt": "text"}})
    w("pt_as_kto", jl(pt), {"columns": {"prompt": "text"}}, stage="kto")
    w("all_dropped", jl([S(("human", "a")), S(("human", "b"))]), SG)
    # 14: split on a local file
    heldout = [A("Translate to French: cat", "", "chat"), A("Translate to French: dog", "", "chien")]
    w("case14_split_test", json.dumps(heldout, indent=1), {"split": "test"}, ext="json")
    w("split_validation", jl(heldout), {"split": "validation"})
    w("split_slice", jl(heldout + [A("x", "", "y")]), {"split": "train[:2]"})
    w("split_percent", jl(heldout * 2), {"split": "train[50%:]"})
    # 15: num_samples over- and under-samples (seeded permutation, then draws with replacement)
    ident = [A("Who are you?", "", "I am Quill, a writing assistant."), A("What is your name?", "", "My name is Quill."),
             A("Who made you?", "", "The Quill team built me.")]
    w("case15_num_samples_over", json.dumps(ident, indent=1), {"num_samples": 8}, ext="json")
    w("num_samples_under", jl(ident * 2), {"num_samples": 4})
    mixed = [A(f"q{i}", "", f"a{i}") if i % 3 else A(f"q{i}", "", None) for i in range(12)]
    w("num_samples_mixed", jl(mixed), {"num_samples": 5})
    w("num_samples_mixed_over", jl(mixed), {"num_samples": 30})
    w("num_samples_zero", jl(ident), {"num_samples": 0})
    w("num_samples_split", jl(mixed), {"split": "train[:6]", "num_samples": 9})
    # keys LLaMA-Factory ignores for a local file
    w("subset_folder_local", jl(ident), {"subset": "en", "folder": "x"})
