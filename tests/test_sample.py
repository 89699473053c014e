"""Sampling: prompt reading, sharding, collapse, resume/merge logic, and real runs of the hf engine
(tiny local model), including kill -9 mid-run and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.engines import Completion, Engine, EngineOptions, Result, derive_seed, get_engine
from dsforge.errors import InputError, UsageError
from dsforge.sample import SampleConfig, merge, parse_shard, read_prompts, sample

DSFORGE = [sys.executable, "-m", "dsforge"]


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def lines(path):
    return [json.loads(x) for x in open(path, encoding="utf-8") if x.strip()]


def exactly_once(rows, n):
    """Every (prompt, temperature, index) present exactly once, as a line or a counted duplicate."""
    seen = Counter()
    for r in rows:
        for i in [r["sample_index"], *r["duplicate_indices"]]:
            seen[(r["prompt_id"], r["temperature"], i)] += 1
    groups = Counter((k[0], k[1]) for k in seen)
    return all(v == 1 for v in seen.values()) and all(v == n for v in groups.values()), len(groups)


class EchoEngine(Engine):
    """A fake for unit tests of the bookkeeping: answer i of a request is deterministic;
    answers 1 and 2 are identical (to exercise collapsing)."""

    name = "echo"

    def __init__(self, fail_on=()):
        super().__init__("echo-model", EngineOptions())
        self.calls = 0
        self.fail_on = set(fail_on)

    def generate(self, requests):
        for req in requests:
            self.calls += 1
            last = req.messages[-1]["content"]
            if last in self.fail_on:
                yield Result(request=req, error="http_500: injected", meta={"error_cause": "http_500"})
                continue
            comps = [Completion(text=f"{last}|T{req.params.temperature}|{min(i, 1)}", finish_reason="stop",
                                completion_tokens=3) for i in range(req.params.n)]
            yield Result(request=req, completions=comps, prompt_tokens=5, seed_used=req.params.seed)


def test_prompts_from_alpaca_sharegpt_and_plain_columns(tmp_path):
    a = write(tmp_path / "a.jsonl", [{"instruction": "Sum", "input": "1 2", "output": "3"},
                                     {"instruction": "Sum", "input": "1 2", "output": "other"}])
    s = write(tmp_path / "s.jsonl", [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"},
                                                        {"from": "human", "value": "again"}, {"from": "gpt", "value": "x"}]}])
    p = write(tmp_path / "p.jsonl", [{"prompt": "plain"}, {"question": "q?"}])
    prompts = read_prompts([a, s, p], system="SYS")
    msgs = [p.messages for p in prompts]
    assert msgs[0] == [{"role": "system", "content": "SYS"}, {"role": "user", "content": "Sum\n1 2"}]
    # sharegpt: the trailing answer is dropped, earlier turns are context, the last user turn is answered
    assert [m["content"] for m in msgs[1]] == ["SYS", "hi", "yo", "again"]
    assert [m[-1]["content"] for m in msgs[2:]] == ["plain", "q?"]
    assert len(prompts) == 4  # the second alpaca row is the same prompt


def test_bad_prompt_row_names_file_and_line(tmp_path):
    p = write(tmp_path / "p.jsonl", [{"prompt": "ok"}, {"other": 1}])
    with pytest.raises(InputError) as err:
        read_prompts([p])
    assert "p.jsonl:2" in str(err.value)
    assert len(read_prompts([p], skip_bad=True)) == 1


def test_shards_partition_the_prompts(tmp_path):
    p = write(tmp_path / "p.jsonl", [{"prompt": f"q{i}"} for i in range(200)])
    parts = [read_prompts([p], shard=(i, 4)) for i in range(4)]
    ids = [x.prompt_id for part in parts for x in part]
    assert len(ids) == len(set(ids)) == 200 and all(parts)
    for bad in ("4/4", "a/b", "1", "-1/3"):
        with pytest.raises(UsageError):
            parse_shard(bad)


def test_seeds_derive_from_prompt_and_temperature_only():
    assert derive_seed(0, "abc", 0.7) == derive_seed(0, "abc", 0.7)
    assert len({derive_seed(0, "abc", 0.7), derive_seed(0, "abc", 1.0), derive_seed(1, "abc", 0.7)}) == 3
    assert derive_seed(None, "abc", 0.7) is None


def test_collapse_counts_duplicates_and_resume_repairs_torn_and_partial_groups(tmp_path):
    p = write(tmp_path / "p.jsonl", [{"prompt": f"q{i}"} for i in range(5)])
    out = str(tmp_path / "c.jsonl")
    cfg = SampleConfig(model="echo-model", engine="echo", temps=(0.5, 1.0), n=3)
    s1 = sample([p], out, cfg, engine=EchoEngine(), progress=False, log=lambda m: None)
    rows = lines(out)
    assert s1["candidates_written"] == 10 * 2 and s1["duplicates_collapsed"] == 10
    assert exactly_once(rows, 3) == (True, 10)
    # simulate a crash: a partial group (one line of a 2-line group) plus a torn last line
    data = open(out).read().splitlines(keepends=True)
    with open(out, "w") as f:
        f.writelines(data[:-3])
        f.write(data[-3][:17])
    eng = EchoEngine()
    logs = []
    s2 = sample([p], out, cfg, engine=eng, progress=False, log=logs.append)
    assert eng.calls == 2 and s2["groups_resumed"] == 8 and "torn" in logs[0]
    assert exactly_once(lines(out), 3) == (True, 10)
    assert sorted(map(json.dumps, lines(out))) == sorted(map(json.dumps, rows))
    # rerun: nothing to do; a new temperature samples only the new groups
    eng = EchoEngine()
    sample([p], out, cfg, engine=eng, progress=False, log=lambda m: None)
    assert eng.calls == 0
    cfg3 = SampleConfig(model="echo-model", engine="echo", temps=(0.5, 1.0, 1.2), n=3)
    sample([p], out, cfg3, engine=eng, progress=False, log=lambda m: None)
    assert eng.calls == 5 and exactly_once(lines(out), 3) == (True, 15)


def test_failed_requests_are_not_written_and_a_rerun_fills_them(tmp_path):
    p = write(tmp_path / "p.jsonl", [{"prompt": f"q{i}"} for i in range(4)])
    out = str(tmp_path / "c.jsonl")
    cfg = SampleConfig(model="echo-model", engine="echo", temps=(1.0,), n=2)
    s1 = sample([p], out, cfg, engine=EchoEngine(fail_on={"q1"}), progress=False, log=lambda m: None)
    assert s1["failed_requests"] == 1 and s1["failure_causes"] == {"http_500": 1}
    assert {r["prompt_id"] for r in lines(out)}.__len__() == 3
    s2 = sample([p], out, cfg, engine=EchoEngine(), progress=False, log=lambda m: None)
    assert s2["groups_sampled"] == 1 and exactly_once(lines(out), 2) == (True, 4)


def test_resume_refuses_other_settings(tmp_path):
    p = write(tmp_path / "p.jsonl", [{"prompt": "q"}])
    out = str(tmp_path / "c.jsonl")
    sample([p], out, SampleConfig(model="echo-model", engine="echo", n=2), engine=EchoEngine(), progress=False,
           log=lambda m: None)
    with pytest.raises(UsageError, match="other settings"):
        sample([p], out, SampleConfig(model="echo-model", engine="echo", n=3), engine=EchoEngine(), progress=False,
               log=lambda m: None)


def test_merge_checks_overlap_completeness_and_coverage(tmp_path):
    p = write(tmp_path / "p.jsonl", [{"prompt": f"q{i}"} for i in range(30)])
    cfg = SampleConfig(model="echo-model", engine="echo", temps=(1.0,), n=2)
    shards = []
    for i in range(3):
        out = str(tmp_path / f"c{i}.jsonl")
        sample([p], out, cfg, engine=EchoEngine(), shard=(i, 3), progress=False, log=lambda m: None)
        shards.append(out)
    res = merge(shards, str(tmp_path / "all.jsonl"), prompts=read_prompts([p]))
    assert res["prompts"] == 30 and exactly_once(lines(tmp_path / "all.jsonl"), 2) == (True, 30)
    with pytest.raises(UsageError, match="missing"):
        merge(shards[:2], str(tmp_path / "x.jsonl"), prompts=read_prompts([p]))
    with pytest.raises(UsageError, match="also in"):
        merge([shards[0], shards[0]], str(tmp_path / "x.jsonl"))
    with pytest.raises(UsageError, match="incomplete"):
        merge(shards, str(tmp_path / "x.jsonl"), n=3)
    assert not os.path.exists(tmp_path / "x.jsonl")


def test_unknown_engine_and_bad_options_say_what_to_do():
    with pytest.raises(UsageError, match="unknown engine"):
        get_engine("tgi", "m")
    with pytest.raises(UsageError, match="concurency") as err:
        get_engine("openai", "m", {"concurency": 4})
    assert "concurrency" in err.value.hint


def test_hf_engine_real_tiny_model_provenance_and_determinism(tmp_path, tiny_model):
    p = write(tmp_path / "p.jsonl", [{"instruction": f"question {i}"} for i in range(4)])
    r = CliRunner().invoke(cli, ["sample", p, "-m", tiny_model, "--engine", "hf", "--engine-opt", "batch_size=1",
                                 "--temps", "0.7,1.0", "-n", "3", "--max-tokens", "12", "--seed", "5",
                                 "-o", str(tmp_path / "a.jsonl")])
    assert r.exit_code == 0, r.output
    rows = lines(tmp_path / "a.jsonl")
    assert exactly_once(rows, 3) == (True, 8)
    r0 = rows[0]
    for key in ("prompt_id", "messages", "text", "model", "engine", "temperature", "top_p", "seed", "sample_index",
                "finish_reason", "prompt_tokens", "completion_tokens", "mean_logprob", "truncated"):
        assert key in r0
    assert r0["engine"] == "hf" and r0["seed"] is not None and r0["mean_logprob"] < 0
    assert all(r["truncated"] == (r["finish_reason"] == "length") for r in rows)
    assert any(r["truncated"] for r in rows)  # 12 tokens of a random model: most hit the cap
    summary = json.load(open(tmp_path / "a.jsonl.summary.json"))
    assert summary["candidates_written"] == len(rows) and summary["completion_tokens"] > 0
    # same seed, fresh file: the same answers
    r = CliRunner().invoke(cli, ["sample", p, "-m", tiny_model, "--engine", "hf", "--engine-opt", "batch_size=1",
                                 "--temps", "0.7,1.0", "-n", "3", "--max-tokens", "12", "--seed", "5",
                                 "-o", str(tmp_path / "b.jsonl")])
    assert r.exit_code == 0
    key = lambda r: (r["prompt_id"], r["temperature"], r["sample_index"], r["text"])  # noqa: E731
    assert sorted(map(key, rows)) == sorted(map(key, lines(tmp_path / "b.jsonl")))


def test_kill_9_mid_run_then_rerun_holds_each_sample_exactly_once(tmp_path, tiny_model):
    p = write(tmp_path / "p.jsonl", [{"instruction": f"question number {i}"} for i in range(120)])
    out = tmp_path / "c.jsonl"
    cmd = DSFORGE + ["sample", p, "-m", tiny_model, "--engine", "hf", "--engine-opt", "batch_size=1",
                     "--temps", "0.7,1.0", "-n", "4", "--max-tokens", "48", "--seed", "3", "-o", str(out)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_bytes().count(b"\n")
    assert 0 < partial, "the run was killed before writing anything"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = lines(out)
    assert exactly_once(rows, 4) == (True, 240)
    # a clean uninterrupted run draws the very same samples (per-request seeds)
    clean = tmp_path / "clean.jsonl"
    subprocess.run(cmd[:-1] + [str(clean)], check=True, capture_output=True, env=env)
    key = lambda r: (r["prompt_id"], r["temperature"], r["sample_index"], r["text"])  # noqa: E731
    assert sorted(map(key, rows)) == sorted(map(key, lines(clean)))


def test_sample_carries_reference_and_named_fields_from_a_tasks_file(tmp_path):
    """A real `dsforge tasks` prompts file: each candidate carries the row's reference at top level and
    the --carry fields under `fields`; rows without them keep the old bytes (no extra keys)."""
    from dsforge import tasks
    from dsforge.records import Candidate

    p = str(tmp_path / "arith.jsonl")
    tasks.write_rows(tasks.get_family("arith").make(n=4, seed=0), p)
    src = {r["instruction"]: r for r in lines(p)}
    out = str(tmp_path / "c.jsonl")
    cfg = SampleConfig(model="echo-model", engine="echo", temps=(1.0,), n=2, carry=("task", "format", "id"))
    s = sample([p], out, cfg, engine=EchoEngine(), progress=False, log=lambda m: None)
    rows = lines(out)
    assert s["prompts_with_reference"] == 4 and s["carry"] == ["task", "format", "id"] and s["carry_missing"] == {}
    from dsforge import summaries

    summaries.check("sample", json.loads(open(out + ".summary.json").read()))
    for r in rows:
        Candidate.model_validate(r)
        assert set(r) == set(Candidate.model_fields)   # every key sample writes is listed in the record
        row = src[r["messages"][-1]["content"]]
        assert r["reference"] == row["reference"]
        assert r["fields"] == {"task": row["task"], "format": row["format"], "id": row["id"]}
    # a file without reference and no --carry: the candidate keys are exactly the old ones
    q = write(tmp_path / "q.jsonl", [{"prompt": "q"}])
    sample([q], str(tmp_path / "d.jsonl"), SampleConfig(model="echo-model", engine="echo", temps=(1.0,), n=1),
           engine=EchoEngine(), progress=False, log=lambda m: None)
    assert list(lines(tmp_path / "d.jsonl")[0])[-1] == "n_emulated"
    # a field no row has is a usage error naming the fields there are
    with pytest.raises(UsageError, match="none of the prompt rows has a field 'answer'") as err:
        sample([p], str(tmp_path / "e.jsonl"), SampleConfig(model="echo-model", engine="echo", temps=(1.0,), n=2,
                                                            carry=("answer",)), engine=EchoEngine(),
               progress=False, log=lambda m: None)
    assert "reference" in err.value.hint


def test_cli_carry_with_a_real_engine(tmp_path, tiny_model):
    """`dsforge sample --carry` on a `dsforge tasks` file through a real (tiny, hf) engine."""
    from dsforge import tasks

    p = str(tmp_path / "units.jsonl")
    tasks.write_rows(tasks.get_family("units").make(n=2, seed=1), p)
    src = {r["instruction"]: r for r in lines(p)}
    base = ["sample", p, "-m", tiny_model, "--engine", "hf", "--temps", "0.7", "-n", "1", "--max-tokens", "4"]
    r = CliRunner().invoke(cli, [*base, "--carry", "format, task", "--carry", "id", "-o", str(tmp_path / "c.jsonl")])
    assert r.exit_code == 0, r.output
    for row in lines(tmp_path / "c.jsonl"):
        want = src[row["messages"][-1]["content"]]
        assert row["reference"] == want["reference"]
        assert row["fields"] == {k: want[k] for k in ("format", "task", "id")}
    r = CliRunner().invoke(cli, [*base, "--carry", "answr", "-o", str(tmp_path / "d.jsonl")])
    assert r.exit_code == 2 and "none of the prompt rows has a field 'answr'" in r.output
    assert not (tmp_path / "d.jsonl").exists()
