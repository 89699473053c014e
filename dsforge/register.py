"""Register a dataset file into LLaMA-Factory's dataset_info.json, safely.

Infers kind and format (or takes them), validates the file with the entry it is about to
write, then merges under a file lock: re-read, keep every other entry and its order, refuse to
replace a different entry under the same name unless forced, back up, write atomically.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from dsforge import io as dio
from dsforge.errors import ConfigError, InputError, UsageError
from dsforge.infer import KIND_FOR_STAGE, STAGE_FOR_KIND
from dsforge.names import check_name
from dsforge.records import DatasetInfoEntry
from dsforge.validate import Report, infer_path, lf_file_order, validate_files


@dataclass
class Registration:
    """The result of `register`: the entry written under `name`, the kind and stage it is for, the
    validation report of the file, and the action taken (added | replaced | unchanged)."""

    name: str
    dataset_dir: str
    info_path: str
    entry: dict
    kind: str
    stage: str
    report: Report
    action: str  # added | replaced | unchanged

    def yaml_lines(self) -> str:
        """The two lines a LLaMA-Factory training YAML needs to use this dataset."""
        return f"dataset: {self.name}\ndataset_dir: {self.dataset_dir}"


def entry_diff(old, new) -> list[str]:
    """The keys in which two dataset_info entries differ, one line each: 'key: OLD (registered) -> NEW', whole."""
    if not isinstance(old, dict):
        return [f"registered: {json.dumps(old, ensure_ascii=False)}"]
    missing = object()

    def show(v) -> str:
        return "(absent)" if v is missing else json.dumps(v, ensure_ascii=False)

    lines = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k, missing), new.get(k, missing)
        if a != b:
            lines.append(f"{k}: {show(a)} (registered) -> {show(b)}")
    return lines


def _file_name(path: str, dataset_dir: str) -> str:
    p, d = os.path.abspath(path), os.path.abspath(dataset_dir)
    if os.path.commonpath([p, d]) == d:
        return os.path.relpath(p, d)
    return p


def build_entry(path: str, *, kind: str | None = None, formatting: str | None = None) -> tuple[dict, str]:
    """(dataset_info entry without file_name, kind) for the file at `path`, inferred from its rows by
    infer.infer_entry: the one builder of entries (pairs' summary uses it on the rows it writes).
    UsageError when `kind` or `formatting` is given and the file is something else."""
    inf = infer_path(path)
    entry, got_kind = inf.entry, inf.kind
    DatasetInfoEntry.model_validate(entry)   # an entry LLaMA-Factory reads in full (no unknown or misspelled key)
    if kind and kind != got_kind:
        raise UsageError(f"{path} looks like {got_kind} data, not {kind}",
                         "check the file, or convert it first: dsforge convert --to " + kind)
    if formatting and formatting != entry.get("formatting"):
        raise UsageError(f"{path} is {entry.get('formatting')}-shaped, not {formatting}",
                         "convert it first: dsforge convert --format " + formatting)
    return entry, got_kind


def register(path: str, name: str, dataset_dir: str, *, kind: str | None = None, formatting: str | None = None,
             stage: str | None = None, force: bool = False, allow_invalid: bool = False,
             timeout: float = 60.0, copy_into: bool = False) -> Registration:
    """Validate `path` and add it to DATASET_DIR/dataset_info.json as `name`.

    Under a file lock: re-read the file, refuse to replace a different entry of the same name
    unless `force`, back the old file up (atomically) and write the new one atomically.
    copy_into: first copy the file into the dataset dir as NAME.jsonl (or NAME.json); a different
    file already there is replaced only with `force`, like the entry. The name must be a valid
    name (dsforge.names); raises UsageError / ConfigError / InputError. Returns the Registration (the
    entry as written, with file_name relative to dataset_dir when the file is inside it).
    """
    check_name(name, "dataset name")
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file or directory")
    info_path = os.path.join(dataset_dir, "dataset_info.json")
    dst = os.path.join(dataset_dir, name + (os.path.splitext(path)[1] or ".jsonl")) if copy_into else None
    copy = dst is not None and not (os.path.exists(dst) and dio.same_file(path, dst))
    dio.guard_outputs({"FILE": path}, {"dataset_info": info_path, "backup": info_path + ".bak",
                                       "copy": dst if copy else None})
    os.makedirs(dataset_dir, exist_ok=True)
    entry, got_kind = build_entry(path, kind=kind, formatting=formatting)
    entry = {"file_name": _file_name(dst or path, dataset_dir), **entry}
    stage = stage or STAGE_FOR_KIND[got_kind]
    if KIND_FOR_STAGE[stage] != got_kind and not (stage == "ppo" and got_kind == "sft"):
        raise UsageError(f"{path} holds {got_kind} data, which stage {stage} cannot train on")
    report = validate_files(lf_file_order(path), entry, stage, name=name)
    if report.would_train == 0 and not allow_invalid:
        raise InputError(f"LLaMA-Factory would train on 0 of {report.rows} rows; not registering",
                         f"run: dsforge validate {path}  (or pass --allow-invalid)", path=path)
    with dio.file_lock(info_path, timeout=timeout):
        info = {}
        if os.path.exists(info_path):
            with open(info_path, "rb") as f:
                raw = f.read()
            try:
                info = json.loads(raw.decode("utf-8-sig")) if raw.strip() else {}
            except ValueError as err:
                raise ConfigError(f"{info_path} is not valid JSON ({err}); not touching it",
                                  "fix it by hand (dsforge validate --dataset-info shows where)") from None
            if not isinstance(info, dict):
                raise ConfigError(f"{info_path} is not a JSON object; not touching it")
        old = info.get(name)
        file_differs = copy and os.path.exists(dst) and dio.file_digest(dst)["sha256"] != dio.file_digest(path)["sha256"]
        if file_differs and not force:
            raise ConfigError(f"{dst} already exists with other content; not replacing it",
                              "choose another name, or force it (register --force; in a recipe: "
                              "register: {force: true})")
        if old is not None and old != entry and not force:
            raise ConfigError(f"'{name}' is already registered in {info_path} with a different entry:\n  "
                              + "\n  ".join(entry_diff(old, entry)),
                              "choose another --name, or pass --force to replace it")
        if copy and (file_differs or not os.path.exists(dst)):
            dio.copy_file(path, dst)
        if old == entry:
            action = "replaced" if file_differs else "unchanged"
        else:
            action = "replaced" if old is not None or file_differs else "added"
            info[name] = entry  # dict keeps insertion order: other entries stay where they are
            dio.backup(info_path)
            with dio.atomic_write(info_path) as f:
                json.dump(info, f, ensure_ascii=False, indent=2)
                f.write("\n")
    return Registration(name, os.path.abspath(dataset_dir), info_path, entry, got_kind, stage, report, action)
