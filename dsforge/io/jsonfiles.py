"""Streaming JSON and JSON Lines readers with line numbers.

Readers never load a whole file: JSONL goes line by line, a JSON array is decoded element by element
from a sliding buffer. Every record carries the line it started on, and syntax problems are collected as
SyntaxProblem(code, line, column, reason, hint) so errors can say `file:line`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import IO, Iterator

from dsforge.errors import InputError

JSON_EXTS = {".json", ".jsonl"}
BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 20


@dataclass
class SyntaxProblem:
    """A JSON syntax or encoding problem, located and explained in plain words."""

    line: int
    column: int | None
    reason: str
    hint: str
    code: str = "json_syntax"


def explain_json_error(msg: str, doc: str, pos: int) -> tuple[str, str]:
    """Turn a json.JSONDecodeError message into a plain reason and a fix."""
    before = doc[:pos].rstrip()
    nxt = doc[pos:pos + 1]
    if before.endswith(",") and nxt in ("]", "}"):
        closer = "]" if nxt == "]" else "}"
        return (f"trailing comma before '{closer}'", f"delete the comma before '{closer}'; JSON allows none")
    if msg.startswith("Expecting property name") and nxt == "'":
        return ("single-quoted key", "JSON needs double quotes around keys and strings")
    if msg.startswith("Expecting value") and nxt == "'":
        return ("single-quoted string", "JSON needs double quotes around strings")
    if msg.startswith("Unterminated string") or (msg.startswith("Expecting") and pos >= len(doc.rstrip())):
        return ("the JSON value ends early (truncated line or unterminated string)",
                "the file was probably cut off while being written; regenerate it or delete the last line")
    if msg.startswith("Extra data"):
        return ("more than one JSON value on this line",
                "JSONL needs exactly one object per line; split the line or remove the stray text")
    if msg.startswith("Invalid control character"):
        return ("a raw control character (e.g. a newline or tab) inside a string",
                "escape it as \\n or \\t")
    if msg.startswith("Expecting ',' delimiter") or msg.startswith("Expecting ':' delimiter"):
        return (msg.split(":")[0].lower(), "a comma or colon is missing here, or a quote inside a string is not escaped")
    return (msg, "fix the JSON at this position")


class DuplicateKey(ValueError):
    """An object holds the same key twice (Arrow refuses such a file); raised by the strict JSON decoder."""
    pass


# a \uD800-\uDFFF escape: Python's json takes a lone one (half an emoji), Arrow's JSON Lines reader
# ("The surrogate pair in string is invalid") and UTF-8 output do not
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _lone_surrogate(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _strict_pairs(pairs: list) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise DuplicateKey(dup)
    return d


def _nkeys(obj) -> int:
    """Number of object keys in a parsed JSON value (direct loops: this runs once per row)."""
    if type(obj) is list:
        n = 0
        for x in obj:
            if type(x) in (dict, list):
                n += _nkeys(x)
        return n
    n = len(obj)
    for v in obj.values():
        t = type(v)
        if t is list:
            for x in v:
                tx = type(x)
                if tx is dict:
                    n += len(x)
                    for y in x.values():
                        if type(y) in (dict, list):
                            n += _nkeys(y)
                elif tx is list:
                    n += _nkeys(x)
        elif t is dict:
            n += _nkeys(v)
    return n


try:  # orjson parses ~2-3x faster; stdlib json stays the reference for errors and edge cases
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover
    _fast_loads = None


def iter_jsonl(path: str, problems: list[SyntaxProblem] | None = None, *,
               with_key: bool = False) -> Iterator[tuple]:
    """Yield (line_number, value) for each non-blank line (plus a hash of the raw line if with_key).

    With `problems`, syntax/encoding errors are recorded and reading goes on (validate wants them
    all); without it, the first one raises InputError.
    """
    strict = json.JSONDecoder(object_pairs_hook=_strict_pairs).decode
    fast = _fast_loads

    def fail(p: SyntaxProblem):  # record, or raise when the caller collects nothing (as iter_json_array's fail)
        if problems is None:
            raise InputError(p.reason, p.hint, path=path, line=p.line, column=p.column) from None
        problems.append(p)

    with open(path, "rb") as f:
        offset = 0
        for lineno, raw in enumerate(f, 1):
            start = offset
            offset += len(raw)
            if lineno == 1 and raw.startswith(BOM):
                raw = raw[3:]
                start += 3
            if not raw.strip():
                continue
            value = None
            if fast is not None:
                try:
                    value = fast(raw)
                    # duplicate keys: orjson keeps the last one silently; a key count below the number of
                    # '":' sequences sends the line to the strict parser, which names the duplicate
                    if type(value) in (dict, list) and raw.count(b'":') > _nkeys(value):
                        value = None
                except ValueError:
                    value = None
            try:
                if value is None:
                    value = strict(raw.decode("utf-8"))
                    if _SURROGATE_ESCAPE.search(raw) and _lone_surrogate(value):
                        p = SyntaxProblem(lineno, None, "a \\uD800-\\uDFFF escape without its pair (half of a "
                                          "surrogate pair, e.g. an emoji cut in two): Arrow refuses the whole file",
                                          "remove the escape or complete the pair", code="lone_surrogate")
                        fail(p)
                        continue
                yield (lineno, value, hash(raw.rstrip())) if with_key else (lineno, value)
            except DuplicateKey as err:
                p = SyntaxProblem(lineno, None, f"key '{err}' appears twice in one object",
                                  "remove one of them (Arrow refuses duplicate keys)", code="duplicate_key")
                fail(p)
            except UnicodeDecodeError as err:
                p = SyntaxProblem(lineno, None, f"not UTF-8: byte 0x{raw[err.start]:02x} at byte offset {start + err.start}",
                                  "re-encode the file as UTF-8 (e.g. iconv -f GBK -t UTF-8)", code="encoding")
                fail(p)
            except json.JSONDecodeError as err:
                reason, hint = explain_json_error(err.msg, err.doc, err.pos)
                if not raw.endswith(b"\n") and err.msg.startswith(("Unterminated", "Expecting")):
                    reason = "the last line is incomplete (truncated file)"
                fail(SyntaxProblem(lineno, err.colno, reason, hint))


def iter_json_array(path: str, problems: list[SyntaxProblem] | None = None) -> Iterator[tuple[int, object]]:
    """Yield (line_number, element) of a top-level JSON array without loading the file at once.

    A file whose top level is a single object is yielded as one element. Syntax errors stop the
    stream (after one, positions of later elements cannot be trusted).
    """
    decoder = json.JSONDecoder(object_pairs_hook=_strict_pairs)
    ws = re.compile(r"[ \t\n\r]*")

    def fail(line: int, col: int | None, reason: str, hint: str, code: str = "json_syntax"):
        p = SyntaxProblem(line, col, reason, hint, code)
        if problems is None:
            raise InputError(reason, hint, path=path, line=line, column=col)
        problems.append(p)

    with open(path, "rb") as fb:
        head = fb.read(3)
        if head != BOM:
            fb.seek(0)
        f = _Utf8Reader(fb, 3 if head == BOM else 0)
        st = {"buf": "", "mark": 0, "line": 1, "eof": False}  # line number of buf[mark]

        def line_at(p: int) -> int:
            st["line"] += st["buf"].count("\n", st["mark"], p)
            st["mark"] = p
            return st["line"]

        def refill(pos: int) -> int:
            """Append the next chunk, dropping what lies before pos; return pos in the new buffer."""
            if st["eof"]:
                return pos
            line_at(pos)
            chunk = f.read(_CHUNK)
            st["buf"] = st["buf"][pos:] + chunk
            st["mark"] = 0
            if not chunk:
                st["eof"] = True
            return 0

        def where(p: int) -> tuple[int, int]:
            buf = st["buf"]
            return line_at(p), p - (buf.rfind("\n", 0, p) + 1) + 1

        try:
            pos = refill(0)
            buf = st["buf"]
            pos = ws.match(buf, pos).end()
            if pos >= len(buf):
                return  # empty file: the caller reports "no rows"
            if buf[pos] != "[":
                while not st["eof"]:  # a single top-level value: decode it whole
                    pos = refill(pos)
                buf = st["buf"]
                try:
                    value, _ = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as err:
                    fail(*where(err.pos), *explain_json_error(err.msg, buf, err.pos))
                    return
                yield where(pos)[0], value
                return
            pos += 1
            expect_value, first = True, True
            while True:
                buf = st["buf"]
                pos = ws.match(buf, pos).end()
                if pos >= len(buf) - 1 and not st["eof"]:
                    pos = refill(pos)
                    buf = st["buf"]
                    pos = ws.match(buf, pos).end()
                if pos >= len(buf):
                    fail(*where(pos), "the JSON array is not closed (truncated file)",
                         "the file was probably cut off while being written; regenerate it")
                    return
                ch = buf[pos]
                if ch == "]":
                    if expect_value and not first:
                        fail(*where(pos), "trailing comma before ']'", "delete the comma after the last element")
                    return
                if not expect_value:
                    if ch != ",":
                        fail(*where(pos), "expecting ',' between array elements",
                             "a comma is missing between two objects, or an object is not closed")
                        return
                    pos += 1
                    expect_value = True
                    continue
                while True:
                    try:
                        value, end = decoder.raw_decode(buf, pos)
                        break
                    except DuplicateKey as err:
                        fail(line_at(pos), None, f"key '{err}' appears twice in one object",
                             "remove one of them (Arrow refuses duplicate keys)", code="duplicate_key")
                        return
                    except json.JSONDecodeError as err:
                        if not st["eof"]:
                            pos = refill(pos)
                            buf = st["buf"]
                            continue
                        fail(*where(err.pos), *explain_json_error(err.msg, buf, err.pos))
                        return
                if problems is None and _SURROGATE_ESCAPE.search(buf[pos:end].encode("utf-8", "surrogatepass")) \
                        and _lone_surrogate(value):
                    # LLaMA-Factory loads a .json array with one (Python's json), so validate (problems given)
                    # accepts it; every other reader refuses it: no output could be written as UTF-8
                    fail(line_at(pos), None, "a \\uD800-\\uDFFF escape without its pair (half of a surrogate "
                         "pair, e.g. an emoji cut in two)", "remove the escape or complete the pair",
                         code="lone_surrogate")
                    return
                yield line_at(pos), value
                pos = end
                expect_value, first = False, False
        except UnicodeDecodeError as err:
            fail(getattr(err, "dsforge_line", st["line"]), None,
                 f"not UTF-8: byte 0x{err.object[err.start]:02x} at byte offset {getattr(err, 'dsforge_offset', err.start)}",
                 "re-encode the file as UTF-8 (e.g. iconv -f GBK -t UTF-8)", code="encoding")


class _Utf8Reader:
    """Decode a binary stream as UTF-8 chunk by chunk, reporting absolute byte offsets on errors."""

    def __init__(self, fb: IO[bytes], offset: int):
        import codecs

        self.fb = fb
        self.dec = codecs.getincrementaldecoder("utf-8")("strict")
        self.offset = offset
        self.lines = 1

    def read(self, n: int) -> str:
        raw = self.fb.read(n)
        try:
            text = self.dec.decode(raw, final=not raw)
        except UnicodeDecodeError as err:
            err.dsforge_offset = self.offset + err.start
            err.dsforge_line = self.lines + raw.count(b"\n", 0, err.start)
            raise
        self.offset += len(raw)
        self.lines += raw.count(b"\n")
        return text


def iter_json_file(path: str, problems: list[SyntaxProblem] | None = None) -> Iterator[tuple[int, object]]:
    """JSON or JSONL by extension; a `.json` file holding JSON Lines is read as JSONL."""
    if path.endswith(".jsonl"):
        yield from iter_jsonl(path, problems)
        return
    if _looks_like_jsonl(path):
        yield from iter_jsonl(path, problems)
    else:
        yield from iter_json_array(path, problems)


def _looks_like_jsonl(path: str) -> bool:
    """True when the first line alone is a JSON object (a one-line array is not JSONL)."""
    with open(path, "rb") as f:
        lead = f.read(1024).lstrip(BOM).lstrip(b" \t\r")
        if lead and not lead.startswith(b"{"):  # e.g. '[': not an object, without reading (and parsing) a
            return False                        # minified array's one line, i.e. the whole file
        f.seek(0)
        first = f.readline()
    try:
        return isinstance(json.loads(first.lstrip(BOM)), dict)
    except ValueError:
        return False

