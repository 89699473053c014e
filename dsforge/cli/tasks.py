"""Task commands: tasks list, tasks make, tasks calibrate (checkable prompts with reference answers)."""

from __future__ import annotations

import json

import click

from dsforge.cli.types import JSONL_OUT, SEED, FiniteFloat, OutPath
from dsforge.errors import UsageError


@click.group()
def tasks():
    """Checkable prompts: seeded generators of questions with reference answers (for verifiers)."""


@tasks.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the families as JSON.")
def tasks_list(as_json):
    """Task families, their difficulty levels and an example row."""
    from dsforge import tasks as t

    families = t.describe()
    if as_json:
        click.echo(json.dumps(families, indent=2))
        return
    for f in families:
        click.echo(f"{f['name']}: {f['description']}  (verifier: {f['verifier']}, default level: {f['default']})")
        for name, params in f["levels"].items():
            click.echo(f"  {name:>7}  " + ", ".join(f"{k}={v}" for k, v in params.items()))
        ex = f["example"]
        click.echo(f"  example: {ex['instruction']!r} -> {ex['reference']!r} (format: {ex['format']})\n")


@tasks.command("make")
@click.argument("name")
@click.option("--n", "n", type=click.IntRange(1, 1_000_000), required=True, help="Number of prompts.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Same seed, same file (byte for byte).")
@click.option("--difficulty", help="Level name (see: dsforge tasks list; default: the family's).")
@click.option("--allow-heldout", is_flag=True, help="Also generate prompts of the frozen held-out set (skipped by default).")
@click.option("-o", "--out", type=JSONL_OUT, required=True, help="Prompts file (.jsonl), readable by dsforge sample.")
def tasks_make(name, n, seed, difficulty, allow_heldout, out):
    """Generate N prompts of family NAME with reference answers.

    \b
    dsforge tasks make arith --n 200 --seed 1 --difficulty 4 -o prompts.jsonl
    """
    from dsforge import tasks as t

    res = t.make(name, n, seed, out, difficulty, allow_heldout=allow_heldout)
    held = f", none of the {res['excluded_heldout']} held-out ones" if res["excluded_heldout"] else ""
    click.echo(f"{res['rows']} {name} prompts at difficulty {res['difficulty']} (seed {seed}{held}) -> {out}  "
               f"sha256 {res['sha256'][:12]}")


@tasks.command("calibrate")
@click.argument("name")
@click.option("--model", "-m", default="smollm2-135m-instruct", show_default=True, help="Model folder or alias.")
@click.option("--levels", help="Comma-separated levels to probe (default: all of the family's).")
@click.option("--n-prompts", type=click.IntRange(1, 100_000), default=40, show_default=True, help="Prompts per level.")
@click.option("--k", type=click.IntRange(1, 1024), default=8, show_default=True, help="k of pass@k.")
@click.option("--n-samples", type=click.IntRange(1, 1024), help="Samples per prompt (default: k; at least k).")
@click.option("--temperature", type=FiniteFloat(0), default=1.0, show_default=True, help="Sampling temperature.")
@click.option("--max-tokens", type=click.IntRange(1, 100_000), default=64, show_default=True, help="Reply length cap.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Prompt and sampling seed.")
@click.option("--engine-opt", "engine_opts", multiple=True, metavar="KEY=VALUE", help="vLLM engine option.")
@click.option("--replies", type=JSONL_OUT, help="Also write every reply with its verdict here (.jsonl).")
@click.option("-o", "--out", type=OutPath((".json",)), help="Also write the result as JSON here (.json).")
def tasks_calibrate(name, model, levels, n_prompts, k, n_samples, temperature, max_tokens, seed, engine_opts, replies,
                    out):
    """Probe a model on each level of NAME: greedy pass@1, pass@k, pair-able fraction; pick a level.

    \b
    dsforge tasks calibrate arith --levels 3,4,5 --n-prompts 40 --k 8 -o calibration.json
    """
    from dsforge import models as m
    from dsforge.tasks import calibrate as c
    from dsforge.train import parse_sets

    if n_samples is not None and n_samples < k:
        raise UsageError(f"--n-samples {n_samples} is below --k {k}", "give at least k samples per prompt")
    from dsforge.io import guard_kind, guard_outputs
    from dsforge.tasks import get_family

    family = get_family(name)
    level_list = [x.strip() for x in levels.split(",") if x.strip()] if levels else None
    for level in level_list or []:
        family.level(level)   # an unknown level is refused before the model is looked at
    guard_outputs({}, {"-o": out, "--replies": replies})
    for path, label in ((out, "-o"), (replies, "--replies")):
        guard_kind(path, "calibrate", label)   # never over a prompts file of tasks make
    res = c.calibrate(name, m.resolve(model), levels=level_list, n_prompts=n_prompts, k=k, n_samples=n_samples, temperature=temperature,
                      max_tokens=max_tokens, seed=seed, engine_options=parse_sets(engine_opts, "--engine-opt"),
                      keep_replies=bool(replies), log=lambda s: click.echo(s, err=True))
    res["model"] = model
    click.echo(c.format_table(res))
    if replies:
        from dsforge.tasks import write_rows

        write_rows(res.pop("replies"), replies, kind="calibrate")
        click.echo(f"replies: {replies}")
    if out:
        c.write_json(res, out)
        click.echo(f"written: {out}")


def add_commands(cli: click.Group) -> None:
    cli.add_command(tasks)
