"""Loading a local Hugging Face tokenizer, below every stage (validate's length audit, pair checks, pt chunking).

Needs `transformers` (pip install 'dsforge[hf]'); no torch. The hub is never contacted.
"""

from __future__ import annotations

import os
from functools import lru_cache

from dsforge.errors import UsageError


@lru_cache(maxsize=4)
def load_tokenizer(path: str):
    """The tokenizer of the local directory `path` (a transformers tokenizer; cached, 4 most recent paths).

    Raises UsageError when `path` is not a directory, transformers is not installed, or the directory holds
    no loadable tokenizer (tokenizer.json / tokenizer_config.json).
    """
    if not os.path.isdir(path):
        raise UsageError(f"tokenizer {path!r} is not a local directory",
                         "the hub is not used at run time: point --tokenizer at a downloaded model/tokenizer folder")
    try:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from transformers import AutoTokenizer
    except ImportError:
        raise UsageError("the length audit needs transformers", "pip install 'dsforge[hf]'") from None
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - many loader failure types; all mean "not a tokenizer dir"
        raise UsageError(f"cannot load a tokenizer from {path}: {err}".splitlines()[0],
                         "the directory needs tokenizer.json or tokenizer_config.json") from None
