"""dsforge eval through an OpenAI-compatible server: a real `dsforge serve --engine vllm` (the session's
vllm_server fixture) answers the held-out prompts; the whole path runs through the CLI."""

import json

import pytest
from click.testing import CliRunner

from dsforge.cli import cli
from tests.test_eval_real import _arith_prompts

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_eval_against_a_real_openai_server_and_its_own_baseline(vllm_server, tmp_path):
    prompts = _arith_prompts(tmp_path / "heldout.jsonl", n=12)
    common = ["eval", "--engine", "openai", "-m", vllm_server["model"], "--base-url", vllm_server["url"],
              "--prompts", prompts, "--max-tokens", "48"]
    r = CliRunner().invoke(cli, [*common, "--k", "2", "--temperature", "0.8", "-o", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output
    assert "\neval 12 items: pass@1 lenient " in r.output and "pass@2" in r.output
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["summary"]["engine"] == "openai" and len(doc["items"]) == 12
    assert all(row["samples"] == 2 and row["reply"].strip() for row in doc["items"])
    assert doc["summary"]["reply_tokens_mean"] > 0   # the server's usage counts
    # greedy and seeded: the same server again pairs with the first run, item by item, with no change
    r = CliRunner().invoke(cli, [*common, "--baseline", str(tmp_path / "a.json"), "-o", str(tmp_path / "b.json")])
    assert r.exit_code == 0, r.output
    assert "vs baseline +0.0 pts [+0.0, +0.0], McNemar p=1 (b=0 gained, c=0 lost)" in r.output
    b = json.loads((tmp_path / "b.json").read_text())
    assert [x["reply"] for x in b["items"]] == [x["reply"] for x in doc["items"]]
