"""Checks on a dataset_info.json entry: keys, formatting, ranking vs stage, columns, tags; reading
dataset_info.json itself."""

from __future__ import annotations

import difflib
import json
import os
from typing import Iterable

from dsforge import io as dio
from dsforge.records import COLUMN_KEYS, ENTRY_KEYS, FORMATTINGS, TAG_KEYS
from dsforge.validate.reasons import Finding


def suggest(word: str, options: Iterable[str]) -> str | None:
    """The closest of `options` to a misspelt `word` (difflib ratio >= 0.5), or None."""
    m = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return m[0] if m else None


def check_entry(entry: object, stage: str | None, where: str) -> list[Finding]:
    """Checks on one dataset_info.json entry: keys, formatting, ranking vs stage, columns, tags.

    `stage` None skips the ranking-vs-stage check; `where` names the entry in the findings. Returns the
    findings (an empty list for a sound entry); never raises.
    """
    out: list[Finding] = []
    if not isinstance(entry, dict):
        return [Finding("unknown_key", where, detail="the entry must be a JSON object")]
    for key in entry:
        if key not in ENTRY_KEYS:
            s = suggest(key, ENTRY_KEYS)
            extra = " ('format' is read as nothing, so the data is treated as alpaca)" if key == "format" else ""
            out.append(Finding("unknown_key", where, field=key,
                               detail=f"unknown key '{key}'" + (f", did you mean '{s}'?" if s else "") + extra))
    for sub, known in (("columns", COLUMN_KEYS), ("tags", TAG_KEYS)):
        val = entry.get(sub)
        if val is None:
            continue
        if not isinstance(val, dict):
            out.append(Finding("unknown_key", where, field=sub, detail=f"'{sub}' must be an object"))
            continue
        for key in val:
            if key not in known:
                s = suggest(key, known)
                out.append(Finding("unknown_key", where, field=f"{sub}.{key}",
                                   detail=f"unknown key '{sub}.{key}'" + (f", did you mean '{s}'?" if s else "")))
    if not any(k in entry for k in ("file_name", "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url",
                                    "cloud_file_name")):
        out.append(Finding("no_source", where, field="file_name"))
    if "file_name" in entry and not any(k in entry for k in ("hf_hub_url", "ms_hub_url", "om_hub_url", "script_url",
                                                               "cloud_file_name")):
        for key in ("subset", "folder"):
            if key in entry:
                out.append(Finding("ignored_entry_key", where, field=key, detail=f"'{key}' selects a hub/script "
                                   f"dataset's {'configuration' if key == 'subset' else 'sub-folder'}; for the local "
                                   f"file_name {entry['file_name']!r} LLaMA-Factory ignores it"))
    fmt = entry.get("formatting", "alpaca")
    if fmt not in FORMATTINGS:
        s = suggest(str(fmt), FORMATTINGS)
        out.append(Finding("bad_formatting", where, field="formatting",
                           detail=f"formatting '{fmt}' is not alpaca/sharegpt/openai" + (f" (did you mean '{s}'?)" if s else "")))
    ranking = entry.get("ranking", False)
    if not isinstance(ranking, bool):
        out.append(Finding("ranking_not_bool", where, field="ranking", detail=f"ranking is {json.dumps(ranking)}, "
                           "not true/false; LLaMA-Factory treats any non-empty value as true"))
    if stage:
        lf_stage = "rm" if stage == "dpo" else stage
        if (lf_stage == "rm" and ranking is False) or (lf_stage != "rm" and ranking is True):
            want = "true" if lf_stage == "rm" else "false"
            out.append(Finding("stage_mismatch", where, field="ranking",
                               detail=f"stage {stage} needs \"ranking\": {want}"))
    cols = entry.get("columns") if isinstance(entry.get("columns"), dict) else {}
    if ranking and not (cols.get("chosen") and cols.get("rejected")):
        out.append(Finding("ranking_columns", where, field="columns"))
    tags = entry.get("tags")
    if isinstance(tags, dict) and not (tags.get("user_tag") and tags.get("assistant_tag")):
        out.append(Finding("partial_tags", where, field="tags"))
    if fmt == "openai" and not isinstance(tags, dict):
        out.append(Finding("openai_default_tags", where, field="tags"))
    return out



def stage_for_entry(entry: object) -> str:
    """The stage an entry is evidently meant for: dpo if ranking, kto with a kto_tag, pt for a bare text column."""
    if not isinstance(entry, dict):
        return "sft"
    if entry.get("ranking") is True:
        return "dpo"
    cols = entry.get("columns") if isinstance(entry.get("columns"), dict) else {}
    if cols.get("kto_tag"):
        return "kto"
    if entry.get("formatting", "alpaca") == "alpaca" and cols and set(k for k, v in cols.items() if v) == {"prompt"}:
        return "pt"
    return "sft"


def load_dataset_info(path: str) -> dict:
    """Read dataset_info.json with clear errors (syntax with line/column, not an object)."""
    from dsforge.errors import ConfigError

    if os.path.isdir(path):
        path = os.path.join(path, "dataset_info.json")
    if not os.path.exists(path):
        raise ConfigError(f"{path}: not found", "pass the dataset_info.json path or its directory (dataset_dir)")
    problems: list[dio.SyntaxProblem] = []
    items = list(dio.iter_json_array(path, problems))
    if problems:
        p = problems[0]
        raise ConfigError(f"{path}:{p.line}: {p.reason}", p.hint)
    if not items or not isinstance(items[0][1], dict):
        raise ConfigError(f"{path}: must be a JSON object mapping dataset names to entries")
    return items[0][1]
