"""A site's durable record of the tasks it acts on: what exactly-once rests on.

One small SQLite file per site home (``HOME/tasks.db``, WAL, ``synchronous=FULL``), one row
per task the site has started to act on:

* ``running``: a container may be running for the task. Written *before* the container is
  created, so a site killed mid-run finds the row at restart, removes what is left of the
  container and answers ``failed`` (interrupted) instead of running the task a second time
  (a run that crashed the daemon once may well do it again; the researcher decides).
* ``signed``: the site signed its result entry and stored its exact bytes here *before*
  handing it to the hub. Until the log holds it, the same bytes are resubmitted (the hub
  treats a resubmission as idempotent), never re-signed: a site can then never sign two
  different results for one task, nor two different entries with one sequence number.
* ``done``: the site's verified replica holds the result.

A signed format-2 result also keeps what only the site may reveal later: the container log
(``log``, at most the policy's ``logs`` size), its 32-byte log nonce ``l`` and the
``log_commit`` signed in the entry (SHA-256("ptm/log/v2\n" || l || log)). The researcher
holds ``l`` too (inside the key box), so the site can hand its log to the researcher or,
with ``l``, to an auditor, and either can check it against the signed entry.

A write that fails (a full disk, a read-only file) raises ``StoreError``; the worker then
backs off and shows the fault (``faults.py``) instead of retrying at once. Rows are keyed by
the task entry's hash; the log, not this file, is the record of truth for
everyone else. Deleting this file is safe only while the site has nothing in flight.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ptm_p2p.errors import StoreError

JOURNAL_FILE = "tasks.db"

RUNNING, SIGNED, DONE = "running", "signed", "done"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    task BLOB PRIMARY KEY,          -- hash of the task entry
    task_index INTEGER NOT NULL,    -- its index in the log (for people reading the file)
    state TEXT NOT NULL,            -- running | signed | done
    seq INTEGER,                    -- our result entry's seq, once signed
    result BLOB,                    -- our signed result entry, once signed
    status TEXT,                    -- the result's status, once signed
    updated REAL NOT NULL,
    log BLOB,                       -- format 2: the container log the result commits to
    log_nonce BLOB,                 -- format 2: its 32-byte nonce l
    log_commit BLOB                 -- format 2: the result's log_commit (see above)
);
CREATE INDEX IF NOT EXISTS runs_by_state ON runs(state);
"""
_LOG_COLUMNS = (("log", "BLOB"), ("log_nonce", "BLOB"), ("log_commit", "BLOB"))
"""Added by format 2; a journal written before gets them at open (ALTER TABLE)."""


@dataclass(frozen=True)
class Run:
    task: bytes
    task_index: int
    state: str
    seq: int | None
    result: bytes | None
    status: str | None


@dataclass(frozen=True)
class LogProof:
    """A format-2 result's container log, its nonce ``l`` and the signed ``log_commit``."""

    log: bytes | None
    nonce: bytes | None
    commit: bytes | None


class Journal:
    """The rows of ``HOME/tasks.db``; every write is durable when the call returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
            have = {row[1] for row in self.db.execute("PRAGMA table_info(runs)")}
            for name, kind in _LOG_COLUMNS:
                if name not in have:
                    self.db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the site's task journal {path}: {exc}; check the disk and "
                "the file's permissions (it must be writable by the site daemon)"
            ) from exc

    def close(self) -> None:
        self.db.close()

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        try:
            self.db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the task journal {self.path}: {exc}") from exc

    def _read(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the task journal {self.path}: {exc}") from exc

    def get(self, task: bytes) -> Run | None:
        rows = self._read(
            "SELECT task, task_index, state, seq, result, status FROM runs WHERE task = ?",
            (task,),
        )
        return Run(*rows[0]) if rows else None  # type: ignore[arg-type]

    def in_state(self, state: str) -> list[Run]:
        rows = self._read(
            "SELECT task, task_index, state, seq, result, status FROM runs WHERE state = ? "
            "ORDER BY task_index",
            (state,),
        )
        return [Run(*row) for row in rows]  # type: ignore[arg-type]

    def last_signed(self) -> Run | None:
        """Our newest signed result entry not yet seen in the log (the chain continues there)."""
        rows = self._read(
            "SELECT task, task_index, state, seq, result, status FROM runs "
            "WHERE state = ? ORDER BY seq DESC LIMIT 1",
            (SIGNED,),
        )
        return Run(*rows[0]) if rows else None  # type: ignore[arg-type]

    def start(self, task: bytes, task_index: int) -> None:
        """Record, before any container exists, that the task is being run."""
        self._write(
            "INSERT INTO runs (task, task_index, state, updated) VALUES (?, ?, ?, ?)",
            (task, task_index, RUNNING, time.time()),
        )

    def signed(
        self,
        task: bytes,
        task_index: int,
        seq: int,
        raw: bytes,
        status: str,
        log: LogProof | None = None,
    ) -> None:
        """Record our signed result entry (its exact bytes) before it leaves this machine,
        with, for format 2, the container log and the nonce its commitment used."""
        log = log or LogProof(None, None, None)
        self._write(
            "INSERT INTO runs (task, task_index, state, seq, result, status, updated, log, "
            "log_nonce, log_commit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(task) DO UPDATE SET state = excluded.state, "
            "seq = excluded.seq, result = excluded.result, status = excluded.status, "
            "updated = excluded.updated, log = excluded.log, log_nonce = excluded.log_nonce, "
            "log_commit = excluded.log_commit",
            (
                task,
                task_index,
                SIGNED,
                seq,
                raw,
                status,
                time.time(),
                log.log,
                log.nonce,
                log.commit,
            ),
        )

    def log_proof(self, task: bytes) -> LogProof | None:
        """The container log of our result on ``task`` and what proves it (format 2)."""
        row = self.db.execute(
            "SELECT log, log_nonce, log_commit FROM runs WHERE task = ?", (task,)
        ).fetchone()
        if row is None or row[2] is None:
            return None
        return LogProof(*row)

    def done(self, task: bytes) -> None:
        self._write(
            "UPDATE runs SET state = ?, updated = ? WHERE task = ?", (DONE, time.time(), task)
        )

    def counts(self) -> dict[str, int]:
        rows = self._read("SELECT state, COUNT(*) FROM runs GROUP BY state", ())
        return {str(state): int(count) for state, count in rows}  # type: ignore[call-overload]
