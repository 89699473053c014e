"""Streaming readers with line numbers, atomic writers, output guards and file locks.

  jsonfiles  JSON / JSON Lines readers (line numbers, syntax problems explained)
  readers    every other input: tables, text documents, HF dataset folders; input expansion
  atomic     atomic writes (temp + rename), cleanup after kill -9, row writers, locks, digests
  guards     no output over an input, another output, or a file that is not the command's own earlier output

Every public name is importable from dsforge.io.
"""

from dsforge.io.atomic import (AtomicFiles, RowWriter, atomic_files, atomic_write, backup, clean_stale, copy_file,
                               dumps_row, file_digest, file_lock, new_temp_dir, open_rows, same_file, temp_dir_for)
from dsforge.io.guards import OUTPUT_KINDS, _within, guard_kind, guard_outputs, note_output, output_kind
from dsforge.io.jsonfiles import (BOM, JSON_EXTS, DuplicateKey, SyntaxProblem, _looks_like_jsonl, explain_json_error,
                                  iter_json_array, iter_json_file, iter_jsonl)
from dsforge.io.readers import (TABLE_EXTS, TEXT_EXTS, expand_inputs, is_hf_dataset_dir, iter_csv_text,
                                iter_hf_dataset, iter_records, iter_table, iter_text_documents)

__all__ = ["AtomicFiles", "BOM", "DuplicateKey", "JSON_EXTS", "OUTPUT_KINDS", "RowWriter", "SyntaxProblem",
           "TABLE_EXTS", "TEXT_EXTS", "atomic_files", "atomic_write", "backup", "clean_stale", "copy_file", "dumps_row",
           "expand_inputs", "explain_json_error", "file_digest", "file_lock", "guard_kind", "guard_outputs",
           "is_hf_dataset_dir", "iter_csv_text", "iter_hf_dataset", "iter_json_array", "iter_json_file", "iter_jsonl",
           "iter_records", "iter_table", "iter_text_documents", "new_temp_dir", "note_output", "open_rows",
           "output_kind", "same_file", "temp_dir_for"]
