"""Generate dsforge/data/lf_templates.json from LLaMA-Factory 0.9.5's own template registry.

    .venv-lf/bin/python scripts/gen_lf_templates.py [OUT]

validate evaluates template-dependent rules (media tokens, tool formats, thought and tool-call
markers) under the template a run will use; this table is what it knows about each template.
tests/test_validate_lf_cases.py checks it has not drifted where .venv-lf exists.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dsforge", "lf"))


def table() -> dict:
    """{template name: its data-relevant properties}, sorted by name."""
    import shim

    shim.install()
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    from llamafactory.data.template import TEMPLATES, ReasoningTemplate

    out = {}
    for name in sorted(TEMPLATES):
        t = TEMPLATES[name]
        p = t.mm_plugin
        out[name] = {
            "mm_plugin": type(p).__name__,
            "image_token": p.image_token, "video_token": p.video_token, "audio_token": p.audio_token,
            "tool_format": t.format_function.tool_format or "default",
            "thought_words": list(t.thought_words), "tool_call_words": list(t.tool_call_words),
            "reasoning": isinstance(t, ReasoningTemplate), "efficient_eos": t.efficient_eos,
        }
    return out


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    dest = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "dsforge", "data", "lf_templates.json")
    tmp = dest + ".tmp"
    with open(tmp, "w") as f:
        json.dump(table(), f, indent=0, sort_keys=True)
        f.write("\n")
    os.replace(tmp, dest)
    print(f"wrote {dest}")
