"""One replica of the log, and the one tracker that keeps it up to date from a peer.

Everyone who follows the log (a site following its hub and other sites, the researcher's
follower, the sync server answering from its copy) holds the same parts, assembled once by
``open_replica``: the store, the ``TrustRegistry``, the ``CheckpointBook`` and the
``VerifiedLog`` over them.

``ReplicaTracker`` (in the spirit of Tessera's ``LogStateTracker``) holds the latest checkpoint
proven consistent with our verified copy. The transport is passed in with each call (a
``PeerClient``, or anything with its ``ask``), so the same tracker follows the hub or any
site. Given a hub-signed checkpoint it either compares it with our tree (``observe``) or
catches up to it (``catch_up``):

* bounded steps: at most ``Limits.step`` entries per step, each verified against a signed
  root before it is stored; a step that is too large in entries or bytes falls back to the
  peer's very next checkpoint, and a peer with none close enough is skipped (a
  ``NetworkError``), never buffered without bound;
* an inconsistency comes back carrying its evidence: ``SplitViewError`` holds both notes
  (the hub signed two trees), and a range that does not hash to the signed root is first
  rehashed from the start to tell a lying peer (``RootMismatch``) from a forked hub;
* our own store failing to take a verified batch (busy, locked, full) is a *local fault*:
  recorded once, retried after a growing, jittered pause, blamed on nobody.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ptm_p2p.backoff import Backoff
from ptm_p2p.errors import BadRange, NetworkError, RootMismatch, StepTooLarge, StoreError
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger import merkle
from ptm_p2p.ledger.store import LogStore, is_local_fault
from ptm_p2p.network import protocol
from ptm_p2p.network.checkpoint_book import CheckpointBook
from ptm_p2p.network.fetch import VerifiedRange, fetch_range, pages
from ptm_p2p.network.trust import TrustRegistry
from ptm_p2p.network.verified_log import VerifiedLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """How much of the log one catch-up step may hold in memory, and how long to wait."""

    # Entries verified and committed per step when the peer holds a checkpoint in between.
    step: int = 5_000
    # A step's entries are held in memory until they are proven against one signed root:
    # beyond this the tracker falls back to the peer's next checkpoint. Generous, because
    # sites keep only the checkpoints they stepped through, so the gaps between the
    # checkpoints a site can serve grow by up to ``step`` per generation of site-to-site
    # catch-up.
    max_step_entries: int = 100_000
    max_step_bytes: int = 256 * 1024 * 1024
    timeout: float = 30.0  # seconds for one checkpoint question


LIMITS = Limits()
# Pauses after our own store failed a write (busy, locked, full): doubled up to the maximum,
# jittered (ptm_p2p/backoff.py).
LOCAL_FAULT_PAUSE = 0.5
LOCAL_FAULT_MAX_PAUSE = 10.0


@dataclass
class Replica:
    """A verified copy of the log: the store and the parts over it."""

    store: LogStore
    trust: TrustRegistry
    book: CheckpointBook
    log: VerifiedLog


def open_replica(store: LogStore, distrust_file: Path | None = None) -> Replica:
    """The trust registry, checkpoint book and verified log over ``store`` (replayed).

    The store is closed again if replaying it fails (a damaged file, say), so the caller
    owns it only once this returns.
    """
    try:
        trust = TrustRegistry(store, distrust_file)
        book = CheckpointBook(store)
        return Replica(store, trust, book, VerifiedLog(store, book, trust))
    except BaseException:
        store.close()
        raise


class ReplicaTracker:
    """Keeps one ``VerifiedLog`` up to date from hub-signed checkpoints shown by peers."""

    def __init__(self, replica: VerifiedLog, limits: Limits = LIMITS, *, where: str = "") -> None:
        self.log = replica
        self.book = replica.book
        self.limits = limits
        self.where = where  # our ledger file, named when it fails to write
        self.lock = trio.Lock()  # one catch-up at a time (hub and sites may both offer)
        self.last_synced = 0.0  # wall clock of the last catch-up that stored entries
        # Our own store failing to write: what, and until when to wait before trying again.
        self.local_fault: str | None = None
        self._pause = Backoff(LOCAL_FAULT_PAUSE, LOCAL_FAULT_MAX_PAUSE)
        self._fault_until = 0.0

    @property
    def checkpoint(self) -> str | None:
        """The newest hub-signed note proven consistent with our verified copy."""
        return self.book.latest

    # --- one checkpoint -------------------------------------------------------------------

    def observe(self, signed: cp.SignedCheckpoint, source: str) -> int:
        """A checkpoint no larger than our log: compare it with our tree (a split view raises
        ``SplitViewError`` with both notes), then merge its cosignatures; returns how many
        cosignatures were merged."""
        self.log.check_against_ours(signed, source)
        return self.book.merge_cosignatures(signed, self.log.witness_verifiers())

    async def update(self, peer: Any, signed: cp.SignedCheckpoint, source: str) -> int:
        """``observe`` or ``catch_up``, as ``signed`` is behind or ahead of our copy;
        returns how many entries were added (0 for ``observe``).

        A local fault of our store is recorded (``store_failed``) and raised again.
        """
        try:
            if signed.checkpoint.size <= self.log.size:
                self.observe(signed, source)
                return 0
            return await self.catch_up(peer, signed, source)
        except StoreError as exc:
            if is_local_fault(exc):
                self.store_failed(exc, source)
            raise

    async def catch_up(self, peer: Any, target: cp.SignedCheckpoint, source: str) -> int:
        """Verify and store entries from ``peer`` up to ``target``; returns how many.

        Nothing while a local fault's pause runs (the next try comes after it). A range
        that does not hash to a signed root is diagnosed (``diagnose``) before
        ``RootMismatch`` is raised again.
        """
        if self.paused:
            return 0
        try:
            async with self.lock:
                started, begin = time.perf_counter(), self.log.size
                while self.log.size < target.checkpoint.size:
                    await self._step(peer, target, source)
                added = self.log.size - begin
        except RootMismatch:
            # Outside the lock: rehashing a lying peer's log from the start must not hold
            # up following the hub meanwhile.
            await self.diagnose(peer, target, source)
            raise
        if added:
            self.last_synced = time.time()
            log.info(
                "verified %d entries from %s in %.3f s (size %d)",
                added,
                source,
                time.perf_counter() - started,
                self.log.size,
            )
        return added

    async def _step(self, peer: Any, target: cp.SignedCheckpoint, source: str) -> None:
        n = self.log.size
        step = target
        if target.checkpoint.size - n > self.limits.step:
            # Walk the log checkpoint by checkpoint so memory stays bounded.
            step = await self.checkpoint_between(peer, n + self.limits.step, target) or target
        try:
            fetched = await self._fetch(peer, step, source)
        except StepTooLarge:
            # Big entries: take the very next checkpoint the peer holds instead.
            smaller = await self.checkpoint_between(peer, n + 1, step)
            try:
                if smaller is None:
                    raise StepTooLarge() from None
                step = smaller
                fetched = await self._fetch(peer, step, source)
            except StepTooLarge:
                # Not proof of lying (a site keeps only some checkpoints): skip, don't distrust.
                raise NetworkError(
                    f"{source} offers no checkpoint within {self.limits.max_step_entries} "
                    f"entries or {self.limits.max_step_bytes >> 20} MiB after size {n}; a "
                    "range that large cannot be verified in bounded memory, so it is fetched "
                    "from another peer"
                ) from None
        self.log.commit(fetched.entries, fetched.frontier, step, source)
        self.store_recovered()

    async def _fetch(self, peer: Any, step: cp.SignedCheckpoint, source: str) -> VerifiedRange:
        """Entries from our size up to ``step``, verified (``fetch.fetch_range``)."""
        ours = self.book.note_of(self.log.size)
        return await fetch_range(
            peer,
            step,
            self.log.log_verifier(),
            source,
            base=self.log.frontier,
            base_note=cp.parse_checkpoint(ours) if ours else None,
            max_entries=self.limits.max_step_entries,
            max_bytes=self.limits.max_step_bytes,
        )

    async def checkpoint_between(
        self, peer: Any, at_least: int, below: cp.SignedCheckpoint
    ) -> cp.SignedCheckpoint | None:
        """A hub-signed checkpoint the peer holds with size in [at_least, below.size)."""
        request = protocol.CheckpointRequest(at_least=at_least)
        resp = await peer.ask(request, timeout=self.limits.timeout)
        if not resp.note:
            return None
        candidate = self.log.parse_signed(resp.note)
        if at_least <= candidate.checkpoint.size < below.checkpoint.size:
            return candidate
        return None

    async def diagnose(self, peer: Any, target: cp.SignedCheckpoint, source: str) -> None:
        """After a root mismatch: is the peer lying, or did the hub fork the log?

        Rehash the peer's whole log up to the target (leaf hashes only). If it gives the
        hub-signed target root but differs from our verified root at our size, the hub
        signed two inconsistent trees: a split view (``SplitViewError``, with both notes).
        If it does not give the target root, the peer serves entries the hub never signed.
        """
        n, ours = self.log.size, self.log.frontier.root()
        frontier, ours_there = merkle.CompactRange(), None
        try:
            async for page in pages(peer, 0, target.checkpoint.size, old_size=0, source=source):
                for raw in page.raws:
                    frontier.extend([merkle.leaf_hash(raw)])
                    if frontier.size == n:
                        ours_there = frontier.root()
        except BadRange:
            return  # it serves no such log: its lie is the root mismatch already raised
        if frontier.root() == target.checkpoint.root and ours_there not in (None, ours):
            detail = (
                f"the hub signed size {target.checkpoint.size} over a log (served by "
                f"{source}) whose first {n} entries hash to {ours_there.hex()[:16]}…, but "
                f"it signed size {n} with root {ours.hex()[:16]}… for us"
            )
            self.log.trust.declare_split_view(self.book.note_at_least(n) or "", target.text, detail)

    # --- our own faults -------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Whether our store failed a moment ago and the pause before the next try runs."""
        return time.monotonic() < self._fault_until

    async def wait_out_pause(self) -> None:
        wait = self._fault_until - time.monotonic()
        if wait > 0:
            await trio.sleep(wait)

    def store_failed(self, exc: BaseException, source: str) -> None:
        """Our store could not take a verified batch: pause, retry later, blame nobody."""
        first = self.local_fault is None
        self.local_fault = str(exc)
        wait = self._pause.next()
        self._fault_until = time.monotonic() + wait
        if first:
            log.warning(
                "could not store entries verified from %s: %s. This is a fault of this "
                "machine (disk full? another program holding %s?), not of any peer; "
                "retrying with pauses of up to %.0f s",
                source,
                exc,
                self.where or "the ledger",
                LOCAL_FAULT_MAX_PAUSE,
            )
        else:
            log.debug("store still failing (next try in %.1f s): %s", wait, exc)

    def store_recovered(self) -> None:
        if self.local_fault is not None:
            log.info("the ledger takes writes again; replication resumed")
        self.local_fault = None
        self._pause.reset()
        self._fault_until = 0.0


__all__ = [
    "LIMITS",
    "LOCAL_FAULT_MAX_PAUSE",
    "LOCAL_FAULT_PAUSE",
    "Limits",
    "Replica",
    "ReplicaTracker",
    "open_replica",
]
