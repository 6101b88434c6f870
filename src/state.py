"""Durable per-pair records in a SQLite file in the run folder (HELM's *records*).

Edits and scores live in separate tables. A pair's edit is done when its row in `edits` exists —
and the row is written only after its image file is complete on disk (written to a temporary name,
fsynced, renamed). A score is done when its row in `scores` exists. Every row is committed on its own,
so a run killed with SIGKILL at any moment loses at most the pair in flight and never duplicates one:
rows are keyed by (category, pair_id) and, for scores, by the judge's fingerprint too.

Durability. The run's state.sqlite uses WAL with `synchronous=NORMAL`: a committed row is in the WAL file
before the commit returns, so a crash of the *process* (SIGKILL, an exception, an out-of-memory kill) at
any moment loses nothing committed. The WAL is fsynced only at checkpoints, so after an *operating-system*
crash or power loss the last commits before it may be lost — the database stays consistent (SQLite
guarantees that), and a pair whose record was lost is simply edited or scored again on resume (its image
is rewritten atomically; seeds are per pair, so the redo gives the same result). Image before record is
unchanged: the image is fsynced before its row is written. Data-parallel shard files (journal_mode
DELETE, `src/distributed.py`) keep `synchronous=FULL`.

`runs` logs each invocation (config fingerprint, model loads, swaps, stage seconds) so the report
can say how the records came to be.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS edits (
    category TEXT NOT NULL,
    pair_id TEXT NOT NULL,
    position INTEGER NOT NULL,           -- order of the category in the config, then of the pair
    status TEXT NOT NULL CHECK (status IN ('edited', 'invalid_input', 'edit_failed')),
    instruction TEXT,
    description TEXT,
    metadata TEXT NOT NULL,              -- JSON: the pair's other fields
    image_path TEXT,                     -- relative to the run folder; NULL unless edited
    output_sha256 TEXT,
    input_sha256 TEXT,
    seed INTEGER,
    editor_fingerprint TEXT NOT NULL,
    error TEXT,
    info TEXT NOT NULL,                  -- JSON: what the editor used (size, steps, ...)
    seconds REAL,
    created_at REAL NOT NULL,
    PRIMARY KEY (category, pair_id)
);
CREATE TABLE IF NOT EXISTS scores (
    category TEXT NOT NULL,
    pair_id TEXT NOT NULL,
    judge_fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('scored', 'score_failed')),
    score REAL,
    raw_reply TEXT,
    reasoning TEXT,
    error TEXT,
    attempts INTEGER NOT NULL,
    details TEXT NOT NULL,               -- JSON (e.g. the score distribution)
    template TEXT NOT NULL,
    template_hash TEXT NOT NULL,
    edit_sha256 TEXT NOT NULL,           -- the edited image that was scored
    seconds REAL,
    created_at REAL NOT NULL,
    PRIMARY KEY (category, pair_id, judge_fingerprint),
    CHECK ((status = 'scored') = (score IS NOT NULL))
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at REAL NOT NULL,
    finished_at REAL,
    stage TEXT NOT NULL,
    config_fingerprint TEXT NOT NULL,
    editor_fingerprint TEXT NOT NULL,
    judge_fingerprint TEXT NOT NULL,
    config TEXT NOT NULL,                -- JSON: the resolved config of this invocation
    stats TEXT NOT NULL DEFAULT '{}'     -- JSON: model loads, swaps, stage seconds
);
"""

SCHEMA_VERSION = "1"


@dataclass
class EditRecord:
    category: str
    pair_id: str
    position: int
    status: str
    instruction: str | None
    description: str | None
    metadata: dict[str, Any]
    image_path: str | None
    output_sha256: str | None
    input_sha256: str | None
    seed: int | None
    editor_fingerprint: str
    error: str | None
    info: dict[str, Any]
    seconds: float | None
    created_at: float


@dataclass
class ScoreRecord:
    category: str
    pair_id: str
    judge_fingerprint: str
    status: str
    score: float | None
    raw_reply: str | None
    reasoning: str | None
    error: str | None
    attempts: int
    details: dict[str, Any]
    template: str
    template_hash: str
    edit_sha256: str
    seconds: float | None
    created_at: float


_JSON_FIELDS = {"metadata", "info", "details"}


def _row_to(cls, row: sqlite3.Row):
    data = {k: (json.loads(row[k]) if k in _JSON_FIELDS else row[k]) for k in row.keys()}
    return cls(**data)


def _values(record) -> dict[str, Any]:
    return {k: (json.dumps(v, ensure_ascii=False, sort_keys=True) if k in _JSON_FIELDS else v)
            for k, v in vars(record).items()}


class StateError(Exception):
    """The run's state.sqlite is damaged (exit 2 with one line: what to do)."""


class State:
    """The run's SQLite file. One connection, autocommit per record (each write is durable alone).

    An existing file is checked with `PRAGMA integrity_check` when it is opened (a resume): a truncated
    or corrupted file stops the run with a `StateError` instead of a traceback half-way through."""

    def __init__(self, path: str | Path, journal_mode: str = "WAL") -> None:
        self.path = Path(path)
        existed = self.path.is_file() and self.path.stat().st_size > 0
        self.conn = sqlite3.connect(str(self.path), isolation_level=None)  # autocommit
        try:
            self.conn.row_factory = sqlite3.Row
            if existed:
                self.check_integrity()
            self.conn.execute(f"PRAGMA journal_mode={journal_mode}")  # DELETE for data-parallel shard files
            # WAL + NORMAL: a commit is durable against a process crash (kill -9) and ~50x cheaper than FULL
            # (no fsync per commit; module docstring). Other journal modes (the shard files) stay FULL.
            wal = journal_mode.upper() == "WAL"
            self.conn.execute(f"PRAGMA synchronous={'NORMAL' if wal else 'FULL'}")
            self.conn.executescript(SCHEMA)
            if self.get_meta("schema_version") is None:
                self.set_meta("schema_version", SCHEMA_VERSION)
        except BaseException:
            self.conn.close()
            raise

    def check_integrity(self) -> None:
        try:
            rows = [r[0] for r in self.conn.execute("PRAGMA integrity_check").fetchall()]
        except sqlite3.DatabaseError as e:
            if "full" in str(e).lower() or "readonly" in str(e).lower():
                raise
            raise StateError(f"{self.path} is damaged or not a SQLite database ({e}); restore it from a copy or "
                             "start a new run (the images already written are intact)") from None
        if rows != ["ok"]:
            raise StateError(f"{self.path} failed SQLite's integrity check ({'; '.join(rows[:3])}); restore it "
                             "from a copy or start a new run (the images already written are intact)")

    def close(self) -> None:
        self.conn.close()

    # -- meta
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    # -- edits
    def put_edit(self, rec: EditRecord) -> None:
        vals = _values(rec)
        cols = ", ".join(vals)
        marks = ", ".join("?" for _ in vals)
        self.conn.execute(f"INSERT OR REPLACE INTO edits ({cols}) VALUES ({marks})", tuple(vals.values()))

    def edits(self) -> list[EditRecord]:
        rows = self.conn.execute("SELECT * FROM edits ORDER BY position").fetchall()
        return [_row_to(EditRecord, r) for r in rows]

    def edit_map(self) -> dict[tuple[str, str], EditRecord]:
        return {(r.category, r.pair_id): r for r in self.edits()}

    def delete_edit(self, category: str, pair_id: str) -> None:
        self.conn.execute("DELETE FROM edits WHERE category = ? AND pair_id = ?", (category, pair_id))

    # -- scores
    def put_score(self, rec: ScoreRecord) -> None:
        vals = _values(rec)
        cols = ", ".join(vals)
        marks = ", ".join("?" for _ in vals)
        self.conn.execute(f"INSERT OR REPLACE INTO scores ({cols}) VALUES ({marks})", tuple(vals.values()))

    def scores(self, judge_fingerprint: str | None = None) -> list[ScoreRecord]:
        if judge_fingerprint is None:
            rows = self.conn.execute("SELECT * FROM scores").fetchall()
        else:
            rows = self.conn.execute("SELECT * FROM scores WHERE judge_fingerprint = ?", (judge_fingerprint,)).fetchall()
        return [_row_to(ScoreRecord, r) for r in rows]

    def score_map(self, judge_fingerprint: str) -> dict[tuple[str, str], ScoreRecord]:
        return {(r.category, r.pair_id): r for r in self.scores(judge_fingerprint)}

    def judge_fingerprints(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT judge_fingerprint FROM scores")]

    # -- invocations
    def start_invocation(self, stage: str, config: dict, config_fp: str, editor_fp: str, judge_fp: str) -> int:
        cur = self.conn.execute(
            "INSERT INTO runs (started_at, stage, config_fingerprint, editor_fingerprint, judge_fingerprint, config) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), stage, config_fp, editor_fp, judge_fp, json.dumps(config, ensure_ascii=False)))
        return int(cur.lastrowid)

    def update_invocation(self, run_id: int, stats: dict, finished: bool = False) -> None:
        if finished:
            self.conn.execute("UPDATE runs SET stats = ?, finished_at = ? WHERE id = ?",
                              (json.dumps(stats), time.time(), run_id))
        else:
            self.conn.execute("UPDATE runs SET stats = ? WHERE id = ?", (json.dumps(stats), run_id))

    def invocations(self) -> list[dict[str, Any]]:
        out = []
        for r in self.conn.execute("SELECT * FROM runs ORDER BY id"):
            d = dict(r)
            d["config"] = json.loads(d["config"])
            d["stats"] = json.loads(d["stats"])
            out.append(d)
        return out


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write bytes so that `path` is either absent/old or complete: temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a read-only folder, an interrupt: leave no orphan behind
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - platforms without directory fsync
        pass

