"""`dsforge sample --ray`: a real local Ray cluster on 127.0.0.1 (head started by the test, two workers), the
tiny model through the hf engine; one worker is killed mid-run, a rerun finishes with each group exactly once."""

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from click.testing import CliRunner

from dsforge.cli import cli
from dsforge.distributed import parse_address, shard_path
from dsforge.judge import _candidate_key
from dsforge.errors import UsageError
from tests.servers import free_port
from tests.test_sample import exactly_once, lines, write

DSFORGE = [sys.executable, "-m", "dsforge"]


@pytest.mark.parametrize("text,want", [("local", ("local", None)), ("local:3", ("local", 3)), ("auto", ("auto", None)),
                                       ("10.0.0.5:6379", ("10.0.0.5:6379", None)),
                                       ("ray://head:10001", ("ray://head:10001", None))])
def test_addresses(text, want):
    assert parse_address(text) == want


@pytest.mark.parametrize("text", ["local:0", "local:x", "head", "http://head:8265", ""])
def test_bad_address_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--ray"):
        parse_address(text)


@pytest.mark.parametrize("args,msg", [(["--ray", "nowhere"], "not a Ray address"),
                                      (["--ray", "local", "--shard", "0/2"], "--shard and --ray"),
                                      (["--ray-workers", "2"], "--ray-workers needs --ray"),
                                      (["--ray", "local", "--limit", "3"], "--limit cannot be combined")])
def test_cli_mistakes_exit_2_with_one_message(tmp_path, tiny_model, args, msg):
    p = write(tmp_path / "p.jsonl", [{"instruction": "q"}])
    r = CliRunner().invoke(cli, ["sample", p, "-m", tiny_model, "--engine", "hf", "-o", str(tmp_path / "c.jsonl"),
                                 *args])
    assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """`ray start --head --block` on 127.0.0.1 in its own session (one per module); stopped by that
    session's process ids."""
    pytest.importorskip("ray")
    import psutil

    tmp_path = tmp_path_factory.mktemp("ray_head")

    port = free_port()
    short = tempfile.mkdtemp(prefix="ray", dir="/tmp")   # Ray's socket paths must stay under 107 bytes
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")   # a throwaway cluster of this test
    head = subprocess.Popen([ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
                             "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
                             "--temp-dir", short], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "ray-head.log", "wb"))
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while subprocess.run([ray_bin, "status", "--address", address], env=env, capture_output=True).returncode:
            assert head.poll() is None and time.time() < deadline, (tmp_path / "ray-head.log").read_text()[-3000:]
            time.sleep(1)
        yield address, env
    finally:
        ours = [p for p in psutil.process_iter() if _sid(p) == head.pid]
        for p in ours:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(ours, timeout=10)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        shutil.rmtree(short, ignore_errors=True)


def _sid(p):
    try:
        return os.getsid(p.pid)
    except OSError:
        return None


def _writer_of(path):
    """The process that holds `path` open (the Ray worker sampling that shard)."""
    import psutil

    for p in psutil.process_iter():
        try:
            if any(f.path == path for f in p.open_files()):
                return p
        except psutil.Error:
            continue
    return None


def test_ray_cluster_worker_killed_mid_run_then_rerun_completes_exactly_once(tmp_path, tiny_model, ray_head):
    address, env = ray_head
    p = write(tmp_path / "p.jsonl", [{"instruction": f"question number {i}"} for i in range(60)])
    out = str(tmp_path / "c.jsonl")
    cmd = DSFORGE + ["sample", p, "-m", tiny_model, "--engine", "hf", "--engine-opt", "batch_size=1", "--temps", "0.7",
                     "-n", "2", "--max-tokens", "32", "--seed", "3", "--ray", address, "--ray-workers", "2", "-o", out]
    victim = shard_path(out, 1, 2)
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and run.poll() is None:
        if os.path.exists(victim) and open(victim, "rb").read().count(b"\n") >= 2:
            break
        time.sleep(0.02)
    worker = _writer_of(victim)
    assert worker is not None, "shard 1's worker was not found writing (finished too early?)"
    worker.send_signal(signal.SIGKILL)
    first, _ = run.communicate(timeout=300)
    print(first)
    assert run.returncode == 1, first
    assert "shard 1: lost" in first and "rerun the same command" in first and "Traceback" not in first
    assert not os.path.exists(out), "nothing is merged while a shard is unfinished"
    partial = len(lines(victim))
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    print(done.stdout, done.stderr[-2000:])
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "merged 2 shards: 60 prompts" in done.stdout
    assert exactly_once(lines(out), 2) == (True, 60)
    s0 = json.load(open(shard_path(out, 0, 2) + ".summary.json"))
    s1 = json.load(open(victim + ".summary.json"))
    assert s0["groups_sampled"] == 0 and s0["groups_resumed"] == s0["prompts"], "the finished shard is not redone"
    assert s1["groups_resumed"] >= partial // 2 - 1 and s1["groups_sampled"] == s1["prompts"] - s1["groups_resumed"]


@pytest.mark.parametrize("args,msg", [(["--engine", "openai", "--ray", "local"], "--ray needs a local judge engine"),
                                      (["--engine", "hf", "--ray-workers", "2"], "--ray-workers needs --ray"),
                                      (["--engine", "hf", "--ray", "local", "--audit"], "--audit cannot be combined"),
                                      (["--engine", "hf", "--ray", "nowhere"], "not a Ray address")])
def test_judge_ray_mistakes_exit_2_with_one_message(tmp_path, tiny_model, args, msg):
    c = write(tmp_path / "c.jsonl", _candidates(2))
    r = CliRunner().invoke(cli, ["judge", c, "-m", tiny_model, "-o", str(tmp_path / "j.jsonl"), *args])
    assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output
    assert not os.path.exists(tmp_path / "j.jsonl")


def _candidates(prompts: int) -> list[dict]:
    """Two candidates per prompt, with dsforge's hex prompt ids (so the shards split them by prompt)."""
    return [{"prompt_id": hashlib.sha256(f"p{i}".encode()).hexdigest()[:16],
             "messages": [{"role": "user", "content": f"question number {i}"}], "text": f"answer {k} to {i}",
             "temperature": 0.7, "sample_index": k, "duplicate_indices": [], "truncated": False,
             "finish_reason": "stop"} for i in range(prompts) for k in range(2)]


def _cached_calls(path: str) -> int:
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)) as db:
            return db.execute("SELECT count(*) FROM calls").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_judge_ray_kill_a_worker_rerun_equals_one_process_exactly_once(tmp_path, tiny_model, ray_head):
    """hf engine, tiny model as judge (seeded; temperature 0.7 because at 0 the tiny model's replies are empty;
    float32, one thread and one prompt per generate call, so nothing can move a logit): a 2-worker Ray judge whose shard-1 worker is SIGKILLed mid-run, then rerun, gives the same
    judged records, in the same order, as one process; each candidate exactly once; the killed shard reuses
    the calls its cache holds and the finished shard redoes nothing."""
    address, env = ray_head
    rows = _candidates(16)
    c = write(tmp_path / "c.jsonl", rows)
    common = [c, "-m", tiny_model, "--engine", "hf", "--engine-opt", "batch_size=1", "--engine-opt", "dtype=float32",
              "--max-tokens", "16", "--parse-retries", "0", "--seed", "5", "--temperature", "0.7"]
    env = {**env, "OMP_NUM_THREADS": "1"}   # what a Ray worker with one CPU gets
    single = str(tmp_path / "single.jsonl")
    one = subprocess.Popen(DSFORGE + ["judge", *common, "-o", single], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=env)   # the reference, beside the Ray run
    out = str(tmp_path / "j.jsonl")
    cmd = DSFORGE + ["judge", *common, "--ray", address, "--ray-workers", "2", "-o", out]
    victim_cache = shard_path(out, 1, 2) + ".cache.sqlite"
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.time() + 300
    while time.time() < deadline and run.poll() is None:
        if os.path.exists(victim_cache) and _cached_calls(victim_cache) >= 2:
            break
        time.sleep(0.02)
    worker = _writer_of(victim_cache)
    assert worker is not None, f"shard 1's worker was not found judging (finished too early?) {run.poll()} " + \
        (run.communicate()[0] if run.poll() is not None else "")
    worker.send_signal(signal.SIGKILL)
    first, _ = run.communicate(timeout=300)
    print(first)
    assert run.returncode == 1, first
    assert "shard 1: lost" in first and "rerun the same command" in first and "Traceback" not in first
    assert not os.path.exists(out) and not os.path.exists(shard_path(out, 1, 2)), "nothing merged, no torn shard"
    partial = _cached_calls(victim_cache)
    alone_out, _ = one.communicate(timeout=300)
    assert "Traceback" not in alone_out and os.path.exists(single), alone_out
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    print(done.stdout, done.stderr[-2000:])
    assert "ray: merged 2 shards" in done.stdout and "Traceback" not in done.stderr, done.stdout + done.stderr[-3000:]
    assert done.returncode == one.returncode, "the same exit rule as one process (1: no reply parsed as a score)"
    merged, alone = lines(out), lines(single)
    assert [_candidate_key(r) for r in merged] == [_candidate_key(r) for r in rows], "each candidate once, in order"
    assert merged == alone, "the same judged records as one process"
    s = json.load(open(out + ".summary.json"))
    one_s = json.load(open(single + ".summary.json"))
    assert s["items"] == 32 and s["shards"] == 2
    assert all(r["judge"]["raw"][0].strip() for r in merged), "real replies were compared, not empty ones"
    assert {k: s[k] for k in ("scored", "failed", "failures_final", "score_histogram")} == \
           {k: one_s[k] for k in ("scored", "failed", "failures_final", "score_histogram")}
    s0 = json.load(open(shard_path(out, 0, 2) + ".summary.json"))
    s1 = json.load(open(shard_path(out, 1, 2) + ".summary.json"))
    assert s0["items"] + s1["items"] == 32 and s0["items"] and s1["items"]
    assert s0["cache_misses"] == 0, "the finished shard's calls all come from its cache"
    assert s1["cache_hits"] >= partial >= 2 and s1["cache_misses"] == s1["items"] - s1["cache_hits"]


def test_without_ray_installed_says_how_to_get_it(monkeypatch):
    from dsforge import distributed

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError, match="needs Ray") as err:
        distributed._connect("local", 2)
    assert "dsforge[ray]" in err.value.hint


def _shard_files(tmp_path, rows, cfg, split, mode_of=lambda r: "pointwise"):
    """Hand-made judged shard files: rows[i] goes to the shards listed in split[i]."""
    paths = [tmp_path / f"j.ray-{i}-of-2.jsonl" for i in range(2)]
    for i, p in enumerate(paths):
        mine = [{**r, "judge": {"kind": "llm", "model": cfg.judge_model, "rubric": cfg.rubric.name,
                                "rubric_hash": cfg.rubric.hash, "mode": mode_of(r), "score": 3.0}}
                for r, where in zip(rows, split) if i in where]
        write(p, mine)
        json.dump({"items": len(mine), "calls": len(mine), "cached_calls": 0, "failures_final": {"x": 1},
                   "structured_output": True, "seconds": 1.5 + i}, open(f"{p}.summary.json", "w"))
    return [str(p) for p in paths]


@pytest.mark.parametrize("case,msg", [("twice", "in more than one shard"), ("missing", "are in no shard"),
                                      ("other_judge", "judged with other settings")])
def test_merge_judged_refuses_and_writes_nothing(tmp_path, case, msg):
    from dsforge.errors import DsforgeError
    from dsforge.judge import JudgeConfig, merge_judged
    from dsforge.rubrics import load_rubric

    rows = _candidates(3)
    c = write(tmp_path / "c.jsonl", rows)
    cfg = JudgeConfig(judge_model="m", rubric=load_rubric("additive", "pointwise"), engine="hf")
    split = [{0}] * 3 + [{1}] * 3
    if case == "twice":
        split[0] = {0, 1}
    if case == "missing":
        split[5] = set()
    paths = _shard_files(tmp_path, rows, cfg, split,
                         mode_of=lambda r: "pairwise" if case == "other_judge" and r is rows[4] else "pointwise")
    with pytest.raises(DsforgeError, match=msg):
        merge_judged(paths, str(tmp_path / "j.jsonl"), rows, cfg, candidates=c)
    assert not os.path.exists(tmp_path / "j.jsonl") and not os.path.exists(tmp_path / "j.jsonl.summary.json")


def test_merge_judged_orders_like_the_candidates_and_adds_up_the_summaries(tmp_path):
    from dsforge.judge import JudgeConfig, merge_judged
    from dsforge.rubrics import load_rubric

    rows = _candidates(3)
    c = write(tmp_path / "c.jsonl", rows)
    cfg = JudgeConfig(judge_model="m", rubric=load_rubric("additive", "pointwise"), engine="hf")
    paths = _shard_files(tmp_path, rows, cfg, [{1}, {0}, {1}, {0}, {0}, {1}])
    s = merge_judged(paths, str(tmp_path / "j.jsonl"), rows, cfg, candidates=c)
    out = lines(tmp_path / "j.jsonl")
    assert [_candidate_key(r) for r in out] == [_candidate_key(r) for r in rows]
    assert (s["items"], s["scored"], s["calls"], s["failures_final"], s["seconds"], s["shards"]) == (6, 6, 6, {"x": 2}, 2.5, 2)
    assert json.load(open(tmp_path / "j.jsonl.summary.json"))["score_histogram"] == {"3.0": 6}


class _CoinJudge:
    """A fake judge engine for the sharding bookkeeping: its verdict is a hash of the whole prompt."""

    def __init__(self):
        from dsforge.engines import Engine, EngineOptions

        self.engine = type("Coin", (Engine,), {"name": "coin", "generate": self._generate})("j", EngineOptions())

    @staticmethod
    def _generate(self, requests):
        from dsforge.engines import Completion, Result

        for req in requests:
            h = hashlib.sha256(json.dumps(req.messages).encode()).digest()[0]
            text = f"Winner: {'AB'[h % 2]}" if h % 5 else "no idea"
            yield Result(request=req, completions=[Completion(text=text, finish_reason="stop")] * req.params.n,
                         prompt_tokens=10, meta={"usage": {"prompt_tokens": 10, "completion_tokens": 3}})


def test_pairwise_in_shards_merges_to_the_one_process_result(tmp_path):
    """Pairwise mode, 6 candidates per prompt and at most 3 pairs per prompt (so pairs are drawn): judging
    shard 0/2 and 1/2 apart and merging gives the rows and comparisons of one unsharded run."""
    from dsforge.judge import JudgeConfig, judge_file, merge_judged
    from dsforge.rubrics import load_rubric

    rows = [{**r, "sample_index": k, "text": f"{r['text']} v{k}"} for r in _candidates(8) for k in range(3)]
    rows = list({_candidate_key(r): r for r in rows}.values())
    c = write(tmp_path / "c.jsonl", rows)
    cfg = JudgeConfig(judge_model="j", rubric=load_rubric("pairwise", "pairwise"), engine="hf", max_pairs_per_prompt=3,
                      parse_retries=1)
    one = str(tmp_path / "one.jsonl")
    judge_file(c, one, cfg, engine=_CoinJudge().engine, cache_path=None, progress=False, log=lambda m: None)
    out = str(tmp_path / "j.jsonl")
    paths = [shard_path(out, i, 2) for i in range(2)]
    for i, p in enumerate(paths):
        judge_file(c, p, cfg, engine=_CoinJudge().engine, cache_path=None, progress=False, log=lambda m: None,
                   shard=(i, 2))
    assert all(lines(p) for p in paths), "both shards hold prompts"
    s = merge_judged(paths, out, rows, cfg, candidates=c)
    assert lines(out) == lines(one)
    key = lambda r: json.dumps(r, sort_keys=True)   # noqa: E731
    assert sorted(lines(out + ".comparisons.jsonl"), key=key) == sorted(lines(one + ".comparisons.jsonl"), key=key)
    alone = json.load(open(one + ".summary.json"))
    for k in ("items", "scored", "comparisons", "swap_decided", "swap_consistency", "slot_picks", "first_slot_rate",
              "failures_final", "calls"):
        assert s[k] == alone[k], k
