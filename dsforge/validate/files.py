"""Reading a dataset's files the way LLaMA-Factory 0.9.5 reads them (datasets/Arrow): its file order, JSON
syntax problems as findings, tables as pandas/Arrow give them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from dsforge import io as dio
from dsforge.errors import UsageError
from dsforge.infer import infer_entry
from dsforge.validate.reasons import Finding
from dsforge.validate.report import Report


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
            reader = dio.iter_json_array(path, problems)  # not iter_json_file: it would test for JSONL again
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


def _find_files(path: str) -> list[str]:
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file or directory")
    return lf_file_order(path)


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
