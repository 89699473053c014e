"""What an annotator labels: one prompt with its candidates (score, rank modes) or one pair of them
(pairwise mode), with stable content-derived ids and a per-item seeded display order."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field

from dsforge.candidates import check_row, iter_rows
from dsforge.errors import UsageError
from dsforge.records import Candidate

MODES = ("score", "rank", "pairwise")


def candidate_id(prompt_id: str, text: str) -> str:
    """Stable id of a candidate: its prompt id and text (sample collapses identical texts per prompt)."""
    return hashlib.sha256(f"{prompt_id}\n{text}".encode()).hexdigest()[:16]


def _h(*parts) -> int:
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:15], 16)


@dataclass
class Item:
    """One unit of labelling: a prompt's candidates (score, rank) or one pair of them (pairwise)."""

    key: str                       # prompt_id (score, rank) or "prompt_id:cidA:cidB" (pairwise, cids sorted)
    prompt_id: str
    cids: list[str]                # candidates shown, in file order
    index: int = 0


@dataclass
class Dataset:
    """Candidates of an input file grouped into items for one mode."""
    path: str
    mode: str
    rows: list[dict]                                   # the input rows, file order
    by_cid: dict[str, dict] = field(default_factory=dict)
    prompts: dict[str, list[str]] = field(default_factory=dict)   # prompt_id -> cids, file order
    items: list[Item] = field(default_factory=list)
    by_key: dict[str, Item] = field(default_factory=dict)

    def item_of(self, key: str) -> Item | None:
        """The item with this key, or None (e.g. a logged item the input no longer holds)."""
        return self.by_key.get(key)


def load_dataset(path: str, mode: str, *, max_pairs_per_prompt: int = 3, seed: int = 0) -> Dataset:
    """Read a candidates or judged file (output of `dsforge sample` / `judge`) into items.

    Pairwise mode makes up to `max_pairs_per_prompt` pairs per prompt, chosen by a shuffle seeded
    with (seed, prompt id). A candidate seen twice (same prompt id and text) is kept once.
    Raises InputError (exit 1, FILE:LINE) for a line that is not a JSON object or a row that is not
    a candidate (dsforge.candidates.check_row), UsageError (exit 2) for an unknown mode or a file
    without candidates.
    """
    if mode not in MODES:
        raise UsageError(f"unknown mode '{mode}'", f"choose one of: {', '.join(MODES)}")
    ds = Dataset(path=path, mode=mode, rows=[])
    prompts: dict[str, list[str]] = defaultdict(list)
    for line, row in iter_rows(path):
        check_row(row, Candidate, path=path, line=line, hint="review reads the output of dsforge sample or judge")
        cid = candidate_id(row["prompt_id"], row["text"])
        if cid in ds.by_cid:
            continue   # the same answer twice (e.g. two judged files concatenated): label it once
        ds.rows.append(row)
        ds.by_cid[cid] = row
        prompts[row["prompt_id"]].append(cid)
    if not ds.rows:
        raise UsageError(f"{path}: no candidates to review")
    ds.prompts = dict(prompts)
    for pid, cids in ds.prompts.items():
        if mode != "pairwise":
            ds.items.append(Item(key=pid, prompt_id=pid, cids=list(cids)))
            continue
        combos = list(itertools.combinations(sorted(cids), 2))
        random.Random(_h(seed, pid)).shuffle(combos)
        for a, b in combos[:max_pairs_per_prompt]:
            ds.items.append(Item(key=f"{pid}:{a}:{b}", prompt_id=pid, cids=[a, b]))
    for i, it in enumerate(ds.items):
        it.index = i
        ds.by_key[it.key] = it
    return ds


def display_order(item: Item, annotator: str, seed: int = 0) -> list[str]:
    """The item's candidates in a random order that is fixed per (seed, annotator, item): a reload
    shows the same order, and two annotators see different ones (position bias does not line up)."""
    return sorted(item.cids, key=lambda c: _h(seed, annotator, item.key, c))


def assignment(ds: Dataset, annotators: list[str] | None, overlap: float, seed: int = 0) -> dict[str, set[str]] | None:
    """Item keys per annotator: each item goes to one annotator (by a hash of its key), and a share
    `overlap` of the items also to the next one, so those get two labels for agreement.
    Returns {annotator: set of item keys}, or None (every annotator sees every item) when no
    annotators are named. Raises UsageError (exit 2) unless 0 <= overlap <= 1."""
    if not annotators:
        return None
    if not 0 <= overlap <= 1:
        raise UsageError(f"--overlap {overlap} is not between 0 and 1")
    n = len(annotators)
    out: dict[str, set[str]] = {a: set() for a in annotators}
    for it in ds.items:
        h = _h(seed, "assign", it.key)
        first = h % n
        out[annotators[first]].add(it.key)
        if n > 1 and (h // n) % 10_000 < overlap * 10_000:
            out[annotators[(first + 1) % n]].add(it.key)
    return out
