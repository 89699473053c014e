"""The review event log (append-only, one fsync'ed JSON line per decision) and the judged records
made from it.

Events (every one has id, t (unix seconds), annotator, item):
  label  cand + value: a score 1-5 (score mode), "best"/"worst" (rank), "A"/"B"/"tie" (pairwise,
         A = the candidate shown first/left), + seconds since the item was shown or last acted on
  flag   cand + reason: the candidate is unusable (its item counts as labelled for that candidate)
  skip   the annotator passes on the item
  undo   target: the id of an earlier event of the same annotator, which no longer counts
The first line is a header (mode, input, rubric). Later labels of the same candidate replace
earlier ones. A torn last line (crash mid-write) is cut off when the log is reopened.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from dsforge import __version__
from dsforge.errors import InputError, UsageError
from dsforge.io import atomic_write
from dsforge.review.items import Dataset, Item, candidate_id

SCORES = (1, 2, 3, 4, 5)
RANK_VALUE = {"best": 1.0, "worst": 0.0}
VERDICTS = ("A", "B", "tie")


def events_path(out: str) -> str:
    """The event log beside the judged output: OUT + '.events.jsonl'."""
    return out + ".events.jsonl"


@dataclass
class ItemState:
    """One annotator's labels on one item, after replaying the log."""
    scores: dict[str, object] = field(default_factory=dict)   # cid -> 1..5 | "best"/"worst" | verdict
    flags: dict[str, str] = field(default_factory=dict)       # cid -> reason
    first: str | None = None          # pairwise: the cid shown as A when the verdict was given
    skipped: bool = False
    seconds: float = 0.0
    t: float = 0.0                    # time of the last counted event


def is_complete(mode: str, item: Item, st: ItemState | None) -> bool:
    """Whether one annotator finished `item`: every unflagged candidate scored (score mode), a verdict
    given (pairwise), a best and a worst chosen (rank; with two candidates the best is enough). An
    item with fewer than two unflagged candidates is complete in rank and pairwise modes; no state
    (None) is never complete."""
    if st is None:
        return False
    usable = [c for c in item.cids if c not in st.flags]
    if mode == "score":
        return all(c in st.scores for c in usable)
    if mode == "pairwise":
        return len(usable) < 2 or any(v in VERDICTS for v in st.scores.values())
    # rank: a best and a worst among the usable ones (with two, the best implies the worst)
    vals = {c: st.scores.get(c) for c in usable}
    has_best = "best" in vals.values()
    return len(usable) < 2 or (has_best and ("worst" in vals.values() or len(usable) == 2))


class EventLog:
    """Append-only JSONL with fsync per event; thread-safe; replays into per-(annotator, item) state.

    Opening an existing log cuts a torn last line (`torn_dropped` is then True) and raises
    InputError (exit 1) for a line that is not JSON or a log without a header, UsageError (exit 2)
    when its header's mode differs from `header["mode"]`; a new log gets `header` as its first line.
    """

    def __init__(self, path: str, header: dict):
        self.path = path
        self.lock = threading.RLock()
        self.events: list[dict] = []
        self.torn_dropped = False
        if os.path.exists(path):
            self._load(header)
        else:
            self._append({"ev": "header", "id": uuid.uuid4().hex, "t": time.time(), **header})

    def _load(self, header: dict) -> None:
        with open(path_ := self.path, "rb") as f:
            data = f.read()
        end = data.rfind(b"\n") + 1
        if end < len(data):   # a torn last line: the decision was never acknowledged; cut it off
            with open(path_, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
            self.torn_dropped = True
        for i, raw in enumerate(data[:end].splitlines(), 1):
            if not raw.strip():
                continue
            try:
                ev = json.loads(raw)
            except ValueError:
                raise InputError("not a review event", "this file is written by dsforge review only; restore it "
                                 "or start a new output", path=path_, line=i) from None
            self.events.append(ev)
        head = self.events[0] if self.events else {}
        if head.get("ev") != "header":
            raise InputError("the event log has no header line", "it was not written by dsforge review", path=path_)
        if head.get("mode") != header.get("mode"):
            raise UsageError(f"{path_} holds {head.get('mode')} labels; this run asks for --mode {header.get('mode')}",
                             f"rerun with --mode {head.get('mode')}, or write another output (-o)")

    def _append(self, ev: dict) -> None:
        line = (json.dumps(ev, ensure_ascii=False) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.events.append(ev)

    def add(self, ev: str, annotator: str, item: str, **fields) -> dict:
        """Write one event durably (fsync) and return it."""
        rec = {"ev": ev, "id": uuid.uuid4().hex, "t": round(time.time(), 3), "annotator": annotator, "item": item,
               **fields}
        with self.lock:
            self._append(rec)
        return rec

    @property
    def header(self) -> dict:
        """The log's first event: {ev: "header", id, t, mode, input, seed, dsforge, rubric, rubric_hash}."""
        return self.events[0]

    def retracted(self) -> set[str]:
        """Ids of the events some undo event names as its target."""
        return {e["target"] for e in self.events if e.get("ev") == "undo"}

    def last_undoable(self, annotator: str) -> dict | None:
        """The annotator's latest decision (label, flag or skip event) that is not yet retracted, or None."""
        gone = self.retracted()
        for e in reversed(self.events):
            if e.get("annotator") == annotator and e.get("ev") in ("label", "flag", "skip") and e["id"] not in gone:
                return e
        return None

    def state(self) -> dict[tuple[str, str], ItemState]:
        """Replay: (annotator, item key) -> ItemState, retracted events left out (their time counts)."""
        gone = self.retracted()
        out: dict[tuple[str, str], ItemState] = defaultdict(ItemState)
        for e in self.events:
            kind = e.get("ev")
            if kind not in ("label", "flag", "skip"):
                continue
            st = out[(e["annotator"], e["item"])]
            st.seconds += float(e.get("seconds") or 0)
            if e["id"] in gone:
                continue
            st.t = e["t"]
            if kind == "skip":
                st.skipped = True
            elif kind == "flag":
                st.flags[e["cand"]] = e.get("reason") or "unusable"
                st.scores.pop(e["cand"], None)
            else:
                _apply_label(st, e)
        return dict(out)


def _apply_label(st: ItemState, e: dict) -> None:
    cand, value = e["cand"], e["value"]
    st.flags.pop(cand, None)
    st.skipped = False
    if value in ("best", "worst"):   # one best and one worst per item
        for c, v in list(st.scores.items()):
            if v == value or c == cand:
                del st.scores[c]
    elif value in VERDICTS:          # one verdict per pair
        st.scores.clear()
        st.first = e.get("first")
    st.scores[cand] = value


# ---------------------------------------------------------------- judged records


def rubric_info(text: str, name: str) -> dict:
    """The header's rubric fields: {"rubric": name, "rubric_hash": first 16 hex digits of sha256(text)}."""
    return {"rubric": name, "rubric_hash": hashlib.sha256(text.encode()).hexdigest()[:16]}


def materialize(ds: Dataset, log: EventLog) -> list[dict]:
    """Judged records (one per candidate of every prompt some annotator completed), judge.kind "human".

    judge.score is the mean over annotators of: the 1-5 score (score mode); 1 best / 0 worst /
    0.5 otherwise (rank); the win rate over the pairs labelled, ties half (pairwise). A candidate
    every annotator flagged has score None and error "flagged_unusable". judge.labels keeps each
    annotator's own label and the seconds they spent on the item.

    Each record is the input row (its earlier judge kept as prior_judge) with judge {kind, mode,
    model: "human", rubric, rubric_hash, annotator (comma-joined), annotators, score, seconds,
    labels, error? (flagged_unusable | not_compared | not_reviewed when no score), flags?}.
    """
    mode = ds.mode
    head = log.header
    state = log.state()
    per_cand: dict[str, dict[str, dict]] = defaultdict(dict)   # cid -> annotator -> label
    done_prompts: set[str] = set()
    for (ann, key), st in state.items():
        item = ds.item_of(key)
        if item is None or st.skipped or not is_complete(mode, item, st):
            continue
        done_prompts.add(item.prompt_id)
        if mode == "pairwise":
            a, b = item.cids
            verdict = next((v for v in st.scores.values() if v in VERDICTS), None)
            for c in item.cids:
                lab = per_cand[c].setdefault(ann, {"annotator": ann, "games": [], "seconds": 0.0})
                lab["seconds"] = round(lab["seconds"] + st.seconds, 3)
                if c in st.flags:
                    lab["flag"] = st.flags[c]
            if verdict and not st.flags:
                first = st.first if st.first in item.cids else a
                winner = None if verdict == "tie" else (first if verdict == "A" else (b if first == a else a))
                for c, other in ((a, b), (b, a)):
                    res = 0.5 if winner is None else 1.0 if winner == c else 0.0
                    per_cand[c][ann]["games"].append({"vs": other, "result": res, "shown_first": first == c})
            continue
        for c in item.cids:
            lab = {"annotator": ann, "seconds": round(st.seconds, 3)}
            if c in st.flags:
                lab["flag"] = st.flags[c]
            else:
                v = st.scores.get(c)
                lab["value"] = v
                lab["score"] = float(v) if mode == "score" else RANK_VALUE.get(v, 0.5)
            per_cand[c][ann] = lab
    out = []
    for row in ds.rows:
        if row["prompt_id"] not in done_prompts:
            continue
        cid = candidate_id(row["prompt_id"], row["text"])
        labels = sorted(per_cand.get(cid, {}).values(), key=lambda x: x["annotator"])
        for lab in labels:
            if mode == "pairwise" and "flag" not in lab:
                g = lab["games"]
                lab["score"] = round(sum(x["result"] for x in g) / len(g), 4) if g else None
        scores = [lab["score"] for lab in labels if lab.get("score") is not None]
        j = {"kind": "human", "mode": mode, "model": "human", "rubric": head.get("rubric"),
             "rubric_hash": head.get("rubric_hash"), "annotator": ",".join(lab["annotator"] for lab in labels),
             "annotators": len(labels), "score": round(sum(scores) / len(scores), 4) if scores else None,
             "seconds": round(sum(lab["seconds"] for lab in labels), 3), "labels": labels}
        if not scores:
            flags = [lab["flag"] for lab in labels if "flag" in lab]
            j["error"] = "flagged_unusable" if flags else "not_compared" if mode == "pairwise" else "not_reviewed"
            if flags:
                j["flags"] = flags
        rec = {k: v for k, v in row.items() if k != "judge"}
        if "judge" in row:
            rec["prior_judge"] = row["judge"]
        rec["judge"] = j
        out.append(rec)
    return out


def write_output(ds: Dataset, log: EventLog, out: str) -> int:
    """Rebuild OUT from the log atomically (materialize()); returns the number of records written.

    Raises OSError (the CLI turns it into one message with errors.os_error) when OUT cannot be written; a previous
    OUT then stays as it was.
    """
    with log.lock:
        rows = materialize(ds, log)
    with atomic_write(out) as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return len(rows)


def new_header(ds: Dataset, mode: str, rubric: dict, seed: int) -> dict:
    """Header fields for a new log: {mode, input (absolute path), seed, dsforge (version), **rubric}."""
    return {"mode": mode, "input": os.path.abspath(ds.path), "seed": seed, "dsforge": __version__, **rubric}
