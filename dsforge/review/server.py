"""The review server: a Starlette app on 127.0.0.1 served by uvicorn.

GET /                 the page (static HTML + JS + CSS; all data comes from the JSON API)
GET /api/state        ?annotator=NAME: progress and the current item, rendered safely
POST /api/act         {annotator, action, item, cand?, value?, reason?, seconds?}: one decision,
                      written (fsync) before the reply; returns the new state

Hardening for a local tool: only Host 127.0.0.1/localhost (no DNS rebinding), POST only with a
JSON body (a foreign page cannot post one without a CORS preflight, which is never granted), and
a strict Content-Security-Policy on every response.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

from dsforge.errors import UsageError
from dsforge.review import render
from dsforge.review.items import Dataset, assignment, display_order
from dsforge.review.store import SCORES, VERDICTS, EventLog, is_complete, write_output

STATIC = Path(__file__).parent / "static"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
META_KEYS = ("model", "temperature", "top_p", "sample_index", "finish_reason", "completion_tokens", "truncated")


def check_annotator(name: str) -> str:
    """Return `name` if it is 1-64 letters, digits, '_', '.', '@' or '-' (starting with a letter or
    digit), else raise UsageError (exit 2 on the command line, HTTP 400 from the API)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UsageError(f"annotator name {name!r} is not 1-64 letters, digits, '_', '.', '@' or '-'",
                         "e.g. --annotator alice")
    return name


class Session:
    """Everything the server knows: the items, the log, each annotator's cursor; thread-safe."""

    def __init__(self, ds: Dataset, log: EventLog, out: str, *, rubric_text: str, default_annotator: str,
                 assign: dict[str, set[str]] | None = None, seed: int = 0, debounce: float = 0.5):
        self.ds, self.log, self.out = ds, log, out
        self.rubric_text, self.default_annotator, self.assign, self.seed = rubric_text, default_annotator, assign, seed
        self.cursor: dict[str, str | None] = {}
        self.pinned: set[str] = set()         # annotators whose cursor item is shown even though done
        self.lock = threading.RLock()
        self.decisions = 0
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._debounce = debounce
        self._writer = threading.Thread(target=self._write_loop, name="dsforge-review-writer", daemon=True)
        self._rendered: dict[str, str] = {}

    # --------------------------------------------------------- output file

    def start(self) -> None:
        """Write OUT from the log once, then start the background writer (rewrites OUT, debounced,
        after each change). OSError propagates when OUT cannot be written."""
        write_output(self.ds, self.log, self.out)
        self._writer.start()

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            if self._dirty.wait(0.5):
                time.sleep(self._debounce)   # coalesce a burst of key presses into one rewrite
                self._dirty.clear()
                write_output(self.ds, self.log, self.out)

    def stop(self) -> int:
        """Stop the writer and rebuild the output one last time; returns the records written."""
        self._stop.set()
        if self._writer.is_alive():
            self._writer.join(timeout=30)
        return write_output(self.ds, self.log, self.out)

    # --------------------------------------------------------- queue

    def queue(self, annotator: str) -> list:
        """The annotator's items in dataset order: all of them without --assign, else the assigned
        ones; UsageError (HTTP 400) for an annotator the assignment does not name."""
        if self.assign is None:
            return self.ds.items
        mine = self.assign.get(annotator)
        if mine is None:
            raise UsageError(f"annotator '{annotator}' has no assigned items",
                             f"assigned annotators: {', '.join(sorted(self.assign))}")
        return [it for it in self.ds.items if it.key in mine]

    def _done(self, state, annotator, item) -> bool:
        st = state.get((annotator, item.key))
        return st is not None and (st.skipped or is_complete(self.ds.mode, item, st))

    def _advance(self, annotator: str, state, *, after: str | None, include_after: bool) -> None:
        q = self.queue(annotator)
        start = 0
        if after is not None:
            keys = [it.key for it in q]
            start = keys.index(after) + (0 if include_after else 1) if after in keys else 0
        order = q[start:] + q[:start]
        nxt = next((it.key for it in order if not self._done(state, annotator, it)), None)
        self.cursor[annotator] = nxt
        self.pinned.discard(annotator)

    def current(self, annotator: str, state) -> str | None:
        """Key of the item to show the annotator: the cursor's (while unfinished, or pinned by an undo),
        else the next unfinished one after it, wrapping around; None when all are done.
        `state` is EventLog.state()."""
        key = self.cursor.get(annotator)
        if key is not None and (annotator in self.pinned or not self._done(state, annotator, self.ds.by_key[key])):
            return key
        self._advance(annotator, state, after=key, include_after=key is None)
        return self.cursor[annotator]

    # --------------------------------------------------------- API

    def view(self, annotator: str) -> dict:
        """The page's state for one annotator (GET /api/state): {annotator, mode, total, done, skipped,
        left, rubric_html, can_undo, decisions, item}; item is None when everything is done, else
        {key, index, prompt_id, messages [{role, html}], candidates [{cid, slot ('A'/'B' or '1'..),
        html, chars, meta, label, flag}], verdict, skipped, complete}. Text is rendered by
        render.to_html (raw tags escaped)."""
        with self.lock:
            state = self.log.state()
            q = self.queue(annotator)
            done = sum(self._done(state, annotator, it) for it in q)
            skipped = sum(1 for it in q if (st := state.get((annotator, it.key))) and st.skipped)
            key = self.current(annotator, state)
            undo = self.log.last_undoable(annotator)
            return {"annotator": annotator, "mode": self.ds.mode, "total": len(q), "done": done, "skipped": skipped,
                    "left": len(q) - done, "rubric_html": self._html("rubric", self.rubric_text),
                    "can_undo": undo is not None, "decisions": self.decisions,
                    "item": self._item_view(annotator, key, state) if key else None}

    def _html(self, key: str, text: str) -> str:
        if key not in self._rendered:
            self._rendered[key] = render.to_html(text)
        return self._rendered[key]

    def _item_view(self, annotator: str, key: str, state) -> dict:
        item = self.ds.by_key[key]
        st = state.get((annotator, key))
        first_row = self.ds.by_cid[item.cids[0]]
        msgs = [{"role": m.get("role", "?"), "html": self._html(f"m:{item.prompt_id}:{i}", str(m.get("content", "")))}
                for i, m in enumerate(first_row["messages"])]
        order = display_order(item, annotator, self.seed)
        if self.ds.mode == "pairwise" and st is not None and st.first in order:
            order.sort(key=lambda c: c != st.first)   # keep A where it was when the verdict was given
        cands = []
        for slot, cid in enumerate(order):
            row = self.ds.by_cid[cid]
            meta = {k: row.get(k) for k in META_KEYS if row.get(k) is not None}
            j = row.get("judge") or {}
            if j.get("score") is not None:
                meta["judge_score"] = j["score"]
                meta["judge"] = j.get("model")
            cands.append({"cid": cid, "slot": "AB"[slot] if self.ds.mode == "pairwise" else str(slot + 1),
                          "html": self._html("c:" + cid, row["text"]), "chars": len(row["text"]), "meta": meta,
                          "label": None if st is None else st.scores.get(cid), "flag": None if st is None
                          else st.flags.get(cid)})
        verdict = None
        if st is not None and self.ds.mode == "pairwise":
            verdict = next((v for v in st.scores.values() if v in VERDICTS), None)
        return {"key": key, "index": item.index, "prompt_id": item.prompt_id, "messages": msgs, "candidates": cands,
                "verdict": verdict, "skipped": bool(st and st.skipped),
                "complete": bool(st and is_complete(self.ds.mode, item, st))}

    def act(self, body: dict) -> dict:
        """Apply one action from the page (POST /api/act) and return the new view().

        `body`: {annotator, action (label | flag | skip | next | undo), item (key), cand?, value?
        (1-5 | best/worst | A/B/tie by mode), first? (pairwise: the cid shown as A), reason?, seconds?
        (time on the item; outside 0..86400 it counts 0)}. label/flag/skip/undo are written to the
        log (fsync) before the reply; next only moves the cursor. Raises UsageError for a malformed
        one (HTTP 400).
        """
        annotator = check_annotator(body.get("annotator", ""))
        action, key = body.get("action"), body.get("item")
        seconds = body.get("seconds")
        seconds = float(seconds) if isinstance(seconds, (int, float)) and 0 <= seconds < 86_400 else 0.0
        with self.lock:
            if action == "undo":
                ev = self.log.last_undoable(annotator)
                if ev is not None:
                    self.log.add("undo", annotator, ev["item"], target=ev["id"])
                    self.cursor[annotator] = ev["item"]
                    self.pinned.add(annotator)
                    self._changed()
                return self.view(annotator)
            if key not in self.ds.by_key or key not in {it.key for it in self.queue(annotator)}:
                raise UsageError("unknown item for this annotator")
            item = self.ds.by_key[key]
            state = self.log.state()
            if action == "next":
                self._advance(annotator, state, after=key, include_after=False)
                return self.view(annotator)
            was_done = self._done(state, annotator, item)
            if action == "skip":
                self.log.add("skip", annotator, key, seconds=seconds)
            elif action in ("label", "flag"):
                cand = body.get("cand")
                if cand not in item.cids:
                    raise UsageError("unknown candidate for this item")
                if action == "flag":
                    reason = str(body.get("reason") or "").strip()[:500] or "unusable"
                    self.log.add("flag", annotator, key, cand=cand, reason=reason, seconds=seconds)
                else:
                    value = self._value(body.get("value"))
                    extra = {"first": body.get("first")} if self.ds.mode == "pairwise" else {}
                    if extra and extra["first"] not in item.cids:
                        raise UsageError("a pairwise verdict needs 'first', the candidate shown as A")
                    self.log.add("label", annotator, key, cand=cand, value=value, seconds=seconds, **extra)
            else:
                raise UsageError(f"unknown action {action!r}")
            self.decisions += 1
            self._changed()
            state = self.log.state()
            if action == "skip" or (not was_done and self._done(state, annotator, item)):
                self._advance(annotator, state, after=key, include_after=False)
            return self.view(annotator)

    def _value(self, v):
        mode = self.ds.mode
        if mode == "score" and v in SCORES:
            return int(v)
        if mode == "rank" and v in ("best", "worst"):
            return v
        if mode == "pairwise" and v in VERDICTS:
            return v
        raise UsageError(f"value {v!r} is not valid in {mode} mode")

    def _changed(self) -> None:
        self._dirty.set()


def make_app(session: Session):
    """The Starlette application for one Session: the routes of the module doc, Host limited to
    127.0.0.1/localhost, a strict CSP and no-store headers on every response; API errors are JSON
    {error, hint?} with HTTP 400 (415 for a body that is not JSON)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    async def page(request: Request):
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def asset(request: Request):
        name = request.path_params["name"]
        if name not in ("review.js", "review.css"):
            return Response("not found", status_code=404)
        return FileResponse(STATIC / name)

    async def state(request: Request):
        try:
            name = check_annotator(request.query_params.get("annotator") or session.default_annotator)
            return JSONResponse(session.view(name))
        except UsageError as err:
            return JSONResponse({"error": err.message, "hint": err.hint}, status_code=400)

    async def act(request: Request):
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "JSON body required"}, status_code=415)
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return JSONResponse({"error": "invalid JSON"}, status_code=400)
        try:
            return JSONResponse(session.act(body))
        except UsageError as err:
            return JSONResponse({"error": err.message, "hint": err.hint}, status_code=400)

    class Headers:
        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            async def send_with(message):
                if message["type"] == "http.response.start":
                    message.setdefault("headers", [])
                    message["headers"] = list(message["headers"]) + [
                        (b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                        (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store")]
                await send(message)
            await self.app(scope, receive, send_with)

    return Starlette(routes=[Route("/", page), Route("/static/{name}", asset), Route("/api/state", state),
                             Route("/api/act", act, methods=["POST"])],
                     middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"]),
                                 Middleware(Headers)])


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port (0 = any free port); UsageError (exit 2) when the port
    cannot be bound (in use, or not allowed)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as err:
        sock.close()
        raise UsageError(f"cannot listen on 127.0.0.1:{port} ({err.strerror})",
                         "pick another --port, or --port 0 for any free one") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(session: Session, sock: socket.socket, log=print) -> None:
    """Serve until Ctrl-C or SIGTERM (uvicorn shuts down gracefully on both); then write the output."""
    import signal

    import uvicorn

    def _term(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, _term)   # uvicorn re-raises the signal after its shutdown
    config = uvicorn.Config(make_app(session), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    session.start()
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        sock.close()
        session.stop()
    if os.environ.get("DSFORGE_DEBUG"):
        log(f"review server stopped after {session.decisions} decisions")


DEFAULT_RUBRICS = {
    "score": "Score each answer from 1 to 5. **5** correct, complete and clear; **4** correct with small gaps; "
             "**3** partly correct or hard to follow; **2** mostly wrong or unhelpful; **1** wrong, harmful or "
             "off-topic. Flag (f) answers that must not be used for training at all, with the reason.",
    "rank": "Mark the **best** (b) and the **worst** (w) answer of each prompt. Flag (f) answers that must not be "
            "used for training at all, with the reason.",
    "pairwise": "Which answer is better, **A** or **B**? Say **tie** only when you cannot tell them apart. "
                "Flag (f) an answer that must not be used for training at all, with the reason.",
}


def load_rubric_text(rubric: str | None, mode: str) -> tuple[str, str]:
    """(text, name) of the rubric shown on the page: a markdown file (name = its file name), or the
    built-in one for the mode (name 'human-MODE'). UsageError (exit 2) when `rubric` is not a file."""
    if not rubric:
        return DEFAULT_RUBRICS[mode], f"human-{mode}"
    if not os.path.isfile(rubric):
        raise UsageError(f"--rubric {rubric}: no such file", "give a markdown file with the instructions to show")
    with open(rubric, encoding="utf-8") as f:
        return f.read(), os.path.basename(rubric)


def check_output(inputs: list[str], out: str) -> None:
    """Refuse (UsageError, exit 2) an output that is not .jsonl, is one of the inputs, or is a file
    this tool did not write (no OUT.events.jsonl beside it)."""
    from dsforge.io import guard_outputs
    from dsforge.review.store import events_path

    if not out.endswith(".jsonl"):
        raise UsageError(f"-o {out}: the reviewed output must end in .jsonl")
    guard_outputs([("FILE", p) for p in inputs], {"-o": out, "events": events_path(out)},
                  hint="write the reviewed records to a new file, e.g. -o reviewed.jsonl; the input is never changed")
    if os.path.exists(out) and not os.path.exists(events_path(out)):
        raise UsageError(f"{out} exists and was not written by dsforge review (no {events_path(out)} beside it)",
                         "choose another -o, or move that file away")


def open_session(src: str, out: str, *, annotator: str, mode: str = "score", rubric: str | None = None,
                 assign: list[str] | None = None, overlap: float = 0.0, max_pairs_per_prompt: int = 3,
                 seed: int = 0) -> Session:
    """Load the items and (re)open OUT's event log; no server yet.

    Raises UsageError (exit 2) for a bad annotator name, --overlap without --assign, an unknown
    mode, a missing rubric file, an event log of another mode or a file without candidates;
    InputError (exit 1) for an input row or an event line that cannot be read.
    """
    from dsforge.review.items import load_dataset
    from dsforge.review.store import EventLog, events_path, new_header, rubric_info

    check_annotator(annotator)
    for a in assign or []:
        check_annotator(a)
    if overlap and not assign:
        raise UsageError("--overlap needs --assign NAME,NAME,...")
    ds = load_dataset(src, mode, max_pairs_per_prompt=max_pairs_per_prompt, seed=seed)
    text, name = load_rubric_text(rubric, mode)
    log = EventLog(events_path(out), new_header(ds, mode, rubric_info(text, name), seed))
    plan = assignment(ds, assign, overlap, seed)
    default = annotator if plan is None or annotator in plan else sorted(plan)[0]
    return Session(ds, log, out, rubric_text=text, default_annotator=default, assign=plan, seed=seed)


def run_review(src: str, out: str, *, annotator: str, port: int = 8765, echo=print, **kw) -> dict:
    """Serve the review page for SRC until Ctrl-C/SIGTERM; every decision lands in OUT.events.jsonl at once
    and OUT is rebuilt from it. Returns {decisions, records, events}."""
    from filelock import FileLock, Timeout

    from dsforge.review.store import events_path

    lock = FileLock(out + ".lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UsageError(f"another dsforge review is serving {out}",
                         "open that server's page with ?annotator=NAME instead of starting a second one") from None
    try:
        session = open_session(src, out, annotator=annotator, **kw)
        if session.log.torn_dropped:
            echo(f"note: {events_path(out)} ended in a torn line (a crash mid-write); it was cut off")
        sock = bind(port)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        names = sorted(session.assign) if session.assign else [session.default_annotator]
        echo(f"review {len(session.ds.items)} items ({session.ds.mode}) of {src}")
        for n in names:
            echo(f"  {url}?annotator={n}")
        echo("decisions are saved as you go; press Ctrl-C here to stop")
        serve(session, sock)
        return {"decisions": session.decisions, "records": len(session.ds.rows) and _count(out),
                "events": events_path(out)}
    finally:
        lock.release()


def _count(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)
