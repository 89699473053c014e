"""`dsforge review`: label answers by hand on a local page; agreement stats; Label Studio / Argilla files."""

from __future__ import annotations

import getpass
import json

import click

from dsforge.cli.types import SEED, FiniteFloat

from dsforge.errors import UsageError


def _default_annotator() -> str:
    try:
        return getpass.getuser() or "annotator"
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "annotator"


def _annotator_name(ctx, param, value):
    """An annotator name given on the command line follows names.check_name ('' is refused, not the login name)."""
    from dsforge.names import name_problem

    if value is None:
        return None
    problem = name_problem(value)
    if problem:
        raise click.BadParameter(f"{value!r} is not a valid annotator name: {problem}", ctx, param)
    return value


def _annotator_list(ctx, param, value):
    """--assign a,b,c -> ['a', 'b', 'c']; an empty item (a,,b) or an invalid name is refused."""
    if value is None:
        return None
    names = [x.strip() for x in value.split(",")]
    if not any(names) or not all(names):
        raise click.BadParameter(f"{value!r} has an empty name (give names separated by single commas, "
                                 f"e.g. alice,bob)", ctx, param)
    return [_annotator_name(ctx, param, n) for n in names]


@click.command()
@click.argument("files", nargs=-1, required=True)
@click.option("-o", "--out", help="Reviewed judged records (.jsonl); the decisions go to OUT.events.jsonl.")
@click.option("--annotator", default=None, callback=_annotator_name, help="Your name (default: the login name); the page also takes "
              "?annotator=NAME, so several people can label through one server.")
@click.option("--mode", type=click.Choice(["score", "rank", "pairwise"]), default="score", show_default=True,
              help="score: 1-5 per answer; rank: best and worst per prompt; pairwise: A / B / tie.")
@click.option("--rubric", help="A markdown file with the instructions shown on the page.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--assign", callback=_annotator_list, help="Comma-separated annotators: each item goes to one of them (with --overlap, to two).")
@click.option("--overlap", type=FiniteFloat(0, 1), default=0.0, show_default=True,
              help="Share of items that get a second annotator, for agreement (needs --assign).")
@click.option("--max-pairs-per-prompt", type=click.IntRange(1), default=3, show_default=True,
              help="Pairwise mode: pairs shown per prompt.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Display order, pair and assignment choice.")
@click.option("--stats", is_flag=True, help="Agreement between annotators and with LLM judges in FILES; no server.")
@click.option("--json", "as_json", is_flag=True, help="With --stats: print JSON.")
@click.option("--export", "export_fmt", type=click.Choice(["labelstudio", "argilla"]),
              help="Write the items of FILE as Label Studio tasks / Argilla records to -o (.json); no server.")
@click.option("--import", "import_file", help="Read labels from a Label Studio or Argilla export into OUT's log; "
              "no server.")
def review(files, out, annotator, mode, rubric, port, assign, overlap, max_pairs_per_prompt, seed, stats, as_json,
           export_fmt, import_file):
    """Score, rank or compare sampled answers by hand on a local page; writes judged records (judge.kind human).

    \b
    dsforge review candidates.jsonl -o reviewed.jsonl --annotator alice
    dsforge review judged.jsonl -o reviewed.jsonl --assign alice,bob --overlap 0.2 --port 0
    dsforge review --stats reviewed.jsonl judged.jsonl
    dsforge review candidates.jsonl --export labelstudio -o tasks.json
    dsforge review candidates.jsonl --import ls-export.json -o reviewed.jsonl
    """
    if stats:
        from dsforge.review import stats as st

        s = st.compute(list(files))
        click.echo(json.dumps(s, indent=2, ensure_ascii=False) if as_json else st.format_stats(s))
        return
    if len(files) != 1:
        raise UsageError("review takes one candidates or judged file (several only with --stats)")
    if not out:
        raise UsageError("missing -o/--out", "e.g. -o reviewed.jsonl")
    src = files[0]
    if export_fmt:
        from dsforge.review import interop

        n = interop.export_file(src, out, export_fmt, mode=mode, max_pairs_per_prompt=max_pairs_per_prompt,
                                seed=seed)
        click.echo(f"{n} {export_fmt} {'tasks' if export_fmt == 'labelstudio' else 'records'} ({mode}): {out}")
        return
    from dsforge.review import server as sv

    sv.check_output([src] + ([import_file] if import_file else []), out)
    if import_file:
        from dsforge.review import interop

        s = interop.import_file(src, import_file, out, mode=mode, max_pairs_per_prompt=max_pairs_per_prompt,
                                seed=seed)
        click.echo(f"imported {s['events']} decisions by {s['annotators']} from {import_file}; "
                   f"{s['records']} judged records: {out}")
        return
    s = sv.run_review(src, out, annotator=annotator or _default_annotator(), mode=mode, rubric=rubric, port=port,
                      assign=assign,
                      overlap=overlap, max_pairs_per_prompt=max_pairs_per_prompt, seed=seed, echo=click.echo)
    click.echo(f"stopped: {s['decisions']} decisions this session; {s['records']} judged records in {out} "
               f"(decisions: {s['events']})")


def add_commands(cli: click.Group) -> None:
    cli.add_command(review)
