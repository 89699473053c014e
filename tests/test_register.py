import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.errors import ConfigError, InputError
from dsforge.register import register


def sft(path, n=3):
    path.write_text("".join(json.dumps({"conversations": [{"from": "human", "value": f"q{i}"},
                                                          {"from": "gpt", "value": f"a{i}"}]}) + "\n" for i in range(n)))
    return str(path)


def test_entry_is_explicit_and_relative_inside_dataset_dir(tmp_path):
    f = sft(tmp_path / "a.jsonl")
    reg = register(f, "a", str(tmp_path))
    info = json.load(open(tmp_path / "dataset_info.json"))
    assert info["a"] == {"file_name": "a.jsonl", "formatting": "sharegpt", "ranking": False,
                         "columns": {"messages": "conversations"},
                         "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                                  "assistant_tag": "gpt", "observation_tag": "observation",
                                  "function_tag": "function_call", "system_tag": "system"}}
    assert reg.action == "added" and reg.yaml_lines() == f"dataset: a\ndataset_dir: {tmp_path}"


def test_absolute_path_outside_dataset_dir(tmp_path):
    (tmp_path / "d").mkdir()
    f = sft(tmp_path / "a.jsonl")
    register(f, "a", str(tmp_path / "d"))
    assert json.load(open(tmp_path / "d" / "dataset_info.json"))["a"]["file_name"] == f


def test_merge_keeps_other_entries_order_and_backs_up(tmp_path):
    info = {"z_first": {"file_name": "x.json", "custom": 1}, "m_second": {"file_name": "y.json"}}
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    register(sft(tmp_path / "a.jsonl"), "new", str(tmp_path))
    got = json.load(open(tmp_path / "dataset_info.json"))
    assert list(got) == ["z_first", "m_second", "new"] and got["z_first"] == info["z_first"]
    assert json.load(open(tmp_path / "dataset_info.json.bak")) == info


def test_refuses_to_replace_without_force(tmp_path):
    f = sft(tmp_path / "a.jsonl")
    register(f, "a", str(tmp_path))
    assert register(f, "a", str(tmp_path)).action == "unchanged"
    g = tmp_path / "b.jsonl"
    g.write_text(json.dumps({"instruction": "q", "input": "", "output": "a"}) + "\n")
    with pytest.raises(ConfigError, match="already registered"):
        register(str(g), "a", str(tmp_path))
    assert register(str(g), "a", str(tmp_path), force=True).action == "replaced"


def test_refuses_unusable_data_and_broken_info(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}) + "\n")
    with pytest.raises(InputError, match="0 of 1 rows"):
        register(str(bad), "bad", str(tmp_path))
    assert not (tmp_path / "dataset_info.json").exists()
    (tmp_path / "dataset_info.json").write_text("{broken")
    with pytest.raises(ConfigError, match="not valid JSON"):
        register(sft(tmp_path / "a.jsonl"), "a", str(tmp_path))
    assert (tmp_path / "dataset_info.json").read_text() == "{broken"


def test_twenty_processes_at_once(tmp_path):
    for i in range(20):
        sft(tmp_path / f"d{i}.jsonl", n=2)
    code = ("import sys; from dsforge.register import register; "
            "register(sys.argv[1], sys.argv[2], sys.argv[3])")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"d{i}.jsonl"), f"ds{i}", str(tmp_path)])
             for i in range(20)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    info = json.load(open(tmp_path / "dataset_info.json"))
    assert sorted(info) == sorted(f"ds{i}" for i in range(20))
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_cli_prints_yaml_lines(tmp_path):
    f = sft(tmp_path / "a.jsonl")
    r = CliRunner().invoke(cli, ["register", f, "--name", "mine", "--dataset-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert f"dataset: mine\ndataset_dir: {tmp_path}" in r.output
    r = CliRunner().invoke(cli, ["register", f, "--name", "x", "--dataset-dir", str(tmp_path), "--kind", "ranking"])
    assert r.exit_code == 2 and "looks like sft data" in r.output
