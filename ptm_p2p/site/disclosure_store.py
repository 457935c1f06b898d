"""The SQLite storage of what a site has revealed (``HOME/disclosure.db``, for
``disclosure.py``): typed rows of each answer, its β probes, groupings, secure sums and the
populations it was computed over, read by the rules and written whole, in one transaction,
once an answer is ``ok``. WAL and ``synchronous=FULL``: a write is durable when the call
returns. Holds no rule: only what was revealed (``Reservation``) and how to read it back."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ptm_p2p.errors import StoreError
from ptm_p2p.site.disclosure_data import Table
from ptm_p2p.site.disclosure_request import Request

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    task BLOB PRIMARY KEY,          -- hash of the task entry answered ok
    task_index INTEGER NOT NULL,
    label TEXT NOT NULL,            -- the data source the answer was computed over
    kind TEXT NOT NULL,             -- the image's name (coxph-pooled, km, summary, ...)
    publisher TEXT NOT NULL,        -- hex key of the task's publisher
    org TEXT NOT NULL,              -- its organisation when the task was answered
    recorded REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS probes (
    label TEXT NOT NULL,
    probe BLOB NOT NULL,            -- SHA-256 of (model, duration, event, covariates, β)
    task BLOB NOT NULL,             -- the first task answered at it
    publisher TEXT NOT NULL,
    org TEXT NOT NULL,
    PRIMARY KEY (label, probe)
);
CREATE TABLE IF NOT EXISTS groupings (
    label TEXT NOT NULL,
    columns TEXT NOT NULL,          -- JSON list of column names, sorted
    task BLOB NOT NULL,             -- the first task answered with it
    PRIMARY KEY (label, columns)
);
CREATE TABLE IF NOT EXISTS sums (
    task BLOB NOT NULL,             -- a secure-sum task answered ok
    label TEXT NOT NULL,
    query BLOB NOT NULL,            -- SHA-256 of what decides the answer (Request.query)
    targets TEXT NOT NULL,          -- JSON list of the task's target keys (hex), sorted
    PRIMARY KEY (task, label)
);
CREATE TABLE IF NOT EXISTS populations (
    label TEXT NOT NULL,
    content BLOB NOT NULL,          -- SHA-256 of the data file as answered
    header TEXT NOT NULL,           -- JSON list of its columns
    n INTEGER NOT NULL,             -- its rows
    rows BLOB NOT NULL,             -- sorted 16-byte digests, one per row (all columns)
    task BLOB NOT NULL,             -- the first task answered over it
    PRIMARY KEY (label, content)
);
"""


@dataclass
class Reservation:
    """What one answer reveals: reserved by a check while its task runs, written when it
    is settled ``ok`` (or recorded whole by the catch-up)."""

    request: Request
    publisher: str
    org: str
    task_index: int
    probes: dict[str, list[bytes]] = field(default_factory=dict)  # label -> new probe keys
    groupings: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)  # new sets
    populations: dict[str, Table] = field(default_factory=dict)  # label -> data as checked
    sums: dict[str, tuple[bytes, tuple[str, ...]]] = field(default_factory=dict)
    # label -> (query, the targets) of a secure-sum answer


class Population(NamedTuple):
    """A data source's rows as some answer read them: recorded, or reserved in flight."""

    label: str
    content: bytes  # SHA-256 of the data file
    header: tuple[str, ...]
    n: int  # its rows
    rows: bytes  # ``Table.packed_digests``


class DisclosureStore:
    """The rows of ``HOME/disclosure.db``: opened (schema created) at construction."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the site's disclosure record {self.path}: {exc}; check the disk "
                "and the file's permissions (move a damaged file away: it is rebuilt from the "
                "ledger at the next start)"
            ) from exc

    def close(self) -> None:
        self.db.close()

    # --- reading ---------------------------------------------------------------------------

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the disclosure record {self.path}: {exc}") from exc

    def answered(self, task: bytes) -> bool:
        return bool(self._rows("SELECT 1 FROM answers WHERE task = ?", (task,)))

    def probes_used(self, label: str) -> int:
        return int(self._rows("SELECT COUNT(*) FROM probes WHERE label = ?", (label,))[0][0])

    def probes(self, label: str) -> set[bytes]:
        """The β probes answered over ``label``, by everyone."""
        rows = self._rows("SELECT probe FROM probes WHERE label = ?", (label,))
        return {bytes(row[0]) for row in rows}

    def groupings(self, label: str) -> list[tuple[str, ...]]:
        """The column sets answers over ``label`` were split by."""
        rows = self._rows("SELECT columns FROM groupings WHERE label = ?", (label,))
        return [tuple(json.loads(row[0])) for row in rows]

    def sums(self, label: str, query: bytes) -> list[tuple[bytes, tuple[str, ...]]]:
        """The secure sums answered over ``label`` for ``query``: (task, its targets)."""
        rows = self._rows(
            "SELECT task, targets FROM sums WHERE label = ? AND query = ?", (label, query)
        )
        return [(bytes(row[0]), tuple(json.loads(row[1]))) for row in rows]

    def has_population(self, label: str, content: bytes) -> bool:
        """Whether an answer over this version of ``label`` is recorded."""
        return bool(
            self._rows(
                "SELECT 1 FROM populations WHERE label = ? AND content = ?", (label, content)
            )
        )

    def populations(self) -> list[Population]:
        """Every population answered, of every data source."""
        rows = self._rows("SELECT label, content, header, n, rows FROM populations")
        return [
            Population(label, bytes(content), tuple(json.loads(header)), int(n), bytes(packed))
            for label, content, header, n, packed in rows
        ]

    # --- writing ---------------------------------------------------------------------------

    def write(self, task: bytes, r: Reservation) -> None:
        """Record what an ``ok`` answer revealed: whole or not at all."""
        try:
            with self.db:  # one transaction: an answer is recorded whole or not at all
                self.db.execute("BEGIN")
                self._write_answer(task, r)
                self._write_revealed(task, r)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the disclosure record {self.path}: {exc}") from exc

    def _write_answer(self, task: bytes, r: Reservation) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                task,
                r.task_index,
                ",".join(r.request.labels),
                r.request.kind,
                r.publisher,
                r.org,
                time.time(),
            ),
        )

    def _write_revealed(self, task: bytes, r: Reservation) -> None:
        for label, probes in r.probes.items():
            for probe in probes:
                self.db.execute(
                    "INSERT OR IGNORE INTO probes VALUES (?, ?, ?, ?, ?)",
                    (label, probe, task, r.publisher, r.org),
                )
        for label, (query, targets) in r.sums.items():
            self.db.execute(
                "INSERT OR IGNORE INTO sums VALUES (?, ?, ?, ?)",
                (task, label, query, json.dumps(sorted(targets))),
            )
        for label, groupings in r.groupings.items():
            for grouping in groupings:
                self.db.execute(
                    "INSERT OR IGNORE INTO groupings VALUES (?, ?, ?)",
                    (label, json.dumps(sorted(grouping)), task),
                )
        for label, table in r.populations.items():
            if self.db.execute(
                "SELECT 1 FROM populations WHERE label = ? AND content = ?",
                (label, table.content),
            ).fetchone():
                continue  # this version is recorded already
            self.db.execute(
                "INSERT OR IGNORE INTO populations VALUES (?, ?, ?, ?, ?, ?)",
                (
                    label,
                    table.content,
                    json.dumps(list(table.header)),
                    len(table.rows),
                    table.packed_digests(),
                    task,
                ),
            )
