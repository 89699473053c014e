"""`dsforge judge`: score sampled candidates with a judge LLM, resumably, never inventing a score.

Every judge call goes through a content-hash cache (SQLite, WAL, one commit per call): key =
judge model + rubric hash + sampling parameters + messages + attempt number. A rerun after a
crash replays finished calls from the cache for free and only sends the rest. Failed calls
(after the engine's own retries) are not cached, so a rerun tries them again.

Replies are parsed client-side (JSON with the rationale first, else a trailing "Score: N"),
range-checked, and retried with a fresh sample a bounded number of times; what still cannot be
parsed is recorded as a failure with its raw text and cause. No parse, no score.

With `--verifier` a program (dsforge.verify) labels each reply against the candidate's reference
instead; the judged record is the same, with judge.kind "verifier".

    core       JudgeConfig, Judge (calls through engine + cache; `ask`: the one re-ask loop), parse_votes
    cache      the SQLite call cache
    pointwise  each candidate scored alone          pairwise  pairs asked in both orders
    audit      bias probes (identical, swapped, padded), through Judge.ask
    verifier   judge by a program, no model
    files      judge_file / merge_judged: guards, resume, atomic outputs
    summary    the summary dict and its console lines
"""

from dsforge.judge.cache import Cache
from dsforge.judge.core import Call, Judge, JudgeConfig, Stats, from_stage, judge_config_id, outcome, parse_votes
from dsforge.judge.files import (_candidate_key, check_outputs, judge_file, keep_good_scores,
                                 load_candidates, merge_judged, previous_scores)
from dsforge.judge.pairwise import judge_pairwise
from dsforge.judge.pointwise import judge_pointwise
from dsforge.judge.summary import format_summary, merge_summaries, spearman, summarize

__all__ = ["Cache", "Call", "Judge", "JudgeConfig", "Stats", "from_stage", "check_outputs", "format_summary", "judge_file",
           "judge_config_id", "judge_pairwise", "judge_pointwise", "keep_good_scores", "load_candidates", "merge_judged",
           "merge_summaries", "outcome", "parse_votes", "previous_scores", "spearman", "summarize"]
