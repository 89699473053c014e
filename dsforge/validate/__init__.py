"""Validate LLaMA-Factory datasets before any GPU is touched.

The row checks mirror LLaMA-Factory 0.9.5's own data path — parser (dataset_info semantics),
datasets' Arrow loading (file-level failures), converter (alpaca/sharegpt/openai → prompt/response),
processor (stage-specific drops) and template encoding (crashes) — so "would train N of M rows"
is the number LLaMA-Factory really keeps. tests/test_lf_agreement.py checks that claim against
LLaMA-Factory itself.

Modules, in the order a dataset passes through them:
  reasons    the reason registry (code -> severity, meaning, fix) and Finding
  entry      dataset_info.json and the checks on one entry
  files      reading files in LLaMA-Factory's order, syntax problems as findings
  rows       RowChecker, the per-row mirror (converters + encoding mixed in)
  dataset    validate_files/validate_path/validate_registered: the single pass and its observers
  pairs      the degenerate-pair checks of ranking data, an observer of that pass
  lengths    the token-length audit, an observer of that pass (dsforge.tokenizers does the tokenizing)
  report     Report and its text form
LLaMA-Factory's template table (lf_templates, resolve_template) is dsforge.lf_templates, below the stages.
"""

from dsforge.lf_templates import NO_TEMPLATE, lf_templates, resolve_template
from dsforge.validate.dataset import select_rows, validate_files, validate_path, validate_registered
from dsforge.validate.entry import check_entry, load_dataset_info, stage_for_entry, suggest
from dsforge.validate.files import infer_path, iter_rows_quietly, lf_file_order
from dsforge.validate.lengths import LengthOptions
from dsforge.validate.reasons import REASONS, Finding
from dsforge.validate.report import Report, format_lengths, format_report
from dsforge.validate.rows import KTO_BATCH, RowChecker

__all__ = ["KTO_BATCH", "LengthOptions", "NO_TEMPLATE", "REASONS", "Finding", "Report", "RowChecker", "check_entry", "format_lengths",
           "format_report", "infer_path", "iter_rows_quietly", "lf_file_order", "lf_templates", "load_dataset_info",
           "resolve_template", "select_rows", "stage_for_entry", "suggest", "validate_files", "validate_path",
           "validate_registered"]
