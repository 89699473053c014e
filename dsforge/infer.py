"""Infer a dataset's kind, formatting, columns and tags from its rows.

The same inference feeds `validate` (when no dataset_info entry is given) and `register` (which
writes it out), so what validate checked is exactly what gets registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Iterable

from dsforge.errors import InputError
from dsforge.stages import TARGETS

MESSAGE_COLS = ("conversations", "messages")
PROMPT_COLS = ("instruction", "prompt", "question")
QUERY_COLS = ("input", "query")
RESPONSE_COLS = ("output", "response", "answer")
KTO_COLS = ("kto_tag", "label")
MEDIA = ("images", "videos", "audios")

KINDS = TARGETS   # what convert builds (dsforge.stages)
STAGE_FOR_KIND = {"pt": "pt", "sft": "sft", "ranking": "dpo", "kto": "kto"}
KIND_FOR_STAGE = {"pt": "pt", "sft": "sft", "rm": "ranking", "dpo": "ranking", "kto": "kto", "ppo": "sft"}


@dataclass
class Inferred:
    """What infer_entry found: `kind` (one of KINDS), the dataset_info `entry` (formatting, ranking,
    columns, and tags for sharegpt/openai), and `notes` (choices worth telling the user)."""

    kind: str
    entry: dict
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Short text for messages, e.g. 'ranking (sharegpt, ranking)' or 'pt (alpaca)'."""
        fmt = self.entry.get("formatting", "alpaca")
        return f"{self.kind} ({fmt}{', ranking' if self.entry.get('ranking') else ''})"


def infer_entry(rows: Iterable[dict], path: str = "", sample: int = 1000) -> Inferred:
    """Look at up to `sample` rows and build the dataset_info entry LLaMA-Factory needs for them.

    Rows that are not objects are skipped. Mirrors the column/tag names LLaMA-Factory 0.9.5 reads
    (llamafactory/data/parser.py, DatasetAttr and get_dataset_list). Returns an Inferred; kind is
    'ranking' when chosen and rejected columns exist, 'kto' with a boolean kto_tag/label column,
    'pt' for a lone 'text' column, else 'sft'. Raises InputError (exit 1, naming `path`) when
    there is no row, or no column that tells the format.
    """
    keys: dict[str, int] = {}
    kinds: dict[str, set] = {}
    msg_keys: set[str] = set()
    roles: set = set()
    tool_calls = False
    for row in islice(rows, sample):
        if not isinstance(row, dict):
            continue
        for k, v in row.items():
            keys[k] = keys.get(k, 0) + 1
            kinds.setdefault(k, set()).add(type(v).__name__)
        for col in MESSAGE_COLS:
            msgs = row.get(col)
            if isinstance(msgs, list):
                for m in msgs:
                    if isinstance(m, dict):
                        msg_keys.update(m)
                        roles.add(m.get("from", m.get("role")))
                        tool_calls = tool_calls or bool(m.get("tool_calls"))
        for side in ("chosen", "rejected"):
            if isinstance(row.get(side), dict):
                roles.add(row[side].get("from", row[side].get("role")))
                msg_keys.update(row[side])
    if not keys:
        raise InputError("no rows to infer the format from", "the file is empty", path=path)

    has = keys.__contains__
    ranking = has("chosen") and has("rejected")
    kto_col = next((c for c in KTO_COLS if has(c) and "bool" in kinds[c]), None)
    notes: list[str] = []

    msg_col = next((c for c in MESSAGE_COLS if has(c) and "list" in kinds[c]), None)
    if msg_col:
        columns: dict = {"messages": msg_col}
        if "from" in msg_keys or "value" in msg_keys:
            role_tag, content_tag = "from", "value"
        else:
            role_tag, content_tag = "role", "content"
        user = "human" if "human" in roles else "user"
        assistant = "gpt" if "gpt" in roles else "assistant"
        observation = "observation" if "observation" in roles or role_tag == "from" else "tool"
        tags = {"role_tag": role_tag, "content_tag": content_tag, "user_tag": user, "assistant_tag": assistant,
                "observation_tag": observation, "function_tag": "function_call", "system_tag": "system"}
        formatting = "openai" if tool_calls else "sharegpt"
        if tool_calls:
            notes.append("rows carry OpenAI tool_calls: using formatting 'openai' (LLaMA-Factory adds "
                         "'detailed thinking off' to the system prompt when a row has no tools)")
        for c in ("system", "tools", *MEDIA):
            if has(c):
                columns[c] = c
        entry = {"formatting": formatting, "ranking": ranking, "columns": columns, "tags": tags}
        kind = "sft"
    else:
        prompt = next((c for c in PROMPT_COLS if has(c)), None)
        response = next((c for c in RESPONSE_COLS if has(c)), None)
        if prompt is None and has("text"):
            return Inferred("pt", {"formatting": "alpaca", "ranking": False, "columns": {"prompt": "text"}},
                            ["rows have a 'text' column only: pretraining data"])
        if prompt is None:
            raise InputError(
                f"cannot tell the format from the columns {sorted(keys)}",
                "expected 'text' (pretraining), 'instruction'/'output' (alpaca) or 'conversations'/'messages' "
                "(sharegpt/openai); map your columns with convert --map, or pass --dataset-info", path=path)
        columns = {"prompt": prompt}
        query = next((c for c in QUERY_COLS if has(c)), None)
        if query:
            columns["query"] = query
        if response and not ranking:
            columns["response"] = response
        for c in ("history", "system", "tools", *MEDIA):
            if has(c):
                columns[c] = c
        entry = {"formatting": "alpaca", "ranking": ranking, "columns": columns}
        kind = "sft"
        if kto_col and response:
            columns["response"] = response
    if ranking:
        entry["columns"].update(chosen="chosen", rejected="rejected")
        kind = "ranking"
    elif kto_col:
        entry["columns"]["kto_tag"] = kto_col
        kind = "kto"
    return Inferred(kind, entry, notes)
