"""Typed summaries of the stages that handle candidates (OUT.summary.json, and the manifest of `dsforge run`).

Each stage still builds its summary as a plain dict (the JSON on disk is unchanged); these models are
the contract for whoever reads one (report, run, review, scripts): every key a reader uses is listed
with its unit, and unknown keys are allowed so that a stage may add some. The tests validate the
summaries real runs write against them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from dsforge.records import DatasetInfoEntry


class _Summary(BaseModel):
    model_config = ConfigDict(extra="allow")


class SampleSummary(_Summary):
    """`dsforge sample` (dsforge.sample.sample). Counts are candidates / prompts / requests; *_s are seconds."""

    dsforge: str
    out: str
    model: str
    engine: str
    run: str                                  # fingerprint of the settings a resume must share
    temperatures: list[float]
    n: int
    top_p: float
    max_tokens: int
    seed: int | None
    shard: str | None                         # "I/N" or None
    prompts: int                              # distinct prompts sampled (after shard and limit)
    input_rows: int
    duplicate_prompts: int
    bad_rows: int                             # skipped with skip_bad
    groups_resumed: int                       # (prompt, temperature) groups already complete in OUT
    groups_sampled: int
    failed_requests: int                      # nothing of them was written; a rerun retries them
    failure_causes: dict[str, int]
    candidates_written: int
    duplicates_collapsed: int
    truncated: int                            # candidates cut at max_tokens
    prompt_tokens: int
    completion_tokens: int
    n_emulated_requests: int
    engine_start_s: float
    generate_s: float
    tokens_per_s: float | None
    total_s: float
    log: str | None                           # the engine's log file
    prompts_with_reference: int = 0           # prompts whose row had a `reference` (carried into candidates)
    carry: list[str] = []                     # prompt-row fields carried into Candidate.fields
    carry_missing: dict[str, int] = {}        # prompts whose row lacked a carried field, per field
    engine_info: dict | None = None


class Accuracy(_Summary):
    """Verifier accuracy over checked candidates: fractions in [0, 1], None when n is 0."""

    n: int
    lenient: float | None                     # judge.correct
    strict: float | None                      # judge.correct and judge.format_ok


class JudgeSummary(_Summary):
    """`dsforge judge` (dsforge.judge.judge_file), LLM judge or verifier (`kind`). Counts are candidates."""

    kind: str = "llm"                         # llm | verifier (absent in files written before kinds existed)
    judge_model: str | None
    rubric: str | None
    rubric_hash: str | None
    mode: str | None                          # pointwise | pairwise | verifier
    items: int
    scored: int
    failed: int
    not_judged_truncated: int
    not_compared: int = 0
    mean_score_by_temperature: dict[str, float]
    score_histogram: dict[str, int]           # score rounded to 0.1 -> count
    spearman_score_length: float | None       # score vs reply length in characters
    parse_failures_first_try: dict[str, int] = {}
    failures_final: dict[str, int] = {}
    calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float | None = None
    comparisons: int | None = None            # pairwise only
    swap_consistency: float | None = None     # pairwise: share of decided pairs judged alike in both orders
    first_slot_rate: float | None = None      # pairwise: 0.5 = no position bias
    slot_picks: dict[str, int] | None = None
    audit: dict | None = None
    cost_usd: float | None = None
    verifier: str | None = None               # verifier only
    reference_field: str | None = None
    accuracy: Accuracy | None = None
    accuracy_by_temperature: dict[str, Accuracy] | None = None
    no_answer: int | None = None              # checked replies with no extractable answer
    candidates: str | None = None             # the input file
    out: str | None = None
    kept_previous: int = 0                    # earlier good scores kept where this run failed


class PairsSummary(_Summary):
    """`dsforge pairs` (dsforge.pairs.build_pairs). Lengths are characters; margins are score differences."""

    prompts: int
    pairs: int
    strategy: str
    min_margin: float
    format: str                               # sharegpt | alpaca
    excluded_candidates: dict[str, int]       # reason -> candidates not eligible (truncated, failed_judge, ...)
    dropped: dict[str, int]                   # reason -> candidate pairs or prompts dropped by the policy
    combine: dict | None = None
    chosen_longer_rate: float | None          # fraction of pairs whose chosen text is longer
    median_length_ratio: float | None         # median len(chosen) / len(rejected)
    margin_quantiles: dict[int | str, float]  # percentile 0, 25, 50, 75, 100 -> margin ("0".. in the JSON)
    dataset_info_entry: DatasetInfoEntry | None   # the entry `register` writes for OUT (less file_name)
    out: str | None
    sidecar: str | None
    degenerate: dict | None = None
    pair_yield: dict | None = None            # verifier data: {prompts, with_right_and_wrong, rate, no_pair {reason: prompts}}
    kto: dict | None = None                   # {out, rows, desirable, undesirable, threshold, suggested_weights,
                                              #  dataset_info_entry} with --kto


class RegisterSummary(_Summary):
    """The register stage of `dsforge run` (dsforge.run.run_register)."""

    entry: DatasetInfoEntry                   # as written into dataset_info.json
    rows: int
    would_train: int                          # rows LLaMA-Factory would train on
    path: str                                 # the registered copy in the dataset dir
    sha256: str
    action: str                               # added | replaced | unchanged


SUMMARIES: dict[str, type[BaseModel]] = {"sample": SampleSummary, "judge": JudgeSummary, "pairs": PairsSummary,
                                         "register": RegisterSummary}


def check(stage: str, summary: dict) -> dict:
    """Validate a stage's summary dict against its model (pydantic ValidationError when a listed key is
    missing or of the wrong type); returns the dict unchanged."""
    SUMMARIES[stage].model_validate(summary)
    return summary


__all__ = ["Accuracy", "JudgeSummary", "PairsSummary", "RegisterSummary", "SampleSummary", "SUMMARIES", "check"]
