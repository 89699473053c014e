"""The loop's recipe stages: tasks (fresh checkable prompts per round), export (the round's merged policy)
and eval (held-out accuracy of the round's policy, paired with the base model's round-0 eval).

Each is a runner table entry (dsforge.run.STAGES): function(config, Context) -> (outputs, summary).
They read the round from the Context: `round` (0 = the base eval), `policy` (the merged model folder
the previous round exported; None in round 1: the recipe's model) and `baseline` (round 0's eval
outputs, {"files": {stem: eval json}}).
"""

from __future__ import annotations

from pathlib import Path

from dsforge.errors import UsageError
from dsforge.stages import EvalConfig, ExportConfig, TasksConfig


def run_tasks(o: TasksConfig, ctx) -> tuple[dict, dict]:
    """Outputs {path}; summary: dsforge.tasks.make's {out, rows, sha256, family, difficulty, excluded_heldout,
    seed}. Round T uses seed o.seed + T, so every round gets fresh prompts; held-out items are never made."""
    from dsforge.tasks import make

    out = str(ctx.dir / "prompts.jsonl")
    seed = o.seed + max(ctx.round, 1)
    s = make(o.family, o.n, seed, out, o.difficulty)
    ctx.echo(f"tasks: {s['rows']} {o.family} prompts (level {s['difficulty']}, seed {seed}; "
             f"{s['excluded_heldout']} held-out prompts kept out)")
    return {"path": out}, {**s, "seed": seed}


def base_model(ctx, model: str | None = None) -> str:
    """The model round `ctx.round` starts from: the previous round's merged policy, else `model`, else the
    recipe's models.sampler."""
    return ctx.policy or model or ctx.recipe.models.sampler


def run_export(o: ExportConfig, ctx) -> tuple[dict, dict]:
    """Outputs {model}: RUN_DIR/round-T/NN-export/model, the round's adapter merged into the model it trained
    from (the next round samples and trains from it); summary {model, base, adapter}. DsforgeError when
    llamafactory-cli export fails (its log is named)."""
    from dsforge import logs
    from dsforge.train import export

    train = ctx.outputs.get("train") or {}
    adapter = train.get("output_dir")
    if not adapter:
        raise UsageError("export: no train stage output to merge")
    base = base_model(ctx, ctx.train_model)
    out = str(ctx.dir / "model")
    export(base, adapter, out, template=o.template, lf_python=o.lf_python, echo=logs.child_echo(ctx.echo))
    ctx.echo(f"export: {adapter} merged into {base} -> {out}")
    return {"model": out}, {"model": out, "base": base, "adapter": adapter}


def _heldout_copy(path: str, limit: int | None, folder: Path) -> str:
    """`path`, or its first `limit` lines copied into `folder` (quick runs)."""
    if not limit:
        return path
    small = folder / f"heldout-{Path(path).stem}.jsonl"
    with open(path, encoding="utf-8") as f:
        lines = [line for _, line in zip(range(limit), f)]
    with open(small, "w", encoding="utf-8") as g:
        g.writelines(lines)
    return str(small)


def eval_target(ctx) -> tuple[str, str | None]:
    """(model, adapter) the eval of round ctx.round scores: round 0 the recipe's models.sampler; later rounds
    the round's export, else the model it trained from + the round's adapter."""
    if ctx.round == 0:
        return ctx.recipe.models.sampler, None
    if "export" in ctx.outputs:
        return ctx.outputs["export"]["model"], None
    if "train" in ctx.outputs:
        return base_model(ctx, ctx.train_model), ctx.outputs["train"]["output_dir"]
    return base_model(ctx), None


def run_eval(o: EvalConfig, ctx) -> tuple[dict, dict]:
    """Greedy eval of the round's policy (eval_target) on each held-out file with one engine; the first file
    is the metric (eval.json), the others controls (eval-STEM.json); from round 1 on each is paired with
    round 0's eval of the same file. Outputs {path, files: {stem: path}}; summary {metric: stem, model,
    adapter, files: {stem: dsforge.evaluate.evaluate's summary}}."""
    from dsforge import models
    from dsforge.evaluate import engine_for, evaluate, format_summary

    if not o.heldout:
        raise UsageError("eval: no held-out prompt files (eval.heldout)")
    model, adapter = eval_target(ctx)
    cfg = o.model_copy(update={"model": models.resolve(model) if o.engine == "vllm" else model, "adapter": adapter})
    base_files = (ctx.baseline or {}).get("files") or {}
    files, summaries = {}, {}
    engine = engine_for(cfg)
    ctx.log(f"  eval: starting the {cfg.engine} engine for {model}" + (f" + {adapter}" if adapter else ""))
    with engine:
        for i, path in enumerate(o.heldout):
            stem = Path(path).stem
            dest = str(ctx.dir / ("eval.json" if i == 0 else f"eval-{stem}.json"))
            base = base_files.get(stem) if ctx.round else None
            s = evaluate(cfg, _heldout_copy(path, o.limit, ctx.dir), dest, baseline=base, engine=engine,
                         log=ctx.log, progress=False)
            files[stem], summaries[stem] = dest, s
    for stem, s in summaries.items():   # after the engine closed: while it runs, the console goes to its log
        ctx.echo(f"{stem} (round {ctx.round}): " + format_summary(s).replace("\n", "\n  "))
    return ({"path": files[Path(o.heldout[0]).stem], "files": files},
            {"metric": Path(o.heldout[0]).stem, "model": model, "adapter": adapter, "files": summaries})

