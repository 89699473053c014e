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

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictBool, StrictStr

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


# ---------------------------------------------------------------- records between stages
# What `sample` writes (Candidate), what `judge`, `dsforge review` and verifiers add (Judgement) and
# what `pairs`, `report`, `run` and `review` read (JudgedCandidate). Unknown keys are allowed (a newer
# writer may add some), but every key a reader uses is listed here. dsforge.candidates reads and
# writes them; schemas/candidate.schema.json and judged_candidate.schema.json are generated from them.


class CandidateMessage(BaseModel):
    """One prompt message of a candidate (OpenAI roles; extra keys such as tool_calls pass through)."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool", "function_call"]
    content: StrictStr


class Candidate(BaseModel):
    """One distinct answer to one prompt, with provenance (one line of `dsforge sample`'s output).

    Required: prompt_id, messages (the prompt, ending on the user turn), text (the answer). The rest
    is provenance `sample` always writes (None where an engine does not report it). `reference` is the
    prompt row's `reference` field when it has one; `fields` holds the prompt-row fields named by
    `sample --carry` (absent when none were named), kept apart so that a user field can never
    shadow a candidate key.
    """

    model_config = ConfigDict(extra="allow")
    prompt_id: StrictStr
    messages: list[CandidateMessage] = Field(min_length=1)
    text: StrictStr
    model: str | None = None
    engine: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    sample_index: int | None = None
    duplicate_indices: list[int] = Field(default_factory=list)   # sample indices that gave the same text
    finish_reason: str | None = None
    truncated: bool = False                  # finish_reason == "length": excluded from pairs by default
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    mean_logprob: float | None = None        # mean token logprob (nats) when the engine gives logprobs
    source: str | None = None                # FILE:LINE of the prompt row
    run: str | None = None                   # SampleConfig.fingerprint() of the run that wrote it
    n_emulated: bool = False                 # the server ignored n; dsforge sent follow-up requests
    reference: JsonValue = None              # the prompt row's reference answer (verifiers check against it)
    fields: dict[str, JsonValue] | None = None   # prompt-row fields named by `sample --carry`


JudgeKind = Literal["llm", "verifier", "human"]


class Judgement(BaseModel):
    """The `judge` field of a judged candidate: who scored it, how, and the score or the reason for none.

    A score is never invented: score None comes with an `error` reason (e.g. truncated_not_judged,
    not_compared, not_reviewed, flagged_unusable, or a parse failure). `kind` absent means "llm"
    (files written before kinds existed). Verifier judgements add answer/correct/format_ok.
    """

    model_config = ConfigDict(extra="allow")
    kind: JudgeKind = "llm"
    model: str | None = None
    rubric: str | None = None
    rubric_hash: str | None = None
    mode: str | None = None                  # pointwise | pairwise (llm), score | rank | pairwise (human)
    score: float | None = None
    votes: list[JsonValue] | None = None
    rationale: JsonValue = None
    raw: list[JsonValue] | None = None       # the judge's raw reply text(s), kept for inspection
    attempts: int | None = None
    error: str | None = None
    expected_score: float | None = None      # probability-weighted score (llm judges with logprobs)
    games: int | None = None                 # pairwise: comparisons this candidate took part in
    wins: float | None = None                # pairwise: wins (ties count half)
    verifier: str | None = None              # verifier kind: exact | numeric | math | regex:... | python:...
    correct: bool | None = None              # verifier, lenient: the answer is right wherever it stands
    format_ok: bool | None = None            # verifier, strict: the reply has the form the prompt asked for
    answer: JsonValue = None                 # verifier: the answer extracted from the reply
    annotator: str | None = None             # human: the annotators' names, comma-separated
    annotators: int | None = None            # human: how many labelled this candidate
    seconds: float | None = None             # human: labelling time, summed over annotators
    labels: list[dict[str, JsonValue]] | None = None   # human: one label per annotator (score/rank/games, flag)
    flags: list[JsonValue] | None = None     # human: why annotators flagged it unusable


class JudgedCandidate(Candidate):
    """A Candidate with its Judgement (one line of `dsforge judge` / `dsforge review` output)."""

    judge: Judgement
    prior_judge: Judgement | None = None     # review: the judgement the row had before a human labelled it


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

STAGE_RECORDS: dict[str, type[BaseModel]] = {"candidate": Candidate, "judged_candidate": JudgedCandidate}
