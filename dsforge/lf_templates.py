"""LLaMA-Factory 0.9.5's chat templates as data (dsforge/data/lf_templates.json, made by
scripts/gen_lf_templates.py): the properties that validate's template-dependent rules (media tokens, tool
formats, thought/tool-call markers) and the token-length mirror read."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from dsforge.errors import UsageError

NO_TEMPLATE = ("auto", "chat", "none")
_TEMPLATES: dict | None = None


def lf_templates() -> dict:
    """LLaMA-Factory 0.9.5's templates as {name: {mm_plugin, image_token, video_token, audio_token, tool_format,
    thought_words, tool_call_words, reasoning, efficient_eos}} (made by scripts/gen_lf_templates.py)."""
    global _TEMPLATES
    if _TEMPLATES is None:
        _TEMPLATES = json.loads((Path(__file__).parent / "data" / "lf_templates.json").read_text())
    return _TEMPLATES


def resolve_template(name: str | None) -> tuple[str, dict]:
    """(label, properties) of the template that template-dependent rules are evaluated under.

    None, 'auto', 'chat' and 'none' name no LLaMA-Factory template: LLaMA-Factory then parses the
    tokenizer's chat template into a text-only template whose data rules are those of 'default'.
    Raises UsageError for a name LLaMA-Factory 0.9.5 does not know.
    """
    table = lf_templates()
    if name is None or name in NO_TEMPLATE:
        return ("default (no --template given: LLaMA-Factory's text-only rules, as for a tokenizer's own chat "
                "template)", table["default"])
    if name not in table:
        close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.5)
        s = close[0] if close else None
        raise UsageError(f"unknown template '{name}'" + (f"; did you mean '{s}'?" if s else ""),
                         "pass the `template:` of your LLaMA-Factory run (e.g. qwen2_vl, llava, llama3, default)")
    return name, table[name]


