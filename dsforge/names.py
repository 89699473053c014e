"""Names that dsforge turns into keys and file names: datasets, runs, served models.

One rule for all of them, checked in one place before a name is used: letters (any script),
digits, '_', '-' and '.', starting with a letter, digit or '_', at most 100 characters, never
'..'. So a name can never be a path ('../../x', '/abs', 'a/b'), a hidden file, or something
LLaMA-Factory reads differently: it splits `dataset:` on commas and strips the spaces around each
name (0.9.5: hparams/data_args.py, DataArguments.__post_init__ split_arg), so ' spaced ' or 'a,b'
could never be trained.
"""

from __future__ import annotations

import re

from dsforge.errors import UsageError

MAX_LEN = 100
_ALLOWED = re.compile(r"[^\W][\w.-]*")
HINT = "use letters, digits, '_', '-' and '.', starting with a letter or digit (e.g. my_dpo_v2)"


def name_problem(name) -> str | None:
    """Why `name` is not a valid name (one clause, e.g. "it contains '..'"), or None when it is."""
    if not isinstance(name, str):
        return f"a name is text, not {type(name).__name__}"
    if not name:
        return "the name is empty"
    if name != name.strip():
        return "it has spaces around it (LLaMA-Factory strips them, so the name would never be found)"
    if "/" in name or "\\" in name:
        return "it contains a path separator (a name is not a path)"
    if ".." in name:
        return "it contains '..'"
    if len(name) > MAX_LEN:
        return f"it is longer than {MAX_LEN} characters"
    if not _ALLOWED.fullmatch(name):
        bad = sorted({c for c in name if not (c.isalnum() or c in "_.-")})
        if bad:
            return "it contains " + ", ".join(repr(c) for c in bad[:5])
        return "it must start with a letter, a digit or '_'"
    return None


def check_name(name, what: str = "name") -> str:
    """Return `name` if it is valid (see the module doc), else raise UsageError naming `what`."""
    problem = name_problem(name)
    if problem:
        raise UsageError(f"{what} {name!r} is not a valid name: {problem}", HINT)
    return name
