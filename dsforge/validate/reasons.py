"""The reason registry: every finding validate reports has a code here with its severity, what it means
and how to fix it (`dsforge validate --reasons` prints it).

Severities:
  fatal  LLaMA-Factory fails the whole dataset (nothing trains)
  drop   LLaMA-Factory silently drops the row
  warn   LLaMA-Factory keeps the row, but it is almost certainly a data bug
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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


@dataclass
class Finding:
    """One problem found: reason `code` (a key of REASONS) at `path`:`line` (1-based; None for the file or
    entry), in `field`, with a `detail` that replaces the registry's text when given.
    """

    code: str
    path: str
    line: int | None = None
    field: str | None = None
    detail: str = ""

    @property
    def severity(self) -> str:
        """'fatal', 'drop' or 'warn' (from REASONS)."""
        return REASONS[self.code][0]

    def render(self) -> str:
        """'path:line [field]: detail' for the text report."""
        where = self.path + (f":{self.line}" if self.line else "")
        what = REASONS[self.code][1]
        fld = f" [{self.field}]" if self.field else ""
        return f"{where}{fld}: {self.detail or what}"

    def to_dict(self) -> dict:
        """JSON form: code, path, line, field, detail, severity."""
        d = asdict(self)
        d["severity"] = self.severity
        return d


