"""Click parameter types that check a value against what it can mean, at parse time (exit 2).

Each `convert` returns the value in the shape the command already uses, so commands stay thin.
"""

from __future__ import annotations

import difflib
import math
import os

import click

class MapPair(click.ParamType):
    """DEST=SOURCE with DEST one of `dests` (default: dsforge.convert.MAP_DESTS); returns the text
    unchanged (parsed by `cli.options.mapping_of`)."""

    name = "DEST=SOURCE"

    def __init__(self, dests: tuple[str, ...] | None = None):
        self._dests = dests

    @property
    def dests(self) -> tuple[str, ...]:
        if self._dests is None:   # imported on use: `dsforge --help` stays light
            from dsforge.convert import MAP_DESTS

            self._dests = MAP_DESTS
        return self._dests

    def convert(self, value, param, ctx):
        dst, sep, src = str(value).partition("=")
        if not sep or not dst.strip() or not src.strip():
            self.fail(f"{value!r} is not DEST=SOURCE (e.g. --map instruction=question)", param, ctx)
        if dst.strip() not in self.dests:
            near = difflib.get_close_matches(dst.strip(), self.dests, n=1)
            self.fail(f"unknown destination '{dst.strip()}'" + (f" (did you mean '{near[0]}'?)" if near else "")
                      + f"; destinations: {', '.join(self.dests)}", param, ctx)
        return value


class OutPath(click.ParamType):
    """An output file path whose extension is one of `exts` and that is not an existing directory."""

    name = "FILE"

    def __init__(self, exts: tuple[str, ...]):
        self.exts = exts

    def convert(self, value, param, ctx):
        value = os.fspath(value)
        if os.path.isdir(value):
            self.fail(f"{value} is a directory; give a file path such as {os.path.join(value, 'out' + self.exts[0])}",
                      param, ctx)
        stem = os.path.basename(value)
        if stem.lower() in self.exts or not stem:   # '-o .jsonl' or '-o dir/': no name before the extension
            self.fail(f"{value!r} has no file name (only {stem or 'a folder'}); give one such as "
                      f"{os.path.join(os.path.dirname(value), 'out' + self.exts[0])}", param, ctx)
        if not value.lower().endswith(self.exts):
            self.fail(f"{value}: the output must end in {' or '.join(self.exts)} (other formats are not written)",
                      param, ctx)
        return value


def finite(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


class FloatList(click.ParamType):
    """Comma-separated distinct finite numbers in [lo, hi]; returns the text (parsed again by the command)."""

    name = "X,Y,..."

    def __init__(self, lo: float = 0.0, hi: float = math.inf, example: str = "0.7,1.0", count: int | None = None,
                 distinct: bool = True):
        self.lo, self.hi, self.example, self.count, self.distinct = lo, hi, example, count, distinct

    def convert(self, value, param, ctx):
        parts = [p.strip() for p in str(value).split(",")]
        if any(not p for p in parts) and any(parts):   # '0.7,,1.0' or '0.7,': a value is missing, not implied
            self.fail(f"{value!r} has an empty value between commas (e.g. {self.example})", param, ctx)
        nums = [finite(p) for p in parts]
        if not any(parts) or any(v is None for v in nums):
            self.fail(f"{value!r} is not a comma-separated list of finite numbers (e.g. {self.example})", param, ctx)
        if self.count is not None and len(nums) != self.count:
            self.fail(f"{value!r}: give exactly {self.count} numbers (e.g. {self.example})", param, ctx)
        bad = [v for v in nums if not self.lo <= v <= self.hi]
        if bad:
            rng = f">= {self.lo:g}" if self.hi == math.inf else f"in [{self.lo:g}, {self.hi:g}]"
            self.fail(f"{bad[0]:g} is out of range: every value must be {rng}", param, ctx)
        if self.distinct and len(set(nums)) != len(nums):
            self.fail(f"{value!r}: give distinct values (e.g. {self.example})", param, ctx)
        return value


class FiniteFloat(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (FloatRange lets nan through)."""

    def _describe_range(self) -> str:
        if self.min is None and self.max is None:   # click would print 'x<=None'
            return "finite"
        return super()._describe_range()

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


# Upper bounds for counts that are sent to an engine or loop that many times: a value past them is a
# typo (-n 99999999999999999999), refused at parse time instead of being sent to a server.
MAX_N = 1024                 # answers per prompt and temperature (vLLM's own default max_num_seqs is 256)
MAX_TOKENS = 1_000_000       # tokens per answer (beyond every released model's context)
MAX_VOTES = 64
MAX_RETRIES = 20
MAX_WORKERS = 4096
SEED = click.IntRange(0, 2**63 - 1)   # engines and servers take a signed 64-bit seed

JSON_OUT = OutPath((".jsonl", ".json"))
JSONL_OUT = OutPath((".jsonl",))
HTML_OUT = OutPath((".html", ".htm"))


class Url(click.ParamType):
    """An http(s) URL with a host; returns it unchanged."""

    name = "URL"

    def convert(self, value, param, ctx):
        from urllib.parse import urlsplit

        from dsforge.errors import redact_url

        try:
            parts = urlsplit(str(value))
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port   # noqa: B018 - raises on a port that is not a number
        except ValueError:
            ok = False
        if not ok:
            self.fail(f"{redact_url(str(value))!r} is not an http(s) URL with a host "
                      f"(e.g. http://127.0.0.1:8000/v1)", param, ctx)
        return value
