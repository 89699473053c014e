"""Reading records from any supported input: tables (csv via polars, parquet, arrow), text documents,
saved Hugging Face dataset folders, JSON/JSONL (dsforge.io.jsonfiles); input expansion (globs, folders)."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterator

from dsforge.errors import InputError, UsageError
from dsforge.io.jsonfiles import JSON_EXTS, iter_json_file

TABLE_EXTS = {".csv", ".parquet", ".arrow"}
TEXT_EXTS = {".txt", ".md", ".markdown"}


def iter_csv_text(path: str, batch_size: int = 10_000) -> Iterator[tuple[int, dict]]:
    """CSV rows with every cell as text (polars, streamed): raw corpora keep "007" as "007".

    Line numbers assume one line per record (a quoted multi-line cell shifts later numbers).
    """
    import polars as pl

    try:
        n = 1
        for batch in pl.scan_csv(path, infer_schema=False).collect_batches(chunk_size=batch_size):
            for row in batch.to_dicts():
                n += 1
                yield n, row
    except (pl.exceptions.PolarsError, OSError) as err:
        raise InputError(f"cannot read csv: {str(err).splitlines()[0]}", "check the file is complete, "
                         "comma-separated and UTF-8", path=path) from None


def iter_table(path: str, batch_size: int = 10_000) -> Iterator[tuple[int, dict]]:
    """Rows of a csv/parquet/arrow file as dicts, streamed in record batches (row numbers are 1-based data rows)."""
    import pyarrow as pa

    ext = Path(path).suffix.lower()
    try:
        if ext == ".parquet":
            import pyarrow.parquet as pq

            batches = pq.ParquetFile(path).iter_batches(batch_size=batch_size)
        elif ext == ".csv":
            import pyarrow.csv as pacsv

            batches = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 22))
        elif ext == ".arrow":
            batches = _iter_arrow(path)
        else:
            raise UsageError(f"{path}: not a table file ({ext})")
        n = 0
        line_offset = 1 if ext == ".csv" else 0  # csv: header is line 1
        for batch in batches:
            for row in batch.to_pylist():
                n += 1
                yield n + line_offset, row
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(f"cannot read {ext[1:]} file: {err}", "check that the file is complete and really is "
                         f"{ext[1:]}", path=path) from None


def _iter_arrow(path: str):
    import pyarrow as pa

    with pa.memory_map(path) as source:
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
            return
        yield from reader


def iter_text_documents(path: str, split: str = "file") -> Iterator[tuple[int, str]]:
    """Documents of a .txt/.md file: the whole file, or paragraphs split on blank lines."""
    try:
        if split == "file":
            with open(path, encoding="utf-8") as f:
                text = f.read().lstrip("\ufeff")
            if text.strip():
                yield 1, text.strip("\n")
            return
        para: list[str] = []
        start = 1
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if lineno == 1:
                    line = line.lstrip("\ufeff")
                if line.strip():
                    if not para:
                        start = lineno
                    para.append(line.rstrip("\n"))
                elif para:
                    yield start, "\n".join(para)
                    para = []
            if para:
                yield start, "\n".join(para)
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8: byte 0x{err.object[err.start]:02x}", "re-encode the file as UTF-8",
                         path=path) from None


def iter_hf_dataset(path: str, split: str | None = None) -> Iterator[tuple[int, dict]]:
    """Rows of a dataset saved with `datasets.save_to_disk` (memory-mapped, not loaded)."""
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(path)
    if isinstance(ds, DatasetDict):
        if split is None:
            split = "train" if "train" in ds else next(iter(ds))
        if split not in ds:
            raise UsageError(f"{path}: no split '{split}'", f"available splits: {', '.join(ds)}")
        ds = ds[split]
    for i, row in enumerate(ds, 1):
        yield i, row


def is_hf_dataset_dir(path: str) -> bool:
    """True when `path` is a folder written by datasets' save_to_disk (dataset_info.json + state.json, or a
    DatasetDict's dataset_dict.json).
    """
    p = Path(path)
    return p.is_dir() and ((p / "dataset_info.json").exists() and (p / "state.json").exists()
                           or (p / "dataset_dict.json").exists())


def expand_inputs(inputs: list[str], exts: set[str] | None = None) -> list[str]:
    """Files named by paths, globs and directories (recursively), sorted, deduplicated.

    Inside a directory, hidden files and folders (.git, editor swap files, dsforge's own temp files
    and stage markers) are skipped; a hidden file named directly is read."""
    out: list[str] = []
    for item in inputs:
        if is_hf_dataset_dir(item):
            out.append(item)
            continue
        matches = sorted(glob.glob(item, recursive=True)) if any(c in item for c in "*?[") else [item]
        if not matches:
            raise UsageError(f"no file matches '{item}'", "check the path or quote the glob")
        for m in matches:
            if os.path.isdir(m) and not is_hf_dataset_dir(m):
                for root, dirs, files in os.walk(m):
                    dirs[:] = [d for d in dirs if not d.startswith(".")]
                    for name in sorted(files):
                        full = os.path.join(root, name)
                        if not name.startswith(".") and (exts is None or Path(name).suffix.lower() in exts):
                            out.append(full)
            elif os.path.exists(m):
                out.append(m)
            else:
                raise UsageError(f"{m}: no such file or directory")
    seen: set[str] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def iter_records(path: str, *, text_split: str = "file") -> Iterator[tuple[int, object]]:
    """Any supported input as (line, record); text files yield {"text": ...}."""
    if is_hf_dataset_dir(path):
        yield from iter_hf_dataset(path)
        return
    ext = Path(path).suffix.lower()
    if ext in JSON_EXTS:
        yield from iter_json_file(path)
    elif ext == ".csv":
        yield from iter_csv_text(path)
    elif ext in TABLE_EXTS:
        yield from iter_table(path)
    elif ext in TEXT_EXTS:
        for line, doc in iter_text_documents(path, text_split):
            yield line, {"text": doc}
    else:
        raise UsageError(f"{path}: unsupported file type '{ext or '(none)'}'",
                         "use .txt/.md, .json/.jsonl, .csv, .parquet, .arrow or a saved HF dataset directory")

