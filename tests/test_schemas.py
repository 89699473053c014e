import json
import subprocess
import sys

import jsonschema
import pytest

from tests.conftest import ROOT


def test_committed_schemas_match_models():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_schemas.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def load(name):
    return json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())


@pytest.mark.parametrize("name,row,ok", [
    ("alpaca", {"instruction": "q", "input": "", "output": "a"}, True),
    ("alpaca", {"instruction": "q", "output": 5}, False),
    ("sharegpt", {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}, True),
    ("sharegpt", {"conversations": [{"from": "bot", "value": "q"}, {"from": "gpt", "value": "a"}]}, False),
    ("sharegpt_ranking", {"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"},
                          "rejected": {"from": "gpt", "value": "b"}}, True),
    ("sharegpt_ranking", {"conversations": [{"from": "human", "value": "q"}], "chosen": "a", "rejected": "b"}, False),
    ("alpaca_kto", {"instruction": "q", "output": "a", "kto_tag": True}, True),
    ("alpaca_kto", {"instruction": "q", "output": "a", "kto_tag": "true"}, False),
    ("dataset_info_entry", {"file_name": "a.json", "formatting": "sharegpt"}, True),
    ("dataset_info_entry", {"file_name": "a.json", "format": "sharegpt"}, False),
    ("dataset_info_entry", {"file_name": "a.json", "columns": {"prompts": "x"}}, False),
    ("candidate", {"prompt_id": "p", "messages": [{"role": "user", "content": "q"}], "text": "a", "reference": 3,
                   "fields": {"format": "number"}, "new_key": 1}, True),
    ("candidate", {"prompt_id": "p", "messages": [{"role": "user", "content": "q"}]}, False),
    ("judged_candidate", {"prompt_id": "p", "messages": [{"role": "user", "content": "q"}], "text": "a",
                          "judge": {"kind": "verifier", "score": 1, "correct": True, "format_ok": False}}, True),
    ("judged_candidate", {"prompt_id": "p", "messages": [{"role": "user", "content": "q"}], "text": "a",
                          "judge": {"kind": "robot", "score": 1}}, False),
])
def test_schema_accepts_and_rejects(name, row, ok):
    errors = list(jsonschema.Draft202012Validator(load(name)).iter_errors(row))
    assert (not errors) == ok, errors
