"""The durable log: entries in sequence order, their Merkle tree, checkpoints and evidence.

``LogStore`` is the interface; ``MemoryStore`` (tests, simulations) and ``SqliteStore``
(a home folder's ledger.db) implement it, and one contract test class runs on both.

What a store does and does not do:

* it keeps bytes and positions: entry ``i`` is the i-th leaf of the RFC 9162 tree;
* it keeps every *perfect* subtree hash ``(level, index)`` (see ``merkle``), written once when
  an append completes it, so any root or proof costs O(log n) node reads and the whole tree
  is never recomputed (only ``check_integrity`` does that, on purpose);
* it makes equivocation visible: ``(author, seq)`` is unique, and a second, different entry
  for a taken ``(author, seq)`` is recorded as evidence and refused;
* it does **not** verify signatures or workflow rules — replay does — so an auditor can open
  and inspect a tampered file.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ptm_p2p.errors import DamagedLedger, EquivocationError, StoreError
from ptm_p2p.ledger import merkle

SCHEMA_APPLICATION = "ptm-ledger"
SCHEMA_VERSION = 1

#: Entries read at a time when a whole log is walked (replay, indexes, integrity checks):
#: bounds memory while amortising the reads.
READ_BATCH = 5000

EVIDENCE_EQUIVOCATION = "equivocation"
EVIDENCE_SPLIT_VIEW = "split-view"

# Schema version 1. idx is an INTEGER PRIMARY KEY, i.e. the rowid: range reads are one b-tree
# walk. UNIQUE(author, seq): a second entry for a taken sequence number cannot be stored, so
# equivocation is always visible (and head() is an index lookup).
_SCHEMA_V1 = (
    'CREATE TABLE "ptm_schema" (\n   "application" TEXT NOT NULL,\n   "version" INTEGER\n)',
    'CREATE TABLE "entries" (\n   "idx" INTEGER PRIMARY KEY,\n   "hash" BLOB NOT NULL,\n'
    '   "author" BLOB NOT NULL,\n   "seq" INTEGER NOT NULL,\n   "raw" BLOB NOT NULL\n)',
    'CREATE UNIQUE INDEX "idx_entries_hash"\n    ON "entries" ("hash")',
    'CREATE UNIQUE INDEX "idx_entries_author_seq"\n    ON "entries" ("author", "seq")',
    'CREATE TABLE "nodes" (\n   "level" INTEGER,\n   "idx" INTEGER,\n   "hash" BLOB NOT NULL,\n'
    '   PRIMARY KEY ("level", "idx")\n)',
    'CREATE TABLE "checkpoints" (\n   "id" INTEGER PRIMARY KEY,\n   "size" INTEGER NOT NULL,\n'
    '   "note" TEXT NOT NULL\n)',
    'CREATE TABLE "evidence" (\n   "id" INTEGER PRIMARY KEY,\n   "kind" TEXT NOT NULL,\n'
    '   "first" BLOB NOT NULL,\n   "second" BLOB NOT NULL,\n   "detail" TEXT NOT NULL,\n'
    '   "recorded_at" INTEGER NOT NULL\n)',
    'CREATE UNIQUE INDEX "idx_evidence_kind_first_second"\n'
    '    ON "evidence" ("kind", "first", "second")',
)


class EntryLike(Protocol):
    """What a store needs of an entry (``ledger.entry.Entry`` has all of it)."""

    @property
    def raw(self) -> bytes: ...  # the encoded entry, exactly as signed and sent

    @property
    def hash(self) -> bytes: ...  # SHA-256(raw)

    @property
    def author(self) -> bytes: ...  # 32-byte public key

    @property
    def seq(self) -> int: ...  # 1, 2, 3 … per author


@dataclass(frozen=True)
class Evidence:
    """Two conflicting signed objects kept for everyone to see (never deleted)."""

    id: int
    kind: str  # EVIDENCE_EQUIVOCATION (entries) or EVIDENCE_SPLIT_VIEW (checkpoint notes)
    first: bytes
    second: bytes
    detail: str
    recorded_at: int  # Unix milliseconds


@dataclass(frozen=True)
class _Conflict:
    first: bytes
    second: bytes
    detail: str


def _short(b: bytes) -> str:
    return b.hex()[:8]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _is_damage(exc: sqlite3.Error) -> bool:
    """True for SQLite's "the file is corrupt / not a database" errors (as opposed to busy,
    locked or disk-full), which deserve their own message: no retry will help."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _read_error(path: Path, exc: sqlite3.Error) -> StoreError:
    if _is_damage(exc):
        return StoreError(
            f"ledger {path}: the SQLite file itself is damaged ({exc}); nothing in it can be "
            "trusted — fetch a fresh copy from the hub or a site"
        )
    return StoreError(f"ledger {path}: read failed: {exc}")


def is_local_fault(exc: BaseException) -> bool:
    """True for a write of ours that failed and may work later (busy, locked, disk full).

    It belongs with the store's translation of SQLite's errors (``_is_damage``): everyone
    who writes a store (the verified log, the checkpoint book, the trust registry, the
    site's journal) asks it, and none of them needs the others for it.

    Such a failure says nothing about the peer whose entries we were storing. A damaged file
    is not transient (``DamagedLedger``, or SQLite's own corruption codes): it is reported as
    such and stops the daemon.
    """
    if not isinstance(exc, StoreError) or isinstance(exc, DamagedLedger):
        return False
    code = getattr(exc.__cause__, "sqlite_errorcode", None)
    damage = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return not (isinstance(code, int) and code & 0xFF in damage)


def _check_batch(entries: Sequence[EntryLike]) -> list[EntryLike]:
    batch = list(entries)
    for e in batch:
        raw = e.raw
        if not isinstance(raw, bytes) or not raw:
            raise StoreError(f"entry {e!r}: raw must be non-empty bytes")
        if e.hash != hashlib.sha256(raw).digest():
            raise StoreError(
                f"entry {e.seq} by {_short(e.author)}: hash is not SHA-256 of its bytes; "
                "build entries with Entry.create or Entry.from_bytes"
            )
        if len(e.author) != 32 or not isinstance(e.seq, int) or e.seq < 1:
            raise StoreError(
                f"entry {_short(e.hash)}: needs a 32-byte author and seq >= 1, "
                f"got {len(e.author)} bytes and seq {e.seq!r}"
            )
    return batch


class LogStore(ABC):
    """Append-only log of entries plus its Merkle nodes, checkpoints and evidence.

    Subclasses provide storage primitives; the append protocol, tree maintenance and proofs
    are written once here so both backends behave identically.
    """

    # --- storage primitives ------------------------------------------------------------------

    @abstractmethod
    def size(self) -> int:
        """Number of entries (the tree size)."""

    @abstractmethod
    def raw_range(self, start: int, end: int) -> list[bytes]:
        """Encoded entries ``start .. end-1``."""

    @abstractmethod
    def _read_nodes(self, coords: Sequence[merkle.Coord]) -> list[bytes]:
        """Perfect-subtree hashes, in the order asked; StoreError if one is missing."""

    @abstractmethod
    def _find_by_author_seq(
        self, keys: Sequence[tuple[bytes, int]]
    ) -> dict[tuple[bytes, int], bytes]:
        """Raw bytes of stored entries for the given (author, seq), where present."""

    @abstractmethod
    def _find_hashes(self, hashes: Sequence[bytes]) -> dict[bytes, int]:
        """Index of stored entries with the given hashes, where present."""

    @abstractmethod
    def _insert(
        self, start: int, batch: Sequence[EntryLike], nodes: Sequence[tuple[int, int, bytes]]
    ) -> None:
        """Write a validated batch and its nodes atomically and durably."""

    @abstractmethod
    def head(self, author: bytes) -> tuple[int, bytes] | None:
        """(last seq, last entry hash) of an author, None if it has no entries."""

    @abstractmethod
    def add_checkpoint(self, note: str, size: int) -> None:
        """Keep a signed checkpoint note (the caller verified it) for tree size ``size``."""

    @abstractmethod
    def checkpoints(self) -> list[tuple[int, str]]:
        """All kept checkpoints as (size, note), oldest first."""

    @abstractmethod
    def add_evidence(
        self, kind: str, first: bytes, second: bytes, detail: str, now_ms: int | None = None
    ) -> None:
        """Record conflicting objects durably; recording the same pair twice is a no-op."""

    @abstractmethod
    def evidence(self) -> list[Evidence]:
        """All evidence, oldest first."""

    @abstractmethod
    def close(self) -> None:
        """Release resources; the store must not be used afterwards."""

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- append ------------------------------------------------------------------------------

    def append(self, entries: Sequence[EntryLike]) -> int:
        """Append a batch atomically; durable when this returns. Returns the new size.

        Raises ``EquivocationError`` (evidence recorded, nothing appended) if an entry's
        (author, seq) is taken by a different entry, and ``StoreError`` if an identical entry
        is already stored or appears twice in the batch.
        """
        batch = _check_batch(entries)
        if not batch:
            return self.size()
        self._precheck(batch)
        return self._append_checked(batch)

    def _append_checked(self, batch: Sequence[EntryLike]) -> int:
        """Compute the new nodes from the old frontier and insert (backend transaction)."""
        start = self.size()
        frontier = self._read_nodes(merkle.frontier(start))
        leaves = [merkle.leaf_hash(e.raw) for e in batch]
        self._insert(start, batch, merkle.extend_nodes(start, frontier, leaves))
        return start + len(batch)

    def _precheck(self, batch: Sequence[EntryLike]) -> None:
        """Find equivocations (record them, raise) and duplicates (raise) before writing."""
        conflicts: list[_Conflict] = []
        seen: dict[tuple[bytes, int], EntryLike] = {}
        hashes: set[bytes] = set()
        for e in batch:
            key = (e.author, e.seq)
            if e.hash in hashes:
                raise StoreError(
                    f"entry {e.seq} by {_short(e.author)} ({_short(e.hash)}) appears twice "
                    "in one batch; send each entry once"
                )
            hashes.add(e.hash)
            other = seen.get(key)
            if other is not None:
                conflicts.append(
                    _Conflict(other.raw, e.raw, self._equivocation_detail(e, "in one batch"))
                )
            seen[key] = e
        stored = self._find_by_author_seq(list(seen))
        for e in batch:
            raw = stored.get((e.author, e.seq))
            if raw is not None and raw != e.raw:
                conflicts.append(_Conflict(raw, e.raw, self._equivocation_detail(e, "in the log")))
        if conflicts:
            for c in conflicts:
                self.add_evidence(EVIDENCE_EQUIVOCATION, c.first, c.second, c.detail)
            c = conflicts[0]
            raise EquivocationError(
                f"{c.detail}; both entries are kept as evidence "
                f"({len(conflicts)} conflict(s)), nothing of the batch was appended — "
                "treat this author as compromised and tell the collaboration admin",
                c.first,
                c.second,
            )
        present = self._find_hashes(sorted(hashes))
        if present:
            h, idx = min(present.items(), key=lambda kv: kv[1])
            raise StoreError(
                f"entry {_short(h)} is already in the log at index {idx}; nothing of the batch "
                "was appended — send only entries the log does not have"
            )

    @staticmethod
    def _equivocation_detail(e: EntryLike, where: str) -> str:
        return (
            f"equivocation: author {_short(e.author)} signed two different entries with "
            f"seq {e.seq} ({where})"
        )

    # --- reads -------------------------------------------------------------------------------

    def raw(self, index: int) -> bytes:
        """Encoded entry at ``index``."""
        return self.raw_range(index, index + 1)[0]

    def read_batches(
        self, start: int = 0, end: int | None = None, batch: int = READ_BATCH
    ) -> Iterator[tuple[int, list[bytes]]]:
        """``(first index, encoded entries)`` for ``[start, end)`` (default: to the current
        size), ``batch`` entries at a time."""
        end = self.size() if end is None else end
        for begin in range(start, end, batch):
            yield begin, self.raw_range(begin, min(end, begin + batch))

    def leaf_hash(self, index: int) -> bytes:
        """Merkle leaf hash of entry ``index``: SHA-256(0x00 || raw)."""
        self._check_index(index, self.size())
        return self._read_nodes([(0, index)])[0]

    def _check_range(self, start: int, end: int) -> None:
        size = self.size()
        if not 0 <= start <= end <= size:
            raise StoreError(f"entries [{start}, {end}) are outside the log of size {size}")

    def _check_index(self, index: int, size: int) -> None:
        if not 0 <= index < size:
            raise StoreError(f"entry index {index} is outside a log of size {size}")

    def _tree_size(self, size: int | None) -> int:
        current = self.size()
        if size is None:
            return current
        if not 0 <= size <= current:
            raise StoreError(
                f"tree size {size} is not available: the log has {current} entries; "
                "sync more entries first"
            )
        return size

    # --- tree ---------------------------------------------------------------------------------

    def root(self, size: int | None = None) -> bytes:
        """RFC 9162 root of the first ``size`` entries (default: all), O(log n) reads."""
        return merkle.root_from_nodes(self._read_nodes, self._tree_size(size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.3.1 inclusion proof of entry ``index`` in the tree of ``size``."""
        n = self._tree_size(size)
        self._check_index(index, n)
        return merkle.inclusion_proof_from_nodes(self._read_nodes, index, n)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 §2.1.4.1 consistency proof from ``old_size`` to ``new_size``."""
        n = self._tree_size(new_size)
        if not 0 <= old_size <= n:
            raise StoreError(f"consistency proof needs 0 <= old size <= {n}, got {old_size}")
        return merkle.consistency_proof_from_nodes(self._read_nodes, old_size, n)

    def check_integrity(self) -> None:
        """Recompute every leaf and node from the raw entries (O(n); for audits and tests).

        Raises ``StoreError`` naming the first entry or node that does not match.
        """
        tree = merkle.CompactRange()
        for start, raws in self.read_batches():
            new = tree.extend_nodes([merkle.leaf_hash(r) for r in raws])
            try:
                stored = self._read_nodes([(lv, ix) for lv, ix, _ in new])
            except StoreError as exc:
                raise StoreError(f"log tree is incomplete near entry {start}: {exc}") from exc
            for (lv, ix, h), s in zip(new, stored, strict=True):
                if s != h:
                    raise StoreError(
                        f"tree node (level {lv}, index {ix}) covering entries "
                        f"[{ix << lv}, {(ix + 1) << lv}) does not match the stored entries: "
                        "the ledger file was altered or corrupted — restore it from a peer"
                    )


# --- in memory ---------------------------------------------------------------------------------


class MemoryStore(LogStore):
    """A store in a Python process's memory: same behaviour, no durability."""

    def __init__(self) -> None:
        self._raws: list[bytes] = []
        self._hashes: dict[bytes, int] = {}
        self._by_author_seq: dict[tuple[bytes, int], int] = {}
        self._heads: dict[bytes, tuple[int, bytes]] = {}
        self._nodes: dict[merkle.Coord, bytes] = {}
        self._checkpoints: list[tuple[int, str]] = []
        self._evidence: list[Evidence] = []

    def size(self) -> int:
        return len(self._raws)

    def raw_range(self, start: int, end: int) -> list[bytes]:
        self._check_range(start, end)
        return self._raws[start:end]

    def _read_nodes(self, coords: Sequence[merkle.Coord]) -> list[bytes]:
        try:
            return [self._nodes[c] for c in coords]
        except KeyError as exc:
            raise StoreError(f"tree node {exc.args[0]} is missing") from exc

    def _find_by_author_seq(
        self, keys: Sequence[tuple[bytes, int]]
    ) -> dict[tuple[bytes, int], bytes]:
        found = ((k, self._by_author_seq.get(k)) for k in keys)
        return {k: self._raws[i] for k, i in found if i is not None}

    def _find_hashes(self, hashes: Sequence[bytes]) -> dict[bytes, int]:
        return {h: self._hashes[h] for h in hashes if h in self._hashes}

    def _insert(
        self, start: int, batch: Sequence[EntryLike], nodes: Sequence[tuple[int, int, bytes]]
    ) -> None:
        for i, e in enumerate(batch, start):
            self._raws.append(e.raw)
            self._hashes[e.hash] = i
            self._by_author_seq[(e.author, e.seq)] = i
            head = self._heads.get(e.author)
            if head is None or e.seq > head[0]:
                self._heads[e.author] = (e.seq, e.hash)
        for lv, ix, h in nodes:
            self._nodes[(lv, ix)] = h

    def head(self, author: bytes) -> tuple[int, bytes] | None:
        return self._heads.get(author)

    def add_checkpoint(self, note: str, size: int) -> None:
        self._checkpoints.append((size, note))

    def checkpoints(self) -> list[tuple[int, str]]:
        return list(self._checkpoints)

    def add_evidence(
        self, kind: str, first: bytes, second: bytes, detail: str, now_ms: int | None = None
    ) -> None:
        if any((e.kind, e.first, e.second) == (kind, first, second) for e in self._evidence):
            return
        at = _now_ms() if now_ms is None else now_ms
        self._evidence.append(Evidence(len(self._evidence) + 1, kind, first, second, detail, at))

    def evidence(self) -> list[Evidence]:
        return list(self._evidence)

    def close(self) -> None:
        """Nothing to release: the data lives as long as the object."""


# --- SQLite -----------------------------------------------------------------------------------


class SqliteStore(LogStore):
    """A store in one SQLite file (``ledger.db`` in a home folder).

    Durability: journal_mode=WAL with synchronous=FULL. In WAL mode, FULL fsyncs the WAL on
    every commit, so a transaction that returned survives a process kill *and* a power
    loss (NORMAL would only survive a process crash). WAL rather than a rollback journal
    because a commit is then one sequential append + one fsync instead of journal + database
    writes with two or more fsyncs, and readers (sync requests, proofs) never block the writer.
    """

    def __init__(
        self, path: str | Path, read_only: bool = False, busy_timeout_ms: int = 10_000
    ) -> None:
        """Open (or create) the ledger at ``path``.

        ``read_only`` is for auditors and status readers: the file must already be a ptm
        ledger, nothing is ever written to it or beside it (see ``_connect_read_only``), and a
        running daemon's writes are not blocked by schema checks. ``busy_timeout_ms`` is how
        long a write waits for another process's lock before failing with a busy StoreError
        (daemons pass a short one: their event loop must not stall in SQLite's wait).
        """
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        try:
            if read_only:
                conn = self._connect_read_only()
            else:
                # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves, so a
                # batch is exactly one transaction and the write lock is taken before any read.
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._cannot_open(exc) from exc
        self._conn = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if not read_only:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"ledger {self.path}: cannot switch to WAL mode (got {mode})")
                conn.execute("PRAGMA synchronous = FULL")
            self._open_schema()
        except sqlite3.DatabaseError as exc:
            conn.close()
            code = getattr(exc, "sqlite_errorcode", None)
            if code == sqlite3.SQLITE_CORRUPT:
                raise _read_error(self.path, exc) from exc
            if code in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
                raise self._cannot_open(exc) from exc
            raise StoreError(
                f"{self.path} is not a ptm ledger ({exc}); check the path: a ledger copy is "
                "a home's ledger.db or a file made by `ptm ledger simulate` / `ptm ledger copy`"
            ) from exc
        except StoreError:
            conn.close()
            raise

    def _connect_read_only(self) -> sqlite3.Connection:
        """A read-only connection that leaves the file's folder as it found it.

        A WAL-mode database opened with plain ``mode=ro`` makes SQLite create ``-wal`` and
        ``-shm`` files beside it (and fail outright in a read-only folder). When no ``-wal``
        file is there, no process has the file open in WAL mode and nothing is waiting to be
        checkpointed, so the file alone is the whole ledger: it is opened ``immutable=1``
        (no locks, no side files; SQLite URI parameters, https://sqlite.org/uri.html). When a
        ``-wal`` file is there — a running daemon's ledger, or one whose daemon was killed —
        its committed entries may live only in that file, so SQLite must read it: plain
        ``mode=ro``, sharing the ``-shm`` index with the writer.
        """
        if not self.path.is_file():
            raise StoreError(f"no ledger at {self.path}")
        live = Path(f"{self.path}-wal").exists()
        uri = f"{self.path.resolve().as_uri()}?mode=ro" + ("" if live else "&immutable=1")
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _cannot_open(self, exc: sqlite3.Error) -> StoreError:
        """SQLite could not open the file (permissions, a read-only folder): say which and why,
        never "not a ptm ledger" — the file may be a perfectly good ledger."""
        if self.read_only and Path(f"{self.path}-wal").exists():
            return StoreError(
                f"cannot read ledger {self.path} ({exc}): a {self.path.name}-wal file lies "
                "beside it (its daemon is running or was killed), and SQLite must index that "
                "file in a -shm file it cannot create here. Stop the daemon and read it again, "
                f"or copy {self.path.name} and {self.path.name}-wal to a writable folder and "
                "read the copy there"
            )
        code = getattr(exc, "sqlite_errorcode", None)
        if not self.read_only and code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
            return StoreError(
                f"cannot open ledger {self.path} for writing ({exc}): its folder or the file is "
                "not writable by this user (or the disk is read-only); a daemon keeps its "
                "ledger copy there — fix the permissions or choose another --home"
            )
        if self.read_only:
            return StoreError(f"cannot read ledger {self.path}: {exc}; check its permissions")
        return StoreError(f"cannot open ledger {self.path}: {exc}")

    # --- schema ------------------------------------------------------------------------------

    def _table_names(self) -> set[str]:
        rows = self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {str(r[0]) for r in rows.fetchall()}

    def _open_schema(self) -> None:
        if self.read_only:
            tables = self._table_names()
            if "ptm_schema" not in tables:
                raise StoreError(f"{self.path} is not a ptm ledger (no ptm_schema table)")
            self._check_schema_version()
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                tables = self._table_names()
                if not tables:
                    self._create_schema()
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        if "ptm_schema" not in tables and tables:
            raise StoreError(
                f"{self.path} is a SQLite database but not a ptm ledger "
                f"(tables: {', '.join(sorted(tables))}); use another path"
            )
        self._check_schema_version()

    def _check_schema_version(self) -> None:
        rows = self._conn.execute("SELECT application, version FROM ptm_schema").fetchall()
        if len(rows) != 1 or rows[0][0] != SCHEMA_APPLICATION:
            raise StoreError(f"{self.path} is not a ptm ledger (schema table says {rows!r})")
        if rows[0][1] != SCHEMA_VERSION:
            raise StoreError(
                f"ledger {self.path} has schema version {rows[0][1]}, this ptm reads version "
                f"{SCHEMA_VERSION}; upgrade ptm (or sync a fresh copy from a peer)"
            )

    def _create_schema(self) -> None:
        # Plain SQL (the statements sqlite-utils generated for schema version 1, kept byte
        # for byte): importing sqlite-utils pulls in pandas and NumPy, ~0.6 s on every command.
        for statement in _SCHEMA_V1:
            self._conn.execute(statement)
        self._conn.execute(
            "INSERT INTO ptm_schema (application, version) VALUES (?, ?)",
            (SCHEMA_APPLICATION, SCHEMA_VERSION),
        )

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise StoreError(f"ledger {self.path} was opened read-only; nothing was written")
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"ledger {self.path}: cannot start a write: {exc}") from exc
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    # disk full, busy, constraint: nothing of the write was kept
                    raise StoreError(
                        f"ledger {self.path}: write failed and was rolled back: {exc}"
                    ) from exc
                raise

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise _read_error(self.path, exc) from exc

    # --- primitives ----------------------------------------------------------------------------

    def size(self) -> int:
        (n,) = self._query("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries")[0]
        assert isinstance(n, int)
        return n

    def raw_range(self, start: int, end: int) -> list[bytes]:
        self._check_range(start, end)
        rows = self._query(
            "SELECT raw FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        )
        if len(rows) != end - start:
            raise StoreError(f"ledger {self.path}: entries [{start}, {end}) have gaps")
        return [bytes(r[0]) for r in rows]

    def _read_nodes(self, coords: Sequence[merkle.Coord]) -> list[bytes]:
        if not coords:
            return []
        out: list[bytes] = []
        with self._lock:
            cur = self._conn.cursor()
            try:
                # One indexed point lookup per node: O(log n) lookups of a few µs each.
                for lv, ix in coords:
                    row = cur.execute(
                        "SELECT hash FROM nodes WHERE level = ? AND idx = ?", (lv, ix)
                    ).fetchone()
                    if row is None:
                        raise StoreError(
                            f"ledger {self.path}: tree node (level {lv}, index {ix}) is missing; "
                            "the file is damaged — run `ptm audit` and restore it from a peer"
                        )
                    out.append(row[0])
            except sqlite3.Error as exc:
                raise _read_error(self.path, exc) from exc
        return out

    def _find_by_author_seq(
        self, keys: Sequence[tuple[bytes, int]]
    ) -> dict[tuple[bytes, int], bytes]:
        found: dict[tuple[bytes, int], bytes] = {}
        with self._lock:
            cur = self._conn.cursor()
            for a, s in keys:
                row = cur.execute(
                    "SELECT raw FROM entries WHERE author = ? AND seq = ?", (a, s)
                ).fetchone()
                if row is not None:
                    found[(a, s)] = row[0]
        return found

    def _find_hashes(self, hashes: Sequence[bytes]) -> dict[bytes, int]:
        found: dict[bytes, int] = {}
        with self._lock:
            cur = self._conn.cursor()
            for h in hashes:
                row = cur.execute("SELECT idx FROM entries WHERE hash = ?", (h,)).fetchone()
                if row is not None:
                    found[h] = row[0]
        return found

    def append(self, entries: Sequence[EntryLike]) -> int:
        batch = _check_batch(entries)
        if not batch:
            return self.size()
        with self._lock:
            conn = self._conn
            try:
                # The whole batch — size read, frontier read, checks, inserts — is one
                # IMMEDIATE transaction: no other writer can interleave, and a kill at any
                # point leaves either all of it or none of it (the WAL commit record).
                conn.execute("BEGIN IMMEDIATE")
                try:
                    # The unique indexes on (author, seq) and on hash refuse any equivocation
                    # or duplicate, so an honest batch is inserted without looking anything
                    # up first (a third of an append's cost); only a refused one is examined.
                    size = self._append_checked(batch)
                except sqlite3.IntegrityError:
                    conn.execute("ROLLBACK")
                    self._explain_refusal(batch)
                    raise
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return size
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(
                    f"ledger {self.path}: append failed, nothing appended: {exc}"
                ) from exc

    def _explain_refusal(self, batch: Sequence[EntryLike]) -> None:
        """After a batch the unique indexes refused: name the conflict (``_precheck``), and
        store the evidence of an equivocation, in a transaction of its own."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._precheck(batch)
        except EquivocationError:
            conn.execute("COMMIT")  # only the evidence rows were written: keep them
            raise
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def _insert(
        self, start: int, batch: Sequence[EntryLike], nodes: Sequence[tuple[int, int, bytes]]
    ) -> None:
        self._conn.executemany(
            "INSERT INTO entries (idx, hash, author, seq, raw) VALUES (?, ?, ?, ?, ?)",
            [(i, e.hash, e.author, e.seq, e.raw) for i, e in enumerate(batch, start)],
        )
        self._conn.executemany("INSERT INTO nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)

    def head(self, author: bytes) -> tuple[int, bytes] | None:
        rows = self._query(
            "SELECT seq, hash FROM entries WHERE author = ? ORDER BY seq DESC LIMIT 1", (author,)
        )
        if not rows:
            return None
        seq, h = rows[0]
        assert isinstance(seq, int) and isinstance(h, bytes)
        return seq, h

    def authored(self, author: bytes) -> list[tuple[int, bytes]]:
        """(index, raw) of every entry by ``author``, in log order: one index lookup, so a
        reader that needs one author's chain (the admin's memberships, for ``ptm status``)
        does not read the whole log."""
        rows = self._query("SELECT idx, raw FROM entries WHERE author = ? ORDER BY seq", (author,))
        return [(int(i), bytes(r)) for i, r in rows]

    def add_checkpoint(self, note: str, size: int) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO checkpoints (size, note) VALUES (?, ?)", (size, note))

    def checkpoints(self) -> list[tuple[int, str]]:
        rows = self._query("SELECT size, note FROM checkpoints ORDER BY id")
        return [(int(s), str(n)) for s, n in rows]

    def add_evidence(
        self, kind: str, first: bytes, second: bytes, detail: str, now_ms: int | None = None
    ) -> None:
        at = _now_ms() if now_ms is None else now_ms
        sql = (
            "INSERT OR IGNORE INTO evidence (kind, first, second, detail, recorded_at) "
            "VALUES (?, ?, ?, ?, ?)"
        )
        params = (kind, first, second, detail, at)
        with self._lock:
            if self._conn.in_transaction:  # called from inside append's transaction
                self._conn.execute(sql, params)
                return
            with self._write() as conn:
                conn.execute(sql, params)

    def evidence(self) -> list[Evidence]:
        rows = self._query(
            "SELECT id, kind, first, second, detail, recorded_at FROM evidence ORDER BY id"
        )
        return [Evidence(*r) for r in rows]

    def check_file(self) -> list[str]:
        """SQLite's own page-level check (``PRAGMA quick_check``); empty when the file is
        sound. A damaged file would otherwise show up as puzzling missing entries."""
        with self._lock:
            try:
                rows = self._conn.execute("PRAGMA quick_check").fetchall()
            except sqlite3.Error as exc:
                if _is_damage(exc):  # too damaged for the check itself to run: still damage
                    return [str(exc)]
                raise _read_error(self.path, exc) from exc
        messages = [str(r[0]) for r in rows]
        return [] if messages == ["ok"] else messages

    def copy_to(self, target: str | Path) -> None:
        """A consistent snapshot of this ledger in a new file, safe while a daemon writes to
        it (SQLite's online backup; a plain file copy would miss what is still in -wal).

        The copy is switched to a rollback journal (``journal_mode=DELETE``): it is a file to
        read and send, not a live ledger, and in that mode a reader needs no ``-wal``/``-shm``
        files beside it — so it can be audited from a read-only folder or medium. A daemon
        that opens it as its ledger switches it back to WAL.
        """
        target = Path(target)
        if target.exists():
            raise StoreError(f"{target} already exists; copy to a new file")
        try:
            dest = sqlite3.connect(target, isolation_level=None)
            try:
                with self._lock:
                    self._conn.backup(dest)
                dest.execute("PRAGMA journal_mode = DELETE")
            finally:
                dest.close()
        except sqlite3.Error as exc:
            target.unlink(missing_ok=True)
            raise StoreError(f"cannot copy ledger {self.path} to {target}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()
