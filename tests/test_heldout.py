"""The frozen held-out set: committed once by scripts/make_heldout.py, never regenerated.

The sha256 below pins every committed file: a generator change (or an edit) cannot silently
change a benchmark metric. If this fails, restore the committed files; do not update the hashes.
"""

import hashlib
import json
from pathlib import Path

import pytest

from dsforge.tasks import HELDOUT_DIR, get_family, heldout_instructions
from dsforge.verify import get_verifier

FROZEN = {   # file name -> sha256, written once when the set was made (scripts/make_heldout.py, 2026-11-30)
    "arith-5.jsonl": "80a100e4ddc754bd763ad6470b9835d01f5096f3263729f17338646099837669",
    "units-1.jsonl": "b758edd6c4c570b6496db517608b735e843d52be9f469dbc45a90336ff0c29c7",
}


def test_heldout_files_are_the_frozen_ones():
    found = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(HELDOUT_DIR).glob("*.jsonl")}
    assert found == FROZEN


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_heldout_rows_are_sound(name):
    rows = [json.loads(line) for line in (Path(HELDOUT_DIR) / name).read_text().splitlines()]
    assert len({r["id"] for r in rows}) == len(rows) == len({r["instruction"] for r in rows})
    v = get_verifier("numeric")
    assert all(v.check(r["reference"], r["reference"], r).correct for r in rows)


def test_training_prompts_never_contain_heldout_items():
    for family in {json.loads(p.read_text().splitlines()[0])["task"]["family"]
                   for p in Path(HELDOUT_DIR).glob("*.jsonl")}:
        held = heldout_instructions(family)
        fam = get_family(family)
        level = next(iter(json.loads(line)["task"]["difficulty"] for p in Path(HELDOUT_DIR).glob(f"{family}-*.jsonl")
                          for line in p.read_text().splitlines()[:1]))
        rows = fam.make(min(300, 240 - len(held)), 1, level, held)   # units 1 has 240 distinct prompts
        assert held and not held & {r["instruction"] for r in rows}
