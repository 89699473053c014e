"""Preference commands: judge, pairs."""

from __future__ import annotations

import sys
from typing import get_args

import click

from dsforge.cli.gen import engine_flags, engine_options
from dsforge.cli.types import JSON_OUT, JSONL_OUT, MAX_RETRIES, MAX_WORKERS, MAX_TOKENS, MAX_VOTES, SEED, FiniteFloat, FloatList
from dsforge.cli.options import options_from
from dsforge.errors import UsageError
from dsforge.stages import JudgeMode, PairsConfig


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
@click.option("--judge-model", "-m",
              help="Judge model: the served name (openai engine) or a model folder / alias (vllm engine).")
@click.option("--verifier", metavar="KIND",
              help="Label by a program instead of a model: exact, numeric[:rel=R,abs=A], math, regex:PATTERN or "
                   "python:MODULE:FUNCTION; each reply is checked against the candidate's reference answer.")
@click.option("--reference-field", default="reference", show_default=True, metavar="FIELD",
              help="With --verifier or --rubric reference: the candidate field that holds the reference answer "
                   "(sample copies the prompt row's 'reference'; fields named by sample --carry count too).")
@click.option("--engine", type=click.Choice(["openai", "vllm", "hf"]), default="openai", show_default=True,
              help="openai: any OpenAI-compatible server; vllm: an offline engine as judge.")
@engine_flags
@click.option("--rubric", default="additive", show_default=True,
              help="additive (0-5, one point per criterion), aspects (four 1-5 aspects averaged), reference (0-5, "
                   "agreement with the candidate's reference answer, for tasks a program cannot check), or a Jinja file "
                   "starting with '{# dsforge-rubric min=1 max=10 #}', static text, a line '---', then the item "
                   "template using {{ conversation }} / {{ question }}, {{ answer }} and optionally {{ reference }}.")
@click.option("--mode", type=click.Choice(get_args(JudgeMode)), default="pointwise", show_default=True,
              help="pointwise: score each candidate; pairwise: compare pairs in both orders (disagreement = tie).")
@click.option("--votes", "-k", type=click.IntRange(1, MAX_VOTES), default=1, show_default=True,
              help="Judge samples per item, averaged (k > 1 samples at temperature 0.7 unless --temperature).")
@click.option("--temperature", type=FiniteFloat(0), default=0.0, show_default=True, help="Judge temperature.")
@click.option("--max-tokens", type=click.IntRange(16, MAX_TOKENS), default=256, show_default=True, help="Judge reply cap.")
@click.option("--parse-retries", type=click.IntRange(0, MAX_RETRIES), default=2, show_default=True,
              help="Re-ask this many times when a reply has no valid score; then record the failure.")
@click.option("--no-structured", is_flag=True, help="Do not send response_format json_schema (parse text only).")
@click.option("--no-logprobs", is_flag=True, help="Do not ask for score-token logprobs (expected score).")
@click.option("--max-pairs-per-prompt", type=click.IntRange(1), default=12, show_default=True,
              help="Pairwise: comparisons per prompt, each asked in both orders.")
@click.option("--include-truncated", is_flag=True, help="Also judge answers cut off at max_tokens.")
@click.option("--cache", "cache_path", default="auto", show_default=True,
              help="SQLite call cache ('auto': OUT.cache.sqlite; 'none' to disable). Reruns cost nothing.")
@click.option("--price", type=FloatList(0, example="0.15,0.60", count=2, distinct=False), help="IN,OUT USD per 1M prompt/completion tokens, for a cost estimate.")
@click.option("--audit", is_flag=True, help="First probe the judge: identical answers, swapped pairs, padded copies.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Judge sampling seed (where honoured).")
@click.option("--ray", "ray_address", metavar="ADDRESS",
              help="With --engine vllm|hf, run as a Ray job: auto, HOST:PORT, ray://HOST:PORT, or local[:N]; one actor "
                   "per worker owns a judge engine and judges the prompts of shard i/N into OUT.ray-i-of-N.jsonl "
                   "(own cache, resumable); the shards are merged into --out.")
@click.option("--ray-workers", type=click.IntRange(1, MAX_WORKERS), help="Workers for --ray (default: one per GPU, else per node).")
@click.option("-o", "--out", type=JSONL_OUT, required=True, help="Judged candidates (.jsonl).")
def judge(candidates, judge_model, verifier, reference_field, engine, engine_opts, base_url, api_key, rubric, mode, votes, temperature,
          max_tokens, parse_retries, no_structured, no_logprobs, max_pairs_per_prompt, include_truncated, cache_path,
          price, audit, seed, ray_address, ray_workers, out):
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
    from dsforge.rubrics import load_rubric

    if verifier:
        _verifier_alone(click.get_current_context())
        cfg = j.JudgeConfig(verifier=verifier, reference_field=reference_field, include_truncated=include_truncated)
        summary = j.judge_file(candidates, out, cfg)
        click.echo(j.format_summary(summary))
        click.echo(f"judged: {out}  (summary: {out}.summary.json)")
        if not summary["scored"]:
            click.echo(f"Error: none of {summary['items']} candidates checked (all truncated; --include-truncated "
                       "checks them too)", err=True)
            sys.exit(1)
        return
    if not judge_model:
        raise UsageError("judge needs a judge model (-m MODEL) or a verifier (--verifier KIND)",
                         "dsforge judge CANDIDATES -m MODEL --base-url URL -o OUT, or --verifier numeric")

    options = engine_options(engine, engine_opts, base_url, api_key)
    cfg = j.JudgeConfig(judge_model=m.resolve(judge_model) if engine != "openai" else judge_model,
                        rubric=load_rubric(rubric, mode), engine=engine, temperature=temperature, votes=votes,
                        max_tokens=max_tokens, parse_retries=parse_retries, structured=not no_structured,
                        logprobs=not no_logprobs, seed=seed, max_pairs_per_prompt=max_pairs_per_prompt,
                        include_truncated=include_truncated, prices=_prices(price), reference_field=reference_field)
    cache_path = None if cache_path == "none" else cache_path
    if ray_address or ray_workers:
        summary = _judge_ray(candidates, out, cfg, ray_address, ray_workers, options, cache_path, audit)
    else:
        summary = j.judge_file(candidates, out, cfg, engine_options=options, cache_path=cache_path, audit=audit)
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
