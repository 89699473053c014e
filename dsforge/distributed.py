"""`dsforge sample --ray ADDRESS` (and `judge --ray` with a local engine): the same run spread over a Ray cluster.

One Ray actor per worker owns an engine and runs `dsforge.sample.sample()` on its slice of the prompts
(`--shard i/N`, by prompt id), writing OUT's shard file `OUT.ray-i-of-N.jsonl`; each shard resumes on its
own (complete (prompt, temperature) groups are kept, unfinished ones sampled again). When every shard
is complete, `dsforge.sample.merge()` joins them into OUT with its usual checks (same settings, nothing
twice, nothing missing). A worker lost mid-run costs only its shard's unfinished groups: the others
finish, the command names the lost shard and exits 1, and the same command run again finishes it.

Addresses: `local` / `local:N` (a Ray instance started for this run, N workers, default 2), `auto`
(the cluster this machine belongs to, or RAY_ADDRESS), `HOST:PORT` (a cluster's GCS) and
`ray://HOST:PORT` (Ray Client). Workers: --ray-workers N, else one per GPU of the cluster (each actor
holds one GPU), else one per node. Paths (prompts, OUT) must be visible to every node (a shared
folder), as for an array job of `--shard`; dsforge must be installed on every node.

Ray is an optional extra (`pip install 'dsforge[ray]'`); only this module imports it.
"""

from __future__ import annotations

import functools
import logging
import os
import socket

from dsforge.errors import DsforgeError, UsageError

INSTALL = "pip install 'dsforge[ray]'  (on every node of the cluster)"


def parse_address(text: str) -> tuple[str, int | None]:
    """'local[:N]' -> ('local', N or None); 'auto', 'HOST:PORT', 'ray://HOST:PORT' -> (text, None).
    Raises UsageError for anything else."""
    text = (text or "").strip()
    if text == "local" or text.startswith("local:"):
        n = text.partition(":")[2]
        if n and (not n.isdigit() or int(n) < 1):
            raise UsageError(f"--ray {text!r}: local:N needs a worker count N >= 1", "e.g. --ray local:4")
        return "local", int(n) if n else None
    if text == "auto" or text.startswith("ray://"):
        return text, None
    host, sep, port = text.rpartition(":")
    if sep and host and "/" not in host and port.isdigit():
        return text, None
    raise UsageError(f"--ray {text!r} is not a Ray address",
                     "use auto, HOST:PORT (the head's GCS port, 6379 by default), ray://HOST:10001 or local[:N]")


def shard_path(out: str, i: int, n: int) -> str:
    """Where worker i of n writes: OUT.ray-i-of-n.jsonl beside OUT."""
    return f"{out[:-len('.jsonl')]}.ray-{i}-of-{n}.jsonl"


class ShardWorker:
    """A Ray actor: owns one engine for one shard (the engine lives in the stage function it runs)."""

    def where(self) -> dict:
        """Where this actor runs: {"host": hostname, "pid": process id, "gpus": CUDA_VISIBLE_DEVICES or None}."""
        return {"host": socket.gethostname(), "pid": os.getpid(),
                "gpus": os.environ.get("CUDA_VISIBLE_DEVICES")}

    def run(self, stage, out, shard) -> dict:
        """`stage(out, shard)` in this actor: shard = (i, n); returns the stage's summary dict."""
        return stage(out, shard)


def _connect(address: str, local_workers: int | None):
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray, which is not installed", INSTALL) from None
    if ray.is_initialized():
        return ray
    kw = dict(logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
    try:
        if address == "local":
            ray.init(num_cpus=local_workers, **kw)
        else:
            ray.init(address=address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise DsforgeError(f"cannot reach the Ray cluster at {address}: {str(err).splitlines()[0]}",
                           "start it first (ray start --head) or check the address; --ray local runs one here") from None
    return ray


def _workers(ray, requested: int | None) -> tuple[int, dict]:
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if requested is None:
        requested = gpus or max(1, len([n for n in ray.nodes() if n.get("Alive")]))
    if gpus:
        return requested, {"num_gpus": 1}
    return requested, {"num_cpus": 1 if res.get("CPU", 0) >= requested else 0}


def _cause(err) -> str:
    """One line for why a shard did not finish: dsforge's own message, or the first sentence of Ray's."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, DsforgeError):
        return str(cause)
    if type(err).__name__ in ("ActorDiedError", "RayActorError"):
        return "its worker process died (killed, out of memory, or its node was lost)"
    text = str(cause or err).strip().splitlines()
    return (text[-1] if text else type(err).__name__).split(". ")[0]


def run_shards(stage, out: str, *, address: str, workers: int | None, describe, log) -> dict:
    """Run `stage(shard_path, (i, n))` on N Ray actors, one shard each; return when every actor has
    finished or died. `stage` must be picklable (a module-level function, or a functools.partial of
    one) and returns the shard's summary dict; `describe(summary)` is the log line's tail.

    Returns {"shards": [summary or None], "paths": [shard files], "lost": [(i, reason)], "workers": n}.
    Raises UsageError for a bad address, DsforgeError when the cluster cannot be reached; a lost or
    failed shard is reported in "lost" (what it finished stays with its shard file for the next run)."""
    kind, local_n = parse_address(address)
    if kind == "local":
        workers = workers or local_n or 2
    ray = _connect(kind, workers)
    n, resources = _workers(ray, workers)
    actor_cls = ray.remote(max_restarts=0)(ShardWorker)
    paths = [shard_path(out, i, n) for i in range(n)]
    actors = [actor_cls.options(**resources).remote() for _ in range(n)]
    log(f"ray: {n} workers ({'one GPU each' if 'num_gpus' in resources else 'CPU'}), shards {paths[0]} ...")
    pending = {actors[i].run.remote(stage, paths[i], (i, n)): i for i in range(n)}
    shards: list = [None] * n
    lost: list = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(done[0])
        try:
            shards[i] = ray.get(done[0])
            log(f"ray: shard {i}/{n} done: {describe(shards[i])}")
        except Exception as err:   # RayActorError (worker lost), RayTaskError (the shard failed)
            lost.append((i, _cause(err)))
            log(f"ray: shard {i}/{n} ({paths[i]}) did not finish: {_cause(err)}")
    for a in actors:
        ray.kill(a)
    return {"shards": shards, "paths": paths, "lost": lost, "workers": n}


def _sample_shard(inputs, cfg, kwargs, out, shard) -> dict:
    from dsforge import sample as s

    return s.sample(inputs, out, cfg, shard=shard, progress=False, log=lambda m: None, **kwargs)


def sample_ray(inputs: list[str], out: str, cfg, *, address: str, workers: int | None = None,
               engine_options: dict | None = None, mapping: dict | None = None, limit: int | None = None,
               skip_bad: bool = False, overwrite: bool = False, log=None) -> dict:
    """Run `sample` as N Ray actors (shard i/N each) and merge into `out`. Returns run_shards()'s dict
    plus "merged": merge()'s dict, or None while a shard is lost or has failed requests.

    Raises UsageError (exit 2) for an `out` that is not .jsonl, a bad address, `limit` (a shard's
    first N would not be the file's), or inputs without prompts; DsforgeError when the cluster
    cannot be reached.
    """
    from dsforge import logs
    from dsforge import sample as s

    if not out.endswith(".jsonl"):
        raise UsageError(f"{out}: the candidates file must be .jsonl")
    parse_address(address)
    if limit:   # a worker applies --limit after its shard's filter: the union would not be the first N
        raise UsageError("--limit cannot be combined with --ray", "cut the prompt file instead (head -n N)")
    prompts = s.read_prompts(inputs, mapping=mapping, system=cfg.system, skip_bad=skip_bad)
    if not prompts:
        raise UsageError("no prompts to sample", "check the input files and --map")
    kwargs = dict(engine_options=engine_options, mapping=mapping, skip_bad=skip_bad, overwrite=overwrite)
    res = run_shards(functools.partial(_sample_shard, inputs, cfg, kwargs), out, address=address, workers=workers,
                     log=log or logs.say,
                     describe=lambda sh: f"{sh['groups_sampled']} groups sampled, {sh['groups_resumed']} already there")
    res["merged"] = None
    if not res["lost"] and not any(sh["failed_requests"] for sh in res["shards"]):
        res["merged"] = s.merge(res["paths"], out, n=cfg.n, temps=list(cfg.temps), prompts=prompts,
                                prompt_files=list(inputs))
    return res


def _judge_shard(candidates, cfg, engine_options, cache, out, shard) -> dict:
    from dsforge import judge as j

    if cache not in (None, "auto"):   # one SQLite file per shard: shards never share a cache
        cache = f"{cache}.ray-{shard[0]}-of-{shard[1]}"
    return j.judge_file(candidates, out, cfg, engine_options=engine_options, cache_path=cache, shard=shard,
                        progress=False, log=lambda m: None)


def judge_ray(candidates: str, out: str, cfg, *, address: str, workers: int | None = None,
              engine_options: dict | None = None, cache_path: str | None = "auto", log=None) -> dict:
    """Run `judge` as N Ray actors, each judging the candidates of its prompt ids (shard i/N, so a
    prompt's candidates stay together for pairwise mode) into OUT.ray-i-of-N.jsonl with its own call
    cache (OUT.ray-i-of-N.jsonl.cache.sqlite, or --cache's path + .ray-i-of-N); then merge into `out`
    (`judge.merge_judged`: every candidate exactly once, one judge setting). Returns run_shards()'s
    dict plus "merged": the merged summary, or None while a shard is lost. Raises UsageError for a
    remote engine (openai: a server is already the place to scale) or a bad address."""
    from dsforge import judge as j
    from dsforge import logs

    if cfg.engine not in ("vllm", "hf"):
        raise UsageError(f"--ray needs a local judge engine (--engine vllm or hf), not --engine {cfg.engine}",
                         "an OpenAI-compatible server already serves many clients: run judge without --ray, "
                         "or use --engine vllm/hf so each Ray worker owns an engine")
    if not out.endswith(".jsonl"):
        raise UsageError(f"{out}: the judged file must be .jsonl")
    parse_address(address)
    items = j.load_candidates(candidates)
    j.check_outputs(candidates, out, cfg)
    res = run_shards(functools.partial(_judge_shard, candidates, cfg, engine_options, cache_path), out,
                     address=address, workers=workers, log=log or logs.say,
                     describe=lambda sh: f"{sh['items']} candidates, {sh['scored']} scored, "
                                         f"{sh['cached_calls']} of {sh['calls']} calls from its cache")
    res["merged"] = None if res["lost"] else j.merge_judged(res["paths"], out, items, cfg, candidates=candidates)
    return res


def format_ray_summary(res: dict, out: str) -> str:
    """One paragraph for the console: merged counts, or which shards to rerun.

    `res` is sample_ray()'s dict (shard summaries with groups_sampled, completion_tokens, generate_s,
    failed_requests); returns newline-joined lines without a trailing newline.
    """
    done = [sh for sh in res["shards"] if sh]
    toks = sum(sh["completion_tokens"] for sh in done)
    gen = max((sh["generate_s"] for sh in done), default=0)
    lines = [f"ray: {len(done)}/{res['workers']} shards finished, {sum(sh['groups_sampled'] for sh in done)} groups "
             f"sampled ({toks} tokens, slowest shard {gen} s)"]
    if res["merged"]:
        m = res["merged"]
        lines.append(f"merged {m['shards']} shards: {m['prompts']} prompts, {m['groups']} groups, "
                     f"{m['candidates']} candidates -> {out}")
    else:
        lines += lost_lines(res, "groups")
        failed = sum(sh["failed_requests"] for sh in done)
        if failed:
            lines.append(f"{failed} requests failed in finished shards")
        lines.append("not merged: rerun the same command to finish the unfinished groups")
    return "\n".join(lines)


def lost_lines(res: dict, what: str) -> list[str]:
    """One line per lost shard of run_shards()'s `res`: why, and where its finished `what` (e.g.
    "groups", "calls") wait for the rerun; an empty list when none was lost."""
    return [f"shard {i}: lost ({why}); its finished {what} are kept in {res['paths'][i]}"
            + (" (and its call cache)" if what == "calls" else "") for i, why in res["lost"]]
