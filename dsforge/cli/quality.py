"""Data-quality commands: dedup (near-duplicates), contamination (train vs eval overlap)."""

from __future__ import annotations

import json
import sys

import click

from dsforge.cli.data import _progress as _bar
from dsforge.cli.types import JSON_OUT, FiniteFloat

SHINGLE_HELP = "Shingles: word:K (K consecutive words) or char:K (K characters of the normalised text)."


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--out", type=JSON_OUT, required=True, help="Output file (.jsonl or .json); report in OUT.dedup.json.")
@click.option("--on", type=click.Choice(["prompt", "all"]), default="all", show_default=True,
              help="What makes two rows the same: the prompt only, or prompt and answer(s).")
@click.option("--shingle", default="word:3", show_default=True, help=SHINGLE_HELP)
@click.option("--threshold", type=FiniteFloat(0, 1, min_open=True), default=0.8, show_default=True,
              help="Jaccard similarity at or above which two rows are near-duplicates.")
@click.option("--json", "as_json", is_flag=True, help="Print the cluster report as JSON.")
def dedup(inputs, out, on, shingle, threshold, as_json):
    """Remove near-duplicate rows (MinHash LSH) from files of any kind, keeping the first of each cluster.

    Exit 0 on success, 2 on usage errors (a bad --shingle, an output that is an input).
    """
    from dsforge.dedup import DedupOptions, dedup_files

    bar = _bar("dedup")
    try:
        rep = dedup_files(list(inputs), out, DedupOptions(on=on, shingle=shingle, threshold=threshold),
                          progress=bar.update)
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(rep.to_dict(), indent=2, ensure_ascii=False))
        return
    hist = ", ".join(f"size {k}: {v}" for k, v in rep.histogram.items()) or "none"
    click.echo(f"read {rep.rows} rows; kept {rep.kept}, dropped {rep.dropped} near-duplicates in "
               f"{rep.clusters} clusters ({hist})")
    for ex in rep.examples[:5]:
        click.echo(f"  kept {ex['kept']}, dropped {', '.join(ex['dropped'][:3])}"
                   + (" ..." if len(ex["dropped"]) > 3 else ""))
    click.echo(f"wrote {out} (report: {out}.dedup.json)")


@click.command()
@click.argument("train", nargs=-1, required=True)
@click.option("--against", multiple=True, required=True, help="Evaluation file(s) (repeat the option).")
@click.option("--ngram", type=click.IntRange(0, 64), default=13, show_default=True,
              help="N of the n-gram overlap test (GPT-3's filter); 0 turns it off.")
@click.option("--threshold", type=FiniteFloat(0, 1, min_open=True), default=0.8, show_default=True,
              help="Jaccard similarity of the near-duplicate test.")
@click.option("--no-near", is_flag=True, help="Only the n-gram test.")
@click.option("--shingle", default="word:3", show_default=True, help=SHINGLE_HELP)
@click.option("--fields", type=click.Choice(["prompt", "answer", "both"]), default="both", show_default=True,
              help="Which train texts to check.")
@click.option("--drop", is_flag=True, help="Write the clean rows to -o (report in OUT.contamination.json).")
@click.option("-o", "--out", type=JSON_OUT, help="Clean output file (with --drop).")
@click.option("--fail-on-hit", is_flag=True, help="Exit 1 when any row is contaminated.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def contamination(train, against, ngram, threshold, no_near, shingle, fields, drop, out, fail_on_hit, as_json):
    """Find training rows that overlap evaluation sets (13-gram overlap and near-duplicates), with file:line.

    Exit 0 when clean, and also when rows overlap (the report lists them) unless --fail-on-hit: then 1.
    2 on usage errors.
    """
    from dsforge.contamination import ContaminationOptions, check_files, format_report
    from dsforge.errors import UsageError

    if drop != bool(out):
        raise UsageError("--drop and -o go together", "pass --drop -o CLEAN.jsonl to write the clean rows, "
                         "or neither to only report")
    opts = ContaminationOptions(ngram=ngram, threshold=None if no_near else threshold, shingle=shingle,
                                fields=("prompt", "answer") if fields == "both" else (fields,))
    bar = _bar("contamination")
    try:
        rep = check_files(list(train), list(against), opts, out=out, progress=bar.update)
    finally:
        bar.close()
    click.echo(json.dumps(rep.to_dict(), indent=2, ensure_ascii=False) if as_json else format_report(rep))
    sys.exit(1 if fail_on_hit and rep.contaminated else 0)


def add_commands(group: click.Group) -> None:
    for cmd in (dedup, contamination):
        group.add_command(cmd)
