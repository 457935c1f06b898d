"""A verified copy of the log: the store, its replayed state and its Merkle frontier.

Both daemons and the researcher's client hold one ``VerifiedLog``: the hub appends what it
sequences, a site (or a client) what it has verified. Bytes from the network become stored
entries in one order, the same for every source:

1. every entry decodes canonically and its signature verifies (``Entry.from_bytes``);
2. the batch, appended to our verified frontier, gives exactly the root of a checkpoint the
   hub signed (``extend_to_root``: the range is neither forged, altered, truncated nor
   reordered); steps 1-2 are ``fetch.fetch_range`` (which also checks the served
   consistency proof, RFC 9162 §2.1.4.2), or ``verify_batch`` for a range already in hand;
3. ``commit`` checks once more that the range extends exactly this log to exactly the signed
   checkpoint, then every entry passes the replay rules (``State.apply``);
4. only then: one atomic ``store.append``, with the checkpoint stored first.

What the log finds out about others goes to its ``TrustRegistry``: a checkpoint the hub
signed over a rule-breaking entry, an author's second entry with one sequence number, and a
hub-signed checkpoint of a size we hold that does not carry our root (``check_against_ours``:
a split view).

Our own faults are never evidence against others. Memory is never ahead of the store: a
commit whose writes fail (a full disk, another process holding the SQLite write lock) leaves
state and frontier as they were, so the same batch can simply be committed again later;
such a ``StoreError`` is a *local fault* (``ledger.store.is_local_fault``) for the caller to
log and retry, never a reason to distrust the peer that sent the batch. The store gives up
on a held write lock after ``BUSY_TIMEOUT_MS`` instead of freezing the event loop in
SQLite's busy wait.
Stored tree nodes are checked against the entries at start (``check_integrity``), and again
before a mismatch with a hub checkpoint is called a split view: a flipped bit in our own file
is ``DamagedLedger``, which stops the daemon with the file and the fix, never evidence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from ptm_p2p.errors import (
    BadRange,
    CheckpointError,
    DamagedLedger,
    EquivocationError,
    LedgerError,
    PtmError,
    ReplayError,
    RootMismatch,
    StoreError,
)
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger import merkle
from ptm_p2p.ledger.crypto import short
from ptm_p2p.ledger.entry import GENESIS, Entry, claimed_author, split_raw
from ptm_p2p.ledger.replay import State, replay_store
from ptm_p2p.ledger.store import LogStore

if TYPE_CHECKING:
    from ptm_p2p.network.checkpoint_book import CheckpointBook
    from ptm_p2p.network.trust import TrustRegistry

log = logging.getLogger(__name__)

# How long one write waits for another process's SQLite write lock before it fails (and is
# retried later by the caller). The store's own default (10 s) is spent in SQLite's busy
# wait on the event loop's thread: every peer would go unanswered meanwhile.
BUSY_TIMEOUT_MS = 250
# Batches at least this large are signature-checked on two worker threads.
THREADED_VERIFY = 256


def decode_entries(raws: Sequence[bytes], start: int, source: str) -> list[Entry]:
    """Decode and signature-check entries; the first failure names the peer and index."""
    entries: list[Entry] = []
    for offset, raw in enumerate(raws):
        try:
            entries.append(Entry.from_bytes(raw))
        except LedgerError as exc:
            error = BadRange(f"{source} served entry {start + offset}: {exc}")
            error.index = start + offset
            raise error from exc
    return entries


async def decode_entries_async(raws: Sequence[bytes], start: int, source: str) -> list[Entry]:
    """``decode_entries`` spread over two worker threads for large batches.

    PyNaCl's C calls release the GIL, so on two cores two threads verify nearly twice as
    fast, and the trio thread keeps serving peers meanwhile.
    """
    if len(raws) < THREADED_VERIFY:
        return decode_entries(raws, start, source)
    half = len(raws) // 2
    parts: list[list[Entry]] = [[], []]
    errors: list[BadRange] = []

    async def run(i: int, lo: int, hi: int) -> None:
        # Keep BadRange out of the nursery: trio would wrap it in an ExceptionGroup that
        # no ``except BadRange`` matches, and the lying peer would go unnamed.
        try:
            parts[i] = await trio.to_thread.run_sync(
                decode_entries, raws[lo:hi], start + lo, source
            )
        except BadRange as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, 0, 0, half)
        nursery.start_soon(run, 1, half, len(raws))
    if errors:
        raise min(errors, key=lambda e: e.index)
    return parts[0] + parts[1]


def extend_to_root(
    base: merkle.CompactRange, entries: list[Entry], signed: cp.SignedCheckpoint, source: str
) -> merkle.CompactRange:
    """``base`` extended by ``entries``; ``RootMismatch`` unless that is exactly the tree the
    hub signed in ``signed`` (so nothing was forged, altered, dropped or reordered)."""
    target = signed.checkpoint
    frontier = base.copy()
    frontier.extend([merkle.leaf_hash(e.raw) for e in entries])
    if frontier.root() != target.root:
        raise RootMismatch(
            f"{source} served entries {base.size}..{target.size - 1} that do not hash to the "
            f"root the hub signed for size {target.size}: forged, altered or reordered"
        )
    return frontier


class VerifiedLog:
    """A store plus the in-memory state needed to verify and extend it quickly."""

    def __init__(self, store: LogStore, book: CheckpointBook, trust: TrustRegistry) -> None:
        self.store = store
        self.book = book
        self.trust = trust
        self.state = State()
        self.frontier = merkle.CompactRange()
        self.expected: tuple[str, bytes] | None = None
        # A fault of our own found while serving (``DamagedLedger``): the daemon's
        # ``watch_faults`` task raises it, which stops the daemon with that message.
        self.fault: PtmError | None = None
        self._fault_found = trio.Event()
        self._load()

    def _load(self) -> None:
        """Replay our own store: it was verified before it was written, but replaying it
        keeps state and frontier exact, and a tampered file fails loudly here."""
        size = self.store.size()
        start = time.perf_counter()
        try:
            replay_store(
                self.store,
                self.state,
                on_batch=lambda _, entries: self.frontier.extend(
                    [merkle.leaf_hash(e.raw) for e in entries]
                ),
            )
        except LedgerError as exc:
            # A refused entry leaves the state as it was: its size is the entry's index.
            raise self._damaged(f"entry {self.state.size}: {exc}") from exc
        if size:
            # The tree nodes serve every proof and old root: a flipped bit there would make an
            # honest hub's old checkpoint look like a split view, or our proofs fail for everyone.
            try:
                self.store.check_integrity()
            except StoreError as exc:
                raise self._damaged(str(exc)) from exc
        self.book.load(size)
        if size:
            log.info("loaded %d entries in %.2f s", size, time.perf_counter() - start)

    def _damaged(self, problem: str) -> DamagedLedger:
        path = str(getattr(self.store, "path", "the ledger"))
        return DamagedLedger(f"ledger {path} is damaged: {problem}", path)

    def report_fault(self, fault: PtmError) -> None:
        """A fault of our own that the daemon cannot serve past: stop it (``watch_faults``)."""
        if self.fault is None:
            self.fault = fault
            log.error("%s", fault)
        self._fault_found.set()

    async def watch_faults(self, host: Any = None, me: str = "") -> None:
        """A daemon task: raise the first fault reported, which stops the daemon."""
        await self._fault_found.wait()
        assert self.fault is not None
        raise self.fault

    # --- identity of the log ------------------------------------------------------------

    @property
    def size(self) -> int:
        return self.frontier.size

    @property
    def origin(self) -> str | None:
        return self.state.origin

    @property
    def hub_key(self) -> bytes | None:
        return self.state.hub

    def expect(self, origin: str, hub_key: bytes) -> None:
        """Pin the log we follow (from the invitation) before its genesis entry arrives."""
        if self.state.origin is not None and (self.state.origin, self.state.hub) != (
            origin,
            hub_key,
        ):
            raise CheckpointError(
                f"this home follows log {self.state.origin} (hub {short(self.state.hub or b'')})"
                f" but the invitation is for {origin} (hub {short(hub_key)}); use another --home"
            )
        self.expected = (origin, hub_key)

    def log_verifier(self) -> cp.Verifier:
        if self.state.origin is not None and self.state.hub is not None:
            return cp.Verifier.log(self.state.origin, self.state.hub)
        if self.expected is not None:
            return cp.Verifier.log(*self.expected)
        raise CheckpointError("no genesis entry yet: the log's origin and hub key are unknown")

    def witness_verifiers(self) -> list[cp.Verifier]:
        return [cp.Verifier.witness(m.org, m.key) for m in self.state.active_members("site")]

    def member_name(self, key: bytes) -> str:
        return self.state.describe(key)

    def is_member(self, key: bytes) -> bool:
        """Whether ``key`` is an active member of the collaboration."""
        member = self.state.members.get(key)
        return member is not None and member.active

    def parse_signed(self, note: str) -> cp.SignedCheckpoint:
        """Parse and check the hub's signature (raises CheckpointError)."""
        signed = cp.parse_checkpoint(note)
        cp.verify_checkpoint(signed, self.log_verifier())
        return signed

    def origin_mismatch(self, note: str) -> str | None:
        """The origin of a note our invitation cannot verify but the invited hub key can.

        Before the genesis entry arrives, the origin we follow comes only from the invitation.
        If it is wrong, every honest checkpoint fails to verify; that is our configuration's
        fault, not the fault of whoever sent the note, and must never make us distrust them.
        Returns the note's origin when the hub key signed it under that origin, else None.
        """
        if self.state.origin is not None or self.expected is None:
            return None
        try:
            signed = cp.parse_checkpoint(note)
            origin = signed.checkpoint.origin
            if origin == self.expected[0]:
                return None
            cp.verify_checkpoint(signed, cp.Verifier.log(origin, self.expected[1]))
        except (LedgerError, AttributeError):
            return None
        return str(origin)

    # --- verifying and appending -----------------------------------------------------------

    def _check_span(
        self, start: int, raws: Sequence[bytes], signed: cp.SignedCheckpoint, source: str
    ) -> None:
        target = signed.checkpoint
        if start != self.size:
            raise BadRange(f"{source} sent entries from {start}, we hold {self.size}")
        if start + len(raws) != target.size:
            raise BadRange(
                f"{source} sent {len(raws)} entries from {start} for a checkpoint of size "
                f"{target.size}: the range is truncated or padded"
            )

    def verify_batch(
        self, start: int, raws: Sequence[bytes], signed: cp.SignedCheckpoint, source: str
    ) -> tuple[list[Entry], merkle.CompactRange]:
        """Steps 1-2 of the module docstring; returns the entries and the new frontier."""
        self._check_span(start, raws, signed, source)
        entries = decode_entries(raws, start, source)
        return entries, self.check_root(start, entries, signed, source)

    async def verify_batch_async(
        self, start: int, raws: Sequence[bytes], signed: cp.SignedCheckpoint, source: str
    ) -> tuple[list[Entry], merkle.CompactRange]:
        """``verify_batch`` with signature checks spread over worker threads."""
        self._check_span(start, raws, signed, source)
        entries = await decode_entries_async(raws, start, source)
        return entries, self.check_root(start, entries, signed, source)

    def check_root(
        self, start: int, entries: list[Entry], signed: cp.SignedCheckpoint, source: str
    ) -> merkle.CompactRange:
        return extend_to_root(self.frontier, entries, signed, source)

    def commit(
        self,
        entries: list[Entry],
        frontier: merkle.CompactRange,
        signed: cp.SignedCheckpoint,
        source: str,
    ) -> None:
        """Steps 3-4: replay rules, then the durable append; the checkpoint joins the book.

        ``entries`` and ``frontier`` come from steps 1-2 (``fetch.fetch_range``); they are
        checked once more to extend exactly our log to exactly ``signed``, so no caller can
        store a range verified against another starting point.
        """
        start = self.size
        target = signed.checkpoint
        if not (
            frontier.size == start + len(entries) == target.size and frontier.root() == target.root
        ):
            raise BadRange(
                f"{source}: {len(entries)} entries verified up to size {frontier.size} do not "
                f"extend our {start} entries to the checkpoint of size {target.size}"
            )
        if start == 0 and entries and self.expected is not None:
            genesis = entries[0].payload
            if (
                entries[0].kind != GENESIS
                or (genesis.get("origin"), genesis.get("hub")) != self.expected
            ):
                raise BadRange(
                    f"{source} served a log whose first entry is not the genesis "
                    "of the invited collaboration"
                )
        applied = 0
        try:
            for offset, entry in enumerate(entries):
                self.state.apply(entry, start + offset)
                applied += 1
        except ReplayError as exc:
            # The entries are exactly what the hub signed, so the hub sequenced an entry
            # that breaks the rules: the hub is at fault, not the peer that relayed it.
            self.rebuild()
            self.trust.hub_broke_rules(entries[applied], signed.text, str(exc))
            raise
        # Memory is never ahead of the store: if either write fails, the state goes back to
        # what the store holds, so the same batch commits cleanly when it is tried again (a
        # replay of entries we already applied would otherwise look like the hub's fault).
        # The checkpoint is stored first: a crash between the two writes then leaves a
        # checkpoint beyond our size (ignored on load), never entries without one (which a
        # restarting site refuses as unverified).
        try:
            self.store.add_checkpoint(signed.text, signed.checkpoint.size)
            self.store.append(entries)
        except EquivocationError as exc:
            self.rebuild()
            # The author of the conflicting pair, not of the batch's first entry.
            author = claimed_author(split_raw(exc.second)[0]) or entries[0].author
            self.trust.author_equivocated(author, str(exc))
            raise
        except BaseException:
            self.rebuild()
            raise
        self.frontier = frontier
        self.book.remember(signed.checkpoint.size, signed.text)
        log.debug("appended %d entries from %s, size now %d", len(entries), source, self.size)

    def rebuild(self) -> None:
        """Replay the state from the store again (after a write or a rule check failed)."""
        self.state = replay_store(self.store)

    def append_genesis(self, raw: bytes) -> Entry:
        """Start a log: its first entry must be a genesis entry (used by the hub)."""
        entry = Entry.from_bytes(raw)
        if entry.kind != GENESIS:
            raise ReplayError(f"the first entry must be a genesis entry, got {entry.kind}")
        self.state.apply(entry, 0)
        self.store.append([entry])
        self.frontier.extend([merkle.leaf_hash(raw)])
        return entry

    def append_local(self, entries: list[Entry]) -> None:
        """The hub's append: entries already checked with ``State.apply`` in order."""
        self.store.append(entries)
        self.frontier.extend([merkle.leaf_hash(e.raw) for e in entries])

    # --- consistency of what others show us --------------------------------------------

    def check_against_ours(self, signed: cp.SignedCheckpoint, source: str) -> bool:
        """For a hub-signed checkpoint no larger than our log: True if it matches our tree.

        A mismatch is a split view (``TrustRegistry.declare_split_view``: evidence stored,
        the hub distrusted, ``SplitViewError`` raised).
        """
        theirs = signed.checkpoint
        if theirs.size > self.size:
            return False
        our_root = (
            self.frontier.root() if theirs.size == self.size else self.store.root(theirs.size)
        )
        if our_root == theirs.root:
            return True
        if theirs.size < self.size:
            self._check_stored_root(theirs.size, our_root)
        ours_text = self.book.note_at_least(theirs.size) or ""
        ours_size = cp.parse_checkpoint(ours_text).checkpoint.size if ours_text else self.size
        proof = (
            self.store.consistency_proof(theirs.size, ours_size) if ours_size > theirs.size else []
        )
        detail = (
            f"hub {short(self.hub_key or b'')} signed size {theirs.size} with root "
            f"{theirs.root.hex()[:16]}… (seen via {source}) but our verified log, under the hub's "
            f"checkpoint of size {ours_size}, has root {our_root.hex()[:16]}… at that size; "
            f"consistency proof {theirs.size}->{ours_size}: " + ",".join(p.hex() for p in proof)
        )
        self.trust.declare_split_view(ours_text, signed.text, detail)

    def _check_stored_root(self, size: int, stored: bytes) -> None:
        """Recompute the root at ``size`` from our entries; a different stored root means our
        own tree nodes are damaged (``DamagedLedger``), not that the hub split the log."""
        tree = merkle.CompactRange()
        for _, raws in self.store.read_batches(0, size):
            tree.extend([merkle.leaf_hash(r) for r in raws])
        if tree.root() != stored:
            fault = self._damaged(
                f"its stored tree nodes give another root at size {size} than its entries"
            )
            self.report_fault(fault)
            raise fault


__all__ = ["BUSY_TIMEOUT_MS", "VerifiedLog", "decode_entries"]
