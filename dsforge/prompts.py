"""Prompt rows -> the messages a model is asked to answer, for every stage that reads prompts (sample, eval).

A prompt row is alpaca (instruction + input), sharegpt/openai conversations (the last user turn is
answered, earlier turns are context, a trailing assistant answer is dropped), or a plain column
(`--map instruction=COLUMN`; without a mapping prompt/question/query/text are tried in that order).
"""

from __future__ import annotations

from dsforge.formats.rows import ConversionError, to_conversation

PROMPT_FALLBACKS = ("instruction", "prompt", "question", "query", "text")


def prompt_record(rec, mapping: dict | None = None) -> dict:
    """The row with a plain prompt column named `instruction` (unchanged when it already has one, when it
    has messages/conversations, or when a mapping says where the prompt is). ConversionError for a
    row that is not a JSON object."""
    if not isinstance(rec, dict):
        raise ConversionError("a row is not an object", None, "each row must be a JSON object")
    if mapping or any(k in rec for k in ("messages", "conversations", "instruction")):
        return rec
    for name in PROMPT_FALLBACKS[1:]:
        if isinstance(rec.get(name), str):
            return {**rec, "instruction": rec[name]}
    return rec


def prompt_messages(rec, mapping: dict | None = None, system: str | None = None) -> list[dict]:
    """OpenAI-role messages [{"role", "content"}] of one prompt row, ending on the user turn to answer;
    `system` is added when the row has no system prompt. ConversionError (with the field and a hint)
    when the row holds no prompt, does not end on a user turn, or the prompt is empty."""
    mapping = dict(mapping or {})
    msgs = to_conversation(prompt_record(rec, mapping), mapping, system=system).prompt_messages()
    if not msgs or msgs[-1]["role"] != "user":
        raise ConversionError("the conversation does not end with a user turn to answer", "messages",
                              "a prompt row ends with the user's question (an answer after it is dropped)")
    if not msgs[-1]["content"].strip():
        raise ConversionError("the prompt is empty", "instruction")
    return msgs
