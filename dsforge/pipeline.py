"""Pipeline recipes for `dsforge run`: the models, the inputs and an ordered list of stages.

    name: tiny-dpo
    models: {sampler: smollm2-135m-instruct, judge: smollm2-135m-instruct}
    inputs: [dsforge/data/demo/faq.csv]
    stages:
      - convert: {to: sft, map: {instruction: question, output: answer}, skip_bad: true}
      - sample: {temps: [0.7, 1.0], n: 4, max_tokens: 96}
      - judge: {rubric: additive, serve: true}
      - pairs: {strategy: best-vs-worst, min_margin: 1}
      - register: {name: demo_dpo}
      - train: {stage: dpo, set: {max_steps: 4}}

Every key is checked before anything runs (unknown keys are errors); messages point at the
recipe location, e.g. stages[3].pairs.min_margin. The JSON Schema is schemas/pipeline_recipe.schema.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dsforge.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConvertStage(_Strict):
    to: Literal["pt", "sft", "ranking", "kto"] = "sft"
    format: Literal["alpaca", "sharegpt", "openai"] = "sharegpt"
    map: dict[str, str] = Field(default_factory=dict)
    system: str | None = None
    chunk_chars: int | None = None
    overlap: int = 0
    dedup: bool = True
    shuffle: bool = False
    seed: int = 0
    skip_bad: bool = False
    limit: int | None = Field(None, description="keep only the first N converted rows (quick runs)")


class SampleStage(_Strict):
    engine: Literal["vllm", "openai", "hf"] = "vllm"
    engine_options: dict = Field(default_factory=dict)
    temps: list[float] = Field(default_factory=lambda: [0.7, 1.0], min_length=1)
    n: int = Field(4, ge=1)
    top_p: float = 1.0
    max_tokens: int = Field(512, ge=1)
    seed: int = 0
    system: str | None = None
    limit: int | None = None


class JudgeStage(_Strict):
    engine: Literal["openai", "vllm", "hf"] = "openai"
    engine_options: dict = Field(default_factory=dict)
    serve: bool = Field(False, description="start a local OpenAI-compatible server (vllm) with the judge model")
    base_url: str | None = None
    rubric: str = "additive"
    mode: Literal["pointwise", "pairwise"] = "pointwise"
    votes: int = Field(1, ge=1)
    temperature: float = 0.0
    max_tokens: int = 256
    parse_retries: int = 2
    audit: bool = False
    include_truncated: bool = False


class PairsStage(_Strict):
    strategy: Literal["best-vs-worst", "best-vs-random", "best-vs-mean-2sd", "all-pairs"] = "best-vs-worst"
    min_margin: float = Field(0.0, ge=0)
    max_pairs_per_prompt: int = Field(1, ge=1)
    max_length_ratio: float | None = None
    length_tiered: bool = False
    include_truncated: bool = False
    format: Literal["sharegpt", "alpaca"] = "sharegpt"
    kto_threshold: float | None = None
    score: Literal["score", "expected_score"] = "score"


class RegisterStage(_Strict):
    name: str
    dataset_dir: str | None = Field(None, description="default: RUN_DIR/data")
    what: Literal["auto", "pairs", "kto", "convert"] = "auto"


class TrainStage(_Strict):
    stage: Literal["pt", "sft", "dpo", "kto", "rm"]
    recipe: str = "lora"
    model: str | None = Field(None, description="default: models.sampler")
    set: dict = Field(default_factory=dict)
    lf_python: str | None = None


STAGE_TYPES = {"convert": ConvertStage, "sample": SampleStage, "judge": JudgeStage, "pairs": PairsStage,
               "register": RegisterStage, "train": TrainStage}
ORDER = list(STAGE_TYPES)


class Models(_Strict):
    sampler: str = "smollm2-135m-instruct"
    judge: str | None = None


def _attr(kind: str) -> str:
    return "register_" if kind == "register" else kind   # BaseModel has a `register` attribute


class Stage(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    convert: ConvertStage | None = None
    sample: SampleStage | None = None
    judge: JudgeStage | None = None
    pairs: PairsStage | None = None
    register_: RegisterStage | None = Field(None, alias="register")
    train: TrainStage | None = None

    @model_validator(mode="after")
    def _one(self):
        set_ = [k for k in STAGE_TYPES if getattr(self, _attr(k)) is not None]
        if len(set_) != 1:
            raise ValueError(f"each stage is exactly one of {', '.join(STAGE_TYPES)} (got {set_ or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STAGE_TYPES if getattr(self, _attr(k)) is not None)

    @property
    def options(self) -> BaseModel:
        return getattr(self, _attr(self.kind))


class PipelineRecipe(_Strict):
    name: str
    run_dir: str | None = Field(None, description="default: runs/NAME")
    models: Models = Field(default_factory=Models)
    inputs: list[str] = Field(min_length=1)
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
    if "judge" in pos:
        j = r.stages[pos["judge"]].judge
        if not r.models.judge:
            problems.append((f"stages[{pos['judge']}].judge", "a judge stage needs models.judge"))
        if j.engine == "openai" and not j.serve and not j.base_url:
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
        elif t.stage in ("sft", "pt"):
            conv = r.stages[pos["convert"]].convert if "convert" in pos else None
            if conv is None or conv.to != t.stage or "pairs" in pos:
                problems.append((f"stages[{i}].train.stage", f"{t.stage} trains on a convert --to {t.stage} output "
                                 f"(and no pairs stage)"))
    return problems


def load_recipe(path: str, overrides: dict | None = None) -> PipelineRecipe:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{path}: no such recipe")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ConfigError(f"{path}{f':{mark.line + 1}' if mark else ''}: not valid YAML "
                          f"({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping (name, models, inputs, stages)")
    for dotted, value in (overrides or {}).items():
        _set_path(data, dotted, value, path)
    try:
        recipe = PipelineRecipe(**data)
    except ValidationError as err:
        lines = [f"  {_loc(e['loc'])}: {e['msg']}" for e in err.errors()]
        raise ConfigError(f"{path}: the recipe has {len(lines)} problem(s):\n" + "\n".join(lines[:20]),
                          "see schemas/pipeline_recipe.schema.json and recipes/*.yaml") from None
    problems = check_semantics(recipe)
    if problems:
        raise ConfigError(f"{path}: the recipe has {len(problems)} problem(s):\n" +
                          "\n".join(f"  {loc}: {msg}" for loc, msg in problems))
    return recipe


def _set_path(data: dict, dotted: str, value, path: str) -> None:
    """--set stages[1].sample.n=2 / models.judge=NAME."""
    import re

    parts = [p for p in re.split(r"\.|\[(\d+)\]", dotted) if p]
    cur = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        key = int(part) if part.isdigit() else part
        if isinstance(cur, list):
            if not isinstance(key, int) or key >= len(cur):
                raise ConfigError(f"--set {dotted}: no index {part} in {path}")
        elif not isinstance(cur, dict):
            raise ConfigError(f"--set {dotted}: {'.'.join(parts[:i])} is not a mapping")
        if last:
            cur[key] = value
        else:
            if isinstance(cur, dict) and key not in cur:
                cur[key] = {}
            cur = cur[key]
