"""Generation commands: models, sample, merge."""

from __future__ import annotations

import sys

import click

from dsforge.cli.types import JSONL_OUT, MAX_N, MAX_WORKERS, FloatList, MapPair, Url
from dsforge.cli.options import options_from
from dsforge.errors import UsageError
from dsforge.stages import SampleConfig


def engine_options(engine: str, opts: tuple[str, ...], base_url: str | None, api_key: str | None) -> dict:
    from dsforge.train import parse_sets

    options = parse_sets(opts, "--engine-opt")
    if base_url:
        options["base_url"] = base_url
    if api_key:
        options["api_key"] = api_key
    if engine != "openai" and ("base_url" in options or "api_key" in options):
        raise UsageError("--base-url/--api-key only apply to --engine openai")
    return options


def parse_temps(text: str) -> tuple[float, ...]:
    try:
        temps = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise UsageError(f"--temps {text!r} is not a comma-separated list of numbers", "e.g. --temps 0.7,1.0") from None
    if not temps or len(set(temps)) != len(temps):
        raise UsageError(f"--temps {text!r}: give distinct temperatures, e.g. 0.7,1.0")
    return temps


@click.group()
def models():
    """Local models: prepare the embedded default (SmolLM2-135M-Instruct) once, show paths."""


@models.command("prepare")
@click.argument("alias", default="smollm2-135m-instruct")
@click.option("--force", is_flag=True, help="Rebuild even if already prepared.")
def models_prepare(alias, force):
    """Build ALIAS into the cache (DSFORGE_CACHE, default ~/.cache/dsforge) and print its path."""
    from dsforge import models as m

    click.echo(str(m.prepare(alias, force=force)))


@models.command("path")
@click.argument("alias", default="smollm2-135m-instruct")
def models_path(alias):
    """Print where ALIAS is (or will be) prepared; exit 1 if it is not prepared yet."""
    from dsforge import models as m

    if alias not in m.ALIASES:
        raise UsageError(f"unknown model alias '{alias}'", f"known: {', '.join(m.ALIASES)}")
    click.echo(str(m.model_dir(alias)))
    if not m.is_prepared(alias):
        raise UsageError(f"{alias} is not prepared yet", f"run: dsforge models prepare {alias}")


def engine_flags(fn):
    fn = click.option("--engine-opt", "engine_opts", multiple=True, metavar="KEY=VALUE",
                      help="Engine option (vllm: tensor_parallel_size, data_parallel_size, max_model_len, "
                           "gpu_memory_utilization, dtype, lora_path, enable_prefix_caching, max_num_seqs, ...; "
                           "openai: concurrency, timeout, max_retries, probe; hf: batch_size, dtype).")(fn)
    fn = click.option("--api-key", help="API key (default: OPENAI_API_KEY). Never written to any file.")(fn)
    fn = click.option("--base-url", type=Url(), help="OpenAI-compatible server URL (default: OPENAI_BASE_URL).")(fn)
    return fn


@click.command()
@click.argument("prompts", nargs=-1, required=True)
@options_from(SampleConfig)
@engine_flags
@click.option("--map", "maps", type=MapPair(), multiple=True, metavar="DEST=SOURCE",
              help="Where the prompt is: --map instruction=COLUMN (or messages=COLUMN).")
@click.option("--shard", help="I/N: sample only this deterministic slice of the prompts (by prompt id hash).")
@click.option("--skip-bad", is_flag=True, help="Skip rows that are not usable prompts (counted) instead of stopping.")
@click.option("--overwrite", is_flag=True, help="Start the output again instead of resuming it.")
@click.option("--ray", "ray_address", metavar="ADDRESS",
              help="Run as a Ray job: auto, HOST:PORT, ray://HOST:PORT, or local[:N]; one actor per worker owns an "
                   "engine and samples shard i/N (resumable on its own); the shards are merged into --out.")
@click.option("--ray-workers", type=click.IntRange(1, MAX_WORKERS), help="Workers for --ray (default: one per GPU, else per node).")
@click.option("-o", "--out", type=JSONL_OUT, required=True, help="Candidates file (.jsonl); rerunning resumes it.")
def sample(prompts, engine_opts, base_url, api_key, maps, shard, skip_bad, overwrite, ray_address, ray_workers, out,
           cfg):
    """Sample n answers per prompt at each temperature, with full provenance, resumably.

    \b
    dsforge sample prompts.jsonl --temps 0.7,1.0 -n 4 -o candidates.jsonl
    dsforge sample prompts.jsonl --engine openai --base-url http://127.0.0.1:8000/v1 -m served-name -o c.jsonl
    dsforge sample prompts.jsonl --shard 3/8 -o c.shard3.jsonl   # then: dsforge merge c.shard*.jsonl -o c.jsonl
    dsforge sample prompts.jsonl --ray auto --engine vllm -o c.jsonl   # one actor per GPU of a Ray cluster
    """
    from dsforge import models as m
    from dsforge import sample as s
    from dsforge.cli.options import mapping_of as _mapping

    options = engine_options(cfg.engine, engine_opts, base_url, api_key)
    cfg = cfg.model_copy(update={"model": m.resolve(cfg.model) if cfg.engine != "openai" else cfg.model})
    limit = cfg.limit
    if ray_address or ray_workers:
        return _sample_ray(list(prompts), out, cfg, ray_address, ray_workers, shard, options, _mapping(maps), limit,
                           skip_bad, overwrite)
    summary = s.sample(list(prompts), out, cfg, engine_options=options, mapping=_mapping(maps),
                       shard=s.parse_shard(shard), limit=limit, skip_bad=skip_bad, overwrite=overwrite)
    click.echo(s.format_summary(summary))
    click.echo(f"candidates: {out}  (summary: {out}.summary.json)")
    if summary["failed_requests"]:
        sys.exit(1)


def _sample_ray(prompts, out, cfg, address, workers, shard, options, mapping, limit, skip_bad, overwrite):
    from dsforge import distributed

    if not address:
        raise UsageError("--ray-workers needs --ray ADDRESS", "e.g. --ray auto --ray-workers 8")
    if shard:
        raise UsageError("--shard and --ray do not combine: --ray makes its own shards", "drop --shard")
    res = distributed.sample_ray(prompts, out, cfg, address=address, workers=workers, engine_options=options,
                                 mapping=mapping, limit=limit, skip_bad=skip_bad, overwrite=overwrite)
    click.echo(distributed.format_ray_summary(res, out))
    if not res["merged"]:
        sys.exit(1)


@click.command()
@click.argument("shards", nargs=-1, required=True)
@click.option("-o", "--out", type=JSONL_OUT, required=True, help="Merged candidates file (.jsonl).")
@click.option("-n", "n", type=click.IntRange(1, MAX_N), help="Answers per group to expect (default: what the shards hold).")
@click.option("--prompts", "prompt_files", multiple=True,
              help="The prompt file(s) sampled: also check every prompt is covered at every temperature.")
@click.option("--temps", type=FloatList(0), help="Temperatures to expect with --prompts (default: those in the shards).")
@click.option("--map", "maps", type=MapPair(), multiple=True, metavar="DEST=SOURCE", help="As for sample, with --prompts.")
@click.option("--system", help="As for sample, with --prompts.")
def merge(shards, out, n, prompt_files, temps, maps, system):
    """Join `sample --shard` outputs; check settings match, nothing overlaps and nothing is missing."""
    from dsforge import sample as s
    from dsforge.cli.options import mapping_of as _mapping

    prompts = s.read_prompts(list(prompt_files), mapping=_mapping(maps), system=system) if prompt_files else None
    res = s.merge(list(shards), out, n=n, temps=list(parse_temps(temps)) if temps else None, prompts=prompts,
                  prompt_files=list(prompt_files))
    click.echo(f"merged {res['shards']} shards: {res['prompts']} prompts, {res['groups']} (prompt, temperature) "
               f"groups, {res['candidates']} candidates -> {out}")


def add_commands(cli: click.Group) -> None:
    cli.add_command(models)
    cli.add_command(sample)
    cli.add_command(merge)
