"""Format following: an easy sum asked in a given form. `correct` checks the sum; `format_ok`
checks the form (just the number, <answer></answer>, \\boxed{}, exactly N words).

Levels name the form; `mixed` draws one per row.
"""

from __future__ import annotations

import random

from dsforge.tasks.base import Family, Item

FORMS = {
    "number": ("Answer with just the number.", "number"),
    "tag": ("Write only the answer between <answer> and </answer>.", "answer_tag"),
    "boxed": ("Put the final answer in \\boxed{}.", "boxed"),
    "words": ("Answer in exactly {n} words.", "words:{n}"),
}
LEVELS = {**{name: {"forms": [name]} for name in FORMS}, "mixed": {"forms": list(FORMS)}}


def generate(rng: random.Random, params: dict) -> Item:
    """One sum of two numbers below 50 with one format instruction and its strict rule."""
    a, b = rng.randint(2, 49), rng.randint(2, 49)
    form = rng.choice(params["forms"])
    text, rule = FORMS[form]
    n = rng.randint(3, 6)
    text, rule = text.replace("{n}", str(n)), rule.replace("{n}", str(n))
    return f"What is {a} + {b}? {text}", str(a + b), {"form": form, "expression": f"{a} + {b}"}, rule


FAMILY = Family("format", "format following (just the number, <answer> tag, \\boxed{}, exactly N words)", LEVELS,
                generate, default_level="mixed")
