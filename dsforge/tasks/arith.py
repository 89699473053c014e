"""Integer arithmetic: operands of a given digit count, chosen operators, 2 or more operands.

Levels (easy -> hard; digits per operand, operators, operands). Results are never negative
unless a level says `negative`; `*` binds tighter than `+`/`-` (Python's rules, as in school).
"""

from __future__ import annotations

import random

from dsforge.tasks.base import Family, Item

LEVELS = {
    "1": {"digits": [1, 1], "ops": "+"},
    "2": {"digits": [1, 1], "ops": "+-"},
    "3": {"digits": [2, 1], "ops": "+-"},
    "4": {"digits": [2, 2], "ops": "+"},
    "5": {"digits": [2, 2], "ops": "+-"},
    "6": {"digits": [1, 1], "ops": "*"},
    "7": {"digits": [2, 2, 1], "ops": "+-"},
    "8": {"digits": [3, 3], "ops": "+-"},
    "9": {"digits": [2, 1], "ops": "*"},
    "10": {"digits": [2, 2], "ops": "*"},
}
SUFFIX = "Answer with just the number."
SYMBOL = {"+": "+", "-": "-", "*": "*"}


def _operand(rng: random.Random, digits: int) -> int:
    return rng.randint(1 if digits == 1 else 10 ** (digits - 1), 10 ** digits - 1)


def generate(rng: random.Random, params: dict) -> Item:
    """One question 'What is 29 + 14? Answer with just the number.' and its value."""
    while True:
        nums = [_operand(rng, d) for d in params["digits"]]
        ops = [rng.choice(params["ops"]) for _ in nums[1:]]
        expr = " ".join([str(nums[0])] + [f"{SYMBOL[o]} {x}" for o, x in zip(ops, nums[1:])])
        value = eval(expr, {"__builtins__": {}})   # noqa: S307 - digits and + - * only, built above
        if value >= 0 or params.get("negative"):
            break
    extra = {"digits": list(params["digits"]), "ops": params["ops"], "operands": len(nums), "expression": expr}
    return f"What is {expr}? {SUFFIX}", str(value), extra, "number"


FAMILY = Family("arith", "integer arithmetic (digits per operand, + - *, number of operands)", LEVELS, generate,
                default_level="4")
