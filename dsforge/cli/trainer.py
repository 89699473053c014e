"""Training hand-off commands: train, export, serve, inspect-model."""

from __future__ import annotations

import json
import sys
from typing import get_args

import click

from dsforge import logs
from dsforge.cli.options import options_from
from dsforge.stages import TrainConfig, TrainStage

LF_PY_HELP = "Python of the environment that has LLaMA-Factory (default: DSFORGE_LF_PYTHON, llamafactory-cli on PATH, ./.venv-lf)."


@click.command()
@click.argument("stage", type=click.Choice(get_args(TrainStage)))
@options_from(TrainConfig)
@click.option("--dataset", "datasets", required=True, help="Registered dataset name(s), comma-separated.")
@click.option("--dataset-dir", required=True, help="Folder holding dataset_info.json.")
@click.option("--output-dir", "-o", help="Where weights, YAML, manifest and log go.")
@click.option("--dry-run", is_flag=True,
              help="Check everything, print the resolved YAML and the command; run nothing (no LLaMA-Factory needed).")
def train(datasets, dataset_dir, output_dir, dry_run, cfg):
    """Check the datasets, write the resolved LLaMA-Factory YAML + manifest, run llamafactory-cli train.

    \b
    dsforge train dpo --model Qwen/Qwen2.5-7B-Instruct --dataset my_dpo --dataset-dir data --set template=qwen
    Multi-GPU/node: FORCE_TORCHRUN=1 NNODES=2 NODE_RANK=0 MASTER_ADDR=... MASTER_PORT=... dsforge train ...
    (passed through to LLaMA-Factory); DeepSpeed: --set deepspeed=ds_z3_config.json
    """
    from dsforge import train as t

    res = t.train(cfg.stage, cfg.model, [d.strip() for d in datasets.split(",") if d.strip()], dataset_dir,
                  recipe=cfg.recipe, sets=dict(cfg.set), unset=cfg.unset, output_dir=output_dir, dry_run=dry_run,
                  lf_python=cfg.lf_python, echo=click.echo if dry_run else logs.child_echo(click.echo))
    if dry_run:
        return
    click.echo(t.format_result(res), err=bool(res["exit_code"]))
    sys.exit(res["exit_code"])


@click.command()
@click.option("--model", "-m", default="smollm2-135m-instruct", show_default=True, help="Base model folder or alias.")
@click.option("--adapter", required=True, help="LoRA adapter folder (a train output_dir).")
@click.option("--out", "-o", required=True, help="Folder for the merged model.")
@click.option("--template", help="Chat template name saved with the model.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Other export keys (export_size, export_quantization_bit, ...).")
@click.option("--lf-python", help=LF_PY_HELP)
def export(model, adapter, out, template, sets, lf_python):
    """Merge a LoRA adapter into its base model through llamafactory-cli export."""
    from dsforge import train as t

    code = t.export(model, adapter, out, template=template, lf_python=lf_python, sets=t.parse_sets(sets),
                    echo=logs.child_echo(click.echo))   # LLaMA-Factory's own lines: its log file (-v: here)
    if code == 0:
        click.echo(f"merged model: {out}")
    sys.exit(code)


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--model", "-m", default="smollm2-135m-instruct", show_default=True, help="Model folder or alias.")
@click.option("--adapter", help="LoRA adapter to serve on top of the model.")
@click.option("--engine", type=click.Choice(["vllm", "llamafactory"]), default="vllm", show_default=True,
              help="vllm serve, or llamafactory-cli api (ignores logprobs/seed/stop; dsforge detects that).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Bind address (127.0.0.1 = this machine only).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port.")
@click.option("--name", help="Served model name (default: the model folder's name).")
@click.option("--template", help="LLaMA-Factory template (llamafactory engine).")
@click.option("--lf-python", help=LF_PY_HELP)
@click.argument("extra", nargs=-1, type=click.UNPROCESSED)
def serve(model, adapter, engine, host, port, name, template, lf_python, extra):
    """Start an OpenAI-compatible server for `dsforge sample --engine openai` and `dsforge judge`.

    Arguments after `--` go to the server as they are, e.g. `-- --max-model-len 8192`.
    (The vllm engine serves the adapter as NAME-adapter; the base model stays NAME.)
    """
    from dsforge import servers

    cmd, env, served = servers.serve_command(model, adapter=adapter, engine=engine, host=host, port=port, name=name,
                                             template=template, lf_python=lf_python, extra=tuple(extra))
    click.echo(f"serving {served} at http://{host}:{port}/v1 ({engine}); Ctrl-C or SIGTERM stops it", err=True)
    server = servers.LocalServer(cmd, env, served, host=host, port=port).start()
    try:
        code = server.proc.wait()
    finally:
        server.stop()   # Ctrl-C, SIGTERM: the server and its engine processes stop too
    sys.exit(code)


@click.command("inspect-model")
@click.argument("model", default="smollm2-135m-instruct")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect_model(model, as_json):
    """List the model's linear module names (what lora_target accepts) and its parameter count."""
    from dsforge.models import inspect_model as inspect

    info = inspect(model)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{info['model']}\n  {info['architecture']}, {info['parameters']:,} parameters, {info['layers']} layers")
    click.echo("  linear modules (name x count):")
    for n, c in sorted(info["linear_modules"].items()):
        click.echo(f"    {n:<20} x{c}")
    click.echo(f"  lora_target all = {','.join(info['lora_target_all'])}")
    click.echo(f"  e.g. --set lora_target={','.join(info['lora_target_all'][:2])}")


def add_commands(cli: click.Group) -> None:
    for c in (train, export, serve, inspect_model):
        cli.add_command(c)
