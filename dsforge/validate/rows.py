"""The row mirror: LLaMA-Factory 0.9.5's converter + processor + encoder for one dataset, one row at a time."""

from __future__ import annotations

import json

from dsforge.lf_templates import lf_templates
from dsforge.records import LFAttrs
from dsforge.validate.converters import Converters
from dsforge.validate.encoding import EncodingRules
from dsforge.validate.entry import suggest
from dsforge.validate.reasons import Finding
from dsforge.validate.report import Report

KTO_BATCH = 1000  # LLaMA-Factory's preprocessing_batch_size default: KL partners are taken within a batch
_KIND = {str: "string", bool: "bool", int: "number", float: "number", dict: "object", list: "array",
         type(None): None}


class RowChecker(Converters, EncodingRules):
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
        """Add Finding(code, path, line, fld, detail) to the report."""
        self.report.add(Finding(code, path, line, fld, detail))

    def track_types(self, row: dict, path: str, line: int) -> None:
        """Record each field's JSON type (one level into lists and objects) and flag type_conflict where a
        field changes type between rows (Arrow fails the file); rows of an already seen shape are skipped.
        """
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


    def _kto_unmapped(self) -> str:
        bools = [k for k, v in self.kinds.items() if v[0] == "bool" and "." not in k and "[" not in k]
        if bools:
            return (f"the entry maps no kto_tag column, but the rows hold the boolean '{bools[0]}': map it: "
                    f"columns.kto_tag = {bools[0]}")
        return "the entry maps no kto_tag column: add \"kto_tag\": FIELD to columns (FIELD holds true/false)"


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
        """Check the KL partners of the buffered KTO batch (kto_neighbour) and empty the buffer."""
        b = self.kto_batch
        for i, (kept, _, path, line) in enumerate(b):
            partner = b[i - 1]  # LLaMA-Factory: kl_response = [resp[-1]] + resp[:-1]
            if kept and not partner[1]:
                self.flag("kto_neighbour", path, line, detail=f"kept row whose KL partner {partner[2]}:{partner[3]} "
                          "has no usable answer; LLaMA-Factory raises IndexError")
                break
        self.kto_batch = []

    def finish(self, files: list[str]) -> None:
        """Dataset-level checks after the last row: the last KTO batch, columns in no row (missing_column), tags
        that no message uses (tags_mismatch).
        """
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

