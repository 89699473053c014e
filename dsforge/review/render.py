"""Candidate and prompt text to HTML, safely: the text is untrusted (a model wrote it).

markdown-it-py with raw HTML off escapes every tag in the text (`<script>` arrives as
`&lt;script&gt;`); images are off (no request leaves the page); link targets go through
markdown-it's validator (no javascript:/vbscript:/file:/data: URLs). The page's Content-Security-
Policy forbids inline scripts as a second line of defence.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _md():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable(
        ["table", "strikethrough"]).disable("image")


def to_html(text: str) -> str:
    """Markdown (code blocks included) to HTML with every raw tag escaped; None or '' gives ''."""
    return _md().render(text or "")
