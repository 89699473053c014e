"""A thin, checked hand-off to `llamafactory-cli train` and `export`. Never a reimplementation.

Finding and probing LLaMA-Factory's interpreter and running it there live in dsforge.lf_env; the
local servers (`llamafactory-cli api`, vLLM's) in dsforge.servers.

Multi-GPU / multi-node: LLaMA-Factory relaunches itself through torchrun when FORCE_TORCHRUN=1 or
more than one GPU is visible; NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT pass through the
environment untouched, and a DeepSpeed config is `--set deepspeed=path/to/ds_z3_config.json`.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

import yaml

from dsforge import __version__, logs
from dsforge.errors import ConfigError, DsforgeError, UsageError
from dsforge.io import atomic_write, file_digest, guard_outputs
from dsforge.lf_env import (LAUNCH, LF_INSTALL, LF_REQUIREMENTS, ChildOutput, environment_problems,  # noqa: F401
                            find_lf_python, lf_environment, lf_parse_check, lf_version, run_lf)    # (re-exported)
from dsforge.hardware import has_gpu, native_bf16
from dsforge.lf_env import child_env as _env
from dsforge.models import inspect_model  # noqa: F401  (re-exported)
from dsforge.servers import serve_command  # noqa: F401  (re-exported)

STAGES = ("pt", "sft", "dpo", "kto", "rm", "ppo")
METHODS = ("lora", "full", "freeze")
RECIPES = Path(__file__).resolve().parent / "data" / "recipes" / "train"   # shipped in the wheel
DATA_STAGE = {"pt": "pt", "sft": "sft", "dpo": "dpo", "rm": "rm", "kto": "kto", "ppo": "ppo"}


# every variable LLaMA-Factory's launcher (llamafactory/launcher.py) and torchrun read: the manifest records them
LAUNCH_ENV = ("FORCE_TORCHRUN", "NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "MAX_RESTARTS",
              "RDZV_ID", "MIN_NNODES", "MAX_NNODES", "CUDA_VISIBLE_DEVICES", "ASCEND_RT_VISIBLE_DEVICES",
              "DISABLE_VERSION_CHECK", "NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST")


def launch_record(cfg: dict) -> dict:
    """The launcher's environment (LAUNCH_ENV as set now) and the DeepSpeed config named by `deepspeed:`
    (path, sha256, content), so the manifest can repeat a multi-GPU run."""
    rec: dict = {"env": {k: os.environ[k] for k in LAUNCH_ENV if k in os.environ}}
    rec["env"].setdefault("DISABLE_VERSION_CHECK", _env()["DISABLE_VERSION_CHECK"])
    ds = cfg.get("deepspeed")
    if ds:
        entry: dict = {"path": str(ds)}
        try:
            entry["sha256"] = file_digest(str(ds))["sha256"]
            entry["config"] = json.loads(Path(ds).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            entry["unreadable"] = str(e)
        rec["deepspeed"] = entry
    return rec


def load_train_recipe(recipe: str) -> dict:
    """A training recipe: a built-in method (lora, full, freeze) or a YAML file of flat LLaMA-Factory keys.
    UsageError when missing; ConfigError (with file:line) for bad YAML, nesting or a bad finetuning_type."""
    path = Path(recipe)
    if recipe in METHODS:
        path = RECIPES / f"{recipe}.yaml"
    if not path.exists():
        raise UsageError(f"recipe {recipe!r} not found", "use lora, full, freeze or a YAML file of LLaMA-Factory keys")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of LLaMA-Factory keys to values")
    for k, v in data.items():
        if not isinstance(k, str) or isinstance(v, dict):
            raise ConfigError(f"{path}: key {k!r}: recipes hold flat LLaMA-Factory arguments (no nested mappings)")
    if data.get("finetuning_type", "lora") not in METHODS:
        raise ConfigError(f"{path}: finetuning_type must be one of {', '.join(METHODS)}")
    return data


def stage_defaults(stage: str) -> dict:
    """The keys the shipped stages.yaml sets for `stage` (e.g. dpo: pref_beta, pref_loss, learning_rate)."""
    data = yaml.safe_load((RECIPES / "stages.yaml").read_text(encoding="utf-8")) or {}
    return dict(data.get(stage) or {})


def parse_sets(pairs: tuple[str, ...] | list[str], flag: str = "--set") -> dict:
    """KEY=VALUE pairs (--set, --engine-opt); values are read as YAML: 8, true, 5e-5, [a, b], {k: v}, text."""
    out = {}
    for p in pairs:
        key, sep, val = p.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} {p!r} is not KEY=VALUE", f"e.g. {flag} learning_rate=5e-5")
        try:
            out[key.strip()] = yaml.safe_load(val) if val.strip() else ""
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise UsageError(f"{flag} {p!r}: the value is not valid YAML ({problem})",
                             "quote text that holds YAML syntax, e.g. --set 'key=\"[text\"'") from None
    return out


def template_note(model: str, template: str | None) -> str | None:
    """A note on the chat template LLaMA-Factory will use when none is given, or None when one is."""
    if template:
        return None
    has = (Path(model) / "chat_template.jinja").exists()
    try:
        cfg = json.loads((Path(model) / "tokenizer_config.json").read_text())
        has = has or bool(cfg.get("chat_template"))
    except (OSError, ValueError):
        pass
    if has:
        return ("no template given: LLaMA-Factory 0.9.5 will parse the tokenizer's chat template; pass "
                "--set template=NAME (qwen, llama3, deepseek3, ...) to be explicit")
    return ("no template given and the tokenizer has no chat template: LLaMA-Factory 0.9.5 will use the 'empty' "
            "template (no role markers); pass --set template=NAME")


def dataset_files(dataset_dir: str, names: list[str]) -> list[dict]:
    """For the manifest: one {dataset, file, sha256, bytes, lines} per file of each named dataset
    (a folder's files one by one); names not in dataset_info.json are skipped."""
    from dsforge.validate import load_dataset_info

    info = load_dataset_info(dataset_dir)
    out = []
    for name in names:
        fn = info.get(name, {}).get("file_name")
        if not fn:
            continue
        path = os.path.join(dataset_dir, fn)
        files = [path] if os.path.isfile(path) else sorted(str(p) for p in Path(path).rglob("*") if p.is_file())
        out.extend({"dataset": name, "file": f, **file_digest(f)} for f in files)
    return out


def precheck(stage: str, names: list[str], dataset_dir: str, cfg: dict, log) -> list:
    """Each dataset exists and fits the stage, checked with dsforge validate's LLaMA-Factory mirror."""
    from dsforge.validate import format_report, validate_registered

    reports = []
    for name in names:
        rep = validate_registered(dataset_dir, name, DATA_STAGE[stage])
        reports.append(rep)
        if rep.fatal or rep.would_train == 0:
            raise UsageError(f"dataset '{name}' cannot train stage {stage}:\n{format_report(rep)}",
                             "fix the data or pick the stage that fits it (ranking data -> dpo/rm, kto_tag -> kto, "
                             "text -> pt)")
        if rep.would_train < rep.rows:
            log(f"warning: dataset '{name}': LLaMA-Factory would train {rep.would_train} of {rep.rows} rows "
                f"(dsforge validate --dataset-info {dataset_dir} shows why)")
    if stage == "ppo" and not cfg.get("reward_model"):
        raise UsageError("stage ppo needs a reward model", "train one with `dsforge train rm`, then --set reward_model=DIR")
    return reports


def user_precision(recipe: str, sets: dict | None, unset: tuple[str, ...] = ()) -> dict:
    """The precision keys (bf16, fp16, pure_bf16) the user chose: in a recipe file of their own (the built-in
    lora/full/freeze set bf16 for GPUs, not as a choice), in `sets`, and dropped (`unset`, KEY=null: False,
    LLaMA-Factory's default)."""
    user = dict(load_train_recipe(recipe)) if recipe not in METHODS else {}
    user.update(sets or {})
    user.update({k: False for k in unset})
    return {k: bool(user[k]) if user[k] is not None else False for k in PRECISION_KEYS if k in user}


PRECISION_KEYS = ("bf16", "fp16", "pure_bf16")


def cpu_precision(user: dict, native: tuple[bool, str] | None = None) -> tuple[dict, str, str]:
    """Training on a CPU: (bf16/fp16 keys to set, compute dtype "float32"|"bfloat16"|"float16", why in a few
    words). The user's choice (`user`, from user_precision) wins; otherwise bfloat16 where the CPU computes it
    natively and float32 where it would be emulated (measured on a 2-core AVX2 EPYC: a forward+backward pass
    of 4x200 tokens of SmolLM2-135M takes 9.5 s in float32, 200.8 s in bfloat16). `native` is
    hardware.native_bf16()'s answer (default: this machine's)."""
    if user.get("bf16") or user.get("pure_bf16"):
        return {"use_cpu": True}, "bfloat16", "bf16: true set by the user"
    if user.get("fp16"):
        return {}, "float16", "fp16: true set by the user"
    if user:
        return {"bf16": False, "fp16": False}, "float32", "bf16/fp16: false set by the user"
    ok, why = native if native is not None else native_bf16()
    if ok:   # transformers refuses bf16 without a GPU unless use_cpu is set
        return {"bf16": True, "fp16": False, "use_cpu": True}, "bfloat16", why
    return {"bf16": False, "fp16": False}, "float32", why


FILLED = ("stage", "model_name_or_path", "dataset", "dataset_dir", "output_dir")   # dsforge sets these
# FILLED keys that a --set (or a recipe's train.set) may not override: dsforge checks the values of
# these options before launch, so an override would launch something that was never checked
FROM_OPTION = {"stage": "the STAGE argument", "model_name_or_path": "--model", "dataset": "--dataset",
               "dataset_dir": "--dataset-dir"}


def resolve(stage: str, model: str, datasets: list[str], dataset_dir: str, *, recipe: str = "lora",
            sets: dict | None = None, output_dir: str | None = None, unset: tuple[str, ...] = ()) -> dict:
    """The LLaMA-Factory train config: method recipe < stage defaults < dsforge's keys < `sets`.
    A key set to None (`--set KEY=null`) or named in `unset` is dropped, so LLaMA-Factory's default
    applies; the keys dsforge fills (FILLED) cannot be dropped (UsageError)."""
    if stage not in STAGES:
        raise UsageError(f"unknown stage '{stage}'", f"choose one of: {', '.join(STAGES)}")
    from dsforge.lf_args import refuse_secrets

    refuse_secrets(sets or {}, "--set or a recipe's train.set")
    for key in sorted(set(sets or {}) & set(FROM_OPTION)):
        raise UsageError(f"{key} cannot be overridden with --set (or a recipe's train.set): dsforge fills it from "
                         f"{FROM_OPTION[key]} and checks that value before launch", f"use {FROM_OPTION[key]} instead")
    cfg = load_train_recipe(recipe)
    cfg.update(stage_defaults(stage))
    cfg.update({"stage": stage, "model_name_or_path": model, "dataset": ",".join(datasets),
                "dataset_dir": os.path.abspath(dataset_dir),
                "output_dir": os.path.abspath(output_dir or f"saves/{Path(model).name}/{cfg.get('finetuning_type', 'lora')}/{stage}")})
    if not has_gpu():
        cfg.update(cpu_precision(user_precision(recipe, sets, unset))[0])
    cfg.update(sets or {})
    dropped = set(unset) | {k for k, v in cfg.items() if v is None}
    for key in dropped:
        if key in FILLED:
            raise UsageError(f"{key} cannot be unset: dsforge fills it", "use the matching option instead "
                             "(stage argument, --model, --dataset, --dataset-dir, --output-dir)")
        cfg.pop(key, None)
    if cfg.get("finetuning_type") != "lora":
        for k in [k for k in cfg if k.startswith("lora_")]:
            del cfg[k]
    return cfg


def train(stage: str, model: str, datasets: list[str], dataset_dir: str, *, recipe: str = "lora",
          sets: dict | None = None, unset: tuple[str, ...] = (), output_dir: str | None = None,
          dry_run: bool = False, lf_python: str | None = None, sets_origin: str = "--set", log=None,
          echo=print) -> dict:
    """Check everything LLaMA-Factory would trip on (keys and value types against its 0.9.5 argument
    table, the model folder, each dataset against the stage), then write the YAML + manifest into the
    output dir and run `llamafactory-cli train`. With dry_run, print the YAML and the command and
    run nothing (no LLaMA-Factory needed). On a CPU the compute dtype is chosen (cpu_precision), logged as
    "compute dtype: float32 (why)" and recorded in the manifest's `precision`. Returns a result dict
    (exit_code, output_dir, seconds, train_loss, steps, last_logged_loss, weights, plots, last_error), or with
    dry_run {dry_run, config, manifest}. UsageError / DsforgeError before any launch."""
    from dsforge import lf_args, models

    log = log or logs.say
    model = models.resolve(model)
    if not datasets:
        raise UsageError("no --dataset given")
    sets = dict(sets or {})
    lf_args.check_keys(unset, "--unset")
    cfg = resolve(stage, model, datasets, dataset_dir, recipe=recipe, sets=sets, output_dir=output_dir, unset=unset)
    origins = {k: f"recipe {recipe}" for k in load_train_recipe(recipe)}
    origins.update({k: f"stage {stage} defaults" for k in stage_defaults(stage)})
    origins.update({k: sets_origin for k in sets})
    cfg = lf_args.check_config(cfg, origins)
    precision = None
    if not has_gpu():   # the weights load in this dtype too (dsforge/lf/launch.py), not in the config's
        _, dtype, why = cpu_precision(user_precision(recipe, sets, unset))
        precision = {"compute_dtype": dtype, "why": why, "weights_loaded_in": dtype}
        log(f"compute dtype: {dtype} ({why})")
    guard_outputs({"--model": model if os.path.isdir(model) else None, "--dataset-dir": dataset_dir},
                  {"output_dir": cfg.get("output_dir")}, hint="choose another --output-dir (or --set output_dir=...)")
    for note in [lf_args.check_model(model), template_note(model, cfg.get("template")), *lf_args.deprecated(cfg)]:
        if note:
            log("note: " + note)
    reports = precheck(stage, datasets, dataset_dir, cfg, log)
    evals = cfg.get("eval_dataset")
    evals = [d.strip() for d in (evals.split(",") if isinstance(evals, str) else evals or []) if str(d).strip()]
    if evals:   # LLaMA-Factory loads these like --dataset: same checks, and its own rule against val_size
        if float(cfg.get("val_size") or 0) > 1e-6:
            raise UsageError("eval_dataset and val_size do not combine (LLaMA-Factory: 'Cannot specify `val_size` "
                             "if `eval_dataset` is not None')", "drop one: --unset val_size, or --unset eval_dataset")
        precheck(stage, evals, dataset_dir, cfg, log)
    try:
        py = find_lf_python(lf_python)
    except UsageError as err:
        if not dry_run or lf_python or os.environ.get("DSFORGE_LF_PYTHON"):   # a named one must work
            raise
        py, missing = None, err
    out = Path(cfg["output_dir"])
    cfg_yaml = yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)
    equivalent = ["llamafactory-cli", "train", str(out / "dsforge_train.yaml")]
    command = [py, str(LAUNCH), *equivalent[1:]] if py else equivalent
    lf_env = lf_environment(py) if py else {}
    note, env_error = environment_problems(py, lf_env)
    if note:
        log("note: " + note)
    if env_error:
        raise env_error
    if py:   # LLaMA-Factory's own parser and cross-field rules, before anything is written or launched
        note = lf_parse_check(py, cfg, lf_env.get("llamafactory") or lf_version(py))
        if note:
            log("note: " + note)
    manifest = {
        "dsforge": __version__, "llamafactory": lf_env.get("llamafactory") or (lf_version(py) if py else None),
        "lf_environment": {k: lf_env.get(k) for k in ("python", "versions", "mismatches")} if lf_env else None,
        "stage": stage, "recipe": recipe,
        "model": model, "datasets": datasets, "dataset_files": dataset_files(dataset_dir, datasets),
        "rows_that_would_train": {r.name: r.would_train for r in reports},
        "command": command, "equivalent": shlex.join(equivalent),
        **launch_record(cfg),
        "precision": precision,   # CPU only: the dtype dsforge chose and why
        "repeat": None,   # set below: the launcher variables + the equivalent command, one shell line
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    manifest["repeat"] = shlex.join([f"{k}={v}" for k, v in manifest["env"].items()] + equivalent)
    if dry_run:
        echo(cfg_yaml.rstrip())
        if py is None:
            echo(f"# LLaMA-Factory: not found on this machine ({missing.message}); the real run needs it "
                 f"where it trains: {missing.hint}")
        echo("# command: " + shlex.join(command))
        return {"dry_run": True, "config": cfg, "manifest": manifest}
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "dsforge_train.yaml") as f:
        f.write(cfg_yaml)
    with atomic_write(out / "dsforge_manifest.json") as f:
        json.dump(manifest, f, indent=2)
    t0 = time.time()
    code, last_error = run_lf(py, ["train", str(out / "dsforge_train.yaml")], str(out / "dsforge_train.log"),
                              echo=echo, env={"DSFORGE_MODEL_DTYPE": precision["compute_dtype"]} if precision else None)
    result = {"exit_code": code, "output_dir": str(out), "seconds": round(time.time() - t0, 1),
              "last_error": last_error, **read_results(out)}
    manifest.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), exit_code=code,
                    train_loss=result.get("train_loss"), steps=result.get("steps"))
    with atomic_write(out / "dsforge_manifest.json") as f:
        json.dump(manifest, f, indent=2)
    return result


def read_results(out: Path) -> dict:
    """What a finished run left in `out`: train_loss, steps, last_logged_loss, weights (path), plots (paths);
    keys absent when their file is."""
    res: dict = {}
    try:
        allr = json.loads((out / "all_results.json").read_text())
        res["train_loss"] = allr.get("train_loss")
    except (OSError, ValueError):
        pass
    try:
        state = json.loads((out / "trainer_state.json").read_text())
        res["steps"] = state.get("global_step")
        losses = [h["loss"] for h in state.get("log_history", []) if "loss" in h]
        if losses:
            res["last_logged_loss"] = losses[-1]
    except (OSError, ValueError):
        pass
    for name in ("adapter_model.safetensors", "model.safetensors"):
        if (out / name).exists():
            res["weights"] = str(out / name)
    plots = sorted(str(p) for p in out.glob("training_*.png"))
    if plots:
        res["plots"] = plots
    return res


def format_result(r: dict) -> str:
    """One human line (two on failure: the error and the log's path) for train()'s result."""
    if r.get("exit_code"):
        error = f": {r['last_error']}" if r.get("last_error") else ""
        return (f"llamafactory-cli exited with code {r['exit_code']}{error}\n"
                f"  full log: {r['output_dir']}/dsforge_train.log")
    return (f"trained in {r['seconds']} s: {r.get('steps')} steps, final train loss {r.get('train_loss')}; "
            f"weights {r.get('weights', '(none found)')}; plots {', '.join(r.get('plots', [])) or 'none'}; "
            f"manifest {r['output_dir']}/dsforge_manifest.json")


# ---------------------------------------------------------------- export


def export(model: str, adapter: str, out: str, *, template: str | None = None, lf_python: str | None = None,
           sets: dict | None = None, echo=print) -> int:
    """Merge a LoRA `adapter` into `model` with `llamafactory-cli export` into the new folder `out`
    (config and log written there). Returns 0; UsageError before launch (not an adapter folder, a bad
    --set, an output over an input), DsforgeError naming the log when the export fails."""
    from dsforge import lf_args, models

    model = models.resolve(model)
    if not os.path.isdir(adapter) or not (Path(adapter) / "adapter_config.json").exists():
        raise UsageError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)",
                         "pass the output_dir of a `dsforge train ... --recipe lora` run")
    py = find_lf_python(lf_python)
    cfg = {"model_name_or_path": model, "adapter_name_or_path": os.path.abspath(adapter), "finetuning_type": "lora",
           "export_dir": os.path.abspath(out), "export_size": 5, "export_device": "cpu", "export_legacy_format": False}
    if template:
        cfg["template"] = template
    lf_args.refuse_secrets(sets or {})
    cfg.update(sets or {})
    cfg = lf_args.check_config({k: v for k, v in cfg.items() if v is not None},
                               {k: "--set" for k in sets or {}}, command="export")
    guard_outputs({"--model": model if os.path.isdir(model) else None, "--adapter": adapter},
                  {"export_dir": cfg.get("export_dir")}, hint="export into a new folder (-o)")
    Path(out).mkdir(parents=True, exist_ok=True)
    path = Path(out) / "dsforge_export.yaml"
    with atomic_write(path) as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    log = Path(out) / "dsforge_export.log"
    code, last_error = run_lf(py, ["export", str(path)], str(log), echo=echo)
    if code:
        raise DsforgeError(f"llamafactory-cli export exited with code {code}" + (f": {last_error}" if last_error else ""),
                           f"full log: {log}")
    return code
