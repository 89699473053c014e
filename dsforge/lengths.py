"""Moved: the length audit is dsforge.validate.lengths (an observer of validate's single pass) and
load_tokenizer is dsforge.tokenizers. This module keeps the old import path working."""

from dsforge.tokenizers import load_tokenizer
from dsforge.validate.lengths import PT_BATCH, LengthAudit, LengthOptions, _pct, infer_seqlen, lf_messages, observe_lengths

__all__ = ["PT_BATCH", "LengthAudit", "LengthOptions", "_pct", "infer_seqlen", "lf_messages", "load_tokenizer",
           "observe_lengths"]
