"""Record <-> Conversation <-> LLaMA-Factory row. Pure functions, no I/O."""

from __future__ import annotations

import json

from dsforge.records import FORMATTINGS, Conversation

FORMATS = FORMATTINGS   # dataset_info `formatting` values (records.FORMATTINGS)
SHAREGPT_ROLE = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation",
                 "function_call": "function_call"}
FROM_SHAREGPT = {"human": "user", "gpt": "assistant", "system": "system", "observation": "tool",
                 "function_call": "function_call", "user": "user", "assistant": "assistant", "tool": "tool"}
BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False,
              "good": True, "bad": False, "desirable": True, "undesirable": False}


class ConversionError(ValueError):
    """A record that cannot become the requested shape; the message says which field and why."""

    def __init__(self, message: str, field: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.field, self.hint = field, hint


def _str(value, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # raw corpora (csv) often hold numbers where text belongs
    raise ConversionError(f"'{field}' is {type(value).__name__}, expected text", field)


def _bool(value, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in BOOL_WORDS:
        return BOOL_WORDS[value.strip().lower()]
    raise ConversionError(f"'{field}' is {value!r}; cannot read it as a true/false label", field,
                          "use true/false, 1/0, yes/no or good/bad")


def _messages(raw: list, field: str) -> list[dict]:
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise ConversionError(f"{field}[{i}] is not an object", field)
        role = m.get("role", m.get("from"))
        content = m.get("content", m.get("value"))
        if role not in FROM_SHAREGPT:
            raise ConversionError(f"{field}[{i}] has unknown role {role!r}", field,
                                  "roles: system/user/assistant/tool or human/gpt/observation/function_call")
        if m.get("tool_calls"):
            if isinstance(content, str) and content.strip():
                raise ConversionError(f"{field}[{i}] has both text and tool_calls; LLaMA-Factory trains only the tool "
                                      f"calls of such a turn, so the text {content[:40]!r} would be lost", field,
                                      "move the text into its own turn or drop it, then convert again")
            content = tool_calls_to_json(m["tool_calls"], f"{field}[{i}].tool_calls")
            role = "function_call"
        if content is None:
            raise ConversionError(f"{field}[{i}] has no content", field)
        out.append({"role": FROM_SHAREGPT[role], "content": _str(content, f"{field}[{i}].content")})
    return out


def tool_calls_to_json(calls, where: str) -> str:
    """OpenAI `tool_calls` as the content of a LLaMA-Factory function_call turn: a JSON list of
    {"name", "arguments"} with arguments an object (a JSON-string argument is decoded, or LLaMA-Factory
    would encode it a second time). Raises ConversionError for a call without name or with non-JSON arguments."""
    out = []
    for j, t in enumerate(calls if isinstance(calls, list) else [calls]):
        fn = t.get("function", t) if isinstance(t, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise ConversionError(f"{where}[{j}] has no function name", where, "write {\"function\": {\"name\": ..., "
                                  "\"arguments\": {...}}}")
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                raise ConversionError(f"{where}[{j}].function.arguments is not JSON: {args[:40]!r}", where,
                                      "write the arguments as a JSON object") from None
        out.append({"name": fn["name"], "arguments": args})
    return json.dumps(out, ensure_ascii=False)


def json_to_tool_calls(content: str, where: str) -> list[dict]:
    """The inverse of tool_calls_to_json: a function_call turn as OpenAI tool_calls (arguments as objects,
    which LLaMA-Factory's openai converter needs). Raises ConversionError when the turn is not such JSON."""
    try:
        calls = json.loads(content)
    except ValueError:
        raise ConversionError(f"{where} is not JSON, so it cannot become tool_calls: {content[:40]!r}", where,
                              "write function calls as {\"name\": ..., \"arguments\": {...}}") from None
    calls = calls if isinstance(calls, list) else [calls]
    if not all(isinstance(c, dict) and "name" in c for c in calls):
        raise ConversionError(f"{where} holds a call without a name", where)
    return [{"type": "function", "function": {"name": c["name"], "arguments": c.get("arguments", {})}} for c in calls]


def to_conversation(record: dict, mapping: dict[str, str] | None = None, *, system: str | None = None) -> Conversation:
    """Read a raw or LLaMA-Factory record into a Conversation.

    mapping renames source columns to dsforge names (instruction, input, output, system, history,
    messages, chosen, rejected, kto_tag, tools, text); unmapped names are looked up as is. Roles
    become OpenAI roles (human -> user, gpt -> assistant, observation -> tool); a leading system
    turn, the `system` column, else `system` fill conv.system; alpaca input is appended to the
    instruction on a new line; kto_tag (or label) is read leniently (true/false, 1/0, yes/no,
    good/bad). Raises ConversionError (field + hint) for a missing prompt, an unknown role, a
    non-text value, a malformed history pair or tool call, or an unreadable label.
    """
    mapping = mapping or {}

    def col(name: str):
        src = mapping.get(name, name)
        return record.get(src), src

    conv = Conversation()
    msgs, src = col("messages")
    if msgs is None:
        msgs, src = col("conversations")
    if msgs is not None:
        if not isinstance(msgs, list):
            raise ConversionError(f"'{src}' is not a list of messages", src)
        turns = _messages(msgs, src)
        if turns and turns[0]["role"] == "system":
            conv.system = turns[0]["content"]
            turns = turns[1:]
        conv.messages = turns
    else:
        instr, isrc = col("instruction")
        if instr is None:
            raise ConversionError(f"no '{isrc}' field (and no messages/conversations)", isrc,
                                  f"map your prompt column: --map instruction=COLUMN (columns: {sorted(record)[:10]})")
        hist, hsrc = col("history")
        if hist:
            for i, pair in enumerate(hist):
                if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                    raise ConversionError(f"{hsrc}[{i}] is not an [instruction, response] pair", hsrc)
                conv.messages += [{"role": "user", "content": _str(pair[0], hsrc)},
                                  {"role": "assistant", "content": _str(pair[1], hsrc)}]
        query, qsrc = col("input")
        text = _str(instr, isrc)
        if query not in (None, ""):
            text = f"{text}\n{_str(query, qsrc)}" if text else _str(query, qsrc)
        conv.messages.append({"role": "user", "content": text})
        out, osrc = col("output")
        if out is not None:
            conv.messages.append({"role": "assistant", "content": _str(out, osrc)})
    sys_val, ssrc = col("system")
    if sys_val:
        conv.system = _str(sys_val, ssrc)
    if system is not None and not conv.system:
        conv.system = system
    tools, _ = col("tools")
    if tools:
        conv.tools = tools if isinstance(tools, str) else __import__("json").dumps(tools, ensure_ascii=False)
    for side in ("chosen", "rejected"):
        val, vsrc = col(side)
        if val is not None:
            if isinstance(val, dict):
                val = val.get("content", val.get("value"))
            setattr(conv, side, _str(val, vsrc))
    kto, ksrc = col("kto_tag")
    if kto is None and "kto_tag" not in mapping:
        kto, ksrc = col("label")
    if kto is not None:
        conv.kto_tag = _bool(kto, ksrc)
    for media in ("images", "videos", "audios"):
        val, _ = col(media)
        if val:
            conv.extra[media] = val
    return conv


def _split_pairs(msgs: list[dict]) -> list[tuple[str, str]]:
    pairs = []
    for i in range(0, len(msgs) - 1, 2):
        u, a = msgs[i], msgs[i + 1]
        if u["role"] != "user" or a["role"] != "assistant":
            raise ConversionError("alpaca holds only user/assistant turns in order; this conversation has "
                                  f"{u['role']}/{a['role']}", "messages", "use --format sharegpt for tool turns")
        pairs.append((u["content"], a["content"]))
    return pairs


def from_conversation(conv: Conversation, kind: str, fmt: str) -> dict:
    """The LLaMA-Factory row for this conversation (kind: sft|ranking|kto; fmt: alpaca|sharegpt|openai).

    The shapes LLaMA-Factory 0.9.5 reads (llamafactory/data/converter.py: AlpacaDatasetConverter,
    SharegptDatasetConverter, OpenAIDatasetConverter): alpaca {instruction, input, output | chosen,
    rejected (strings), system?, history?}; sharegpt {conversations [{from, value}], system?, tools?};
    openai {messages [{role, content}]} with function_call turns as tool_calls. Ranking rows end on
    a user turn and carry chosen/rejected (single message objects outside alpaca); kto rows carry a
    boolean kto_tag; media lists are copied. Raises ConversionError for an unknown format, an empty
    prompt or answer, ranking without both answers, a conversation without an answer to train on, or
    turns alpaca cannot hold.
    """
    if fmt not in FORMATS:
        raise ConversionError(f"unknown format '{fmt}'", hint="use alpaca, sharegpt or openai")
    msgs = list(conv.messages)
    for i, m in enumerate(msgs):
        if not m["content"].strip() and m["role"] in ("user", "assistant"):
            raise ConversionError(f"empty {'answer' if m['role'] == 'assistant' else 'prompt'} (turn {i + 1})",
                                  "output" if m["role"] == "assistant" else "instruction",
                                  "fill it in, or pass --skip-bad to drop such rows")
    if kind == "ranking":
        if conv.chosen is None or conv.rejected is None:
            raise ConversionError("ranking rows need both chosen and rejected", "chosen",
                                  "map them: --map chosen=COL --map rejected=COL")
        if msgs and msgs[-1]["role"] == "assistant":
            msgs = msgs[:-1]
        if not conv.chosen.strip() or not conv.rejected.strip():
            raise ConversionError("empty chosen or rejected answer", "chosen")
        if not msgs or msgs[-1]["role"] != "user":
            raise ConversionError("a ranking prompt must end with a user turn", "messages")
    else:
        if not msgs or msgs[-1]["role"] != "assistant":
            raise ConversionError("no assistant answer to train on", "output",
                                  "map the answer column: --map output=COLUMN")
        if kind == "kto" and conv.kto_tag is None:
            raise ConversionError("KTO rows need a true/false label", "kto_tag", "map it: --map kto_tag=COLUMN")
    if fmt == "alpaca":
        if kind == "ranking":
            pairs, last = _split_pairs(msgs[:-1]), msgs[-1]["content"]
        else:
            pairs = _split_pairs(msgs)
            if len(pairs) * 2 != len(msgs):
                raise ConversionError("conversation does not end on an assistant turn", "messages")
            last = None
        row: dict = {}
        if kind == "ranking":
            row = {"instruction": last, "input": ""}
            hist = pairs
        else:
            *hist, (q, a) = pairs
            row = {"instruction": q, "input": "", "output": a}
        if conv.system:
            row["system"] = conv.system
        if hist:
            row["history"] = [list(p) for p in hist]
    else:
        if fmt == "sharegpt":
            row = {"conversations": [{"from": SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in msgs]}
            if conv.system:
                row["system"] = conv.system
        else:
            seq = ([{"role": "system", "content": conv.system}] if conv.system else [])
            row = {"messages": seq + [
                {"role": "assistant", "content": "", "tool_calls": json_to_tool_calls(m["content"], f"turn {i + 1}")}
                if m["role"] == "function_call" else {"role": m["role"], "content": m["content"]}
                for i, m in enumerate(msgs)]}
        if conv.tools:
            row["tools"] = conv.tools
    if kind == "ranking":
        if fmt == "alpaca":
            row["chosen"], row["rejected"] = conv.chosen, conv.rejected
        elif fmt == "sharegpt":
            row["chosen"] = {"from": "gpt", "value": conv.chosen}
            row["rejected"] = {"from": "gpt", "value": conv.rejected}
        else:
            row["chosen"] = {"role": "assistant", "content": conv.chosen}
            row["rejected"] = {"role": "assistant", "content": conv.rejected}
    if kind == "kto":
        row["kto_tag"] = conv.kto_tag
    for media, val in conv.extra.items():
        row[media] = val
    return row


def entry_for(kind: str, fmt: str, *, system: bool = False, history: bool = False, tools: bool = False,
              media: tuple[str, ...] = ()) -> dict:
    """The dataset_info.json entry for rows written by from_conversation, every key spelled out.

    Returns {formatting, ranking, columns {...}, tags {...} (sharegpt/openai only)}; kind 'pt' gives
    the pretraining entry {"columns": {"prompt": "text"}}. Key names mirror LLaMA-Factory 0.9.5's
    DatasetAttr (llamafactory/data/parser.py); openai data gets every tag spelled out, since
    LLaMA-Factory's defaults are sharegpt's. No system column for openai (the system is a message).
    """
    if kind == "pt":
        return {"formatting": "alpaca", "ranking": False, "columns": {"prompt": "text"}}
    ranking = kind == "ranking"
    if fmt == "alpaca":
        cols = {"prompt": "instruction", "query": "input"}
        if not ranking:
            cols["response"] = "output"
        if history:
            cols["history"] = "history"
    else:
        cols = {"messages": "conversations" if fmt == "sharegpt" else "messages"}
        if tools:
            cols["tools"] = "tools"
    if system and fmt != "openai":
        cols["system"] = "system"
    if ranking:
        cols.update(chosen="chosen", rejected="rejected")
    if kind == "kto":
        cols["kto_tag"] = "kto_tag"
    for m in media:
        cols[m] = m
    entry = {"formatting": fmt, "ranking": ranking, "columns": cols}
    if fmt == "sharegpt":
        entry["tags"] = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                         "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
    elif fmt == "openai":
        entry["tags"] = {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                         "assistant_tag": "assistant", "observation_tag": "tool", "function_tag": "function_call",
                         "system_tag": "system"}
    return entry
