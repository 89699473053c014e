"""The shape every task family shares: named difficulty levels, a seeded generator, one row format.

A row (one JSONL line of `dsforge tasks make`):
    {"id": "arith/3/s0/00000", "instruction": "What is 29 + 14? Answer with just the number.",
     "reference": "43", "task": {"family": "arith", "difficulty": "3", ...params},
     "verifier": "numeric", "format": "number"}
`instruction` is what `dsforge sample` reads as the prompt; `reference` is a string (the verifier
parses it); `format` is the strict rule of `dsforge.verify.check_format`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

from dsforge.errors import UsageError

# an item: (instruction, reference, params, format rule)
Item = tuple[str, str, dict, str]


@dataclass(frozen=True)
class Family:
    """A task family: `levels` maps a level name to its parameters (ordered easy -> hard);
    `generate(rng, params)` returns one Item; `verifier` is the spec rows carry."""

    name: str
    description: str
    levels: dict[str, dict]
    generate: Callable[[random.Random, dict], Item]
    verifier: str = "numeric"
    default_level: str = ""
    notes: dict[str, str] = field(default_factory=dict)

    def level(self, name: str | None) -> tuple[str, dict]:
        """(level name, params) for `name` (None: the default level). Raises UsageError for an unknown level."""
        name = name or self.default_level or next(iter(self.levels))
        if name not in self.levels:
            raise UsageError(f"task family {self.name!r} has no difficulty {name!r}",
                             f"levels: {', '.join(self.levels)} (see: dsforge tasks list)")
        return name, self.levels[name]

    def make(self, n: int, seed: int, difficulty: str | None = None, exclude: frozenset[str] = frozenset()) -> list[dict]:
        """`n` distinct rows (no instruction twice) for one level, the same for the same (n, seed, level, exclude).

        The i-th row depends only on (family, level, seed, exclude) and the rows before it, so a
        larger n extends a smaller one. Instructions in `exclude` (a held-out set) are skipped.
        Raises UsageError when the level has fewer than n distinct prompts."""
        level, params = self.level(difficulty)
        rng = random.Random(f"dsforge-tasks:{self.name}:{level}:{seed}")
        rows, seen, misses = [], set(exclude), 0
        while len(rows) < n:
            instruction, reference, extra, fmt = self.generate(rng, params)
            if instruction in seen:
                misses += 1
                if misses > 50 * n + 1000:
                    raise UsageError(f"{self.name} at difficulty {level} has only about {len(rows)} distinct prompts, "
                                     f"{n} were asked for", "ask for fewer, or choose a harder level")
                continue
            seen.add(instruction)
            rows.append({"id": f"{self.name}/{level}/s{seed}/{len(rows):05d}", "instruction": instruction,
                         "reference": reference,
                         "task": {"family": self.name, "difficulty": level, "seed": seed, **extra},
                         "verifier": self.verifier, "format": fmt})
        return rows


def number_text(value) -> str:
    """A reference number as plain text: 43, -7, 2.5 (no trailing .0, no exponent)."""
    from fractions import Fraction

    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return text
