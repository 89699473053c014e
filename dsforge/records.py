"""Typed records: LLaMA-Factory rows, the dataset_info.json entry, and dsforge's own conversation.

Row models describe what LLaMA-Factory 0.9.5 accepts; `schemas/*.schema.json` are generated from
them (scripts/gen_schemas.py) and a test fails when they drift. User-written config
(DatasetInfoEntry) forbids unknown keys, so a typo such as "format" is an error, not silence.
Validation of big files does not go through pydantic (see validate.py): these models are the
contract, the validator is the fast mirror of LLaMA-Factory's loader.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

Role = Literal["system", "user", "assistant", "tool", "function_call"]
FORMATTINGS = ("alpaca", "sharegpt", "openai")
STAGES = ("pt", "sft", "rm", "dpo", "kto", "ppo")
RANKING_STAGES = ("rm", "dpo")


class _Row(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------- LLaMA-Factory rows


class PretrainRow(_Row):
    """Pretraining row: `{"text": ...}`, registered with columns {"prompt": "text"}."""

    text: StrictStr


class AlpacaRow(_Row):
    """Alpaca SFT row. `history` is a list of [instruction, response] pairs of earlier turns."""

    instruction: StrictStr
    input: StrictStr = ""
    output: StrictStr
    system: StrictStr | None = None
    history: list[tuple[StrictStr, StrictStr]] | None = None


class AlpacaRankingRow(_Row):
    """Alpaca ranking (DPO/RM) row: chosen and rejected are strings."""

    instruction: StrictStr
    input: StrictStr = ""
    chosen: StrictStr
    rejected: StrictStr
    system: StrictStr | None = None
    history: list[tuple[StrictStr, StrictStr]] | None = None


class AlpacaKTORow(_Row):
    """Alpaca KTO row: one answer and a JSON boolean label."""

    instruction: StrictStr
    input: StrictStr = ""
    output: StrictStr
    kto_tag: StrictBool
    system: StrictStr | None = None


class ShareGPTMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_: Literal["system", "human", "gpt", "observation", "function_call"] = Field(alias="from")
    value: StrictStr


class ShareGPTRow(_Row):
    """ShareGPT SFT row: optional leading system turn, then human/gpt alternating, even count."""

    conversations: list[ShareGPTMessage] = Field(min_length=2)
    system: StrictStr | None = None
    tools: StrictStr | None = None
    images: list[StrictStr] | None = None
    videos: list[StrictStr] | None = None
    audios: list[StrictStr] | None = None


class ShareGPTRankingRow(_Row):
    """ShareGPT ranking row: odd conversation ending on a human turn; chosen/rejected are single messages."""

    conversations: list[ShareGPTMessage] = Field(min_length=1)
    chosen: ShareGPTMessage
    rejected: ShareGPTMessage
    system: StrictStr | None = None
    tools: StrictStr | None = None


class ShareGPTKTORow(_Row):
    """ShareGPT KTO row: even conversation (the last gpt turn is judged) and a JSON boolean label."""

    conversations: list[ShareGPTMessage] = Field(min_length=2)
    kto_tag: StrictBool
    system: StrictStr | None = None


class OpenAIMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool"]
    content: StrictStr


class OpenAIRow(_Row):
    """OpenAI-style row: `messages` with role/content (register it with explicit tags)."""

    messages: list[OpenAIMessage] = Field(min_length=2)
    tools: StrictStr | None = None


# ---------------------------------------------------------------- dataset_info.json entry


class Columns(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str | None = None
    query: str | None = None
    response: str | None = None
    history: str | None = None
    messages: str | None = None
    system: str | None = None
    tools: str | None = None
    images: str | None = None
    videos: str | None = None
    audios: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    kto_tag: str | None = None


class Tags(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role_tag: str | None = None
    content_tag: str | None = None
    user_tag: str | None = None
    assistant_tag: str | None = None
    observation_tag: str | None = None
    function_tag: str | None = None
    system_tag: str | None = None


class DatasetInfoEntry(BaseModel):
    """One entry of LLaMA-Factory's dataset_info.json (every key 0.9.5 reads)."""

    model_config = ConfigDict(extra="forbid")
    file_name: str | None = None
    hf_hub_url: str | None = None
    ms_hub_url: str | None = None
    om_hub_url: str | None = None
    script_url: str | None = None
    cloud_file_name: str | None = None
    formatting: Literal["alpaca", "sharegpt", "openai"] = "alpaca"
    ranking: StrictBool = False
    subset: str | None = None
    split: str = "train"
    folder: str | None = None
    num_samples: int | None = None
    columns: Columns | None = None
    tags: Tags | None = None


ENTRY_KEYS = tuple(DatasetInfoEntry.model_fields)
COLUMN_KEYS = tuple(Columns.model_fields)
TAG_KEYS = tuple(Tags.model_fields)


@dataclass
class LFAttrs:
    """The attributes LLaMA-Factory 0.9.5 derives from an entry (parser.DatasetAttr.join).

    Mirrors its quirks on purpose: when "columns" (or "tags") is present, every key it does not
    name becomes None, not the default; unknown keys are ignored.
    """

    formatting: str = "alpaca"
    ranking: object = False
    system: str | None = None
    tools: str | None = None
    images: str | None = None
    videos: str | None = None
    audios: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    kto_tag: str | None = None
    prompt: str | None = "instruction"
    query: str | None = "input"
    response: str | None = "output"
    history: str | None = None
    messages: str | None = "conversations"
    role_tag: str | None = "from"
    content_tag: str | None = "value"
    user_tag: str | None = "human"
    assistant_tag: str | None = "gpt"
    observation_tag: str | None = "observation"
    function_tag: str | None = "function_call"
    system_tag: str | None = "system"

    @classmethod
    def from_entry(cls, entry: dict) -> "LFAttrs":
        attrs = cls()
        attrs.formatting = entry.get("formatting", "alpaca")
        attrs.ranking = entry.get("ranking", False)
        if isinstance(entry.get("columns"), dict):
            for key in COLUMN_KEYS:
                setattr(attrs, key, entry["columns"].get(key))
        if isinstance(entry.get("tags"), dict):
            for key in TAG_KEYS:
                setattr(attrs, key, entry["tags"].get(key))
        return attrs

    def used_columns(self) -> dict[str, str]:
        names = ("prompt", "query", "response", "history", "system", "tools", "images", "videos",
                 "audios", "chosen", "rejected", "kto_tag")
        if self.formatting != "alpaca":
            names = ("messages", "system", "tools", "images", "videos", "audios", "chosen", "rejected", "kto_tag")
        return {n: getattr(self, n) for n in names if getattr(self, n)}


# ---------------------------------------------------------------- dsforge's own records


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant", "tool", "function_call"]
    content: str


def prompt_id(messages: list[dict]) -> str:
    """Stable id of a prompt: sha256 of its canonical messages (role + content only), 16 hex chars."""
    canon = json.dumps([[m["role"], m["content"]] for m in messages], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()[:16]


@dataclass
class Conversation:
    """A format-neutral example: OpenAI roles inside, LLaMA-Factory shapes only at the boundary."""

    messages: list[dict] = field(default_factory=list)  # [{"role", "content"}], no system turn
    system: str | None = None
    tools: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    kto_tag: bool | None = None
    extra: dict = field(default_factory=dict)  # images/videos/audios passthrough

    def prompt_messages(self) -> list[dict]:
        """Messages up to and including the last user turn (what a model is asked to answer)."""
        msgs = self.messages
        if msgs and msgs[-1]["role"] == "assistant" and self.chosen is None:
            msgs = msgs[:-1]
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + list(msgs)


ROW_MODELS: dict[str, type[BaseModel]] = {
    "pt": PretrainRow,
    "alpaca": AlpacaRow,
    "alpaca_ranking": AlpacaRankingRow,
    "alpaca_kto": AlpacaKTORow,
    "sharegpt": ShareGPTRow,
    "sharegpt_ranking": ShareGPTRankingRow,
    "sharegpt_kto": ShareGPTKTORow,
    "openai": OpenAIRow,
    "dataset_info_entry": DatasetInfoEntry,
}
