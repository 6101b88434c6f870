"""Edited images are PNG-encoded and written on one background thread while the editor works on the next
batch; their records are committed on the pipeline's thread, each after its image is on disk.

Why: encoding a 1024² edit at PNG level 4 takes 0.1–0.4 s and the fsync of the file and its folder a few
ms more (docs/benchmarks.md, section 1). Done inline, the GPU waits for it between batches. zlib and the
file system release the GIL, so one writer thread overlaps with the editor's next call.

The order that makes a run resumable is unchanged: a pair is done when its edit record exists, and the
record is committed only after `write_file_atomic` has made its image durable (nanochat's rule). A crash
or kill in between leaves, at worst, an image without a record: that pair is edited again on resume (same
seed, same bytes) and the file is replaced atomically.

- Records are committed in submission order (the head of the queue first), so the state is the same as
  with inline writes.
- At most `max_pending` images wait for the writer; `submit` then blocks on the oldest, which bounds the
  host memory held by edited images (8 × 3 MiB for 1024² RGB).
- A write that fails (a full disk, a read-only folder) raises its OSError on the pipeline's thread at the
  next `submit`/`close`, as an inline write would have. Images already on disk still get their records
  first, and the writer finishes what it holds before the error leaves `edit_pairs` (`__exit__`).
- `background=False` encodes and writes inline (same bytes, same records); used where a thread is not
  wanted, and by tests that compare the two.

SQLite connections stay on the pipeline's thread: the writer thread never touches `State`.

With `run_dir`, the writer also writes the report gallery's files for each edit: the thumbnails of the
edit and of its original (`src/gallery.py: write_thumbnail`, from the images in memory: no decode) and the
copy of the original's bytes exactly as they were edited (`store_original`), which the report stage used
to make all at once at the end of the run. They are cache files: one that fails or is missing is made by
the report stage; they never hold up or fail an edit record beyond the time to write them.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from PIL import Image

from src.state import write_file_atomic

log = logging.getLogger(__name__)


def encode_and_write(image: Image.Image, path: Path, compress_level: int) -> str:
    """PNG-encode `image` (as RGB), write it atomically and durably to `path`; return the bytes' sha256."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=compress_level)
    data = buf.getvalue()
    write_file_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def _write(image: Image.Image, path: Path, compress_level: int, run_dir: Path | None,
           originals: list[tuple[Image.Image, str, bytes]]) -> str:
    sha = encode_and_write(image, path, compress_level)
    if run_dir is not None:  # the gallery's files (never a failure of the edit: src/gallery.py)
        from src.gallery import store_original, write_thumbnail

        write_thumbnail(run_dir, image, sha)
        for im, im_sha, raw in originals:
            store_original(run_dir, raw, im_sha)
            write_thumbnail(run_dir, im, im_sha)
    return sha


class EditWriter:
    def __init__(self, compress_level: int, *, background: bool = True, max_pending: int = 8,
                 run_dir: Path | None = None):
        self.compress_level = compress_level
        self.run_dir = run_dir  # given: also write the gallery's thumbnails of each edit and its original
        self.max_pending = max(1, max_pending)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="png-writer") if background else None
        self._pending: deque[tuple[Future, Callable[[str], None]]] = deque()

    def submit(self, image: Image.Image, path: Path, commit: Callable[[str], None],
               originals: list[tuple[Image.Image, str, bytes]] = ()) -> None:
        """Write `image` to `path`; once it is durable, `commit(sha256)` runs on this thread (at a later
        `submit`, `collect` or `close`). With `run_dir`, the gallery's thumbnail of the image, and for each
        (decoded image, sha256, raw bytes) in `originals` its copy and thumbnail, are written after it (the
        record does not wait for them to be durable)."""
        args = (image, path, self.compress_level, self.run_dir, list(originals))
        if self._pool is None:
            commit(_write(*args))
            return
        self._pending.append((self._pool.submit(_write, *args), commit))
        self.collect(wait_for=len(self._pending) - self.max_pending)

    def collect(self, wait_for: int = 0) -> None:
        """Commit the records of written images, oldest first: wait for the `wait_for` oldest, then take
        every one already done. Raises the first failed write's error (after the records before it)."""
        while self._pending and (wait_for > 0 or self._pending[0][0].done()):
            future, commit = self._pending.popleft()
            wait_for -= 1
            commit(future.result())

    def close(self) -> None:
        """Wait for every image, commit every record."""
        self.collect(wait_for=len(self._pending))
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> "EditWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        # The stage is failing (an error, Ctrl-C, a sticky device error): let the writer finish what it
        # holds and keep every edit that reached the disk, so no finished edit is lost.
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        while self._pending:
            future, commit = self._pending.popleft()
            try:
                commit(future.result())
            except BaseException as e:  # noqa: BLE001 - the original error is the one to report
                log.debug("after %s: an edit was not recorded: %s", exc_type.__name__, e)
