"""Pretraining text: chunking by characters or by tokens, with overlap."""

from __future__ import annotations

from typing import Callable, Iterator


def chunk_chars(text: str, size: int, overlap: int = 0) -> Iterator[str]:
    """Windows of at most `size` characters, `overlap` shared between neighbours, cut at whitespace when possible.

    A cut at whitespace is searched in the window's second half; pieces are stripped and empty
    pieces are skipped. Raises ValueError unless size > 0 and 0 <= overlap < size (the CLI checks
    its options before).

    >>> list(chunk_chars("aaa bbb ccc", 8))
    ['aaa bbb', 'ccc']
    """
    if size <= 0:
        raise ValueError("chunk size must be positive")
    if not 0 <= overlap < size:
        raise ValueError("overlap must be >= 0 and smaller than the chunk size")
    n, start = len(text), 0
    while start < n:
        end = min(start + size, n)
        if end < n:
            cut = max(text.rfind("\n", start + size // 2, end), text.rfind(" ", start + size // 2, end))
            if cut > start:
                end = cut
        piece = text[start:end].strip()
        if piece:
            yield piece
        if end >= n:
            break
        start = max(end - overlap, start + 1)
        while start < n and overlap == 0 and text[start].isspace():
            start += 1


def chunk_tokens(text: str, size: int, overlap: int, offsets: Callable[[str], list[tuple[int, int]]]) -> Iterator[str]:
    """Windows of `size` tokens (with `overlap`), cut on token boundaries and returned as the original text.

    `offsets(text)` returns each token's (start, end) character span, e.g. from a fast tokenizer's
    offset mapping (token_offsets). Pieces are stripped and empty pieces skipped. Raises ValueError
    unless size > 0 and 0 <= overlap < size.
    """
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError("need size > 0 and 0 <= overlap < size")
    spans = offsets(text)
    step = size - overlap
    for i in range(0, max(len(spans), 1), step):
        window = spans[i:i + size]
        if not window:
            break
        piece = text[window[0][0]:window[-1][1]].strip()
        if piece:
            yield piece
        if i + size >= len(spans):
            break


def token_offsets(tokenizer_path: str) -> Callable[[str], list[tuple[int, int]]]:
    """Offset function for a local Hugging Face tokenizer (needs `transformers`: pip install 'dsforge[hf]').

    Returns text -> [(start, end)] character spans of its tokens, special tokens left out. Raises
    UsageError (exit 2) when `tokenizer_path` is not a local folder with a loadable tokenizer or
    transformers is missing (dsforge.tokenizers.load_tokenizer).
    """
    from dsforge.tokenizers import load_tokenizer

    tok = load_tokenizer(tokenizer_path)

    def offsets(text: str) -> list[tuple[int, int]]:
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(o) for o in enc["offset_mapping"]]

    return offsets
