"""`dsforge tasks`: seeded generators of checkable prompts (prompt + reference answer + verifier).

    from dsforge import tasks
    rows = tasks.get_family("arith").make(n=100, seed=0, difficulty="4")
    tasks.write_rows(rows, "prompts.jsonl")        # atomic; same (family, n, seed, level) -> same bytes

Families: arith (integer arithmetic), units (unit conversion), format (format following).
Row fields: see dsforge.tasks.base. `calibrate` (dsforge.tasks.calibrate) finds the level where a
model is right 15-50% of the time.
"""

from __future__ import annotations

from dsforge.errors import UsageError
from dsforge.tasks import arith, formats, units
from dsforge.tasks.base import Family

FAMILIES: dict[str, Family] = {f.name: f for f in (arith.FAMILY, units.FAMILY, formats.FAMILY)}


def get_family(name: str) -> Family:
    """The family called `name`; UsageError (exit 2) listing the families otherwise."""
    if name not in FAMILIES:
        raise UsageError(f"unknown task family {name!r}", f"families: {', '.join(FAMILIES)} (dsforge tasks list)")
    return FAMILIES[name]


def write_rows(rows: list[dict], out: str) -> dict:
    """Write `rows` as JSONL to `out` atomically (temp file + rename). Refuses (UsageError) to
    replace an existing non-empty file that is not an earlier `tasks make` output.
    Returns {"out", "rows", "sha256"}."""
    import hashlib

    from dsforge.io import atomic_write, dumps_row, guard_kind, note_output

    guard_kind(out, "tasks")
    text = "".join(dumps_row(r) + "\n" for r in rows)
    with atomic_write(out) as f:
        f.write(text)
    note_output(out, "tasks")
    return {"out": out, "rows": len(rows), "sha256": hashlib.sha256(text.encode()).hexdigest()}


def make(name: str, n: int, seed: int, out: str, difficulty: str | None = None) -> dict:
    """Generate `n` rows of family `name` at `difficulty` (default: the family's) with `seed` into `out`.
    Returns {"out", "rows", "sha256", "family", "difficulty"}. Raises UsageError (unknown family/level,
    too few distinct prompts, an existing file that is not a tasks file)."""
    family = get_family(name)
    level, _ = family.level(difficulty)
    return {**write_rows(family.make(n, seed, level), out), "family": name, "difficulty": level}


def describe() -> list[dict]:
    """One entry per family: {"name", "description", "verifier", "levels": {name: params},
    "default", "example": a row at the default level}."""
    out = []
    for f in FAMILIES.values():
        level, _ = f.level(None)
        out.append({"name": f.name, "description": f.description, "verifier": f.verifier, "levels": f.levels,
                    "default": level, "example": f.make(1, 0, level)[0]})
    return out
