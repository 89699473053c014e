"""Data commands: convert, validate, register."""

from __future__ import annotations

import json
import sys
from typing import get_args

import click

from dsforge.cli.types import JSON_OUT, FiniteFloat
from dsforge.cli.options import options_from
from dsforge.errors import UsageError
from dsforge.stages import ConvertConfig, RegisterConfig, Similarity, TrainStage


def _progress(desc: str, unit: str = "rows"):
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit=" " + unit, unit_scale=True, file=sys.stderr, disable=None, mininterval=0.5)
    return bar


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@options_from(ConvertConfig)
@click.option("-o", "--out", type=JSON_OUT, required=True, help="Output file (.jsonl or .json).")
@click.option("--dedup", "dedup_mode", type=click.Choice(["exact", "near"]), is_flag=False, flag_value="exact", default="exact",
              show_default=True, help="Drop exact duplicate rows; 'near' also drops near-duplicates (MinHash LSH, "
              "the first of each cluster is kept) and makes the eval split group near-duplicate prompts.")
@click.option("--no-dedup", is_flag=True, help="Keep duplicate rows.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def convert(inputs, out, dedup_mode, no_dedup, as_json, cfg):
    """Convert raw corpora (txt/md, json/jsonl, csv, parquet, HF dataset dirs) into LLaMA-Factory files."""
    from dsforge.convert import convert as run

    # --dedup exact|near and --no-dedup are one CLI spelling of two fields (dedup, near_dedup)
    opts = cfg.model_copy(update={"dedup": not no_dedup, "near_dedup": dedup_mode == "near"})
    eval_out = opts.eval_out
    if no_dedup and dedup_mode == "near":
        raise UsageError("--no-dedup and --dedup near contradict each other", "keep one of them")
    bar = _progress("convert")
    try:
        stats = run(list(inputs), out, opts, progress=bar.update)
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps(stats.to_dict(), indent=2, ensure_ascii=False))
        return
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(stats.skipped.items())) or "none"
    click.echo(f"read {stats.read} records from {stats.inputs} file(s); wrote {stats.written} rows to {out}"
               + (f" and {stats.eval_written} to {eval_out}" if eval_out else ""))
    click.echo(f"skipped: {skipped}")
    for e in stats.first_errors:
        click.echo(f"  {e}")
    if stats.near_dedup:
        nd = stats.near_dedup
        click.echo(f"near-duplicates: {nd['dropped']} rows in {nd['clusters']} clusters (sizes: "
                   + (", ".join(f"{k}: {v}" for k, v in nd["histogram"].items()) or "none") + ")")
        for ex in nd["examples"][:3]:
            click.echo(f"  kept {ex['kept']}, dropped {', '.join(ex['dropped'][:3])}")
    for h in stats.contamination[:5]:
        click.echo(f"  contaminated: {h['train']}  <-  {h['eval']}  [{h['method']}]")
    click.echo(f"next: dsforge validate {out}   |   dsforge register {out} --name NAME --dataset-dir DIR")


@click.command()
@click.argument("files", nargs=-1)
@click.option("--dataset-info", "info", help="dataset_info.json (or its directory) to validate entries of.")
@click.option("--name", "names", multiple=True, help="Dataset name(s) in --dataset-info (default: all).")
@click.option("--stage", type=click.Choice(get_args(TrainStage)),
              help="Training stage (default: inferred from the data).")
@click.option("--tokenizer", help="Local tokenizer directory for the length audit.")
@click.option("--template", default="auto", show_default=True,
              help="The run's LLaMA-Factory template (e.g. qwen2_vl, llava): media, tool and thought-marker rules "
                   "are evaluated under it; 'auto' (LLaMA-Factory's text-only rules, the tokenizer's own chat "
                   "template for lengths) or 'none' (no chat template for lengths).")
@click.option("--media-dir", help="LLaMA-Factory's media_dir (default: the dataset_info.json directory).")
@click.option("--cutoff-len", type=click.IntRange(1), default=2048, show_default=True, help="LLaMA-Factory cutoff_len.")
@click.option("--examples", type=click.IntRange(0), default=5, show_default=True, help="Offending rows shown per reason.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
@click.option("--json", "as_json", is_flag=True, help="Print reports as JSON.")
@click.option("--reasons", is_flag=True, help="List every check with its severity and fix, then exit.")
@click.option("--max-similarity", type=FiniteFloat(0, 1, min_open=True), default=0.95, show_default=True,
              help="Ranking data: flag pairs whose answers are at least this similar (pair_near_identical).")
@click.option("--similarity", "sim_method", type=click.Choice(get_args(Similarity)), default="ratio",
              show_default=True, help="ratio: normalized edit distance; jaccard: overlap of the word sets.")
@click.option("--length-bias-warn", type=FiniteFloat(0, 1), default=0.7, show_default=True,
              help="Ranking data: warn (pair_length_bias) when chosen is the longer answer in more than this share.")
def validate(files, info, names, stage, tokenizer, template, media_dir, cutoff_len, examples, strict, as_json,
             reasons, max_similarity, sim_method, length_bias_warn):
    """Check datasets with LLaMA-Factory's own loading rules: what would train, and why rows would not.

    Exit 0 when every row is usable, 1 when some are not (or, with --strict, on warnings), 2 on usage errors.
    """
    from dsforge import validate as v

    if reasons:
        for code, (sev, what, fix) in v.REASONS.items():
            click.echo(f"{code:<24} {sev:<5} {what}\n{'':<30} fix: {fix}")
        return
    if not files and not info:
        raise UsageError("nothing to validate", "pass FILE... or --dataset-info PATH [--name NAME]")
    reports = []
    pc = {"max_similarity": max_similarity, "method": sim_method, "warn_above": length_bias_warn}
    lengths = v.LengthOptions(tokenizer, cutoff_len, template) if tokenizer else None
    bar = _progress("validate")
    try:
        for f in files:
            reports.append(v.validate_path(f, stage=stage, max_examples=examples, progress=bar.update,
                                           template=template, media_dir=media_dir, pair_checks=pc, lengths=lengths))
        if info:
            entries = v.load_dataset_info(info)
            for n in names or list(entries):
                reports.append(v.validate_registered(info, n, stage, max_examples=examples, progress=bar.update,
                                                     template=template, pair_checks=pc, lengths=lengths,
                                                     **({"media_dir": media_dir} if media_dir else {})))
    finally:
        bar.close()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in reports], indent=2, ensure_ascii=False))
    else:
        click.echo("\n\n".join(v.format_report(r, examples=examples) for r in reports))
    bad = any(not r.ok for r in reports) or (strict and any(r.warnings for r in reports))
    sys.exit(1 if bad else 0)


@click.command()
@click.argument("file")
@options_from(RegisterConfig)
def register(file, cfg):
    """Validate FILE and add it to DATASET_DIR/dataset_info.json (locked, atomic, with a backup)."""
    from dsforge.register import register as run
    from dsforge.validate import format_report

    reg = run(file, cfg.name, cfg.dataset_dir, kind=cfg.kind, formatting=cfg.fmt, stage=cfg.stage, force=cfg.force,
              allow_invalid=cfg.allow_invalid)
    r = reg.report
    click.echo(f"{reg.action} '{reg.name}' in {reg.info_path}: {reg.kind}, {reg.entry.get('formatting')}, "
               f"LLaMA-Factory would train {r.would_train} of {r.rows} rows (stage {reg.stage})")
    if not r.ok or r.warnings:
        click.echo(format_report(r, examples=3))
    click.echo("In your LLaMA-Factory YAML:")
    click.echo(reg.yaml_lines())


def add_commands(group: click.Group) -> None:
    for cmd in (convert, validate, register):
        group.add_command(cmd)
