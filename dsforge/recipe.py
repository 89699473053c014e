"""Pipeline recipes for `dsforge run`: the models, the inputs and an ordered list of stages.

    name: tiny-dpo
    models: {sampler: smollm2-135m-instruct, judge: smollm2-135m-instruct}
    inputs: [data/faq.csv]          # relative to the recipe file
    stages:
      - convert: {to: sft, map: {instruction: question, output: answer}, skip_bad: true}
      - sample: {temps: [0.7, 1.0], n: 4, max_tokens: 96}
      - judge: {rubric: additive, serve: true}
      - pairs: {strategy: best-vs-worst, min_margin: 1}
      - register: {name: demo_dpo}
      - train: {stage: dpo, set: {max_steps: 4}}

Relative `inputs` are relative to the recipe file's folder; `run_dir` (default runs/NAME) and other
output paths are relative to the current directory. The recipes in dsforge/data/recipes/ ship in the
package and run by name: `dsforge run demo-tiny`.

Every key is checked before anything runs (unknown keys are errors); messages point at the
recipe location, e.g. stages[3].pairs.min_margin. The JSON Schema is schemas/pipeline_recipe.schema.json.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Optional

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from dsforge.errors import ConfigError, UsageError
from dsforge.names import name_problem
from dsforge.stages import (ENGINES, STAGE_CONFIGS, STAGE_NAMES, ConvertConfig, RegisterConfig, error_text,
                            field_of_flag, recipe_key)


def _valid_name(value: str) -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(f"{value!r} is not a valid name: {problem}; use letters, digits, '_', '-' and '.'")
    return value


Name = Annotated[str, AfterValidator(_valid_name)]   # becomes a file or folder name: never a path


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterStage(RegisterConfig):
    """The recipe's register entry: a RegisterConfig whose name becomes a file name (never a path)."""
    name: Name


STAGE_TYPES = {**STAGE_CONFIGS, "register": RegisterStage}
ORDER = list(STAGE_NAMES)


class Models(_Strict):
    sampler: str = "smollm2-135m-instruct"
    judge: str | None = None


def _attr(kind: str) -> str:
    return "register_" if kind == "register" else kind   # BaseModel has a `register` attribute


class _StageBase(_Strict):
    """One recipe stage: exactly one of the STAGE_TYPES keys, holding that stage's config model."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one(self):
        set_ = [k for k in STAGE_TYPES if getattr(self, _attr(k)) is not None]
        if len(set_) != 1:
            raise ValueError(f"each stage is exactly one of {', '.join(STAGE_TYPES)} (got {set_ or 'none'})")
        return self

    @property
    def kind(self) -> str:
        """The stage's kind (convert, sample, ...)."""
        return next(k for k in STAGE_TYPES if getattr(self, _attr(k)) is not None)

    @property
    def options(self) -> BaseModel:
        """The stage's config model."""
        return getattr(self, _attr(self.kind))


# one optional field per stage kind, made from the table: a new stage in STAGE_CONFIGS is a recipe key at once
Stage = create_model("Stage", __base__=_StageBase, **{
    _attr(kind): (Optional[model], Field(None, alias=kind) if _attr(kind) != kind else None)
    for kind, model in STAGE_TYPES.items()})


class PipelineRecipe(_Strict):
    name: Name
    run_dir: str | None = Field(None, description="default: runs/NAME")
    models: Models = Field(default_factory=Models)
    inputs: list[str] = Field(default_factory=list, description="input files or globs (none with a tasks stage)")
    rounds: int = Field(1, ge=1, le=100, description="on-policy rounds: the stages repeat in RUN_DIR/round-T/, "
                        "round T sampling and training from the model round T-1 exported")
    stages: list[Stage] = Field(min_length=1)


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def check_semantics(r: PipelineRecipe) -> list[tuple[str, str]]:
    """Cross-stage checks pydantic cannot see. Returns [(location, problem)]."""
    problems = []
    kinds = [s.kind for s in r.stages]
    if len(set(kinds)) != len(kinds):
        problems.append(("stages", "a stage kind appears twice"))
    pos = {k: i for i, k in enumerate(kinds)}
    last = -1
    for i, k in enumerate(kinds):
        if ORDER.index(k) < last:
            problems.append((f"stages[{i}]", f"{k} comes after {ORDER[last]}; the order is {' -> '.join(ORDER)}"))
        last = max(last, ORDER.index(k))
    for kind in ("sample", "judge"):   # engine is a str in the library (tests register fake engines)
        if kind in pos and getattr(r.stages[pos[kind]], kind).engine not in ENGINES:
            problems.append((f"stages[{pos[kind]}].{kind}.engine", f"use one of {', '.join(ENGINES)}"))
    if "judge" in pos:
        j = r.stages[pos["judge"]].judge
        if not r.models.judge and not j.judge_model and not j.verifier:
            problems.append((f"stages[{pos['judge']}].judge", "a judge stage needs models.judge (or judge_model, or a "
                             "verifier)"))
        if j.engine == "openai" and not j.serve and not j.base_url and not j.verifier:
            problems.append((f"stages[{pos['judge']}].judge.base_url",
                             "the openai judge needs base_url (or serve: true to start a local server)"))
        if "sample" not in pos:
            problems.append((f"stages[{pos['judge']}]", "judge needs a sample stage before it"))
    if "pairs" in pos:
        if "judge" not in pos:
            problems.append((f"stages[{pos['pairs']}]", "pairs needs a judge stage before it"))
        if "sample" in pos:
            s = r.stages[pos["sample"]].sample
            if s.n * len(s.temps) < 2:
                problems.append((f"stages[{pos['sample']}].sample.n",
                                 "pairs need at least two candidates per prompt: raise n or add temperatures"))
    problems += _loop_problems(r, pos)
    if "sample" in pos and "convert" in pos and r.stages[pos["convert"]].convert.to not in ("sft", "ranking", "kto"):
        problems.append((f"stages[{pos['convert']}].convert.to", "sample needs prompts: convert to sft (or keep "
                         "inputs that hold prompts and drop the convert stage)"))
    if "train" in pos:
        t = r.stages[pos["train"]].train
        i = pos["train"]
        if "register" not in pos:
            problems.append((f"stages[{i}]", "train needs a register stage before it"))
        elif t.stage in ("dpo", "rm"):
            if "pairs" not in pos:
                problems.append((f"stages[{i}].train.stage", f"{t.stage} trains on ranking pairs: add a pairs stage"))
        elif t.stage == "kto":
            if "pairs" not in pos or r.stages[pos["pairs"]].pairs.kto_threshold is None:
                problems.append((f"stages[{i}].train.stage", "kto needs KTO rows: set pairs.kto_threshold"))
        elif t.stage == "ppo":
            problems.append((f"stages[{i}].train.stage", "ppo needs a reward model and is not run by recipes; use "
                             "dsforge train ppo"))
        elif t.stage in ("sft", "pt"):
            conv = r.stages[pos["convert"]].convert if "convert" in pos else None
            if conv is None or conv.to != t.stage or "pairs" in pos:
                problems.append((f"stages[{i}].train.stage", f"{t.stage} trains on a convert --to {t.stage} output "
                                 f"(and no pairs stage)"))
    if "convert" in pos:
        problems += _convert_option_problems(r.stages[pos["convert"]].convert, f"stages[{pos['convert']}].convert")
    return problems


def _loop_problems(r: PipelineRecipe, pos: dict) -> list[tuple[str, str]]:
    """Rules of the loop stages (tasks, export, eval) and of `rounds`."""
    problems = []
    if not r.inputs and "tasks" not in pos:
        problems.append(("inputs", "give input files (or a tasks stage that makes the prompts)"))
    if "tasks" in pos and ("convert" in pos or r.inputs):
        problems.append((f"stages[{pos['tasks']}]", "a tasks stage makes the prompts: drop the convert stage and inputs"))
    if "export" in pos and ("train" not in pos or r.stages[pos["train"]].train.recipe != "lora"):
        problems.append((f"stages[{pos['export']}]", "export merges a LoRA adapter: it needs a train stage with "
                         "recipe: lora before it"))
    if "eval" in pos and not r.stages[pos["eval"]].eval.heldout:
        problems.append((f"stages[{pos['eval']}].eval.heldout", "name the held-out prompt files (the first is the "
                         "metric), e.g. [../heldout/arith-5.jsonl]"))
    if "eval" in pos:
        stems = [Path(h).stem for h in r.stages[pos["eval"]].eval.heldout]
        twice = sorted({s for s in stems if stems.count(s) > 1})
        for i, h in enumerate(r.stages[pos["eval"]].eval.heldout):
            if not os.path.isfile(h):   # paths are resolved against the recipe's folder at load
                problems.append((f"stages[{pos['eval']}].eval.heldout[{i}]", f"{h}: no such file (relative paths "
                                 f"are read from the recipe's folder)"))
        if twice:   # each held-out file's eval is written and paired by its stem (eval-STEM.json)
            problems.append((f"stages[{pos['eval']}].eval.heldout", f"two held-out files share the name "
                             f"{', '.join(twice)}; give each file its own name"))
    if r.rounds > 1 and "register" in pos and r.stages[pos["register"]].register_.dataset_dir:
        problems.append((f"stages[{pos['register']}].register.dataset_dir", "with rounds each round registers into "
                         "RUN_DIR/round-T/data: leave dataset_dir out"))
    if r.rounds > 1:
        missing = [k for k in ("sample", "train", "export") if k not in pos]
        if missing:
            problems.append(("rounds", f"rounds > 1 sample from the policy the round before exported: add "
                             f"{', '.join(missing)} stage(s)"))
    return problems


def _convert_option_problems(c: ConvertConfig, where: str) -> list[tuple[str, str]]:
    """convert's own value checks on a recipe's convert stage, with each CLI flag in the message
    (--chunk-chars) spelled as the recipe field it sets (stages[i].convert.chunk_chars)."""
    try:
        c.model_copy().check()
    except UsageError as err:
        def spell(m: re.Match) -> str:
            name = field_of_flag(ConvertConfig, m.group(0))
            return f"{where}.{recipe_key(ConvertConfig, name)}" if name else f"{where}.{m.group(0)[2:].replace('-', '_')}"

        flags = re.findall(FLAG, err.message)
        field = spell(re.search(FLAG, err.message)) if flags else where
        text = re.sub(FLAG, spell, err.message)
        text = text[len(field) + 1:] if text.startswith(field + " ") else text
        if err.hint:
            text += f" ({re.sub(FLAG, spell, err.hint)})"
        return [(field, text)]
    return []


FLAG = r"--[a-z][a-z-]*[a-z]"


RECIPES = Path(__file__).resolve().parent / "data" / "recipes"   # shipped in the wheel


def shipped_recipes() -> list[str]:
    """Names of the pipeline recipes that ship inside the package (`dsforge run NAME`)."""
    return sorted(p.stem for p in RECIPES.glob("*.yaml"))


def find_recipe(name_or_path: str) -> Path:
    """The recipe file for a path, or for the name of a shipped recipe (`demo-tiny`); ConfigError if neither."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.exists():
        raise ConfigError(f"{name_or_path}: not a recipe file (a directory?)",
                          "pass a recipe YAML file or the name of a shipped recipe")
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if p.parent == Path(".") and stem in shipped_recipes():
        return RECIPES / f"{stem}.yaml"
    raise ConfigError(f"{name_or_path}: no such recipe",
                      f"pass a recipe YAML file or a shipped recipe name: {', '.join(shipped_recipes())}")


def _inputs_from(recipe_file: Path, inputs):
    """Relative `inputs` in a recipe file are relative to the file's folder, so a recipe and its data travel
    together (a shipped recipe finds the demo data inside the package); absolute paths stay as they are."""
    if recipe_file.parent == Path(".") or not isinstance(inputs, list):
        return inputs
    return [str(recipe_file.parent / x) if isinstance(x, str) and not os.path.isabs(os.path.expanduser(x)) else x
            for x in inputs]


def load_recipe(path: str, overrides: dict | None = None) -> PipelineRecipe:
    """Read and check a pipeline recipe (a YAML path or a shipped recipe name); `overrides` are --set values
    (dotted paths; their file paths stay relative to the current directory). ConfigError says where."""
    p = find_recipe(path)
    path = str(p)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start})",
                          "a recipe is a YAML file saved as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ConfigError(f"{path}{f':{mark.line + 1}' if mark else ''}: not valid YAML "
                          f"({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping (name, models, inputs, stages)")
    if "inputs" in data:
        data["inputs"] = _inputs_from(p, data["inputs"])
    for st in data.get("stages") or []:   # an eval's held-out files travel with the recipe too
        if isinstance(st, dict) and isinstance(st.get("eval"), dict) and "heldout" in st["eval"]:
            st["eval"]["heldout"] = _inputs_from(p, st["eval"]["heldout"])
    for dotted, value in (overrides or {}).items():
        _set_path(data, dotted, value, path)
    try:
        recipe = PipelineRecipe(**data)
    except ValidationError as err:
        lines = [f"  {_loc(e['loc'])}: {error_text(e)}" for e in err.errors()]
        raise ConfigError(f"{path}: the recipe has {len(lines)} problem(s):\n" + "\n".join(lines[:20]),
                          "see the shipped recipes (dsforge run NAME: " + ", ".join(shipped_recipes()) + f") in {RECIPES}") from None
    problems = check_semantics(recipe)
    if problems:
        raise ConfigError(f"{path}: the recipe has {len(problems)} problem(s):\n" +
                          "\n".join(f"  {loc}: {msg}" for loc, msg in problems))
    return recipe


def _set_path(data: dict, dotted: str, value, path: str) -> None:
    """--set stages[1].sample.n=2 / models.judge=NAME."""
    parts = [p for p in re.split(r"\.|\[(\d+)\]", dotted) if p]
    if not parts or any("[" in p or "]" in p for p in parts):   # stages[-1], stages[x], a[1
        raise UsageError(f"--set {dotted}: not a recipe path", "write e.g. stages[1].sample.n=2 or models.judge=NAME "
                         "(list indexes count from 0; negative indexes are not supported)")
    cur = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        key = int(part) if part.isdigit() else part
        if isinstance(cur, list):
            if not isinstance(key, int) or key >= len(cur):
                raise UsageError(f"--set {dotted}: no index {part} in {path} ({'.'.join(parts[:i]) or 'it'} has "
                                 f"{len(cur)} item(s), indexes 0 to {len(cur) - 1})")
        elif not isinstance(cur, dict):
            raise ConfigError(f"--set {dotted}: {'.'.join(parts[:i])} is not a mapping")
        if last:
            cur[key] = value
        else:
            if isinstance(cur, dict) and key not in cur:
                cur[key] = {}
            cur = cur[key]
