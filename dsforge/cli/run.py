"""Recipe commands: run, report."""

from __future__ import annotations

import click

from dsforge.cli.types import HTML_OUT


@click.command()
@click.argument("recipe")
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE",
              help="Override a recipe value, e.g. --set stages[1].sample.n=2 --set models.judge=NAME.")
@click.option("--from", "from_stage", help="Start at this stage (earlier stages must be done).")
@click.option("--until", help="Stop after this stage.")
@click.option("--force", is_flag=True, help="Rerun the selected stages even if their fingerprint matches.")
@click.option("--no-report", is_flag=True, help="Do not write RUN_DIR/report.html at the end.")
def run(recipe, sets, from_stage, until, force, no_report):
    """Run a pipeline recipe (convert -> sample -> judge -> pairs -> register -> train), resumably.

    Finished stages whose inputs and options did not change are skipped; a changed stage and
    everything after it reruns; a stage killed midway resumes. A loop recipe (tasks ... export -> eval,
    `rounds: N`) runs each round in RUN_DIR/round-T/ and ends with held-out accuracy per round.
    """
    from dsforge.recipe import load_recipe
    from dsforge.run import Runner
    from dsforge.train import parse_sets

    r = load_recipe(recipe, parse_sets(sets))
    res = Runner(r, recipe, echo=click.echo).run(from_stage=from_stage, until=until, force=force,
                                                report=not no_report)
    click.echo(f"\nrun directory: {res['run_dir']}")
    for kind, out in res["outputs"].items():
        where = out.get("path") or out.get("output_dir")
        click.echo(f"  {kind:<9} {where}")
    click.echo(f"  manifest  {res['manifest']}")
    from dsforge.report_rounds import format_rounds, round_rows

    rounds = round_rows(res.get("manifest_data") or {})
    if rounds:
        click.echo("held-out accuracy (greedy pass@1, 95% intervals; paired with the base model):\n" + format_rounds(rounds))
    if res.get("log"):
        click.echo(f"  log       {res['log']}")
    if res.get("report"):
        click.echo(f"  report    {res['report']}")


@click.command()
@click.argument("target")
@click.option("--out", "-o", type=HTML_OUT, help="HTML file (default: TARGET/report.html for a run, TARGET.report.html for a file).")
@click.option("--model", help="Model folder or alias whose tokenizer and chat template count tokens (default: the "
                             "run's sampler).")
@click.option("--cutoff-len", type=click.IntRange(1), help="LLaMA-Factory cutoff_len for the length plots (default: "
                                                           "the run's training config, else 2048).")
def report(target, out, model, cutoff_len):
    """Write a self-contained HTML report (inline SVG plots) for a run directory or a data file."""
    import os

    from dsforge.report import write_report

    out = out or (os.path.join(target, "report.html") if os.path.isdir(target) else target + ".report.html")
    click.echo(write_report(target, out, model=model, cutoff_len=cutoff_len))


def add_commands(cli: click.Group) -> None:
    cli.add_command(run)
    cli.add_command(report)
