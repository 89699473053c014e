"""Preference commands: judge, pairs."""

from __future__ import annotations

import sys

import click

from dsforge.cli.gen import engine_flags, engine_options
from dsforge.cli.types import JSON_OUT, JSONL_OUT, MAX_WORKERS, FloatList
from dsforge.cli.options import options_from
from dsforge.errors import UsageError
from dsforge.stages import JudgeConfig, PairsConfig


def _prices(text: str | None):
    if not text:
        return None
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--price {text!r} is not IN,OUT (USD per 1M prompt and completion tokens)",
                         "e.g. --price 0.15,0.60") from None
    return a, b


@click.command()
@click.argument("candidates")
@options_from(JudgeConfig)
@engine_flags
@click.option("--cache", "cache_path", default="auto", show_default=True,
              help="SQLite call cache ('auto': OUT.cache.sqlite; 'none' to disable). Reruns cost nothing.")
@click.option("--price", type=FloatList(0, example="0.15,0.60", count=2, distinct=False), help="IN,OUT USD per 1M prompt/completion tokens, for a cost estimate.")
@click.option("--ray", "ray_address", metavar="ADDRESS",
              help="With --engine vllm|hf, run as a Ray job: auto, HOST:PORT, ray://HOST:PORT, or local[:N]; one actor "
                   "per worker owns a judge engine and judges the prompts of shard i/N into OUT.ray-i-of-N.jsonl "
                   "(own cache, resumable); the shards are merged into --out.")
@click.option("--ray-workers", type=click.IntRange(1, MAX_WORKERS), help="Workers for --ray (default: one per GPU, else per node).")
@click.option("-o", "--out", type=JSONL_OUT, required=True, help="Judged candidates (.jsonl).")
def judge(candidates, engine_opts, api_key, cache_path, price, ray_address, ray_workers, out, cfg):
    """Score sampled candidates with a judge LLM; failures are recorded, never given a default score.

    Exit 1 when no candidate was scored or when judge calls failed (server errors: rerun to retry
    them, like `sample`); replies that stay unparseable after --parse-retries are counted, not fatal.

    \b
    dsforge judge candidates.jsonl -m judge --base-url http://127.0.0.1:8000/v1 -o judged.jsonl
    dsforge judge candidates.jsonl -m judge --mode pairwise --audit -o judged.jsonl
    dsforge judge candidates.jsonl -m MODEL --engine vllm --ray auto -o judged.jsonl   # one actor per GPU
    dsforge judge candidates.jsonl --verifier numeric -o judged.jsonl   # checkable answers: no model
    """
    from dsforge import judge as j
    from dsforge import models as m

    if cfg.verifier:
        _verifier_alone(click.get_current_context())
        summary = j.judge_file(candidates, out, j.from_stage(cfg))
        click.echo(j.format_summary(summary))
        click.echo(f"judged: {out}  (summary: {out}.summary.json)")
        if not summary["scored"]:
            click.echo(f"Error: none of {summary['items']} candidates checked (all truncated; --include-truncated "
                       "checks them too)", err=True)
            sys.exit(1)
        return
    if not cfg.judge_model:
        raise UsageError("judge needs a judge model (-m MODEL) or a verifier (--verifier KIND)",
                         "dsforge judge CANDIDATES -m MODEL --base-url URL -o OUT, or --verifier numeric")

    options = engine_options(cfg.engine, engine_opts, cfg.base_url, api_key)
    model = m.resolve(cfg.judge_model) if cfg.engine != "openai" else cfg.judge_model
    jcfg = j.from_stage(cfg, model, prices=_prices(price))
    audit = cfg.audit
    cache_path = None if cache_path == "none" else cache_path
    if ray_address or ray_workers:
        summary = _judge_ray(candidates, out, jcfg, ray_address, ray_workers, options, cache_path, audit)
    else:
        summary = j.judge_file(candidates, out, jcfg, engine_options=options, cache_path=cache_path, audit=audit)
    click.echo(j.format_summary(summary))
    click.echo(f"judged: {out}  (summary: {out}.summary.json)")
    if summary["failed_calls"] or not summary["scored"]:   # the rule `sample` follows: failed requests exit 1
        click.echo(f"Error: {summary['scored']} of {summary['items']} candidates scored"
                   + (f"; {summary['failed_calls']} judge calls failed (server errors, see 'failures_final'): "
                      f"rerun the same command to retry them, finished calls come from the cache"
                      if summary["failed_calls"] else "; no reply could be parsed as a score"), err=True)
        sys.exit(1)


_VERIFIER_OPTIONS = {"candidates", "verifier", "reference_field", "include_truncated", "out"}


def _verifier_alone(ctx: click.Context) -> None:
    """--verifier calls no model: refuse (exit 2) a model-judge option given on the command line."""
    given = [p for p in ctx.command.params if p.name not in _VERIFIER_OPTIONS
             and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        flag = max(given[0].opts, key=len)
        raise UsageError(f"{flag} does not apply with --verifier (a verifier calls no model)",
                         f"drop {flag}, or drop --verifier to judge with a model")


def _judge_ray(candidates, out, cfg, address, workers, options, cache_path, audit) -> dict:
    from dsforge import distributed

    if not address:
        raise UsageError("--ray-workers needs --ray ADDRESS", "e.g. --ray auto --ray-workers 8")
    if audit:
        raise UsageError("--audit cannot be combined with --ray", "run the audit once without --ray (it needs a few calls)")
    res = distributed.judge_ray(candidates, out, cfg, address=address, workers=workers, engine_options=options,
                                cache_path=cache_path)
    if res["merged"] is None:
        click.echo("\n".join(distributed.lost_lines(res, "calls")
                             + ["not merged: rerun the same command; each shard judges only what its cache lacks"]))
        sys.exit(1)
    click.echo(f"ray: merged {res['workers']} shards ({', '.join(res['paths'])})")
    return res["merged"]


@click.command()
@click.argument("judged", nargs=-1, required=True)
@click.option("-o", "--out", type=JSON_OUT, required=True, help="Ranking rows for DPO/RM (.jsonl or .json).")
@click.option("--kto", "kto_out", type=JSONL_OUT, help="Also write KTO rows (one per candidate, boolean kto_tag) here.")
@options_from(PairsConfig)
def pairs(judged, out, kto_out, cfg):
    """Build DPO chosen/rejected pairs (and KTO rows) from judged candidates, with a policy you can see."""
    import json

    from dsforge import pairs as p

    s = p.build_pairs(list(judged), out, cfg, kto_out=kto_out)
    click.echo(p.format_summary(s))
    if not s["pairs"]:   # KTO rows were written; the pairs file was left as it was
        click.echo(f"Error: no pair survived the policy; see 'dropped' above ({out} was not written)", err=True)
        sys.exit(1)
    click.echo(f"pairs: {out} (sidecar: {s['sidecar']}); dataset_info entry: {json.dumps(s['dataset_info_entry'])}")


def add_commands(cli: click.Group) -> None:
    cli.add_command(judge)
    cli.add_command(pairs)
