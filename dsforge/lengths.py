"""Moved: LLaMA-Factory's tokenization mirror (LengthAudit, infer_seqlen, load_tokenizer) is dsforge.tokenizers,
the length audit (an observer of validate's single pass) dsforge.validate.lengths. This module keeps the old
import path working."""

from dsforge.tokenizers import PT_BATCH, LengthAudit, _pct, infer_seqlen, lf_messages, load_tokenizer
from dsforge.validate.lengths import LengthOptions, observe_lengths

__all__ = ["PT_BATCH", "LengthAudit", "LengthOptions", "_pct", "infer_seqlen", "lf_messages", "load_tokenizer",
           "observe_lengths"]
