"""The spool: long strings of a loaded benchmark (base64 images, blobs) kept in an unnamed temporary file.

A `PairSpec` keeps only an offset and a length (`_Spooled`), so peak memory is one pair plus the small
per-pair fields, whatever the number of pairs. See the `src.data` package docstring.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any

from src.data.errors import BenchmarkError


def _min_chars() -> int:
    import src.data  # the knob lives on the package (src.data.SPOOL_MIN_CHARS), read at call time

    return src.data.SPOOL_MIN_CHARS



class _Spool:
    """Append-only unnamed temporary file holding the long strings of one loaded benchmark.

    Created on the first string (a benchmark with only small values never opens a file). Reads use
    ``os.pread`` (no shared file position), so pairs may be decoded from several threads. The file is
    closed by `close` or when the object is garbage-collected (every `_Spooled` refers to it).
    """

    def __init__(self, directory: str | None = None) -> None:
        self._directory = directory
        self._fd: int | None = None
        self._file = None
        self._end = 0
        self._lock = threading.Lock()
        self.closed = False

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._end

    def add(self, text: str) -> _Spooled:
        data = text.encode("utf-8", "surrogatepass")
        with self._lock:
            if self.closed:
                raise RuntimeError("the benchmark spool is closed")
            try:
                if self._file is None:
                    self._file = tempfile.TemporaryFile(prefix="ieb-bench-spool-", dir=self._directory,
                                                        buffering=0)
                    self._fd = self._file.fileno()
                offset = self._end
                view = memoryview(data)
                while view:
                    n = os.pwrite(self._fd, view, self._end) if hasattr(os, "pwrite") else self._seek_write(view)
                    view = view[n:]
                    self._end += n
            except OSError as e:
                where = self._directory or tempfile.gettempdir()
                raise BenchmarkError(
                    f"cannot write the temporary spool file that holds the benchmark's images (in {where}): "
                    f"{e}. It needs about as much free space as the images' base64 text; point TMPDIR (or "
                    "src.data.SPOOL_DIR) at a folder with room.") from None
        return _Spooled(self, offset, len(data), len(text), not text or text.isspace(), text[:200])

    def _seek_write(self, view: memoryview) -> int:  # pragma: no cover - platforms without os.pwrite
        self._file.seek(self._end)
        return self._file.write(view)

    def read(self, offset: int, nbytes: int) -> str:
        with self._lock:  # so that close() cannot take the file away in the middle of a read
            if self.closed:
                raise RuntimeError("the benchmark was closed (Benchmark.close()); its images are no longer "
                                   "available")
            chunks, pos, todo = [], offset, nbytes
            while todo > 0:
                if hasattr(os, "pread"):
                    chunk = os.pread(self._fd, todo, pos)
                else:  # pragma: no cover - Windows
                    self._file.seek(pos)
                    chunk = self._file.read(todo)
                if not chunk:
                    raise RuntimeError(f"the benchmark spool file ended early ({pos} of {offset + nbytes} bytes)")
                chunks.append(chunk)
                pos += len(chunk)
                todo -= len(chunk)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return data.decode("utf-8", "surrogatepass")

    def reset(self) -> None:
        """Forget everything written (a failed streaming attempt is redone another way)."""
        with self._lock:
            if self._file is not None:
                self._file.truncate(0)
            self._end = 0

    def close(self) -> None:
        with self._lock:
            self.closed = True
            if self._file is not None:
                self._file.close()
                self._file = None
                self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class _Spooled:
    """A long JSON string stored in a `_Spool`: what the loader needs to know without reading it back."""

    __slots__ = ("spool", "offset", "nbytes", "length", "blank", "head")

    def __init__(self, spool: _Spool, offset: int, nbytes: int, length: int, blank: bool, head: str) -> None:
        self.spool, self.offset, self.nbytes = spool, offset, nbytes
        self.length = length  # in characters
        self.blank = blank  # only whitespace
        self.head = head  # the first 200 characters

    def text(self) -> str:
        return self.spool.read(self.offset, self.nbytes)

    def __reduce__(self):  # pickle/deepcopy: a plain string, independent of the spool
        return str, (self.text(),)

    def __repr__(self) -> str:
        return f"<{self.length:,} characters kept on disk>"


def _text(value: str | _Spooled) -> str:
    return value.text() if isinstance(value, _Spooled) else value


def _blank(value: str | _Spooled) -> bool:
    return value.blank if isinstance(value, _Spooled) else not value.strip()


def _materialize(value: Any) -> Any:
    """`value` with every `_Spooled` inside it read back (containers are updated in place)."""
    if isinstance(value, _Spooled):
        return value.text()
    stack = [value] if isinstance(value, (dict, list)) else []
    while stack:  # iterative: nesting depth is not limited by the recursion limit
        container = stack.pop()
        entries = container.items() if isinstance(container, dict) else enumerate(container)
        updates = []
        for key, item in entries:
            if isinstance(item, _Spooled):
                updates.append((key, item.text()))
            elif isinstance(item, (dict, list)):
                stack.append(item)
        for key, item in updates:
            container[key] = item
    return value


def _spool_tree(value: Any, spool: _Spool) -> Any:
    """A parsed JSON value with its long strings moved to `spool` (containers updated in place)."""
    if isinstance(value, str):
        return spool.add(value) if len(value) >= _min_chars() else value
    min_chars = _min_chars()
    stack = [value] if isinstance(value, (dict, list)) else []
    while stack:
        container = stack.pop()
        entries = container.items() if isinstance(container, dict) else enumerate(container)
        updates = []
        for key, item in entries:
            if isinstance(item, str):
                if len(item) >= min_chars:
                    updates.append((key, spool.add(item)))
            elif isinstance(item, (dict, list)):
                stack.append(item)
        for key, item in updates:
            container[key] = item
    return value



def _kind(value: Any) -> str:
    """'an object', 'a list', 'a string', ... for messages."""
    if value is None:
        return "null"
    if isinstance(value, _Spooled):
        return "a string"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)
