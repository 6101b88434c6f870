"""Reading JSON and JSONL benchmark files: streamed (ijson events, long strings spooled as they arrive)
when the streaming parser reads the file exactly as `json` would, else in memory through `json` (which also
gives the exact error: line and column). Repeated keys are detected (`_DupDict`). Used by every JSON-based
format (native, KRIS-Bench, RISEBench, ImgEdit).
"""

from __future__ import annotations

import codecs
import json
import logging
import re
from pathlib import Path
from typing import Any, Iterator

from src.data.errors import BenchmarkError
from src.data.spool import _min_chars, _Spool, _spool_tree

log = logging.getLogger("src.data")


class _DupDict(dict):
    """A JSON object that had repeated keys (json keeps the last one silently)."""

    duplicates: list[str]


def _object_hook(items: list[tuple[str, Any]]) -> dict:
    d: dict = {}
    dups: list[str] = []
    for k, v in items:
        if k in d and k not in dups:
            dups.append(k)
        d[k] = v
    if dups:
        d = _DupDict(d)
        d.duplicates = dups
    return d


def _check_file(path: Path, shown: str) -> None:
    if not path.exists():
        raise BenchmarkError(f"benchmark file {shown} does not exist (resolved to {path.resolve()}).")
    if path.is_dir():
        raise BenchmarkError(f"benchmark path {shown} is a directory, and not one of the folder formats "
                             "(GEdit-Bench parquet/arrow files, KRIS-Bench task folders with annotation.json); "
                             "give the .json or .jsonl file, or set benchmark.format.")


def _read_text(path: Path, shown: str) -> str:
    """The whole file as text (the in-memory path: error messages and files only `json` can read)."""
    _check_file(path, shown)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BenchmarkError(f"cannot read benchmark file {shown}: {e}.") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        hint = ""
        try:
            data.decode("gb18030")
            hint = " It decodes as GBK/GB18030: re-save it as UTF-8."
        except UnicodeDecodeError:
            pass
        raise BenchmarkError(f"benchmark file {shown} is not UTF-8 text (invalid byte "
                             f"0x{data[e.start]:02x} at byte offset {e.start}).{hint}") from None
    if not text.strip():
        raise BenchmarkError(f"benchmark file {shown} is empty.")
    return text


def _parse_json(text: str, shown: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_object_hook)
    except json.JSONDecodeError as e:
        raise BenchmarkError(f"benchmark file {shown} is not valid JSON: {e.msg} at line "
                             f"{e.lineno}, column {e.colno}.") from None
    except RecursionError:
        raise BenchmarkError(f"benchmark file {shown} is nested too deeply to parse.") from None


def _parse_jsonl_text(text: str, shown: str) -> tuple[list, list[str]]:
    """The in-memory JSONL path: (items, labels), or the exact error for the first bad line."""
    items, labels = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line, object_pairs_hook=_object_hook))
        except json.JSONDecodeError as e:
            raise BenchmarkError(f"benchmark file {shown}: line {lineno} is not valid JSON: "
                                 f"{e.msg} at column {e.colno}.") from None
        labels.append(f"the pair on line {lineno}")
    if not items:
        raise BenchmarkError(f"benchmark file {shown} has no pairs (only blank lines).")
    return items, labels


# ----------------------------------------------------------------------------- streaming parse

# Deeper documents are handed to the json module (which refuses very deep ones with a clear message).
_MAX_STREAM_DEPTH = 500
_READ_CHUNK = 256 * 1024
# Bytes the json module refuses anywhere in a document (raw control characters) but that yajl (\v, \f)
# or ijson's pure-Python parser (also \x1c-\x1f) skip as whitespace between tokens.
_JSON_FORBIDDEN = (b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x1f")
# \uD800-\uDFFF escapes. json keeps a lone one (a high one not followed by a low one, or a low one not
# preceded by a high one); yajl turns it into '?' or fails. (An escaped backslash followed by 'uD800' text
# is taken for an escape too: harmless, the file is then read by json.)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE_CONTEXT = 6 + 11  # bytes kept between reads: the escape before one, and one plus the next
# Non-ASCII characters that ijson's pure-Python parser (not json, not yajl) skips between tokens; with
# that parser a file containing any of them (even inside strings) is read by json instead.
_UNICODE_SPACE = re.compile(b"|".join(re.escape(chr(c).encode()) for c in range(0x80, 0x3001) if chr(c).isspace()))


class _NotStreamable(Exception):
    """The streaming parser might not read this file exactly as `json` does: let `json` read it."""


_BACKEND: Any = False  # ijson backend module, None when ijson is missing; False = not chosen yet


def _ijson_backend() -> Any:
    """ijson's C backend (yajl2_c, in its wheels), else its pure-Python one; None without ijson."""
    global _BACKEND
    if _BACKEND is False:
        _BACKEND = None
        try:
            import ijson
        except ImportError:
            log.warning("the ijson package is missing: benchmark files are read whole into memory "
                        "(pip install -r requirements.txt)")
            return None
        for name in ("yajl2_c", "python"):
            try:
                _BACKEND = ijson.get_backend(name)
                break
            except ImportError:
                log.info("ijson backend %s is not available; using the next one", name)
    return _BACKEND


class _CheckedReader:
    """The benchmark file as the streaming parser sees it: a leading UTF-8 BOM removed, and cut short
    (with `problem` set) at anything `json` would read differently (invalid UTF-8, the bytes in
    `_JSON_FORBIDDEN`, lone surrogate escapes). Raising from `read` instead would upset ijson's Python
    backend (its coroutines report the interruption as an unraisable exception).

    It also counts the unescaped quotes: yajl accepts a document followed by an *unterminated* string
    (``{} "abc``) where json reports extra data; in a valid document the count is even.
    """

    def __init__(self, f, unicode_space_ok: bool = True) -> None:
        self._f = f
        self._unicode_space_ok = unicode_space_ok
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._first = True
        self._pending = b""  # bytes read ahead while looking for a BOM
        self._pos = 0  # stream offset after the last byte returned
        self._tail = b""  # the last bytes returned, for escapes that straddle two reads
        self._decided = 0  # lone-surrogate matches starting before this offset have been judged
        self._odd_backslashes = False  # the last read ended with an odd run of backslashes
        self.quotes = 0  # unescaped '"' seen
        self.eof = False
        self.problem: str | None = None

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson probes the stream type with read(0)
            return self._f.read(0)
        if self.problem:
            return b""
        if self._first:  # drop a BOM, whatever the read size
            self._first = False
            head = self._f.read(len(codecs.BOM_UTF8))
            self._pending = b"" if head == codecs.BOM_UTF8 else head
        data = self._pending if size < 0 else self._pending[:size]
        self._pending = self._pending[len(data):]
        if size < 0 or len(data) < size:
            data += self._f.read(size - len(data) if size >= 0 else -1)
        try:
            return self._checked(data)
        except _NotStreamable as e:
            self.problem = str(e)
            self.eof = True
            return b""

    def _checked(self, data: bytes) -> bytes:
        final = not data
        self.eof = self.eof or final
        try:
            self._decoder.decode(data, final)
        except UnicodeDecodeError as e:
            raise _NotStreamable(f"not UTF-8 ({e.reason})") from None
        for b in _JSON_FORBIDDEN:
            if b in data:
                raise _NotStreamable(f"control character {b!r}")
        buf = self._tail + data
        base = self._pos - len(self._tail)
        if not self._unicode_space_ok and not data.isascii() and _UNICODE_SPACE.search(buf):
            raise _NotStreamable("non-ASCII white space (ijson's Python parser would skip it)")
        self._pos += len(data)
        limit = len(buf) if final else len(buf) - 11  # an escape needs the next one in `buf` to be judged
        for m in _SURROGATE_ESCAPE.finditer(buf):
            i = m.start()
            if base + i < self._decided:
                continue
            if i >= limit:
                break
            if buf[i + 3] in b"89abAB":  # high: a low escape must follow
                ok = _SURROGATE_ESCAPE.match(buf, i + 6) is not None and buf[i + 9] in b"cdefCDEF"
            else:  # low: a high escape must precede (the read before is in `_tail`)
                ok = i >= 6 and _SURROGATE_ESCAPE.match(buf, i - 6) is not None and buf[i - 3] in b"89abAB"
            if not ok:
                raise _NotStreamable("a lone surrogate escape")
        self._decided = max(self._decided, base + limit)
        self._tail = buf[-_SURROGATE_CONTEXT:]
        quotes = data.count(b'"')
        if quotes:  # minus the escaped ones: preceded by an odd run of backslashes (maybe from the last read)
            text = b"\\" + data if self._odd_backslashes else data
            i = text.find(b'\\"')
            while i != -1:
                j = i
                while j >= 0 and text[j] == 0x5C:
                    j -= 1
                quotes -= (i - j) % 2
                i = text.find(b'\\"', i + 2)
        self.quotes += quotes
        if data:
            run = len(data) - len(data.rstrip(b"\\"))
            odd = run % 2 == 1
            self._odd_backslashes = self._odd_backslashes ^ odd if run == len(data) else odd
        return data


def _stream_json(f, spool: _Spool, backend: Any) -> Any:
    """Build the document from parser events, moving long strings to `spool` as they arrive.

    Objects go through `_object_hook` like in `json.loads`, so repeated keys are detected the same way.
    """
    reader = _CheckedReader(f, unicode_space_ok=getattr(backend, "backend_name", "") != "python")
    try:
        root = _build(backend.basic_parse(reader, use_float=True, buf_size=_READ_CHUNK), spool)
    except Exception:
        if reader.problem:  # the parser failed because the reader cut the file short
            raise _NotStreamable(reader.problem) from None
        raise
    while not reader.eof:  # the parser stopped before the end (it should not): the rest must be blank
        if reader.read(_READ_CHUNK).strip(b" \t\n\r"):
            raise _NotStreamable("data after the document")
    if reader.problem:  # the document may have looked complete: the json module decides
        raise _NotStreamable(reader.problem)
    if reader.quotes % 2:
        raise _NotStreamable("an unterminated string after the document")
    if len(root) != 1:
        raise _NotStreamable("not exactly one document")
    return root[0]


def _build(events: Iterator[tuple[str, Any]], spool: _Spool) -> list:
    """ijson ``basic_parse`` events -> [document] (objects via `_object_hook`, long strings spooled)."""
    stack: list[list] = []  # open containers: [items, is_object, pending key]
    root: list = []
    min_chars = _min_chars()
    for event, value in events:
        if event == "map_key":
            stack[-1][2] = value
            continue
        if event == "start_map" or event == "start_array":
            if len(stack) >= _MAX_STREAM_DEPTH:
                raise _NotStreamable(f"nested deeper than {_MAX_STREAM_DEPTH} levels")
            stack.append([[], event == "start_map", None])
            continue
        if event == "end_map":
            value = _object_hook(stack.pop()[0])
        elif event == "end_array":
            value = stack.pop()[0]
        elif event == "string" and len(value) >= min_chars:
            value = spool.add(value)
        if stack:
            frame = stack[-1]
            frame[0].append((frame[2], value) if frame[1] else value)
        else:
            root.append(value)
    if stack:
        raise _NotStreamable("the document ended inside a container")
    return root


def _load_json(p: Path, shown: str, spool: _Spool) -> Any:
    """The parsed document, long strings in `spool`: streamed when possible, else through `json`."""
    backend = _ijson_backend()
    reason = "ijson is not installed"
    if backend is not None:
        try:
            with open(p, "rb") as f:
                return _stream_json(f, spool, backend)
        except BenchmarkError:
            raise
        except OSError as e:
            raise BenchmarkError(f"cannot read benchmark file {shown}: {e}.") from None
        except Exception as e:  # a syntax error, not UTF-8, ...: json gives the exact message (or reads it)
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            spool.reset()
    doc = _parse_json(_read_text(p, shown), shown)
    if backend is not None:
        log.warning("%s: read into memory with the json module; the streaming parser could not take it (%s)",
                    shown, reason)
    return _spool_tree(doc, spool)


def _load_jsonl(p: Path, shown: str, spool: _Spool) -> tuple[list, list[str]]:
    """(pairs, labels) of a JSONL file, read one line at a time, long strings in `spool`.

    Any problem sends the file through the in-memory path, which reports the exact error (the whole
    file is validated as UTF-8 before any line is parsed, as before).
    """
    items: list = []
    labels: list[str] = []
    try:
        with open(p, "rb") as f:
            lineno = 0
            for k, raw in enumerate(f):  # split at b"\n"; splitlines() then gives str.splitlines()'s lines
                if k == 0 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
                for line in raw.decode("utf-8").splitlines():
                    lineno += 1
                    if not line.strip():
                        continue
                    items.append(_spool_tree(json.loads(line, object_pairs_hook=_object_hook), spool))
                    labels.append(f"the pair on line {lineno}")
        if items:
            return items, labels
    except BenchmarkError:
        raise
    except OSError as e:
        raise BenchmarkError(f"cannot read benchmark file {shown}: {e}.") from None
    except Exception:  # noqa: BLE001 - the in-memory path below reports it exactly
        pass
    spool.reset()
    items, labels = _parse_jsonl_text(_read_text(p, shown), shown)
    return [_spool_tree(item, spool) for item in items], labels

