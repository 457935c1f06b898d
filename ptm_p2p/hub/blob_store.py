"""The hub's blob store: content-addressed ciphertext on disk, resumable uploads, quotas.

Results of any size travel outside the log (issue 14, FORMAT.md "Blobs"): a site uploads the
ciphertext of its output to the hub, the result entry names it by ``blob = SHA-256(bytes)``,
and a researcher fetches it later, even when the site is offline. The hub only ever holds
ciphertext, so nothing here looks inside a blob.

Layout under ``HOME/blobs``::

    ab/cdef…            a stored blob: 62 more hex digits of its SHA-256 after the folder's 2
    parts/OWNER.BLOB.part  an upload in progress: its length is how far the uploader got
    index.db            SQLite: blob -> owner (uploader key), size, time stored

Why SQLite for the index rather than a small file: the quota needs "bytes held by this
uploader" and the retention sweep "blobs stored before T" on every upload and sweep; an
indexed table answers both without reading every record, each change is one small
transaction that survives a crash, and the project already relies on SQLite's durability for
the ledger. The blob files themselves stay plain files (streamed, not loaded into SQLite).

Durability (nothing acknowledged is lost on a crash): an upload is finished only after its
SHA-256 matched, the part was fsynced, its index row committed and the part renamed into
place (then the folder fsynced). The row is written *before* the rename, so a crash between
the two leaves a row without a file (dropped when the store opens) and a complete part, which
the uploader's next STAT reports as complete, so its next PUT only finishes it. A blob file
without a row (copied in by hand) is adopted with no owner.

Uploads are resumable: a part belongs to one (uploader, blob) pair, so two members uploading
the same bytes never write into each other's part, and the offset to resume from is simply
the part's length. A part whose bytes do not hash to the blob id it was sent as is deleted
(``BlobMismatch``): resuming from bad bytes would never succeed.

Quota: each uploader may hold ``quota`` bytes (stored blobs it uploaded first plus its
parts); a PUT whose declared size would exceed it is refused before one byte is read. Blobs
older than ``retention`` (and parts untouched that long) are removed by ``sweep``; ``clock``
is injectable so tests can move time.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ptm_p2p.errors import BlobBusy, BlobError, BlobMismatch, BlobRefused
from ptm_p2p.ledger.crypto import short

log = logging.getLogger(__name__)

BLOB_DIR = "blobs"
INDEX_FILE = "index.db"
PARTS_DIR = "parts"
GB = 1024**3
DEFAULT_QUOTA = 20 * GB
DEFAULT_RETENTION_DAYS = 90.0
# The largest single blob the hub takes (the site policy's output cap defaults to 1 GB; this
# leaves room for bigger site limits while keeping one upload from filling a small disk).
MAX_BLOB_SIZE = 16 * GB
# Free space kept on the hub's disk beyond an upload's remaining bytes: the ledger lives on
# the same disk and must always have room to grow.
DISK_MARGIN = 512 * 1024**2
# A part being written is flushed to disk every this many bytes, in the writer thread while
# the network goes on receiving, so that the fsync that finishes an upload has little left
# to write (a 100 MB blob's single final fsync takes ~0.2 s here, ~30 % of its transfer).
SYNC_EVERY = 32 * 1024 * 1024
# Hash states kept for parts being uploaded, so a resumed upload need not re-read its prefix.
MAX_CACHED_HASHERS = 64
DAY_S = 86_400.0


@dataclass(frozen=True)
class BlobInfo:
    blob: bytes
    owner: bytes
    size: int
    stored: float


class BlobStore:
    """Blobs under ``root`` (``HOME/blobs``); one instance per hub process."""

    def __init__(
        self,
        root: Path,
        *,
        quota: int = DEFAULT_QUOTA,
        retention_days: float = DEFAULT_RETENTION_DAYS,
        max_blob_size: int = MAX_BLOB_SIZE,
        disk_margin: int = DISK_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.quota = quota
        self.retention_days = retention_days
        self.max_blob_size = max_blob_size
        self.disk_margin = disk_margin
        self.clock = clock
        self.parts = self.root / PARTS_DIR
        self.parts.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / INDEX_FILE, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS blobs (blob BLOB PRIMARY KEY, owner BLOB NOT NULL, "
            "size INTEGER NOT NULL, stored REAL NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS blobs_owner ON blobs (owner)")
        self._db.execute("CREATE INDEX IF NOT EXISTS blobs_stored ON blobs (stored)")
        self._hashers: dict[tuple[bytes, bytes], tuple[int, Any]] = {}
        # Uploads being written now: (owner, blob) -> declared size. The quota charges an
        # upload in progress its declared size, not what has arrived yet, so that parallel
        # uploads of one member cannot each pass the check and together exceed it.
        self.writing: dict[tuple[bytes, bytes], int] = {}
        self._reconcile()

    def close(self) -> None:
        self._db.close()

    # --- paths ------------------------------------------------------------------------------

    def path(self, blob: bytes) -> Path:
        name = blob.hex()
        return self.root / name[:2] / name[2:]

    def part_path(self, owner: bytes, blob: bytes) -> Path:
        return self.parts / f"{owner.hex()}.{blob.hex()}.part"

    # --- queries ----------------------------------------------------------------------------

    def size_of(self, blob: bytes) -> int | None:
        """The size of a stored blob, or None if the store does not hold it."""
        row = self._db.execute("SELECT size FROM blobs WHERE blob = ?", (blob,)).fetchone()
        if row is None or not self.path(blob).exists():
            return None
        return int(row[0])

    def info(self, blob: bytes) -> BlobInfo | None:
        row = self._db.execute(
            "SELECT owner, size, stored FROM blobs WHERE blob = ?", (blob,)
        ).fetchone()
        return None if row is None else BlobInfo(blob, bytes(row[0]), int(row[1]), float(row[2]))

    def partial(self, owner: bytes, blob: bytes) -> int:
        """How many bytes of ``blob`` this uploader's part holds (0 when none)."""
        try:
            return self.part_path(owner, blob).stat().st_size
        except FileNotFoundError:
            return 0

    def held(self, owner: bytes, *, excluding: bytes | None = None) -> int:
        """Bytes charged to ``owner``: blobs it stored first plus its parts (except one)."""
        (stored,) = self._db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM blobs WHERE owner = ?", (owner,)
        ).fetchone()
        prefix = owner.hex() + "."
        parts: dict[str, int] = {}
        for part in self.parts.glob(prefix + "*.part"):
            with contextlib.suppress(FileNotFoundError):
                parts[part.name[len(prefix) : -len(".part")]] = part.stat().st_size
        for (who, blob), declared in self.writing.items():
            if who == owner:
                parts[blob.hex()] = declared
        if excluding is not None:
            parts.pop(excluding.hex(), None)
        return int(stored) + sum(parts.values())

    def stats(self) -> dict[str, int]:
        """``{"count", "bytes", "parts"}`` of the whole store (``ptm status`` on the hub)."""
        count, total = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs"
        ).fetchone()
        parts = sum(1 for _ in self.parts.glob("*.part"))
        return {"count": int(count), "bytes": int(total), "parts": parts}

    # --- uploads ----------------------------------------------------------------------------

    def check_put(self, owner: bytes, blob: bytes, size: int, offset: int) -> None:
        """Refuse (``BlobRefused``) an upload that is too large, over quota, or has no room."""
        who = short(owner)
        if size > self.max_blob_size:
            raise BlobRefused(
                f"a blob of {size:,} bytes is larger than this hub takes "
                f"({self.max_blob_size:,} bytes); nothing was stored"
            )
        held = self.held(owner, excluding=blob)
        if held + size > self.quota:
            raise BlobRefused(
                f"quota exceeded: member {who} holds {held:,} bytes in this hub's blob store "
                f"and this blob adds {size:,}, over the quota of {self.quota:,} bytes "
                "([hub] blob_quota); nothing was stored. Old blobs leave after "
                f"{self.retention_days:g} days ([hub] blob_retention), or ask the hub's "
                "operator for a larger quota"
            )
        free = shutil.disk_usage(self.root).free
        if size - offset + self.disk_margin > free:
            raise BlobRefused(
                f"the hub's disk has {free:,} bytes free, too few for the {size - offset:,} "
                "bytes of this blob; try again later (the hub's operator has been told in its "
                "log)"
            )

    def open_part(self, owner: bytes, blob: bytes, size: int, offset: int) -> Part:
        """Start or resume writing ``blob`` from ``offset`` (at most the part's length)."""
        key = (owner, blob)
        if key in self.writing:
            raise BlobBusy(
                f"an upload of blob {blob.hex()[:16]}… by member {short(owner)} is already in "
                "progress; wait for it to finish or fail, then resume"
            )
        have = self.partial(owner, blob)
        if offset > have:
            raise BlobError(
                f"cannot resume blob {blob.hex()[:16]}… at byte {offset:,}: this hub holds "
                f"{have:,} bytes of it; ask for the offset (STAT) and resume from there"
            )
        if offset > size:
            raise BlobError(f"offset {offset:,} is past the blob's declared size {size:,}")
        return Part(self, owner, blob, size, offset)

    def _cached_hasher(self, owner: bytes, blob: bytes, offset: int) -> Any | None:
        cached = self._hashers.pop((owner, blob), None)
        if cached is not None and cached[0] == offset:
            return cached[1]
        return None

    def _remember_hasher(self, owner: bytes, blob: bytes, length: int, hasher: Any) -> None:
        while len(self._hashers) >= MAX_CACHED_HASHERS:
            self._hashers.pop(next(iter(self._hashers)))
        self._hashers[(owner, blob)] = (length, hasher)

    def _commit(self, owner: bytes, blob: bytes, size: int, part: Path) -> bool:
        """Move a verified, fsynced part into place; False if the blob was already stored."""
        final = self.path(blob)
        if self.size_of(blob) is not None:
            part.unlink(missing_ok=True)
            return False
        final.parent.mkdir(exist_ok=True)
        # Row first, then rename (see the module docstring for why this order is safe).
        self._db.execute(
            "INSERT OR REPLACE INTO blobs (blob, owner, size, stored) VALUES (?, ?, ?, ?)",
            (blob, owner, size, self.clock()),
        )
        try:
            os.replace(part, final)
            _fsync_dir(final.parent)
            _fsync_dir(part.parent)
        except OSError:
            self._db.execute("DELETE FROM blobs WHERE blob = ?", (blob,))
            raise
        return True

    # --- reads ------------------------------------------------------------------------------

    def open_blob(self, blob: bytes) -> tuple[BinaryIO, int]:
        """An open file of a stored blob and its size; ``BlobError`` if it is not held."""
        size = self.size_of(blob)
        if size is None:
            raise BlobError(
                f"this hub holds no blob {blob.hex()[:16]}… (never uploaded, or removed after "
                f"{self.retention_days:g} days by [hub] blob_retention)"
            )
        try:
            return open(self.path(blob), "rb"), size  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise BlobError(f"blob {blob.hex()[:16]}… was removed while being opened") from None

    # --- retention --------------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> tuple[int, int]:
        """Remove blobs stored, and parts last written, more than ``retention`` ago.

        Returns (blobs removed, bytes freed). A blob being downloaded at that moment is
        still served to the end: its open file outlives the unlink.
        """
        now = self.clock() if now is None else now
        cutoff = now - self.retention_days * DAY_S
        old = self._db.execute(
            "SELECT blob, size FROM blobs WHERE stored < ?", (cutoff,)
        ).fetchall()
        removed = freed = 0
        for blob, size in old:
            blob = bytes(blob)
            with contextlib.suppress(FileNotFoundError):
                self.path(blob).unlink()
            self._db.execute("DELETE FROM blobs WHERE blob = ?", (blob,))
            removed += 1
            freed += int(size)
        for part in self.parts.glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                stat = part.stat()
                if stat.st_mtime < cutoff and not self._is_writing(part):
                    part.unlink()
                    freed += stat.st_size
        if removed:
            log.info(
                "blob retention (%g days): removed %d blob(s), %d bytes",
                self.retention_days,
                removed,
                freed,
            )
        return removed, freed

    def _is_writing(self, part: Path) -> bool:
        return any(self.part_path(o, b) == part for o, b in self.writing)

    # --- start-up ---------------------------------------------------------------------------

    def _reconcile(self) -> None:
        """Make the index and the files agree after a crash (see the module docstring)."""
        rows = {
            bytes(blob): int(size)
            for blob, size in self._db.execute("SELECT blob, size FROM blobs").fetchall()
        }
        on_disk: set[bytes] = set()
        for folder in self.root.iterdir():
            if len(folder.name) != 2 or not folder.is_dir():
                continue
            for file in folder.iterdir():
                try:
                    blob = bytes.fromhex(folder.name + file.name)
                except ValueError:
                    continue
                if len(blob) != 32:
                    continue
                on_disk.add(blob)
                if blob not in rows:
                    stat = file.stat()
                    log.warning("blob %s… has no index row; adopting it", blob.hex()[:16])
                    self._db.execute(
                        "INSERT INTO blobs (blob, owner, size, stored) VALUES (?, ?, ?, ?)",
                        (blob, b"", stat.st_size, stat.st_mtime),
                    )
        for blob in rows.keys() - on_disk:
            self._db.execute("DELETE FROM blobs WHERE blob = ?", (blob,))


class Part:
    """One upload being written: ``write`` chunks, then ``finish`` (or just stop: resumable).

    Hashes as it writes, so finishing a 1 GB blob costs one fsync, not a second read.
    """

    def __init__(self, store: BlobStore, owner: bytes, blob: bytes, size: int, offset: int):
        self.store = store
        self.owner = owner
        self.blob = blob
        self.size = size
        self.path = store.part_path(owner, blob)
        self.length = offset
        self.hasher: Any = store._cached_hasher(owner, blob, offset)
        self._file: BinaryIO | None = None
        self._unsynced = 0
        store.writing[(owner, blob)] = size

    def open(self) -> None:
        """Open the part and hash its kept prefix (blocking: run it in a thread)."""
        file = open(self.path, "r+b" if self.path.exists() else "w+b")  # noqa: SIM115
        file.truncate(self.length)
        if self.hasher is None:
            self.hasher = hashlib.sha256()
            file.seek(0)
            remaining = self.length
            while remaining:
                chunk = file.read(min(remaining, 1024 * 1024))
                if not chunk:
                    break
                self.hasher.update(chunk)
                remaining -= len(chunk)
        file.seek(self.length)
        self._file = file

    def write(self, data: bytes) -> None:
        if self.length + len(data) > self.size:
            raise BlobError(
                f"more bytes than the declared size {self.size:,} of blob "
                f"{self.blob.hex()[:16]}…; the upload is refused"
            )
        assert self._file is not None
        self._file.write(data)
        self.hasher.update(data)
        self.length += len(data)
        self._unsynced += len(data)
        if self._unsynced >= SYNC_EVERY:
            self._file.flush()
            os.fdatasync(self._file.fileno())
            self._unsynced = 0

    def finish(self) -> bool:
        """``verify`` then ``commit``: True if the blob is newly stored."""
        self.verify()
        return self.commit()

    def verify(self) -> None:
        """Check the SHA-256 and make the part durable (blocking: run it in a thread).

        A digest that differs deletes the part and raises ``BlobMismatch``.
        """
        assert self._file is not None
        if self.length != self.size:
            raise BlobError(
                f"blob {self.blob.hex()[:16]}… is incomplete: {self.length:,} of "
                f"{self.size:,} bytes; resume the upload"
            )
        digest = self.hasher.digest()
        self.hasher = None
        if digest != self.blob:
            self._file.close()
            self._file = None
            self.path.unlink(missing_ok=True)
            raise BlobMismatch(
                f"the {self.size:,} bytes sent as blob {self.blob.hex()[:16]}… hash to "
                f"{digest.hex()[:16]}…; the upload was deleted, nothing was stored. Send the "
                "exact ciphertext whose SHA-256 is the blob id"
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None

    def commit(self) -> bool:
        """Index and rename a verified part (in the store's thread: SQLite is single-thread
        here); True if newly stored, False if another upload stored the same bytes first."""
        assert self._file is None and self.hasher is None, "verify() first"
        return self.store._commit(self.owner, self.blob, self.size, self.path)

    def close(self) -> None:
        """Stop writing (complete or not): flush what arrived so a resume starts after it."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.flush()
            self._file.close()
            self._file = None
            if self.hasher is not None:
                self.store._remember_hasher(self.owner, self.blob, self.length, self.hasher)
        self.store.writing.pop((self.owner, self.blob), None)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "BLOB_DIR",
    "DEFAULT_QUOTA",
    "DEFAULT_RETENTION_DAYS",
    "MAX_BLOB_SIZE",
    "BlobInfo",
    "BlobStore",
    "Part",
]
