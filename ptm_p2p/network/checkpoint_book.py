"""The hub-signed checkpoints a daemon holds, one note per tree size, cosignatures merged in.

The book serves ``checkpoint`` / ``wait`` / ``entries`` answers from memory (``latest``,
``note_at_least``) and wakes long-polls when a newer checkpoint arrives. A checkpoint is
stored before it is served (``record``). Witness cosignatures merged into a note
(``merge_cosignatures``) are written on the book's own schedule: ``keep_flushed`` stores them
``FLUSH_DELAY`` after the first unstored merge (so a burst of cosignatures costs one fsync'd
transaction, not one each, on the hub's hot path), and retries a failed write (a full disk)
at the same pace. ``flush`` is also called on shutdown.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from typing import Any

import trio

from ptm_p2p.errors import LedgerError, StoreError
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger.store import LogStore, is_local_fault

log = logging.getLogger(__name__)

# Seconds between the first unstored merge and its write (and between retries of a failed
# write): merged cosignatures are durable within about this long.
FLUSH_DELAY = 1.0


class CheckpointBook:
    """size -> the latest note text we hold for that size (cosignatures merged in)."""

    def __init__(self, store: LogStore) -> None:
        self.store = store
        self.notes: dict[int, str] = {}
        self.sizes: list[int] = []
        self._changed = trio.Event()
        self._dirty: set[int] = set()
        self._dirty_event = trio.Event()
        self._flush_failing = False

    def load(self, up_to: int) -> None:
        """The stored checkpoints of sizes we hold entries for (one beyond is a crash's)."""
        for size, note in self.store.checkpoints():
            if size <= up_to:
                self.remember(size, note)

    # --- reading ---------------------------------------------------------------------------

    @property
    def latest(self) -> str | None:
        return self.notes[self.sizes[-1]] if self.sizes else None

    @property
    def latest_size(self) -> int:
        return self.sizes[-1] if self.sizes else 0

    def note_of(self, size: int) -> str | None:
        return self.notes.get(size)

    def note_at_least(self, size: int) -> str | None:
        """The first checkpoint we hold of size >= ``size``; the latest if there is none."""
        i = bisect.bisect_left(self.sizes, size)
        if i < len(self.sizes):
            return self.notes[self.sizes[i]]
        return self.latest

    def cosigners(self, note: str | None, witnesses: Sequence[cp.Verifier]) -> list[str]:
        """Names of the witnesses whose cosignatures on ``note`` (default: latest) verify."""
        note = note or self.latest
        if note is None:
            return []
        try:
            return [
                c.name for c in cp.verify_cosignatures(cp.parse_checkpoint(note), list(witnesses))
            ]
        except LedgerError:
            return []

    # --- adding ----------------------------------------------------------------------------

    def remember(self, size: int, note: str) -> None:
        """Hold ``note`` for ``size`` (already stored) and wake the long-polls."""
        if size not in self.notes:
            bisect.insort(self.sizes, size)
        self.notes[size] = note
        self._notify()

    def record(self, signed: cp.SignedCheckpoint) -> None:
        """Store, then serve: a checkpoint whose write failed is not handed to anyone."""
        self.store.add_checkpoint(signed.text, signed.checkpoint.size)
        self.remember(signed.checkpoint.size, signed.text)

    def merge_cosignatures(
        self, incoming: cp.SignedCheckpoint, witnesses: Sequence[cp.Verifier]
    ) -> int:
        """Add the valid cosignatures of ``witnesses`` on ``incoming`` to our note of the same
        tree; returns how many were new. Unknown signers are dropped (C2SP signed-note:
        ignore unknown keys); a known witness's bad cosignature raises ``CheckpointError``.
        """
        size = incoming.checkpoint.size
        ours_text = self.notes.get(size)
        if ours_text is None:
            return 0
        ours = cp.parse_checkpoint(ours_text)
        if ours.checkpoint != incoming.checkpoint:
            return 0  # disagreeing checkpoints are the verified log's to judge
        cp.verify_cosignatures(incoming, list(witnesses))  # raises on a forged cosignature
        have = {(s.name, s.key_id) for s in ours.signatures}
        wanted = {(w.name, w.key_id) for w in witnesses}
        new = [
            s
            for s in incoming.signatures
            if (s.name, s.key_id) in wanted and (s.name, s.key_id) not in have
        ]
        if not new:
            return 0
        merged = cp.SignedCheckpoint(ours.checkpoint, (*ours.signatures, *new))
        self.remember(size, merged.text)
        self._dirty.add(size)
        self._dirty_event.set()
        return len(new)

    # --- durability of merged cosignatures -------------------------------------------------

    @property
    def unstored(self) -> int:
        """How many merged notes are not in the store yet."""
        return len(self._dirty)

    def flush(self) -> None:
        """Store merged cosignatures; a failed write keeps them for the next flush."""
        try:
            for size in sorted(self._dirty):
                self.store.add_checkpoint(self.notes[size], size)
                self._dirty.discard(size)
        except StoreError as exc:
            if not is_local_fault(exc):
                raise
            if not self._flush_failing:
                log.warning("cosignatures not stored yet (kept in memory, retried): %s", exc)
            self._flush_failing = True
            return
        if self._flush_failing:
            log.info("cosignatures stored again")
        self._flush_failing = False

    async def keep_flushed(self, host: Any = None, me: str = "") -> None:
        """A daemon task: store merged cosignatures ``FLUSH_DELAY`` after they arrive."""
        while True:
            await self._dirty_event.wait()
            await trio.sleep(FLUSH_DELAY)
            self.flush()
            if not self._dirty:
                self._dirty_event = trio.Event()

    # --- waiting ---------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_newer(self, after: int, timeout: float) -> None:
        """Return once we hold a checkpoint of size > ``after``, or after ``timeout`` s."""
        with trio.move_on_after(timeout):
            while not self.sizes or self.sizes[-1] <= after:
                await self._changed.wait()


__all__ = ["CheckpointBook", "FLUSH_DELAY"]
