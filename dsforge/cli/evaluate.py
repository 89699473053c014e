"""Evaluation command: eval (its settings are the options of dsforge.stages.EvalConfig)."""

from __future__ import annotations

import click

from dsforge.cli.options import options_from
from dsforge.cli.types import OutPath
from dsforge.errors import UsageError
from dsforge.stages import EvalConfig


@click.command("eval")
@click.option("--prompts", "-p", required=True, help="Held-out prompts (.jsonl rows with id, instruction, reference).")
@options_from(EvalConfig)
@click.option("--api-key", help="API key (default: OPENAI_API_KEY). Never written to any file.")
@click.option("--engine-opt", "engine_opts", multiple=True, metavar="KEY=VALUE", help="Engine option, as for sample.")
@click.option("--baseline", help="An earlier eval.json of the same prompts: paired difference (bootstrap) and McNemar.")
@click.option("--against", help="An earlier eval.json of the same prompts: pairwise win rate by --judge-model.")
@click.option("-o", "--out", type=OutPath((".json",)), help="Write the summary and item-by-item results (.json).")
def eval_cmd(prompts, cfg, api_key, engine_opts, baseline, against, out):
    """Greedy pass@1 (lenient and strict, 95% Wilson intervals) of a model or LoRA adapter on checkable
    prompts; optional pass@k; paired comparison with a baseline eval; pairwise win rate.

    \b
    dsforge eval --prompts heldout.jsonl --verifier numeric -o base.json
    dsforge eval --adapter runs/r1/adapter --prompts heldout.jsonl --baseline base.json -o r1.json
    dsforge eval -m served --engine openai --base-url http://127.0.0.1:8000/v1 --prompts heldout.jsonl
    dsforge eval --adapter A --prompts open.jsonl --against base.json --judge-model judge --base-url URL
    """
    from dsforge import evaluate as ev
    from dsforge.train import parse_sets

    if cfg.samples and not cfg.k:
        raise UsageError("--samples needs --k", "e.g. --k 4 --samples 16")
    if cfg.samples and cfg.samples < cfg.k:
        raise UsageError(f"--samples {cfg.samples} is below --k {cfg.k}", "pass@k needs at least k samples per prompt")
    if (cfg.judge_model or cfg.judge_engine != "openai") and not against:
        raise UsageError("--judge-model/--judge-engine only apply with --against EVAL.json")
    if (cfg.base_url or api_key) and not (cfg.engine == "openai" or (against and cfg.judge_engine == "openai")):
        raise UsageError("--base-url/--api-key apply to --engine openai (or an openai judge with --against)",
                         "drop them, or add --engine openai")
    key = {"api_key": api_key} if api_key else {}
    options = {**parse_sets(engine_opts, "--engine-opt"), **(key if cfg.engine == "openai" else {})}
    summary = ev.evaluate(cfg, prompts, out, baseline=baseline, against=against, engine_options=options,
                          judge_options=key if cfg.judge_engine == "openai" else None, keep_other_evals=True)
    click.echo(ev.format_summary(summary))
    if out:
        click.echo(f"eval: {out}")


def add_commands(cli: click.Group) -> None:
    """Register `dsforge eval` on the top-level group."""
    cli.add_command(eval_cmd)
