"""Validate LLaMA-Factory datasets before any GPU is touched.

The row checks mirror LLaMA-Factory 0.9.5's own data path — parser (dataset_info semantics),
datasets' Arrow loading (file-level failures), converter (alpaca/sharegpt/openai → prompt/response),
processor (stage-specific drops) and template encoding (crashes) — so "would train N of M rows"
is the number LLaMA-Factory really keeps. tests/test_lf_agreement.py checks that claim against
LLaMA-Factory itself.

Every finding has a severity:
  fatal  LLaMA-Factory fails the whole dataset (nothing trains)
  drop   LLaMA-Factory silently drops the row
  warn   LLaMA-Factory keeps the row, but it is almost certainly a data bug
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from dsforge import io as dio
from dsforge.errors import UsageError
from dsforge.infer import STAGE_FOR_KIND, infer_entry
from dsforge.pairchecks import format_pairs, observe_pairs
from dsforge.records import COLUMN_KEYS, ENTRY_KEYS, FORMATTINGS, STAGES, TAG_KEYS, LFAttrs

# code -> (severity, what it means, how to fix). The registry is the documentation: `dsforge
# validate --reasons` prints it, and every finding uses one of these codes.
REASONS: dict[str, tuple[str, str, str]] = {
    # file level
    "json_syntax": ("fatal", "JSON syntax error", "fix the JSON at the reported line and column"),
    "encoding": ("fatal", "not UTF-8", "re-encode the file as UTF-8"),
    "lone_surrogate": ("fatal", "a JSON Lines string holds half of a surrogate pair (\\uD800-\\uDFFF escape "
                       "alone, e.g. an emoji cut in two); Arrow's reader refuses the whole file",
                       "remove the escape or complete the pair"),
    "bom": ("fatal", "starts with a UTF-8 byte-order mark (LLaMA-Factory's JSON loader fails on it in .json files)",
            "rewrite without BOM: dsforge convert writes none; or `sed -i '1s/^\\xEF\\xBB\\xBF//' FILE`"),
    "bom_jsonl": ("warn", "starts with a UTF-8 byte-order mark (LLaMA-Factory 0.9.5 tolerates it in .jsonl, "
                  "other tools do not)", "rewrite without BOM"),
    "empty_file": ("fatal", "no rows", "the file is empty; LLaMA-Factory fails on an empty dataset"),
    "row_not_object": ("fatal", "a row is not a JSON object", "every row must be an object {...}"),
    "duplicate_key": ("fatal", "an object has the same key twice (Arrow refuses it)", "remove one of the keys"),
    "type_conflict": ("fatal", "a field changes type between rows (Arrow cannot load the file)",
                      "make the field the same type in every row (e.g. always a string)"),
    "missing_column": ("fatal", "a column named by the dataset entry exists in no row (KeyError in LLaMA-Factory)",
                       "fix the 'columns' mapping or add the field to the rows"),
    "unsupported_file": ("fatal", "file type LLaMA-Factory cannot load", "use json, jsonl, csv, parquet, arrow or txt"),
    "mixed_file_types": ("fatal", "a dataset directory mixes file types", "keep one file type per directory"),
    "file_missing": ("fatal", "the dataset file does not exist", "fix file_name (relative to dataset_dir)"),
    "unreadable": ("fatal", "the file cannot be read", "check that the file is complete"),
    # dataset_info level
    "unknown_key": ("fatal", "unknown key in the dataset entry (LLaMA-Factory silently ignores it)",
                    "use one of the documented keys"),
    "no_source": ("fatal", "entry has no file_name (nor a hub url/script)", "add \"file_name\""),
    "bad_formatting": ("fatal", "formatting must be alpaca, sharegpt or openai", "fix \"formatting\""),
    "ranking_not_bool": ("warn", "ranking is not a JSON boolean (any non-empty string counts as true)",
                         "write \"ranking\": true or false"),
    "stage_mismatch": ("fatal", "ranking flag does not fit the stage (LLaMA-Factory: 'not applicable in the "
                       "current training stage')", "ranking: true for rm/dpo, false for pt/sft/kto/ppo"),
    "ranking_columns": ("fatal", "ranking entry without chosen/rejected columns", "map columns.chosen and columns.rejected"),
    "partial_tags": ("warn", "'tags' given without user_tag/assistant_tag: LLaMA-Factory then sets the missing tags "
                     "to null, not to their defaults", "spell out every tag"),
    "openai_default_tags": ("warn", "formatting 'openai' without tags: LLaMA-Factory expects from/value keys",
                            "set tags role_tag=role, content_tag=content, user_tag=user, assistant_tag=assistant"),
    "tags_mismatch": ("fatal", "the messages do not use the declared role/content keys", "fix 'tags' to match the data"),
    # row level: crashes (LLaMA-Factory raises while processing; nothing trains)
    "content_not_string": ("fatal", "a message that would be trained is not a string (null, number or list); "
                           "LLaMA-Factory's template raises 'Expected a string'", "make every content a string"),
    "history_shape": ("fatal", "a history item is not an [instruction, response] pair", "use [[\"q\", \"a\"], ...]"),
    "messages_not_list": ("fatal", "the messages column is missing or not a list in this row",
                          "every row needs a list of messages"),
    "message_not_object": ("fatal", "a message is not an object", "messages must be {role, content} objects"),
    "unknown_role": ("fatal", "a role that the tags do not declare (KeyError in LLaMA-Factory)",
                     "use only the declared role tags, or fix 'tags'"),
    "function_json": ("fatal", "a function_call message is not JSON (LLaMA-Factory's templates parse it)",
                      "write tool calls as JSON: {\"name\": ..., \"arguments\": {...}}"),
    "field_type_crash": ("fatal", "instruction/input/text is not a string (LLaMA-Factory's join fails)",
                         "make it a string"),
    "kto_neighbour": ("fatal", "a dropped KTO row sits before a kept one; LLaMA-Factory builds its KL pairs from the "
                      "previous row and crashes (IndexError)", "fix or remove the dropped rows"),
    # row level: drops
    "role_order": ("drop", "roles do not alternate user/assistant after an optional leading system turn",
                   "reorder or merge turns"),
    "message_count": ("drop", "wrong number of turns (SFT needs an even count ending on the assistant; ranking an "
                      "odd count ending on the user)", "add or remove the last turn"),
    "empty_conversation": ("drop", "no turns to train on", "add user and assistant turns"),
    "missing_response": ("drop", "no response: the output/answer field is missing or null", "add the response"),
    "response_not_string": ("drop", "the response is not a string", "make it a string"),
    "ranking_shape": ("drop", "chosen/rejected missing or of the wrong type (alpaca: strings; sharegpt/openai: "
                      "one message object each)", "fix chosen and rejected"),
    "kto_tag_type": ("drop", "kto_tag is not a JSON boolean (\"true\" is a string)", "write true or false"),
    # warnings: kept by LLaMA-Factory, but bugs
    "empty_text": ("warn", "an empty prompt or response (LLaMA-Factory trains on it)", "fill it in or drop the row"),
    "chosen_equals_rejected": ("warn", "chosen == rejected: a pair with no preference signal",
                               "drop the pair or pick another rejected answer"),
    "chosen_role": ("warn", "chosen/rejected is not an assistant message (LLaMA-Factory logs it and keeps the row)",
                    "give chosen and rejected the assistant role"),
    "duplicate_row": ("warn", "an exact duplicate of an earlier row", "deduplicate (dsforge convert does)"),
    "media_count": ("warn", "the number of <image>/<video>/<audio> placeholders differs from the media list",
                    "one placeholder per media file"),
    "response_truncated": ("warn", "the response would be cut by cutoff_len", "shorten it or raise cutoff_len"),
    "prompt_too_long": ("warn", "the prompt is cut by cutoff_len (LLaMA-Factory keeps its beginning, so the end "
                        "of the prompt, usually the question, is lost)", "shorten the prompt or raise cutoff_len"),
    "no_pt_blocks": ("fatal", "packing would yield no cutoff_len block ('Cannot find sufficient samples')",
                     "add text or lower cutoff_len"),
    # LLaMA-Factory raises while loading or encoding (audit of 0.9.5's loader, converter, formatter, mm_plugin)
    "tools_json": ("fatal", "a tools value is not JSON; LLaMA-Factory raises 'Invalid JSON format in tool "
                   "description' and trains nothing", "make tools a JSON array string, or \"\" / \"[]\" when the "
                   "row has no tools"),
    "tools_shape": ("fatal", "a tools list the template's tool formatter cannot read (it raises while encoding)",
                    "make tools a JSON array of {\"name\", \"description\", \"parameters\": {\"type\": "
                    "\"object\", \"properties\": {...}}}"),
    "unknown_split": ("fatal", "split names a split the data does not have (a local file has only 'train'); "
                      "datasets raises 'Unknown split'", "remove split (or use train, or a slice such as "
                      "train[:100]); register held-out data as its own dataset and pass it as eval_dataset"),
    "bad_num_samples": ("fatal", "num_samples is not a positive integer (LLaMA-Factory fails while sampling)",
                        "write a positive integer, or remove num_samples"),
    "media_missing": ("fatal", "a media file exists neither under media_dir (default: dataset_dir) nor relative "
                      "to the working directory; LLaMA-Factory raises FileNotFoundError",
                      "write media paths relative to dataset_dir (or set media_dir), or use absolute paths"),
    "media_unsupported": ("fatal", "the row has images/videos/audios but the template has no token for them "
                          "('This model does not support image input')",
                          "train with the model's multimodal template (--template NAME), or drop the media column"),
    "media_count_crash": ("fatal", "the number of <image>/<video>/<audio> placeholders differs from the media list "
                          "under a multimodal template (ValueError 'The number of images does not match')",
                          "one placeholder per media file"),
    "no_valid_rows": ("fatal", "no row would train: LLaMA-Factory stops with 'Cannot find valid samples'",
                      "fix the reasons listed for the dropped rows"),
    "kto_tag_unmapped": ("drop", "stage kto, but the entry maps no kto_tag column: each row is read as a plain "
                         "SFT example and dropped", "map the boolean field: \"columns\": {\"kto_tag\": FIELD}"),
    "pretrain_data": ("drop", "text-only (pretraining) row in a supervised stage: there is no response to train on",
                      "this is pretraining data: use stage pt (or build prompt/response pairs)"),
    # silent changes: LLaMA-Factory keeps the row but trains something else than the file says
    "pt_drops_turns": ("warn", "a conversation under stage pt: LLaMA-Factory trains only the first message's text "
                       "of each row, never the answers", "use stage sft for conversations, or dsforge convert --to pt "
                       "to make text documents"),
    "tool_calls_text_lost": ("warn", "an assistant message has text and tool_calls: LLaMA-Factory replaces the "
                             "text by the tool calls, so the text is never trained",
                             "move the text into its own assistant turn, or drop it"),
    "tool_args_double_encoded": ("warn", "tool_calls arguments is a JSON string: LLaMA-Factory JSON-encodes it "
                                 "again, so the model learns a quoted string instead of an object",
                                 "store arguments as a JSON object"),
    "tool_response_dropped": ("warn", "tool messages after the last assistant turn are dropped by LLaMA-Factory's "
                              "openai converter", "end the conversation on an assistant turn"),
    "system_column_ignored": ("warn", "a leading system message wins: the system column of this row is ignored",
                              "keep the system prompt in one place"),
    "num_samples_resample": ("warn", "num_samples makes LLaMA-Factory train a random draw of rows instead of the "
                             "file (repeats when num_samples exceeds the rows)",
                             "remove num_samples to train every row once"),
    "split_slice": ("warn", "split selects only part of the file", "remove split to train every row"),
    "ignored_entry_key": ("warn", "this entry key has no effect for a local file (LLaMA-Factory ignores it)",
                          "remove it, or point file_name at the folder/file you mean"),
    "openai_thinking_off": ("warn", "formatting openai without tools: LLaMA-Factory appends 'detailed thinking off' "
                            "to the system prompt of this row", "use formatting sharegpt with explicit tags (dsforge "
                            "convert --format sharegpt), or accept the added line"),
    # preference pairs (dsforge.pairchecks): LLaMA-Factory trains these rows, but they carry no or a wrong signal
    "pair_identical_after_cutoff": ("warn", "chosen and rejected are the same tokens once cut to cutoff_len (both "
                                    "answers get the longer one's budget): zero gradient, the loss sits at ln 2",
                                    "raise cutoff_len, shorten the prompt, or drop the pair (dsforge pairs "
                                    "--tokenizer ... --cutoff-len N drops them)"),
    "pair_response_emptied": ("warn", "truncation to cutoff_len leaves an answer with no token",
                              "raise cutoff_len or shorten the prompt"),
    "pair_prompt_no_room": ("warn", "the prompt alone fills cutoff_len: its end is cut and no room is left for "
                            "the answers", "raise cutoff_len or shorten the prompt"),
    "pair_think_one_side": ("warn", "a <think> block in one answer only: DPO learns to add/remove thinking",
                            "give both answers the same thinking format (strip or keep <think> on both)"),
    "pair_think_empty_vs_full": ("warn", "an empty <think></think> on one side, a filled one on the other",
                                 "make both answers think, or strip empty <think> blocks from both"),
    "pair_stop_one_side": ("warn", "a trailing stop/EOS string (</s>, <|im_end|>, <|endoftext|>, <|eot_id|>, ...) "
                           "on one side only: DPO learns to emit it", "strip stop strings from the answers"),
    "pair_fence_one_side": ("warn", "a markdown code fence on one side only", "check that the pair differs in "
                            "content, not only in formatting"),
    "pair_near_identical": ("warn", "chosen and rejected are near-identical (edit-distance similarity at or above "
                            "the threshold): little signal", "drop them: dsforge pairs --max-similarity"),
    "pair_length_bias": ("warn", "chosen is the longer answer in most pairs: DPO will learn length",
                         "dsforge pairs --max-length-ratio or --length-tiered"),
    "media_cwd": ("warn", "a media path is not under media_dir; it only resolves relative to the directory "
                  "LLaMA-Factory is started from", "write media paths relative to dataset_dir, or absolute"),
}

KTO_BATCH = 1000  # LLaMA-Factory's preprocessing_batch_size default: KL partners are taken within a batch
_KIND = {str: "string", bool: "bool", int: "number", float: "number", dict: "object", list: "array",
         type(None): None}
NO_TEMPLATE = ("auto", "chat", "none")
_TEMPLATES: dict | None = None


def lf_templates() -> dict:
    """LLaMA-Factory 0.9.5's templates as {name: {mm_plugin, image_token, video_token, audio_token, tool_format,
    thought_words, tool_call_words, reasoning, efficient_eos}} (made by scripts/gen_lf_templates.py)."""
    global _TEMPLATES
    if _TEMPLATES is None:
        _TEMPLATES = json.loads((Path(__file__).parent / "data" / "lf_templates.json").read_text())
    return _TEMPLATES


def resolve_template(name: str | None) -> tuple[str, dict]:
    """(label, properties) of the template that template-dependent rules are evaluated under.

    None, 'auto', 'chat' and 'none' name no LLaMA-Factory template: LLaMA-Factory then parses the
    tokenizer's chat template into a text-only template whose data rules are those of 'default'.
    Raises UsageError for a name LLaMA-Factory 0.9.5 does not know.
    """
    table = lf_templates()
    if name is None or name in NO_TEMPLATE:
        return ("default (no --template given: LLaMA-Factory's text-only rules, as for a tokenizer's own chat "
                "template)", table["default"])
    if name not in table:
        s = suggest(name, table)
        raise UsageError(f"unknown template '{name}'" + (f"; did you mean '{s}'?" if s else ""),
                         "pass the `template:` of your LLaMA-Factory run (e.g. qwen2_vl, llava, llama3, default)")
    return name, table[name]


@dataclass
class Finding:
    code: str
    path: str
    line: int | None = None
    field: str | None = None
    detail: str = ""

    @property
    def severity(self) -> str:
        return REASONS[self.code][0]

    def render(self) -> str:
        where = self.path + (f":{self.line}" if self.line else "")
        what = REASONS[self.code][1]
        fld = f" [{self.field}]" if self.field else ""
        return f"{where}{fld}: {self.detail or what}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["severity"] = self.severity
        return d


@dataclass
class Report:
    name: str
    stage: str
    entry: dict
    files: list[str]
    inferred: str | None = None
    rows: int = 0
    kept: int = 0
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[Finding]] = field(default_factory=dict)
    lengths: dict | None = None
    max_examples: int = 5
    template: str | None = None  # the LLaMA-Factory template the template-dependent rules assumed
    notes: list[str] = field(default_factory=list)  # what entry keys such as num_samples/split do to the rows
    pairs: dict | None = None  # ranking files: similarity, length bias, truncation checks (dsforge.pairchecks)

    def add(self, f: Finding) -> None:
        self.counts[f.code] += 1
        ex = self.examples.setdefault(f.code, [])
        if len(ex) < self.max_examples:
            ex.append(f)

    @property
    def fatal(self) -> bool:
        return any(REASONS[c][0] == "fatal" for c in self.counts)

    @property
    def would_train(self) -> int:
        return 0 if self.fatal else self.kept

    @property
    def dropped(self) -> int:
        return sum(n for c, n in self.counts.items() if REASONS[c][0] == "drop")

    @property
    def warnings(self) -> int:
        return sum(n for c, n in self.counts.items() if REASONS[c][0] == "warn")

    @property
    def ok(self) -> bool:
        return not self.fatal and self.dropped == 0 and self.kept > 0

    def to_dict(self) -> dict:
        return {
            "name": self.name, "stage": self.stage, "files": self.files, "entry": self.entry,
            "inferred": self.inferred, "rows": self.rows, "would_train": self.would_train,
            "fatal": self.fatal, "dropped": self.dropped, "warnings": self.warnings,
            "counts": {c: {"n": n, "severity": REASONS[c][0], "reason": REASONS[c][1], "hint": REASONS[c][2]}
                       for c, n in sorted(self.counts.items())},
            "examples": {c: [f.to_dict() for f in fs] for c, fs in self.examples.items()},
            "lengths": self.lengths, "template": self.template, "notes": self.notes,
            "pairs": self.pairs,
        }


# ---------------------------------------------------------------- dataset_info entry checks


def suggest(word: str, options: Iterable[str]) -> str | None:
    m = difflib.get_close_matches(word, list(options), n=1, cutoff=0.5)
    return m[0] if m else None


def check_entry(entry: object, stage: str | None, where: str) -> list[Finding]:
    """Checks on one dataset_info.json entry: keys, formatting, ranking vs stage, columns, tags."""
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


# ---------------------------------------------------------------- the row mirror


class _Missing(Exception):
    pass


class RowChecker:
    """Mirror of LLaMA-Factory's converter + processor + encoder for one dataset."""

    def __init__(self, attrs: LFAttrs, stage: str, report: Report, *, template: dict | None = None,
                 media_dir: str | None = None):
        self.a = attrs
        self.tmpl = template or lf_templates()["default"]
        self.media_dir = media_dir  # LLaMA-Factory's media_dir (default dataset_dir); None: not a local file
        self.repeat = False  # the row is a num_samples repeat (not a duplicate in the file)
        self.stage = "rm" if stage == "dpo" else stage
        self.report = report
        self.absent: dict[str, tuple[str, int]] = {}  # columns read but missing in a row -> first place
        self.present: set[str] = set()
        self.kinds: dict[str, tuple[str, str, int]] = {}  # field -> (kind, path, line)
        self.msg_keys: set[str] = set()
        self.sigs: set = set()
        self.seen: set[int] = set()
        self.kto_batch: list[tuple[bool, bool, str, int]] = []  # (kept, kl_ok, path, line)
        self.on_kept = None  # optional callback(row, prompt, response, path, line), e.g. the length audit
        a = attrs
        self.tag_mapping = {a.user_tag: "user", a.assistant_tag: "assistant", a.observation_tag: "observation",
                            a.function_tag: "function", a.system_tag: "system"}
        self.accept = ((a.user_tag, a.observation_tag), (a.assistant_tag, a.function_tag))
        convert = {"alpaca": self._alpaca, "sharegpt": self._sharegpt, "openai": self._openai}
        self.convert = convert.get(a.formatting, self._alpaca)

    # -- helpers
    def get(self, row: dict, col: str | None, path: str, line: int):
        """example[col] as datasets gives it: None when absent from this row, KeyError if from every row."""
        if col in row:
            return row[col]
        if col not in self.absent:
            self.absent[str(col)] = (path, line)
        return None

    def flag(self, code: str, path: str, line: int, fld: str | None = None, detail: str = "") -> None:
        self.report.add(Finding(code, path, line, fld, detail))

    def track_types(self, row: dict, path: str, line: int) -> None:
        sig = (tuple(row), tuple(map(type, row.values())))
        if sig in self.sigs:
            return
        self.sigs.add(sig)
        self.present.update(row)
        for k, v in row.items():
            self._kind(k, v, path, line)
            if type(v) is list and v:
                first = v[0]
                self._kind(k + "[]", first, path, line)
                if type(first) is dict:
                    for sk, sv in first.items():
                        self._kind(f"{k}[].{sk}", sv, path, line)
            elif type(v) is dict:
                for sk, sv in v.items():
                    self._kind(f"{k}.{sk}", sv, path, line)

    def _kind(self, fld: str, value, path: str, line: int) -> None:
        kd = _KIND.get(type(value), "other")
        if kd is None:
            return
        prev = self.kinds.get(fld)
        if prev is None:
            self.kinds[fld] = (kd, path, line)
        elif prev[0] != kd:
            self.flag("type_conflict", path, line, fld,
                      f"'{fld}' is {kd} here but {prev[0]} at {prev[1]}:{prev[2]}; Arrow cannot load the file")
            self.kinds[fld] = (kd, path, line)

    # -- converters (return prompt, response as lists of (role, content))
    def _alpaca(self, row: dict, path: str, line: int):
        a, get = self.a, self.get
        prompt: list = []
        if a.history:
            hist = get(row, a.history, path, line)
            if isinstance(hist, list):
                for item in hist:
                    if not (isinstance(item, (list, tuple, str)) and len(item) == 2):
                        self.flag("history_shape", path, line, a.history, f"history item {json.dumps(item)[:60]} "
                                  "is not an [instruction, response] pair; LLaMA-Factory raises ValueError")
                        return None
                    prompt.append(("user", item[0]))
                    prompt.append(("assistant", item[1]))
        query = []
        if a.prompt:
            v = get(row, a.prompt, path, line)
            if v:
                query.append(v)
        if a.query:
            v = get(row, a.query, path, line)
            if v:
                query.append(v)
        for q in query:
            if not isinstance(q, str):
                self.flag("field_type_crash", path, line, a.prompt, f"'{a.prompt}'/'{a.query}' holds "
                          f"{type(q).__name__} {json.dumps(q)[:40]}; LLaMA-Factory's join raises TypeError")
                return None
        prompt.append(("user", "\n".join(query)))
        why = None
        kto = get(row, a.kto_tag, path, line) if a.kto_tag else None
        if a.kto_tag and isinstance(kto, bool):
            resp = ("assistant", get(row, a.response, path, line))
            response = [resp, ("assistant", "")] if kto else [("assistant", ""), resp]
        elif a.ranking and isinstance(c := get(row, a.chosen, path, line), str) and isinstance(
                r := get(row, a.rejected, path, line), str):
            response = [("assistant", c), ("assistant", r)]
        else:
            out = get(row, a.response, path, line) if a.response else None
            if a.response and isinstance(out, str):
                response = [("assistant", out)]
            else:
                response = []
                if a.ranking:
                    why = ("ranking_shape", a.chosen, "chosen/rejected must both be strings in alpaca ranking rows")
                elif a.kto_tag and kto is not None:
                    why = ("kto_tag_type", a.kto_tag, f"kto_tag is {json.dumps(kto)} ({type(kto).__name__}), not a boolean")
                elif not a.response and (a.chosen or a.rejected):   # ranking columns, but ranking is not true
                    why = ("missing_response", a.chosen or a.rejected, "the entry maps chosen/rejected but not "
                           "\"ranking\": true, so LLaMA-Factory reads no response")
                elif not a.response and a.prompt and self.stage != "ppo":
                    why = ("pretrain_data", a.prompt, f"this is pretraining data (only '{a.prompt}', no response "
                           f"column): use stage pt, not {self.stage}")
                elif out is None:
                    why = ("missing_response", a.response, None)
                else:
                    why = ("response_not_string", a.response, f"'{a.response}' is {type(out).__name__}, not a string")
        return prompt, response, why

    def _messages(self, row: dict, path: str, line: int):
        a = self.a
        msgs = self.get(row, a.messages, path, line)
        if not isinstance(msgs, list):
            if a.messages in self.present or a.messages not in self.absent:
                self.flag("messages_not_list", path, line, a.messages,
                          f"'{a.messages}' is {type(msgs).__name__ if msgs is not None else 'missing'}, not a list")
            return None
        for m in msgs:
            if not isinstance(m, dict):
                self.flag("message_not_object", path, line, a.messages)
                return None
            self.msg_keys.update(m)
        return msgs

    def _sharegpt(self, row: dict, path: str, line: int):
        a = self.a
        msgs = self._messages(row, path, line)
        if msgs is None:
            return None
        rt, ct = a.role_tag, a.content_tag
        if a.system_tag and msgs and msgs[0].get(rt) == a.system_tag:
            msgs = msgs[1:]
            self._system_both(row, path, line)
        elif a.system:
            self.get(row, a.system, path, line)
        aligned = []
        why = None
        for i, m in enumerate(msgs):
            role = m.get(rt)
            if role not in self.accept[i % 2]:
                why = ("role_order", a.messages, f"turn {i + 1} has role {json.dumps(role)}, expected one of "
                       f"{[t for t in self.accept[i % 2] if t]}")
                break
            aligned.append((self.tag_mapping[role], m.get(ct)))
        return self._finish_messages(row, path, line, msgs, aligned, why)

    def _openai(self, row: dict, path: str, line: int):
        a = self.a
        msgs = self._messages(row, path, line)
        if msgs is None:
            return None
        rt, ct = a.role_tag, a.content_tag
        system = None
        if a.system_tag and msgs and msgs[0].get(rt) == a.system_tag:
            system = msgs[0].get(ct)
            msgs = msgs[1:]
            self._system_both(row, path, line)
        elif a.system:
            system = row.get(a.system)
        tools = row.get(a.tools) if a.tools else None
        if not tools and not (isinstance(system, str) and ("detailed thinking on" in system or
                                                           "detailed thinking off" in system)):
            self.flag("openai_thinking_off", path, line, a.messages)
        aligned, tool_responses = [], []
        for m in msgs:
            role, content = m.get(rt), m.get(ct)
            if role in (a.assistant_tag, a.function_tag) and m.get("tool_calls"):
                calls = m["tool_calls"] if isinstance(m["tool_calls"], list) else [m["tool_calls"]]
                self._tool_calls_mangled(calls, content, path, line)
                content = json.dumps([t.get("function") if isinstance(t, dict) else None for t in calls],
                                     ensure_ascii=False)
                role = a.function_tag
            if role == a.observation_tag:
                if not isinstance(content, str):
                    self.flag("content_not_string", path, line, a.messages, f"a tool message is "
                              f"{json.dumps(content)[:40]}, not a string; LLaMA-Factory's openai converter raises "
                              "TypeError")
                    return None
                tool_responses.append(content)
                continue
            if tool_responses:
                aligned.append(("observation", "\n</tool_response>\n<tool_response>\n".join(tool_responses)))
                tool_responses = []
            if role not in self.tag_mapping:
                self.flag("unknown_role", path, line, a.messages, f"role {json.dumps(role)} is not one of the "
                          f"declared tags {[t for t in self.tag_mapping if t]}")
                return None
            aligned.append((self.tag_mapping[role], content))
        if tool_responses:
            self.flag("tool_response_dropped", path, line, a.messages, f"{len(tool_responses)} tool message(s) "
                      "after the last assistant turn are dropped")
        why = None
        accept = (("user", "observation"), ("assistant", "function"))
        for i, (role, _) in enumerate(aligned):
            if role not in accept[i % 2]:
                why = ("role_order", a.messages, f"turn {i + 1} has role {role}, expected one of {list(accept[i % 2])}")
                break
        return self._finish_messages(row, path, line, msgs, aligned, why)

    def _finish_messages(self, row, path, line, msgs, aligned, why):
        a = self.a
        ranking = bool(a.ranking)
        if why is None and ((not ranking and len(aligned) % 2 != 0) or (ranking and len(aligned) % 2 == 0)):
            n = len(aligned)
            why = ("message_count", a.messages, f"{n} turns after the system turn; "
                   + ("ranking needs an odd count ending on the user turn" if ranking else
                      "SFT needs an even count ending on the assistant turn"))
        if why is not None:
            return [], [], why
        kto = self.get(row, a.kto_tag, path, line) if a.kto_tag else None
        if a.kto_tag and isinstance(kto, bool):
            resp = aligned[-1:]
            response = resp + [("assistant", "")] if kto else [("assistant", "")] + resp
            return aligned[:-1], response, None
        if ranking:
            c = self.get(row, a.chosen, path, line)
            r = self.get(row, a.rejected, path, line)
            if isinstance(c, dict) and isinstance(r, dict):
                response = []
                for name, m in ((a.chosen, c), (a.rejected, r)):
                    role = m.get(a.role_tag)
                    if role not in self.accept[1]:
                        self.flag("chosen_role", path, line, name, f"'{name}' has role {json.dumps(role)}")
                    if role not in self.tag_mapping:
                        self.flag("unknown_role", path, line, name, f"'{name}' has role {json.dumps(role)}, which "
                                  "no tag declares (KeyError in LLaMA-Factory)")
                        return None
                    response.append((self.tag_mapping[role], m.get(a.content_tag)))
                return aligned, response, None
            return aligned[:-1], aligned[-1:], ("ranking_shape", a.chosen,
                                                "chosen/rejected must each be one message object")
        if not aligned:
            return [], [], ("empty_conversation", a.messages, None)
        why = None
        if a.kto_tag and kto is not None:
            why = ("kto_tag_type", a.kto_tag, f"kto_tag is {json.dumps(kto)} ({type(kto).__name__}), not a boolean")
        return aligned[:-1], aligned[-1:], why

    def _system_both(self, row: dict, path: str, line: int) -> None:
        if self.a.system and row.get(self.a.system):
            self.flag("system_column_ignored", path, line, self.a.system, f"the first message is a system turn, so "
                      f"'{self.a.system}' ({str(row[self.a.system])[:30]!r}) is ignored")

    def _tool_calls_mangled(self, calls: list, content, path: str, line: int) -> None:
        """Name the text the openai converter silently drops beside tool_calls (string arguments are named where
        the function turn is encoded, for every format)."""
        fld = self.a.messages
        if isinstance(content, str) and content.strip():
            self.flag("tool_calls_text_lost", path, line, fld, f"the assistant text {content[:40]!r} is replaced by "
                      f"the JSON of its {len(calls)} tool call(s) and never trained")

    def _kto_unmapped(self) -> str:
        bools = [k for k, v in self.kinds.items() if v[0] == "bool" and "." not in k and "[" not in k]
        if bools:
            return (f"the entry maps no kto_tag column, but the rows hold the boolean '{bools[0]}': map it: "
                    f"columns.kto_tag = {bools[0]}")
        return "the entry maps no kto_tag column: add \"kto_tag\": FIELD to columns (FIELD holds true/false)"

    def _tools_problem(self, row: dict) -> tuple[str, str] | None:
        """Mirror of ToolFormatter.apply under the template's tool format: (code, detail) when it raises."""
        a = self.a
        if not a.tools:
            return None
        tools = row.get(a.tools)
        if a.formatting == "openai" and isinstance(tools, (dict, list)):
            tools = json.dumps(tools, ensure_ascii=False)
        if not tools:
            return None
        if not isinstance(tools, str):
            return "tools_json", f"'{a.tools}' is {type(tools).__name__}, not a JSON string"
        try:
            parsed = json.loads(tools)
        except ValueError:
            return "tools_json", (f"'{a.tools}' is {tools[:40]!r}, not JSON: LLaMA-Factory raises 'Invalid JSON format "
                                  "in tool description' and the whole dataset fails")
        if not isinstance(parsed, (list, dict, str)):
            return "tools_shape", f"'{a.tools}' is the JSON {type(parsed).__name__} {tools[:30]!r}, not a list"
        fmt = self.tmpl["tool_format"]
        if not parsed or fmt == "seed_oss":
            return None
        for tool in (parsed if isinstance(parsed, list) else list(parsed)):
            if not isinstance(tool, dict):
                return "tools_shape", f"tool {json.dumps(tool)[:40]} is not an object"
            fn = tool.get("function", "") if tool.get("type") == "function" else tool
            need = ("name", "parameters.properties") if fmt == "default" else ("name",) if fmt == "glm4" else ()
            props = fn.get("parameters", {}).get("properties") if isinstance(fn, dict) and isinstance(
                fn.get("parameters"), dict) else None
            if need and not (isinstance(fn, dict) and "name" in fn):
                return "tools_shape", f"tool {json.dumps(tool)[:50]} has no 'name' (tool format {fmt})"
            if "parameters.properties" in need and not (isinstance(props, dict) and all(
                    isinstance(v, dict) for v in props.values())):
                return "tools_shape", (f"tool '{fn.get('name')}' has no parameters.properties object (tool format "
                                       f"{fmt} reads it)")
        return None

    def _function_problem(self, content: str) -> str | None:
        """Mirror of FunctionFormatter.apply: why a function/tool-call message makes LLaMA-Factory raise.
        Sets self.string_args to the name of a call whose arguments is a string (trained JSON-encoded twice)."""
        self.string_args = None
        t = self.tmpl
        tcw, thw = t["tool_call_words"], t["thought_words"]
        m = re.search(re.escape(tcw[0]) + "(.*?)" + re.escape(tcw[1]), content, re.S) if len(tcw) == 2 else None
        if m is not None:
            part = m.group(1)
        else:
            th = re.search(re.escape(thw[0]) + "(.*?)" + re.escape(thw[1]), content, re.S) if len(thw) == 2 else None
            part = content.replace(th.group(0), "") if th else content
        try:
            calls = json.loads(part)
        except ValueError:
            return f"function_call content {content[:40]!r} is not JSON (after the template's thought/tool-call markers)"
        for tc in calls if isinstance(calls, list) else [calls]:
            if not (isinstance(tc, dict) and "name" in tc and "arguments" in tc):
                return f"tool call {json.dumps(tc)[:50]} needs \"name\" and \"arguments\" (LLaMA-Factory raises)"
            if isinstance(tc["arguments"], str) and self.string_args is None:
                self.string_args = (tc["name"], tc["arguments"])
        return None

    def _media_problem(self, row: dict, msgs: list, path: str, line: int) -> bool:
        """Mirror of the template's mm_plugin on one kept row; True when LLaMA-Factory would raise."""
        a, t = self.a, self.tmpl
        for col, kind, ph in ((a.images, "image", "<image>"), (a.videos, "video", "<video>"),
                              (a.audios, "audio", "<audio>")):
            if not col:
                continue
            media = row.get(col)
            items = [] if media is None else media if isinstance(media, list) else [media]
            # LLaMA-Factory's converter looks media up under media_dir before any template rule, whatever
            # the template (it warns, then the run fails opening the path): reported beside the template's verdict
            missing = False
            for item in items:
                for m in item if isinstance(item, list) else [item]:
                    missing = self._media_missing(m, col, path, line) or missing
            if items and t[f"{kind}_token"] is None:
                self.flag("media_unsupported", path, line, col, f"{len(items)} {kind}(s), but template "
                          f"{self.report.template} has no {kind} token: LLaMA-Factory raises 'This model does not "
                          f"support {kind} input'")
                return True
            if t["mm_plugin"] != "BasePlugin":
                n_ph = sum(c.count(ph) for _, c in msgs if isinstance(c, str))
                if n_ph != len(items):
                    self.flag("media_count_crash", path, line, col, f"{n_ph} {ph} placeholder(s) but {len(items)} "
                              f"file(s); template {self.report.template} raises ValueError")
                    return True
            if missing:
                return True
        return False

    def _media_missing(self, m, col: str, path: str, line: int) -> bool:
        if not isinstance(m, str) or self.media_dir is None:
            return False
        if os.path.isfile(os.path.join(self.media_dir, m)):
            return False
        if os.path.isfile(m):
            self.flag("media_cwd", path, line, col, f"{m!r} is not under media_dir {self.media_dir}; it resolves "
                      f"only from the current directory {os.getcwd()}")
            return False
        near = os.path.join(os.path.dirname(path), m)
        hint = ""
        if os.path.isfile(near):
            rel = os.path.relpath(near, self.media_dir)
            hint = f"; it exists at {near}: write it as {rel!r} (relative to media_dir)"
        self.flag("media_missing", path, line, col, f"{m!r} is not a file under media_dir {self.media_dir}" + hint)
        return True

    # -- one row
    def check(self, row, line: int, path: str, key: int | None = None, *, repeat: bool = False) -> None:
        """Mirror LLaMA-Factory on one row; `key` identifies the raw row for duplicate detection; `repeat` marks a
        row that num_samples draws again (not a duplicate in the file)."""
        rep = self.report
        rep.rows += 1
        self.key = key
        self.repeat = repeat
        if type(row) is not dict:
            self.flag("row_not_object", path, line, detail=f"row is {type(row).__name__}, not an object")
            return
        self.track_types(row, path, line)
        res = self.convert(row, path, line)
        if res is None:  # a crash was flagged
            self._kto_push(False, False, path, line)
            return
        prompt, response, why = res
        # columns the converters read for every row (openai reads system/tools with .get: no KeyError)
        a = self.a
        read = [a.images, a.videos, a.audios]
        if a.formatting != "openai":
            read.append(a.tools)
        if a.formatting == "alpaca":
            read.append(a.system)
        for col in read:
            if col:
                self.get(row, col, path, line)
        stage = self.stage
        if stage == "pt":
            if not prompt:
                self.flag("empty_conversation", path, line)
                return
            if not isinstance(prompt[0][1], str):
                self.flag("field_type_crash", path, line, self.a.prompt)
                return
            rep.kept += 1
            if self.on_kept:
                self.on_kept(row, prompt, response, path, line)
            self._warn_row(row, prompt, response, path, line)
            lost = len(prompt) - 1 + sum(1 for _, c in response if c)
            if lost:   # LLaMA-Factory's pretrain processor reads only _prompt[0]'s content
                self.flag("pt_drops_turns", path, line, None, f"stage pt trains only {prompt[0][1][:40]!r}; the "
                          f"other {lost} message(s) of this row (the answers) are never trained")
            return
        if stage == "sft":
            keep = len(prompt) % 2 == 1 and len(response) == 1
        elif stage in ("rm", "kto"):
            keep = len(prompt) % 2 == 1 and len(response) >= 2
        else:  # ppo
            keep = len(prompt) % 2 == 1
        if stage == "kto":
            self._kto_push(keep, _kl_ok(response), path, line)
        if not keep:
            if why is None and stage == "kto" and not self.a.kto_tag:
                why = ("kto_tag_unmapped", None, self._kto_unmapped())
            if why is None:
                if stage == "sft" and len(response) >= 2:
                    why = ("message_count", None, "a ranking/KTO row in an SFT dataset")
                elif stage in ("rm", "kto"):
                    why = ("ranking_shape", None, "no chosen/rejected pair") if stage == "rm" else \
                        ("kto_tag_type", self.a.kto_tag, "no boolean kto_tag")
                else:
                    why = ("message_count", None, None)
            code, fld, detail = why
            self.flag(code, path, line, fld, detail or "")
            return
        # encoding: every message the template formats must be a string
        if stage == "kto":
            enc = prompt + [response[0] if response[0][1] else response[1]]
        elif stage == "ppo":
            enc = prompt
        else:
            enc = prompt + response
        for role, content in enc:
            if not isinstance(content, str):
                self.flag("content_not_string", path, line, self.a.messages if self.a.formatting != "alpaca" else None,
                          f"the {role} message is {json.dumps(content)[:40]}, not a string; LLaMA-Factory raises "
                          "'Expected a string'")
                return
            if role == "function" and (problem := self._function_problem(content)):
                self.flag("function_json", path, line, detail=problem + f" (template {rep.template})")
                return
            if role == "function" and self.string_args:
                name, args = self.string_args
                self.flag("tool_args_double_encoded", path, line, self.a.messages, f"arguments of '{name}' is the "
                          f"string {args[:40]!r}; LLaMA-Factory trains it JSON-encoded a second time")
        if (tools_problem := self._tools_problem(row)) is not None:
            self.flag(tools_problem[0], path, line, self.a.tools, tools_problem[1])
            return
        if self._media_problem(row, prompt + response, path, line):
            return
        rep.kept += 1
        if self.on_kept:
            self.on_kept(row, prompt, response, path, line)
        self._warn_row(row, prompt, response, path, line)

    def _warn_row(self, row, prompt, response, path, line) -> None:
        key = self.key if self.key is not None else hash(repr(row))
        if self.repeat:
            pass
        elif key in self.seen:
            self.flag("duplicate_row", path, line)
        else:
            self.seen.add(key)
        if self.stage != "pt":
            if not prompt[-1][1] or any(not c for _, c in response[:1]) or (self.stage == "rm" and not response[1][1]):
                if self.stage != "kto":
                    self.flag("empty_text", path, line)
            if self.stage == "rm" and response[0][1] == response[1][1]:
                self.flag("chosen_equals_rejected", path, line)
        a = self.a
        for col, ph in ((a.images, "<image>"), (a.videos, "<video>"), (a.audios, "<audio>")):
            if col and col in row and self.tmpl["mm_plugin"] == "BasePlugin":
                media = row[col] or []
                n_media = len(media) if isinstance(media, list) else 1
                n_ph = sum(str(c).count(ph) for _, c in prompt + response)
                if n_ph != n_media:
                    self.flag("media_count", path, line, col, f"{n_ph} {ph} placeholder(s) but {n_media} file(s)")

    def _kto_push(self, kept: bool, kl_ok: bool, path: str, line: int) -> None:
        if self.stage != "kto":
            return
        self.kto_batch.append((kept, kl_ok, path, line))
        if len(self.kto_batch) == KTO_BATCH:
            self.flush_kto()

    def flush_kto(self) -> None:
        b = self.kto_batch
        for i, (kept, _, path, line) in enumerate(b):
            partner = b[i - 1]  # LLaMA-Factory: kl_response = [resp[-1]] + resp[:-1]
            if kept and not partner[1]:
                self.flag("kto_neighbour", path, line, detail=f"kept row whose KL partner {partner[2]}:{partner[3]} "
                          "has no usable answer; LLaMA-Factory raises IndexError")
                break
        self.kto_batch = []

    def finish(self, files: list[str]) -> None:
        if self.stage == "kto":
            self.flush_kto()
        for col, (path, line) in self.absent.items():
            if col not in self.present:
                self.flag("missing_column", path, line, col, f"column '{col}' is in no row (columns present: "
                          f"{sorted(self.present)[:12]}); LLaMA-Factory raises KeyError")
        a = self.a
        if a.formatting != "alpaca" and self.msg_keys:
            for tag in (a.role_tag, a.content_tag):
                if tag not in self.msg_keys:
                    s = suggest(str(tag), self.msg_keys)
                    self.flag("tags_mismatch", files[0], None, "tags", f"messages have no key '{tag}' (keys: "
                              f"{sorted(self.msg_keys)})" + (f"; set the tag to '{s}'" if s else ""))


def _kl_ok(response: list) -> bool:
    if not response:
        return False
    c0 = response[0][1]
    if c0:
        return isinstance(c0, str)
    return len(response) > 1 and isinstance(response[1][1], str)


# ---------------------------------------------------------------- files


def lf_file_order(path: str) -> list[str]:
    """The files LLaMA-Factory reads for file_name `path`, in its order (os.listdir for a directory)."""
    if os.path.isdir(path):
        return [os.path.join(path, n) for n in os.listdir(path)]
    return [path]


def _iter_file(path: str, report: Report) -> Iterator[tuple[int, object]]:
    ext = Path(path).suffix.lower()
    if ext in (".json", ".jsonl"):
        with open(path, "rb") as f:
            head = f.read(3)
        if head == dio.BOM:
            report.add(Finding("bom" if ext == ".json" else "bom_jsonl", path, 1))
        problems: list[dio.SyntaxProblem] = []
        if ext == ".jsonl" or dio._looks_like_jsonl(path):
            reader = dio.iter_jsonl(path, problems, with_key=True)
        else:
            reader = dio.iter_json_file(path, problems)
        for item in reader:
            yield item
            while problems:
                p = problems.pop(0)
                report.add(Finding(p.code, path, p.line, detail=_loc(p)))
        for p in problems:
            report.add(Finding(p.code, path, p.line, detail=_loc(p)))
    elif ext in (".csv", ".parquet", ".arrow"):
        try:
            yield from _iter_table_lf(path)
        except Exception as err:  # noqa: BLE001 - an unreadable table is a finding, not a crash
            report.add(Finding("unreadable", path, detail=f"cannot read {ext[1:]}: {str(err)[:200]}"))
    elif ext == ".txt":
        with open(path, encoding="utf-8", errors="replace") as f:
            for i, text in enumerate(f, 1):
                yield i, {"text": text.rstrip("\n")}
    else:
        report.add(Finding("unsupported_file", path, detail=f"'{ext}' files cannot be loaded by LLaMA-Factory"))


def _loc(p: dio.SyntaxProblem) -> str:
    col = f", column {p.column}" if p.column else ""
    return f"{p.reason} (line {p.line}{col}); {p.hint}"


def _iter_table_lf(path: str):
    """Tables read the way datasets reads them for LLaMA-Factory (pandas chunks for csv, Arrow otherwise)."""
    ext = Path(path).suffix.lower()
    if ext == ".csv":
        import pandas as pd
        import pyarrow as pa

        n = 1
        for df in pd.read_csv(path, chunksize=10_000):
            for row in pa.Table.from_pandas(df, preserve_index=False).to_pylist():
                n += 1
                yield n, row
    else:
        yield from dio.iter_table(path)


def validate_files(files: list[str], entry: dict, stage: str, *, name: str = "(file)",
                   inferred: str | None = None, max_examples: int = 5, display_files: list[str] | None = None,
                   progress=None, template: str | None = None, media_dir: str | None = None,
                   seed: int = 42, pair_checks: dict | None = None) -> Report:
    """Validate the files of one dataset (in LLaMA-Factory's read order) against an entry and a stage.

    `template` is the LLaMA-Factory template of the run (None: its text-only default rules); `media_dir` is
    where LLaMA-Factory resolves media paths (its default is dataset_dir); `seed` is the run's seed, which
    decides the rows a `num_samples` entry draws; `pair_checks` are dsforge.pairchecks.observe_pairs options
    for ranking data (max_similarity, method, warn_above). Raises UsageError for an unknown stage or template.
    """
    if stage not in STAGES:
        raise UsageError(f"unknown stage '{stage}'", f"use one of {', '.join(STAGES)}")
    label, tmpl = resolve_template(template)
    report = Report(name, stage, entry, display_files or files, inferred=inferred, max_examples=max_examples,
                    template=label)
    for f in check_entry(entry, stage, name):
        report.add(f)
    checker = RowChecker(LFAttrs.from_entry(entry), stage, report, template=tmpl, media_dir=media_dir)
    finish_pairs = observe_pairs(checker, report, **(pair_checks or {})) if stage in ("rm", "dpo") else None
    exts = {Path(p).suffix.lower().lstrip(".") for p in files}
    if len(exts) > 1:
        report.add(Finding("mixed_file_types", files[0], detail=f"file types {sorted(exts)} in one dataset"))
    items = ((item, path) for path in files for item in _iter_file(path, report))
    selecting = isinstance(entry, dict) and (entry.get("split", "train") != "train" or "num_samples" in entry)
    order = None
    if selecting:
        items = list(items)
        order = select_rows(entry, len(items), report, name, seed)
        if order is None:  # the selection itself fails in LLaMA-Factory
            report.rows = len(items)
            return report
    pending = 0
    seen: set[int] = set()
    for i in order or ():
        item, path = items[i]
        checker.check(item[1], item[0], path, item[2] if len(item) > 2 else None, repeat=i in seen)
        seen.add(i)
    for item, path in (() if selecting else items):
        checker.check(item[1], item[0], path, item[2] if len(item) > 2 else None)
        pending += 1
        if pending == 4096 and progress is not None:
            progress(pending)
            pending = 0
    if progress is not None and pending:
        progress(pending)
    checker.finish(files)
    if finish_pairs:
        finish_pairs()
    if selecting:
        report.rows = len(items)
    if report.rows == 0 and not report.fatal:
        report.add(Finding("empty_file", files[0] if files else name))
    elif report.kept == 0 and not report.fatal:
        report.add(Finding("no_valid_rows", name, detail=f"none of the {report.rows} rows would train under stage "
                           f"{stage}; LLaMA-Factory stops with 'Cannot find valid samples'"))
    return report


def select_rows(entry: dict, n: int, report: Report, name: str, seed: int = 42) -> list[int] | None:
    """The row indices LLaMA-Factory 0.9.5 loads from a local file of n rows, in order: `split` (datasets'
    split syntax, e.g. train[:100]) then `num_samples` (loader.py: a seeded permutation, topped up by drawing
    with replacement). Adds findings and notes to `report`; None when the selection itself fails."""
    from datasets import ReadInstruction

    split = entry.get("split", "train")
    try:
        spans = ReadInstruction.from_spec(str(split)).to_absolute({"train": n})
    except (ValueError, AssertionError) as err:
        report.add(Finding("unknown_split", name, field="split", detail=f"split {json.dumps(split)}: {err} (a local "
                           "file has only the split 'train')"))
        return None
    idx = [i for sp in spans for i in range(sp.from_, sp.to)]
    if split != "train":
        report.add(Finding("split_slice", name, field="split", detail=f"split {json.dumps(split)} loads {len(idx)} "
                           f"of the {n} rows"))
        report.notes.append(f"split {split}: {len(idx)} of {n} rows")
    k = entry.get("num_samples")
    if k is None:
        return idx
    if type(k) is not int or k <= 0:
        report.add(Finding("bad_num_samples", name, field="num_samples", detail=f"num_samples is {json.dumps(k)}, "
                           "not a positive integer"))
        return None
    import numpy as np

    rng = np.random.RandomState(seed)  # LLaMA-Factory seeds numpy's global generator with the run's seed
    pick = list(rng.permutation(len(idx))[:k])
    if k > len(pick):
        pick += list(rng.choice(len(idx), k - len(pick)))
    repeats = k - len(set(pick))
    what = (f"oversamples: all {len(idx)} rows once plus {repeats} repeats drawn at random" if k > len(idx) else
            f"trains a random {k} of the {len(idx)} rows (seed {seed}; another seed draws other rows, so which bad "
            "rows survive changes from run to run)")
    report.add(Finding("num_samples_resample", name, field="num_samples", detail=f"num_samples {k} {what}"))
    report.notes.append(f"num_samples {k}: {what}")
    return [idx[int(i)] for i in pick]


def _find_files(path: str) -> list[str]:
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file or directory")
    return lf_file_order(path)


def validate_path(path: str, *, stage: str | None = None, entry: dict | None = None, **kw) -> Report:
    """Validate one file (or LLaMA-Factory dataset directory); infer the entry when none is given."""
    files = _find_files(path)
    inferred = None
    if entry is None:
        try:
            inf = infer_path(path)
        except Exception as err:  # noqa: BLE001 - an unreadable file: validate reports why below
            from dsforge.errors import DsforgeError

            if isinstance(err, DsforgeError) and "cannot tell the format" in err.message:
                raise
            inf = None
        if inf is None:
            entry, kind = {"file_name": os.path.basename(path.rstrip("/")), "formatting": "alpaca"}, "sft"
            inferred = "unknown (the file could not be read)"
        else:
            entry, kind = {"file_name": os.path.basename(path.rstrip("/")), **inf.entry}, inf.kind
            inferred = inf.describe()
        if stage is None:  # an explicit stage is validated as asked; the findings say what does not fit
            stage = STAGE_FOR_KIND[kind]
    stage = stage or "sft"
    kw.setdefault("media_dir", os.path.dirname(os.path.abspath(path.rstrip("/"))))  # as if registered beside it
    return validate_files(files, entry, stage, name=kw.pop("name", path), inferred=inferred,
                          display_files=[path] if os.path.isdir(path) else None, **kw)


def infer_path(path: str):
    """Infer kind and dataset_info entry from the first rows of a file or dataset directory."""
    return infer_entry((row for f in lf_file_order(path) for _, row in iter_rows_quietly(f)), path)


def iter_rows_quietly(path: str):
    """Rows of any supported file, skipping syntax problems (validate reports them on its own pass)."""
    ext = Path(path).suffix.lower()
    if ext in (".json", ".jsonl"):
        return dio.iter_json_file(path, problems=[])
    if ext == ".csv":
        return _iter_table_lf(path)
    return dio.iter_records(path)


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


def validate_registered(info_path: str, name: str, stage: str | None = None, **kw) -> Report:
    """Validate dataset `name` of a dataset_info.json exactly as LLaMA-Factory would load it."""
    info = load_dataset_info(info_path)
    dataset_dir = info_path if os.path.isdir(info_path) else os.path.dirname(os.path.abspath(info_path))
    if name not in info:
        s = suggest(name, info)
        raise UsageError(f"no dataset '{name}' in {info_path}" + (f"; did you mean '{s}'?" if s else ""),
                         f"registered names: {', '.join(list(info)[:20])}")
    entry = info[name]
    if stage is None:
        stage = stage_for_entry(entry)
    file_name = entry.get("file_name") if isinstance(entry, dict) else None
    if not file_name:
        report = Report(name, stage, entry if isinstance(entry, dict) else {}, [])
        for f in check_entry(entry, stage, name):
            report.add(f)
        return report
    local = os.path.join(dataset_dir, file_name)
    if not os.path.exists(local):
        report = Report(name, stage, entry, [local])
        for f in check_entry(entry, stage, name):
            report.add(f)
        report.add(Finding("file_missing", local, detail=f"file_name '{file_name}' resolves to {local}, which does "
                           "not exist"))
        return report
    kw.setdefault("media_dir", dataset_dir)
    return validate_files(lf_file_order(local), entry, stage, name=name,
                          display_files=[local] if os.path.isdir(local) else None, **kw)


# ---------------------------------------------------------------- human output


def format_report(r: Report, *, examples: int = 5) -> str:
    """The human summary: verdict first, then counts per reason, then the first offending rows."""
    lines = [f"{r.name}  (stage {r.stage})"]
    if r.inferred:
        lines.append(f"  inferred format: {r.inferred}; entry: {json.dumps(r.entry, ensure_ascii=False)}")
    pct = f" ({100 * r.would_train / r.rows:.1f}%)" if r.rows and r.would_train <= r.rows else ""
    verdict = "OK" if r.ok else ("FAILS" if r.fatal or not r.would_train else "PARTLY USABLE")
    lines.append(f"  {verdict}: LLaMA-Factory would train {r.would_train} of {r.rows} rows{pct}")
    for note in r.notes:
        lines.append(f"  entry: {note}")
    if r.template:
        lines.append(f"  template-dependent rules (media, tools, thought/tool-call markers) assume template {r.template}")
    if r.fatal:
        lines.append("  the whole dataset fails to load in LLaMA-Factory (fatal problems below)")
    for sev, title in (("fatal", "fatal"), ("drop", "dropped rows"), ("warn", "warnings (rows kept)")):
        items = [(c, n) for c, n in r.counts.most_common() if REASONS[c][0] == sev]
        if items:
            lines.append(f"  {title}: " + ", ".join(f"{c} {n}" for c, n in items))
    if r.lengths:
        lines.extend("  " + ln for ln in format_lengths(r.lengths))
    if r.pairs:
        lines.extend("  " + ln for ln in format_pairs(r.pairs))
    shown = 0
    for sev in ("fatal", "drop", "warn"):
        for code, n in r.counts.most_common():
            if REASONS[code][0] != sev or shown >= examples * 3:
                continue
            fs = r.examples.get(code, [])[:examples]
            if not fs:
                continue
            lines.append(f"  [{sev}] {code}: {REASONS[code][1]}")
            for f in fs:
                lines.append(f"    {f.render()}")
                shown += 1
            if n > len(fs):
                lines.append(f"    ... and {n - len(fs)} more")
            lines.append(f"    fix: {REASONS[code][2]}")
    return "\n".join(lines)


def format_lengths(lengths: dict) -> list[str]:
    out = [f"lengths ({lengths['tokenizer']}, template {lengths['template']}, cutoff_len {lengths['cutoff_len']}):"]
    for key in ("prompt", "response", "total"):
        p = lengths.get("percentiles", {}).get(key)
        if p:
            out.append(f"  {key:<8} tokens p50 {p['p50']}  p90 {p['p90']}  p99 {p['p99']}  max {p['max']}")
    for key, label in (("response_truncated", "responses cut by cutoff_len"),
                       ("prompt_too_long", "prompts cut by cutoff_len")):
        if key in lengths:
            out.append(f"  {label}: {lengths[key]}")
    if "pt_blocks" in lengths:
        out.append(f"  packing yields {lengths['pt_blocks']} blocks of {lengths['cutoff_len']} tokens "
                   f"({lengths['pt_tokens']} tokens)")
    return out
