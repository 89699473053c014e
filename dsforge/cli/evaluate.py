"""Evaluation command: eval."""

from __future__ import annotations

import click

from dsforge.cli.types import MAX_N, MAX_TOKENS, SEED, FiniteFloat, OutPath, Url
from dsforge.errors import UsageError


@click.command("eval")
@click.option("--model", "-m", default="smollm2-135m-instruct", show_default=True,
              help="Model folder or alias (vllm), or the served model name (openai).")
@click.option("--adapter", help="LoRA adapter folder (e.g. LLaMA-Factory's output_dir), served through vLLM's LoRA support.")
@click.option("--prompts", "-p", required=True, help="Held-out prompts (.jsonl rows with id, instruction, reference).")
@click.option("--verifier", help="exact, numeric, math, regex:PATTERN or python:module:function "
                                 "(default: each row's 'verifier' field).")
@click.option("--reference-field", default="reference", show_default=True, help="Row field holding the reference answer.")
@click.option("--engine", type=click.Choice(["vllm", "openai"]), default="vllm", show_default=True,
              help="vllm (offline engine) or openai (any OpenAI-compatible server, --base-url).")
@click.option("--base-url", type=Url(), help="OpenAI-compatible server URL (the model's with --engine openai, "
                                              "and the judge's with --against).")
@click.option("--api-key", help="API key (default: OPENAI_API_KEY). Never written to any file.")
@click.option("--engine-opt", "engine_opts", multiple=True, metavar="KEY=VALUE", help="Engine option, as for sample.")
@click.option("--max-tokens", type=click.IntRange(1, MAX_TOKENS), default=256, show_default=True, help="Reply length cap.")
@click.option("--k", "k", type=click.IntRange(1, MAX_N), help="Also sampled pass@k: k samples per prompt at --temperature.")
@click.option("--samples", type=click.IntRange(1, MAX_N), help="Samples per prompt for pass@k (default: k; more lowers its variance).")
@click.option("--temperature", type=FiniteFloat(0), default=1.0, show_default=True, help="Temperature of the pass@k samples.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Sampling and bootstrap seed.")
@click.option("--system", help="System prompt for prompts that have none.")
@click.option("--baseline", help="An earlier eval.json of the same prompts: paired difference (bootstrap) and McNemar.")
@click.option("--against", help="An earlier eval.json of the same prompts: pairwise win rate by --judge-model.")
@click.option("--judge-model", help="Pairwise judge for --against (served name, or a model folder with --judge-engine vllm).")
@click.option("--judge-engine", type=click.Choice(["openai", "vllm"]), default="openai", show_default=True,
              help="Engine of the judge for --against.")
@click.option("-o", "--out", type=OutPath((".json",)), help="Write the summary and item-by-item results (.json).")
def eval_cmd(model, adapter, prompts, verifier, reference_field, engine, base_url, api_key, engine_opts, max_tokens,
             k, samples, temperature, seed, system, baseline, against, judge_model, judge_engine, out):
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

    if samples and not k:
        raise UsageError("--samples needs --k", "e.g. --k 4 --samples 16")
    if samples and samples < k:
        raise UsageError(f"--samples {samples} is below --k {k}", "pass@k needs at least k samples per prompt")
    if (judge_model or judge_engine != "openai") and not against:
        raise UsageError("--judge-model/--judge-engine only apply with --against EVAL.json")
    if (base_url or api_key) and not (engine == "openai" or (against and judge_engine == "openai")):
        raise UsageError("--base-url/--api-key apply to --engine openai (or an openai judge with --against)",
                         "drop them, or add --engine openai")
    server = {k_: v for k_, v in (("base_url", base_url), ("api_key", api_key)) if v}
    options = {**parse_sets(engine_opts, "--engine-opt"), **(server if engine == "openai" else {})}
    cfg = ev.EvalConfig(model=model, adapter=adapter, engine=engine, verifier=verifier, reference_field=reference_field,
                        system=system, max_tokens=max_tokens, k=k, samples=samples, temperature=temperature, seed=seed,
                        judge_model=judge_model, judge_engine=judge_engine)
    summary = ev.evaluate(cfg, prompts, out, baseline=baseline, against=against, engine_options=options,
                          judge_options=server if judge_engine == "openai" else None)
    click.echo(ev.format_summary(summary))
    if out:
        click.echo(f"eval: {out}")


def add_commands(cli: click.Group) -> None:
    cli.add_command(eval_cmd)
