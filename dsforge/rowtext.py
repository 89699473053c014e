"""Which text of a row is compared, for any row the readers yield (dedup, contamination).

`row_texts(row)` -> (prompt, answer): pt text; sft/ranking/kto/candidates prompt (system + turns up to
the last user turn) and answer (last assistant turn, or chosen + rejected, or a candidate's text);
task/eval files (prompt/question + answer/reference).
"""

from __future__ import annotations

import json

PROMPT_KEYS = ("instruction", "prompt", "question", "query", "text", "problem")
ANSWER_KEYS = ("output", "answer", "reference", "response", "solution", "completion")


def _content(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, dict):
        return _content(v.get("content", v.get("value", "")))
    if isinstance(v, list):   # multimodal content parts
        return " ".join(_content(p.get("text", "")) if isinstance(p, dict) else _content(p) for p in v)
    return "" if v is None else str(v)


def row_texts(rec) -> tuple[str, str]:
    """(prompt, answer) of any row the readers yield: pt {"text"}, alpaca, sharegpt, openai,
    ranking (answer = chosen + rejected), kto, candidates (messages + text), task/eval files
    (prompt/question + answer/reference). A row of no known shape is its JSON text, as prompt."""
    if not isinstance(rec, dict):
        return json.dumps(rec, ensure_ascii=False, sort_keys=True), ""
    if "prompt_id" in rec and isinstance(rec.get("text"), str):   # a candidate (judged or not)
        msgs = rec.get("messages") or []
        return " ".join(_content(m) for m in msgs if isinstance(m, dict)), rec["text"]
    msgs = rec.get("messages", rec.get("conversations"))
    answer_parts = [_content(rec[k]) for k in ("chosen", "rejected") if rec.get(k) is not None]
    if isinstance(msgs, list):
        turns = [m for m in msgs if isinstance(m, dict)]
        roles = [m.get("role", m.get("from")) for m in turns]
        prompt_turns = turns
        if not answer_parts and roles and roles[-1] in ("assistant", "gpt"):
            answer_parts = [_content(turns[-1])]
            prompt_turns = turns[:-1]
        prompt = " ".join(_content(m) for m in prompt_turns)
        if rec.get("system"):
            prompt = f"{_content(rec['system'])} {prompt}"
        return prompt, " ".join(answer_parts)
    prompt_key = next((k for k in PROMPT_KEYS if isinstance(rec.get(k), str)), None)
    if prompt_key is None:
        return json.dumps(rec, ensure_ascii=False, sort_keys=True), ""
    if prompt_key == "text" and not answer_parts and not any(k in rec for k in ANSWER_KEYS):
        return rec["text"], ""   # pretraining text: the text is the prompt
    prompt = rec[prompt_key]
    if isinstance(rec.get("input"), str) and rec["input"]:
        prompt = f"{prompt} {rec['input']}"
    hist = rec.get("history")
    if isinstance(hist, list):
        prompt = " ".join(_content(x) for pair in hist if isinstance(pair, list) for x in pair) + " " + prompt
    if rec.get("system"):
        prompt = f"{_content(rec['system'])} {prompt}"
    if not answer_parts:
        key = next((k for k in ANSWER_KEYS if rec.get(k) is not None), None)
        if key:
            answer_parts = [_content(rec[key])]
    return prompt, " ".join(answer_parts)


def identity_text(rec, on: str) -> str:
    """The text whose near-duplicates count as the same row: the prompt (on='prompt'), or prompt
    and answer (on='all')."""
    p, a = row_texts(rec)
    return p if on == "prompt" else f"{p}\n{a}"
