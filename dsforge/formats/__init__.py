"""Pure converters between raw records, dsforge's Conversation and LLaMA-Factory row shapes.

Reading: `to_conversation(record, mapping)` understands alpaca fields, sharegpt conversations
(from/value) and OpenAI messages (role/content), after renaming columns with `mapping`.
Writing: `from_conversation(conv, kind, fmt)` emits exactly the row LLaMA-Factory expects for
kind (sft/ranking/kto) and fmt (alpaca/sharegpt/openai); `entry_for(kind, fmt)` is the matching
dataset_info.json entry.
"""

from dsforge.formats.rows import (
    FORMATS,
    ConversionError,
    entry_for,
    from_conversation,
    to_conversation,
)

__all__ = ["FORMATS", "ConversionError", "entry_for", "from_conversation", "to_conversation"]
