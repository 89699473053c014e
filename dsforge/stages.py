"""The stage vocabulary and one config model per stage, below every stage module (imports none of them).

Each model is what the library takes, what a recipe's stage entry is (`stages[i].pairs` IS a
PairsConfig) and what the CLI options are generated from (dsforge.cli.options.options_from), so a
field added here is a recipe key and a command option at once. A field's CLI spelling lives in its
`Cli` marker (default: `--` + the name with '-' for '_'); `flag_of(model, field)` and
`field_of_flag(model, flag)` are the one mapping between `--min-margin` and `min_margin`.

To add a stage (e.g. eval): a model here and its entry in STAGE_CONFIGS (the position is the stage's
place in the only order a recipe may use; the recipe's Stage is made from this table), then one entry
in dsforge.run.STAGES at the same position (kind -> function(config, Context) -> (outputs, summary)),
plus any cross-stage rule in recipe.check_semantics. The CLI command, if any, is `@options_from(Model)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from dsforge.errors import UsageError
from dsforge.records import FORMATTINGS

# ---------------------------------------------------------------- vocabulary (spelled once)

Target = Literal["pt", "sft", "ranking", "kto"]                  # what convert builds
Formatting = Literal["alpaca", "sharegpt", "openai"]             # dataset_info `formatting`
PairFormat = Literal["sharegpt", "alpaca"]                       # ranking/KTO rows pairs writes
Engine = Literal["vllm", "openai", "hf"]
JudgeMode = Literal["pointwise", "pairwise"]
Strategy = Literal["best-vs-worst", "best-vs-random", "best-vs-mean-2sd", "all-pairs", "correct-vs-wrong"]
ScoreField = Literal["score", "expected_score"]
Similarity = Literal["ratio", "jaccard"]
Combine = Literal["human-overrides", "agree-only"]
TrainStage = Literal["pt", "sft", "dpo", "kto", "rm", "ppo"]    # LLaMA-Factory `stage` (records.STAGES)
RegisterWhat = Literal["auto", "pairs", "kto", "convert"]

TARGETS: tuple[str, ...] = get_args(Target)
FORMATS: tuple[str, ...] = get_args(Formatting)
ENGINES: tuple[str, ...] = get_args(Engine)
STRATEGIES: tuple[str, ...] = get_args(Strategy)
assert FORMATS == FORMATTINGS

# What a mapping (--map DEST=SOURCE) can name: the columns formats.to_conversation and the pretraining
# reader look up. Anything else would be silently ignored, so it is refused.
MAP_DESTS = ("instruction", "input", "output", "system", "history", "messages", "conversations", "chosen",
             "rejected", "kto_tag", "label", "tools", "text", "images", "videos", "audios")

# Upper bounds for counts sent to an engine or loop that many times: a value past them is a typo.
MAX_N = 1024                 # answers per prompt and temperature (vLLM's own default max_num_seqs is 256)
MAX_TOKENS = 1_000_000       # tokens per answer (beyond every released model's context)
MAX_VOTES = 64
MAX_RETRIES = 20
MAX_SEED = 2**63 - 1         # engines and servers take a signed 64-bit seed


@dataclass(frozen=True)
class Cli:
    """How a config field appears on the command line. flag: default `--name-with-dashes`; short: e.g.
    '-n'; cli=False: recipe/library only; invert: a True-by-default bool shown as `--no-x`; kind:
    'floats' (X,Y list), 'map' (DEST=SOURCE, repeatable), 'sets' (KEY=VALUE, repeatable), 'url';
    default: the CLI's default where it differs from the library's (None: the field's)."""
    flag: str | None = None
    short: str | None = None
    cli: bool = True
    invert: bool = False
    kind: str | None = None
    default: Any = None
    required: bool = False
    metavar: str | None = None
    unbounded: bool = False   # an int where any large value means 'all of it'
    choices: tuple[str, ...] | None = None   # a str field the CLI offers as a click.Choice


Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]


class FieldError(UsageError):
    """A stage config value that is not allowed; `field` names it (the CLI respells it as its flag, the
    recipe loader as stages[i].kind.field)."""

    def __init__(self, field: str, problem: str, hint: str | None = None):
        super().__init__(f"{field}: {problem}", hint)
        self.field, self.problem = field, problem


class StageConfig(BaseModel):
    """Base of the stage configs: unknown keys are errors; fields may be set by name or alias. Built
    with `build` (library, CLI), a bad value raises FieldError naming the field; inside a recipe, pydantic's
    own ValidationError with its location (stages[3].pairs.min_margin)."""
    model_config = ConfigDict(extra="forbid", populate_by_name=True, arbitrary_types_allowed=True,
                              allow_inf_nan=False)   # as the CLI's option types: nan/inf are refused everywhere

    @classmethod
    def build(cls, **data):
        """The config from keyword values; FieldError (a UsageError) naming the first bad field."""
        try:
            return cls(**data)
        except ValidationError as err:
            e = err.errors()[0]
            field = ".".join(str(x) for x in e["loc"]) or cls.__name__
            raise FieldError(field, error_text(e)) from None


def error_text(e: dict) -> str:
    """One pydantic error's message without pydantic's 'Value error, ' prefix (a validator's own words)."""
    return e["msg"].removeprefix("Value error, ")


# ---------------------------------------------------------------- convert


class ConvertConfig(StageConfig):
    """dsforge.convert.convert's settings (the recipe's `convert:` entry; `dsforge convert` options)."""
    to: Annotated[Target, Cli(required=True)] = Field("sft", description="What to build: pretraining text, SFT, "
                                                      "ranking (DPO/RM) pairs or KTO rows.")
    fmt: Annotated[Formatting, Cli(flag="--format")] = Field("sharegpt", alias="format",
                                                             description="Row shape for sft/ranking/kto.")
    mapping: Annotated[dict[str, str], Cli(flag="--map", kind="map", metavar="DEST=SOURCE")] = Field(
        default_factory=dict, alias="map", description="Rename a source column: " + ", ".join(MAP_DESTS[:10]) + ".")
    system: str | None = Field(None, description="System prompt for rows that have none.")
    text_split: Literal["file", "paragraph"] = Field("file", description="txt/md inputs: one document per file, "
                                                     "or split on blank lines.")
    chunk_chars: Annotated[int | None, Cli(unbounded=True)] = Field(
        None, description="pt: cut documents into chunks of N characters.")
    chunk_tokens: Annotated[int | None, Cli(unbounded=True)] = Field(
        None, description="pt: cut documents into chunks of N tokens (needs --tokenizer).")
    tokenizer: str | None = Field(None, description="Local tokenizer directory for --chunk-tokens.")
    overlap: Annotated[int, Cli(unbounded=True)] = Field(0, description="Characters/tokens shared by "
                                                         "neighbouring chunks.")
    min_chars: Annotated[int, Cli(unbounded=True)] = Field(1, description="pt: drop chunks shorter than this.")
    max_chars: Annotated[int | None, Cli(unbounded=True)] = Field(None, description="pt: drop chunks longer than this.")
    dedup: Annotated[bool, Cli(cli=False)] = Field(True, description="drop exact duplicate rows (--no-dedup: keep)")
    near_dedup: Annotated[bool, Cli(cli=False)] = Field(False, description="also drop near-duplicates "
                                                        "(convert --dedup near)")
    dedup_on: Literal["prompt", "all"] = Field("all", description="--dedup near: rows are near-duplicates by "
                                               "prompt only, or by prompt and answer.")
    dedup_shingle: str = Field("word:3", description="--dedup near: word:K or char:K shingles.")
    dedup_threshold: float = Field(0.8, description="--dedup near: Jaccard similarity at or above "
                                   "which rows are near-duplicates.")
    split_group: Literal["exact", "near"] = Field("exact", description="--eval-ratio keeps rows with the same "
                                                  "prompt (exact) or near-duplicate prompts (near) on one side.")
    decontaminate: Annotated[tuple[str, ...], Cli(metavar="EVAL")] = Field(
        (), description="Drop rows that overlap this eval file (13-gram or near-duplicate; repeatable).")
    shuffle: bool = Field(False, description="Shuffle rows (seeded, on-disk: memory stays flat).")
    seed: Seed = Field(0, description="Shuffle and split seed.")
    eval_ratio: float = Field(0.0, ge=0, lt=1, description="Share of prompts held out (grouped by prompt).")
    eval_out: Annotated[str | None, Cli(kind="json_out")] = Field(None, description="Eval split file "
                                                                  "(with --eval-ratio).")
    skip_bad: bool = Field(False, description="Skip rows that cannot be converted (counted) instead of failing.")
    limit: Annotated[int | None, Cli(unbounded=True)] = Field(None, ge=1, description="Write only the first N "
                                                              "converted rows (quick runs).")

    def check(self) -> None:
        """Refuse combinations that would be silently ignored or mean nothing (UsageError naming the flags)."""
        self._check_values()
        if self.chunk_chars and self.chunk_tokens:
            raise UsageError("--chunk-chars and --chunk-tokens exclude each other")
        if self.chunk_tokens and not self.tokenizer:
            raise UsageError("--chunk-tokens needs --tokenizer PATH", "point it at a local tokenizer directory")
        size = self.chunk_chars or self.chunk_tokens
        if size is not None and not 0 <= self.overlap < size:
            raise UsageError(f"--overlap {self.overlap} must be >= 0 and smaller than the chunk size {size}")
        if not 0 <= self.eval_ratio < 1:
            raise UsageError("--eval-ratio must be in [0, 1)")
        if self.eval_ratio > 0 and not self.eval_out:
            raise UsageError("--eval-ratio needs --eval-out FILE")
        if self.to != "pt" and (self.chunk_chars or self.chunk_tokens):
            raise UsageError("chunking applies to --to pt only")
        if self.near_dedup and self.split_group == "exact" and self.eval_ratio:
            self.split_group = "near"   # near-duplicates dropped but split apart would leak across the split
        self.near_options().check()   # always: a bad --dedup-threshold/--dedup-shingle is refused, not ignored

    def near_options(self):
        """The dsforge.dedup.DedupOptions of --dedup near / --split-group near."""
        from dsforge.dedup import DedupOptions

        return DedupOptions(on=self.dedup_on, shingle=self.dedup_shingle, threshold=self.dedup_threshold,
                            flags="--dedup-")

    def _check_values(self) -> None:
        """Values that would be silently ignored or mean nothing are refused (0 is never 'off')."""
        unknown = sorted(set(self.mapping) - set(MAP_DESTS))
        if unknown:
            raise UsageError(f"--map {unknown[0]}=...: unknown destination '{unknown[0]}'",
                             f"destinations: {', '.join(MAP_DESTS)}")
        if self.to == "pt" and set(self.mapping) - {"text"}:
            raise UsageError(f"--to pt reads only the text column; --map {sorted(set(self.mapping) - {'text'})[0]}"
                             f"=... would be ignored", "use --map text=COLUMN")
        if self.to != "pt" and "text" in self.mapping:
            raise UsageError("--map text=... applies to --to pt only", "map instruction/output or messages instead")
        for flag, value, low in (("--chunk-chars", self.chunk_chars, 1), ("--chunk-tokens", self.chunk_tokens, 1),
                                 ("--max-chars", self.max_chars, 1), ("--min-chars", self.min_chars, 0),
                                 ("--overlap", self.overlap, 0)):
            if value is not None and value < low:
                raise UsageError(f"{flag} {value} must be >= {low}", f"leave {flag} out to turn it off"
                                 if low else None)
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise UsageError(f"--max-chars {self.max_chars} is below --min-chars {self.min_chars}: every chunk "
                             f"would be dropped")
        if self.to != "pt" and (self.max_chars is not None or self.min_chars != 1):
            raise UsageError("--min-chars/--max-chars apply to --to pt only")
        if self.tokenizer and not self.chunk_tokens:
            raise UsageError("--tokenizer is used only with --chunk-tokens", "add --chunk-tokens N or drop --tokenizer")
        if self.eval_out and not self.eval_ratio:
            raise UsageError("--eval-out needs --eval-ratio R (0 < R < 1)")
        if self.system is not None and self.to == "pt":
            raise UsageError("--system applies to sft/ranking/kto rows, not to --to pt")


# ---------------------------------------------------------------- sample


class SampleConfig(StageConfig):
    """dsforge.sample.sample's settings (the recipe's `sample:` entry; `dsforge sample` options). `model`
    None means the recipe's models.sampler (the CLI's default is the embedded alias)."""
    model: Annotated[str | None, Cli(short="-m", default="smollm2-135m-instruct")] = Field(
        None, description="Model folder, hub id, served model name (openai), or the alias smollm2-135m-instruct.")
    engine: Annotated[str, Cli(choices=ENGINES)] = Field(   # str: tests register fake engines (dsforge.engines)
        "vllm", description="vllm (offline, batched), openai (any compatible server), hf (transformers, CPU fallback).")
    engine_options: Annotated[dict, Cli(cli=False)] = Field(default_factory=dict, description="engine options "
                                                            "(as sample --engine-opt KEY=VALUE)")
    temps: Annotated[tuple[Annotated[float, Field(ge=0)], ...], Cli(kind="floats")] = Field(
        (0.7, 1.0), min_length=1, description="Temperature grid, comma-separated, each >= 0.")
    n: Annotated[int, Cli(flag="-n")] = Field(4, ge=1, le=MAX_N, description="Answers per prompt and temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(512, ge=1, le=MAX_TOKENS, description="Answer length cap; answers cut here are kept, "
                            "flagged truncated.")
    seed: Seed = Field(0, description="Run seed; each request's seed derives from it, the prompt id and the "
                       "temperature.")
    stop: tuple[str, ...] = Field((), description="Stop string (repeatable).")
    logprobs: Annotated[bool, Cli(invert=True)] = Field(True, description="Do not ask for token logprobs "
                                                        "(mean_logprob stays empty).")
    system: str | None = Field(None, description="System prompt for prompts that have none.")
    limit: Annotated[int | None, Cli(unbounded=True)] = Field(None, ge=1, description="Only the first N distinct "
                                                              "prompts.")
    carry: Annotated[tuple[str, ...], Cli(metavar="FIELD[,FIELD]", kind="csv")] = Field(
        (), description="Prompt-row fields to copy into each candidate's `fields` (the row's `reference` is always "
        "carried).")

    def fingerprint(self) -> str:
        """Settings a resumed run must share with the file it appends to (temperatures may grow): 12 hex chars."""
        import hashlib
        import json

        key = {k: getattr(self, k) for k in ("model", "engine", "n", "top_p", "max_tokens", "seed", "stop", "system")}
        if self.carry:   # only when set: files written before carry existed keep their fingerprint
            key["carry"] = list(self.carry)
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=list).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- pairs


class PairsConfig(StageConfig):
    """dsforge.pairs.build_pairs's policy (the recipe's `pairs:` entry; `dsforge pairs` options)."""
    combine: Annotated[Combine | None, Cli()] = Field(
        None, description="Several JUDGED files (LLM judge runs, dsforge review outputs): human-overrides takes the "
        "human scores where a prompt has them, the judge's elsewhere; agree-only keeps only pairs both agree on.")
    fmt: Annotated[PairFormat, Cli(flag="--format")] = Field("sharegpt", alias="format",
                                                             description="LLaMA-Factory row shape.")
    strategy: Strategy = Field("best-vs-worst", description="How rejected answers are picked.")
    min_margin: float = Field(0.0, ge=0, description="Minimum score difference (ties are always dropped).")
    max_pairs_per_prompt: Annotated[int, Cli(unbounded=True)] = Field(1, ge=1, description="At most this many "
                                                                      "pairs per prompt.")
    max_length_ratio: float | None = Field(None, ge=1, description="Drop pairs whose chosen is this many times "
                                           "longer.")
    length_tiered: bool = Field(False, description="Prefer the shortest among the top-scored and the longest among "
                                "the bottom-scored.")
    include_truncated: bool = Field(False, description="Allow answers cut off at max_tokens.")
    kto_threshold: float | None = Field(None, description="Score at or above which a candidate is desirable "
                                        "(with --kto).")
    score: ScoreField = Field("score", description="Rank by the parsed score, or by the judge's logprob-weighted "
                              "expected score.")
    max_similarity: float | None = Field(None, gt=0, le=1, description="Drop pairs whose answers are at least this "
                                         "similar (0-1, see --similarity), e.g. 0.9.")
    similarity: Similarity = Field("ratio", description="ratio: normalized edit distance of the texts; jaccard: "
                                   "overlap of their word sets.")
    drop_format_asymmetry: bool = Field(False, description="Drop pairs whose answers differ in form: <think> on one "
                                        "side, empty vs filled <think>, a trailing stop string or a code fence on "
                                        "one side (always counted).")
    tokenizer: str | None = Field(None, description="Local tokenizer folder: drop pairs that LLaMA-Factory's "
                                  "truncation to --cutoff-len makes identical or empty, or whose prompt fills "
                                  "cutoff_len.")
    template: str = Field("auto", description="With --tokenizer: 'auto' (the tokenizer's chat template), 'none', or "
                          "a LLaMA-Factory template name.")
    cutoff_len: Annotated[int | None, Cli(unbounded=True)] = Field(None, ge=1, description="LLaMA-Factory cutoff_len "
                                                                   "of the training run (with --tokenizer).")
    seed: Seed = Field(0, description="For random choices and tie order.")


def _check_verifier(spec: str | None) -> str | None:
    """A verifier spec that dsforge.verify.get_verifier accepts (a python: module is not imported here,
    only its MODULE:FUNCTION shape checked); ValueError otherwise, so a recipe names its field."""
    if spec is None:
        return spec
    kind, _, rest = spec.strip().partition(":")
    if kind == "python":
        if not rest.rpartition(":")[0] or not rest.rpartition(":")[2]:
            raise ValueError(f"verifier {spec!r}: give python:MODULE:FUNCTION")
        return spec
    from dsforge.verify import get_verifier

    try:
        get_verifier(spec)
    except UsageError as err:
        raise ValueError(str(err)) from None
    return spec


Verifier = Annotated[str | None, AfterValidator(_check_verifier)]

# ---------------------------------------------------------------- judge, register, train


class JudgeConfig(StageConfig):
    """The judge stage's settings (the recipe's `judge:` entry; `dsforge judge` options). The library's
    resolved form (model path, loaded Rubric) is dsforge.judge.JudgeConfig, built from this one.
    `judge_model` None means the recipe's models.judge; with `verifier` no model is called."""
    judge_model: Annotated[str | None, Cli(short="-m")] = Field(
        None, description="Judge model: the served name (openai engine) or a model folder / alias (vllm engine).")
    verifier: Annotated[Verifier, Cli(metavar="KIND")] = Field(
        None, description="Label by a program instead of a model: exact, numeric[:rel=R,abs=A], math, regex:PATTERN "
        "or python:MODULE:FUNCTION; each reply is checked against the candidate's reference answer.")
    reference_field: Annotated[str, Cli(metavar="FIELD")] = Field(
        "reference", description="With --verifier or --rubric reference: the candidate field that holds the reference "
        "answer (sample copies the prompt row's 'reference'; fields named by sample --carry count too).")
    engine: Annotated[str, Cli(choices=("openai", "vllm", "hf"))] = Field(
        "openai", description="openai: any OpenAI-compatible server; vllm: an offline engine as judge.")
    engine_options: Annotated[dict, Cli(cli=False)] = Field(default_factory=dict, description="engine options "
                                                            "(as judge --engine-opt KEY=VALUE)")
    serve: Annotated[bool, Cli(cli=False)] = Field(False, description="start a local OpenAI-compatible server "
                                                   "(vllm) with the judge model")
    base_url: Annotated[str | None, Cli(cli=False)] = Field(None, description="OpenAI-compatible server URL "
                                                            "(the CLI's --base-url, shared with sample)")
    rubric: str = Field("additive", description="additive (0-5, one point per criterion), aspects (four 1-5 aspects "
                        "averaged), reference (0-5, agreement with the candidate's reference answer, for tasks a "
                        "program cannot check), or a Jinja file starting with '{# dsforge-rubric min=1 max=10 #}', "
                        "static text, a line '---', then the item template using {{ conversation }} / {{ question }}, "
                        "{{ answer }} and optionally {{ reference }}.")
    mode: JudgeMode = Field("pointwise", description="pointwise: score each candidate; pairwise: compare pairs in "
                            "both orders (disagreement = tie).")
    votes: Annotated[int, Cli(short="-k")] = Field(1, ge=1, le=MAX_VOTES, description="Judge samples per item, "
                                                   "averaged (k > 1 samples at temperature 0.7 unless --temperature).")
    temperature: float = Field(0.0, ge=0, description="Judge temperature.")
    max_tokens: int = Field(256, ge=16, le=MAX_TOKENS, description="Judge reply cap.")
    parse_retries: int = Field(2, ge=0, le=MAX_RETRIES, description="Re-ask this many times when a reply has no "
                               "valid score; then record the failure.")
    structured: Annotated[bool, Cli(invert=True)] = Field(True, description="Do not send response_format "
                                                          "json_schema (parse text only).")
    logprobs: Annotated[bool, Cli(invert=True)] = Field(True, description="Do not ask for score-token logprobs "
                                                        "(expected score).")
    max_pairs_per_prompt: Annotated[int, Cli(unbounded=True)] = Field(12, ge=1, description="Pairwise: comparisons "
                                                                      "per prompt, each asked in both orders.")
    include_truncated: bool = Field(False, description="Also judge answers cut off at max_tokens.")
    audit: bool = Field(False, description="First probe the judge: identical answers, swapped pairs, padded copies.")
    seed: Seed = Field(0, description="Judge sampling seed (where honoured).")


class RegisterConfig(StageConfig):
    """dsforge.register.register's settings (the recipe's `register:` entry; `dsforge register` options)."""
    name: str = Field(description="Dataset name to use in LLaMA-Factory's `dataset:`.")
    dataset_dir: Annotated[str | None, Cli(required=True)] = Field(
        None, description="Directory holding (or to hold) dataset_info.json (recipe default: RUN_DIR/data).")
    what: Annotated[RegisterWhat, Cli(cli=False)] = Field("auto", description="which earlier output the run "
                                                          "registers")
    kind: Target | None = Field(None, description="Expected kind (checked).")
    fmt: Annotated[Formatting | None, Cli(flag="--format")] = Field(None, alias="format",
                                                                    description="Expected format (checked).")
    stage: TrainStage | None = Field(None, description="Stage to validate for.")
    force: bool = Field(False, description="Replace a different entry registered under the same name.")
    allow_invalid: bool = Field(False, description="Register even if LLaMA-Factory would train on no row.")


class TrainConfig(StageConfig):
    """dsforge.train.train's settings (the recipe's `train:` entry; `dsforge train` options, STAGE its
    argument). `model` None means the recipe's models.sampler."""
    stage: Annotated[TrainStage, Cli(cli=False)] = Field(description="LLaMA-Factory training stage.")
    model: Annotated[str | None, Cli(short="-m", default="smollm2-135m-instruct")] = Field(
        None, description="Base model folder or alias.")
    recipe: str = Field("lora", description="lora, full, freeze (shipped in dsforge/data/recipes/train/) or a "
                        "YAML file.")
    set: Annotated[dict, Cli(kind="sets", metavar="KEY=VALUE")] = Field(
        default_factory=dict, description="Override any LLaMA-Factory / TrainingArguments key, e.g. --set "
        "label_smoothing_factor=0.1; KEY=null drops it (LLaMA-Factory's default applies).")
    unset: Annotated[tuple[str, ...], Cli(metavar="KEY")] = Field(
        (), description="Drop a recipe key (same as --set KEY=null).")
    lf_python: str | None = Field(None, description="Python of the environment that has LLaMA-Factory (default: "
                                  "DSFORGE_LF_PYTHON, llamafactory-cli on PATH, ./.venv-lf).")


# ---------------------------------------------------------------- eval


class EvalConfig(StageConfig):
    """dsforge.evaluate.evaluate's settings (`dsforge eval` options; the recipe's `eval:` entry, run on the
    base model once (round 0) and on each round's policy, paired with round 0). In a run the model and
    adapter are the round's policy (its export, else models.sampler + the round's adapter)."""
    model: Annotated[str, Cli(short="-m")] = Field(
        "smollm2-135m-instruct", description="Model folder or alias (vllm), or the served model name (openai).")
    adapter: str | None = Field(None, description="LoRA adapter folder (e.g. LLaMA-Factory's output_dir), served "
                                "through vLLM's LoRA support.")
    engine: Literal["vllm", "openai"] = Field("vllm", description="vllm (offline engine) or openai (any "
                                              "OpenAI-compatible server, --base-url).")
    engine_options: Annotated[dict, Cli(cli=False)] = Field(default_factory=dict, description="engine options "
                                                            "(as --engine-opt KEY=VALUE)")
    base_url: Annotated[str | None, Cli(kind="url")] = Field(
        None, description="OpenAI-compatible server URL (the model's with --engine openai, the judge's with --against).")
    verifier: Annotated[Verifier, Cli(metavar="KIND")] = Field(
        None, description="exact, numeric, math, regex:PATTERN or python:module:function (default: each row's "
        "'verifier' field).")
    reference_field: Annotated[str, Cli(metavar="FIELD")] = Field("reference", description="Row field holding "
                                                                  "the reference answer.")
    system: str | None = Field(None, description="System prompt for prompts that have none.")
    max_tokens: int = Field(256, ge=1, le=MAX_TOKENS, description="Reply length cap.")
    k: int | None = Field(None, ge=1, le=MAX_N, description="Also sampled pass@k: k samples per prompt at "
                          "--temperature.")
    samples: int | None = Field(None, ge=1, le=MAX_N, description="Samples per prompt for pass@k (default: k; more "
                                "lowers its variance).")
    temperature: float = Field(1.0, ge=0, description="Temperature of the pass@k samples.")
    seed: Seed = Field(0, description="Sampling and bootstrap seed.")
    confidence: Annotated[float, Cli(cli=False)] = Field(0.95, gt=0, lt=1, description="interval level")
    n_resamples: Annotated[int, Cli(cli=False)] = Field(10_000, ge=100, description="bootstrap resamples")
    judge_model: str | None = Field(None, description="Pairwise judge for --against (served name, or a model "
                                    "folder with --judge-engine vllm).")
    judge_engine: Literal["openai", "vllm"] = Field("openai", description="Engine of the judge for --against.")
    heldout: Annotated[tuple[str, ...], Cli(cli=False)] = Field(
        (), description="recipe: held-out prompt files; the first is the metric (eval.json), the others controls "
        "(eval-STEM.json); relative paths are relative to the recipe file")
    limit: Annotated[int | None, Cli(cli=False)] = Field(None, ge=1, description="recipe: only the first N items "
                                                         "of each held-out file (quick runs)")


# ---------------------------------------------------------------- tasks, export (recipe stages)


class TasksConfig(StageConfig):
    """The recipe's `tasks:` entry: fresh checkable prompts per round (dsforge.tasks.make; `dsforge tasks make`),
    seed + round number in round T, the frozen held-out items never generated."""
    family: str = Field("arith", description="Task family (dsforge tasks list).")
    difficulty: str | None = Field(None, description="Difficulty level (default: the family's).")
    n: int = Field(100, ge=1, description="Prompts per round.")
    seed: Seed = Field(0, description="Base seed; round T uses seed + T.")


class ExportConfig(StageConfig):
    """The recipe's `export:` entry: merge the round's LoRA adapter into its base model
    (dsforge.train.export; `dsforge export`); the merged folder is the next round's policy."""
    template: str | None = Field(None, description="LLaMA-Factory template (default: the model's own).")
    lf_python: str | None = Field(None, description="Python of the environment that has LLaMA-Factory.")


# The stages a recipe may hold, in their only order; the runner's table (dsforge.run.STAGES) has the same keys.
STAGE_CONFIGS: dict[str, type[StageConfig]] = {"tasks": TasksConfig, "convert": ConvertConfig, "sample": SampleConfig,
                                               "judge": JudgeConfig, "pairs": PairsConfig, "register": RegisterConfig,
                                               "train": TrainConfig, "export": ExportConfig, "eval": EvalConfig}
STAGE_NAMES: tuple[str, ...] = tuple(STAGE_CONFIGS)


# ---------------------------------------------------------------- helpers


def cli_of(model: type[BaseModel], name: str) -> Cli:
    """The Cli marker of field `name` of `model` (a default one when the field has none)."""
    return next((m for m in model.model_fields[name].metadata if isinstance(m, Cli)), Cli())


def flag_of(model: type[BaseModel], name: str) -> str:
    """The CLI spelling of field `name`: its Cli flag, else `--` + name with '-' for '_' (`--no-x` if inverted)."""
    c = cli_of(model, name)
    if c.flag:
        return c.flag
    return ("--no-" if c.invert else "--") + name.replace("_", "-")


def recipe_key(model: type[BaseModel], name: str) -> str:
    """The recipe spelling of field `name` (its alias, e.g. `format` for fmt, `map` for mapping)."""
    return model.model_fields[name].alias or name


def field_of_flag(model: type[BaseModel], flag: str) -> str | None:
    """The field that `flag` (e.g. '--min-margin', '--map') sets in `model`, or None."""
    return next((n for n in model.model_fields if flag in (flag_of(model, n), cli_of(model, n).short)), None)
