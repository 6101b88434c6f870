"""Data-parallel runs: N processes (one per GPU, on one or many machines) share one run folder.

Started by `accelerate launch --num_processes N main.py ...` or `torchrun --nproc_per_node N main.py ...`
(both set RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT). Without them the run is the
ordinary single process and nothing here costs anything (torch is not even imported).

The design, so that a run stays crash-safe with several writers on a shared (network) filesystem:

- Only the main process (rank 0) ever opens the run's `state.sqlite`. It checks the resume, records
  the plan and the invocation, works out what is pending, and broadcasts that list to every rank.
- Each rank takes its share of the pending pairs — a stable hash of (category, pair id) modulo N, so a
  resume with another N redistributes exactly what is left — runs both stages for it (each rank loads
  the editor once and the judge once: the two-stage swap, per process), writes images to the run
  folder as usual, and its records to its OWN file `shards/<invocation>-rank<r>.sqlite` (rollback
  journal, no WAL: one writer per file, readable after it is closed, also over NFS).
- After each stage: a barrier; rank 0 merges every shard file into `state.sqlite` in one transaction
  (the newest record of a pair wins, so merging twice is harmless) and deletes it; a barrier. Shards
  left by a killed run are merged by the next run's rank 0 before anything is planned.
- Rank 0 alone writes the report, from the merged records — the same records a single process writes.

Collectives go over torch.distributed's gloo backend (CPU sockets), whatever the models run on; the
timeout is long (IEB_DIST_TIMEOUT_HOURS, default 48) because a barrier waits for a whole stage.
Each rank uses GPU LOCAL_RANK (torch.cuda.set_device), so `device: auto` / `cuda` means "my GPU".
Tested on CPU with 2 processes (gloo). Not run on GPUs or across machines in this project's CI.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

log = logging.getLogger("ieb")
T = TypeVar("T")


class DistributedError(Exception):
    """Another rank stopped with an error (named in the message); this rank stops too."""


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def owns(self, category: str, pair_id: str) -> bool:
        return shard_of(category, pair_id, self.size) == self.rank

    def share(self, items: Iterable[T], key: Callable[[T], tuple[str, str]]) -> list[T]:
        """This rank's items: a stable hash of each item's (category, pair id) modulo the world size."""
        return [item for item in items if self.owns(*key(item))]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, make: Callable[[], Any]) -> Any:
        """Rank 0 computes `make()` and every rank gets its value. If rank 0 raises, the others raise a
        DistributedError naming it (no rank waits forever)."""
        if not self.distributed:
            return make()
        import torch.distributed as dist

        box: list[Any] = [None]
        error: BaseException | None = None
        if self.is_main:
            try:
                box[0] = ("ok", make())
            except BaseException as exc:  # noqa: BLE001 - told to the other ranks, then raised here
                error = exc
                box[0] = ("error", f"{type(exc).__name__}: {exc}")
        dist.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        kind, value = box[0]
        if kind == "error":
            raise DistributedError(f"the main process stopped: {value}")
        return value

    def close(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


_WORLD: World | None = None


def shard_of(category: str, pair_id: str, size: int) -> int:
    digest = hashlib.sha256(f"{category}\0{pair_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % size


def world() -> World:
    """This process's place in the run, set up once from the launcher's environment variables."""
    global _WORLD
    if _WORLD is None:
        _WORLD = _from_env()
    return _WORLD


def _from_env() -> World:
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return World()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        hours = float(os.environ.get("IEB_DIST_TIMEOUT_HOURS", "48"))
        dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=size,
                                timeout=datetime.timedelta(hours=hours))
    if torch.cuda.is_available():  # pragma: no cover - GPU-only path
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    return World(rank=rank, size=size, local_rank=local_rank)


# ----------------------------------------------------------------------------- shard files


def shard_path(run_dir: Path, invocation: int, rank: int) -> Path:
    return run_dir / "shards" / f"{invocation:06d}-rank{rank:04d}.sqlite"


def merge_shards(state, run_dir: Path) -> int:
    """Merge every shard file of the run into `state` (rank 0 only); return how many records moved.

    One transaction per shard; a record replaces the main file's only when it is at least as new
    (`created_at`), so a shard merged twice (killed between commit and delete) changes nothing."""
    folder = run_dir / "shards"
    if not folder.is_dir():
        return 0
    moved = 0
    for path in sorted(folder.glob("*.sqlite")):
        conn = state.conn
        conn.execute("ATTACH DATABASE ? AS shard", (str(path),))
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM shard.sqlite_master WHERE type = 'table'")}
            conn.execute("BEGIN IMMEDIATE")
            for table, key in (("edits", "category, pair_id"), ("scores", "category, pair_id, judge_fingerprint")):
                if table not in tables:
                    continue
                cols = [r[1] for r in conn.execute(f"PRAGMA main.table_info({table})")]
                names = ", ".join(cols)
                updates = ", ".join(f"{c} = excluded.{c}" for c in cols)
                cur = conn.execute(f"INSERT INTO main.{table} ({names}) SELECT {names} FROM shard.{table} WHERE true "
                                   f"ON CONFLICT({key}) DO UPDATE SET {updates} "
                                   f"WHERE excluded.created_at >= {table}.created_at")
                moved += max(cur.rowcount, 0)
            conn.execute("COMMIT")
        except sqlite3.DatabaseError:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.execute("DETACH DATABASE shard")
        for suffix in ("", "-journal"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    if moved:
        log.info("merged %d records from the processes' shard files", moved)
    return moved


def open_shard(path: Path):
    """A State on this rank's own shard file (rollback journal: one writer, safe on shared filesystems)."""
    from src.state import State

    path.parent.mkdir(parents=True, exist_ok=True)
    return State(path, journal_mode="DELETE")


__all__ = ["World", "world", "shard_of", "shard_path", "merge_shards", "open_shard", "DistributedError"]
