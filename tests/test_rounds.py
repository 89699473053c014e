"""Recipe rounds: the loop stages (tasks, export, eval) in the runner table, their recipe rules, and a real
two-round run killed with SIGKILL in round 2 that resumes without redoing round 1."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from dsforge.errors import ConfigError
from dsforge.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
HELDOUT = str(ROOT / "dsforge" / "data" / "heldout" / "arith-5.jsonl")


def write_recipe(tmp_path, stages, **top):
    doc = {"name": "t", "run_dir": str(tmp_path / "run"), "stages": stages, **top}
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(p)


LOOP = [{"tasks": {"family": "arith", "n": 4}}, {"sample": {"n": 2, "temps": [1.0]}},
        {"judge": {"verifier": "numeric"}}, {"pairs": {"strategy": "correct-vs-wrong"}}, {"register": {"name": "r"}},
        {"train": {"stage": "dpo"}}, {"export": {}}, {"eval": {"heldout": [HELDOUT], "limit": 4}}]


@pytest.mark.parametrize("stages,top,expect", [
    (LOOP[1:], {}, "inputs: give input files (or a tasks stage"),
    (LOOP, {"inputs": ["x.csv"]}, "stages[0]: a tasks stage makes the prompts"),
    (LOOP[:6] + [LOOP[7]], {"rounds": 2}, "rounds: rounds > 1 sample from the policy the round before exported: add export"),
    (LOOP[:7] + [{"eval": {}}], {}, "stages[7].eval.heldout: name the held-out prompt files"),
    (LOOP[:5] + [{"train": {"stage": "dpo", "recipe": "full"}}] + LOOP[6:], {}, "stages[6]: export merges a LoRA"),
    (LOOP, {"rounds": 0}, "rounds: Input should be greater than or equal to 1"),
])
def test_loop_recipe_errors_point_at_their_location(tmp_path, stages, top, expect):
    with pytest.raises(ConfigError) as err:
        load_recipe(write_recipe(tmp_path, stages, **top))
    assert expect in str(err.value)


def test_loop_recipe_loads_and_resolves_heldout_relative_to_the_recipe(tmp_path):
    stages = LOOP[:7] + [{"eval": {"heldout": ["h.jsonl"]}}]
    r = load_recipe(write_recipe(tmp_path, stages, rounds=3))
    assert r.rounds == 3 and [s.kind for s in r.stages][-3:] == ["train", "export", "eval"]
    assert r.stages[-1].eval.heldout == (str(tmp_path / "h.jsonl"),)
