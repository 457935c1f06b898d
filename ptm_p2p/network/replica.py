"""A verified copy of the log, and the read side of the sync protocol served from it.

Both daemons hold one ``Replica``: the hub appends what it sequences, a site appends what it
has verified. The replica is the only place that turns bytes from the network into stored
entries, and it does so in one order, the same for every source:

1. every entry decodes canonically and its signature verifies (``Entry.from_bytes``);
2. the batch, appended to our verified frontier, gives exactly the root of a checkpoint the
   hub signed (so the range is neither forged, altered, truncated nor reordered) and the
   served consistency proof checks (RFC 9162 §2.1.4.2);
3. every entry passes the replay rules (``State.apply``);
4. only then: one atomic ``store.append`` and the checkpoint is recorded.

Any hub-signed checkpoint seen anywhere goes through ``observe``: one whose size we already
hold must have our root at that size, or the hub has shown two views of the log (a split
view): the evidence is stored and the hub is no longer trusted.

Our own faults are never evidence against others. Memory is never ahead of the store: a
commit whose writes fail (a full disk, another process holding the SQLite write lock) leaves
state and frontier as they were, so the same batch can simply be committed again later; such
a ``StoreError`` is a *local fault* (``is_local_fault``) for the caller to log and retry,
never a reason to distrust the peer that sent the batch. The store gives up on a held write
lock after ``BUSY_TIMEOUT_MS`` instead of freezing the event loop in SQLite's busy wait.
Stored tree nodes are checked against the entries at start (``check_integrity``), and again
before a mismatch with a hub checkpoint is called a split view: a flipped bit in our own file
is ``DamagedLedger``, which stops the daemon with the file and the fix, never evidence.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import trio
from libp2p.peer.id import ID

from ptm_p2p.errors import (
    BadRange,
    CheckpointError,
    DamagedLedger,
    EquivocationError,
    LedgerError,
    ProofError,
    ProtocolError,
    PtmError,
    ReplayError,
    RootMismatch,
    SplitViewError,
    StoreError,
)
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger import merkle
from ptm_p2p.ledger.crypto import short
from ptm_p2p.ledger.entry import GENESIS, Entry
from ptm_p2p.ledger.replay import State, replay_store
from ptm_p2p.network import protocol
from ptm_p2p.network.framing import RESPONSE_BUDGET
from ptm_p2p.network.host import public_key_of
from ptm_p2p.network.rpc import LogLimiter

log = logging.getLogger(__name__)

# Anyone who completes a Noise handshake may say hello; only active members are listed to
# others and dialed. Strangers are remembered in a small book whose oldest entry is evicted,
# so they can neither grow our memory nor push members out.
MAX_STRANGERS = 256
# Evidence rows are kept forever and every new report is compared with the stored ones: a
# cap keeps a lying hub that signs fork after fork from filling the disk (the first items
# are the ones that matter; one is enough to stop trusting the hub).
MAX_EVIDENCE = 1_000
# Complaints about what peers send, logged at most rpc.LOG_BURST times a minute per kind.
_peer_noise = LogLimiter()
# Pending long-polls: each holds a task and a stream; beyond this, ``wait`` answers at once.
MAX_WAITERS = 4_096
# How long one write waits for another process's SQLite write lock before it fails (and is
# retried later by the caller). The store's own default (10 s) is spent in SQLite's busy
# wait on the event loop's thread: every peer would go unanswered meanwhile.
BUSY_TIMEOUT_MS = 250


def is_local_fault(exc: BaseException) -> bool:
    """True for a write of ours that failed and may work later (busy, locked, disk full).

    Such a failure says nothing about the peer whose entries we were storing. A damaged file
    is not transient (``DamagedLedger``, or SQLite's own corruption codes): it is reported as
    such and stops the daemon.
    """
    if not isinstance(exc, StoreError) or isinstance(exc, DamagedLedger):
        return False
    cause = exc.__cause__
    code = getattr(cause, "sqlite_errorcode", None)
    damage = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return not (isinstance(code, int) and code & 0xFF in damage)


@dataclass
class PeerRecord:
    addrs: list[str]
    name: str = ""
    last_seen: float = 0.0


@dataclass
class Trust:
    """Peers and keys this replica no longer believes, with the reason (shown by status)."""

    distrusted: dict[str, str] = field(default_factory=dict)

    def distrust(self, who: str, reason: str) -> None:
        if who not in self.distrusted:
            log.error("no longer trusting %s: %s", who, reason)
        self.distrusted[who] = reason

    def restore(self, who: str, reason: str) -> None:
        """Distrust decided in an earlier run: no new error line, the first one said it."""
        self.distrusted[who] = reason

    def trusted(self, who: str) -> bool:
        return who not in self.distrusted


class Replica:
    """A store plus the in-memory state needed to verify and serve it quickly."""

    def __init__(self, store: Any, name: str) -> None:
        self.store = store
        self.name = name
        self.state = State()
        self.frontier = merkle.CompactRange()
        self.trust = Trust()
        # Peers we may dial: members that said hello, the hub's list, --peer, peers.json.
        self.peers: dict[str, PeerRecord] = {}
        # Addresses the operator gave for a peer (``ptm node --peer``). They are authoritative
        # for that peer id: the hub's list or the peer's own hello may add addresses, never
        # drop or replace these (a wrong or lying answer must not cut us off from a peer the
        # operator pointed us to).
        self.pinned: dict[str, list[str]] = {}
        # Non-members that said hello (bounded; listed once they are admitted).
        self.strangers: dict[str, PeerRecord] = {}
        self.waiters = 0
        # size -> latest note text we hold for that size (cosignatures merged in)
        self.notes: dict[int, str] = {}
        self.sizes: list[int] = []
        self._changed = trio.Event()
        self.split_view = False
        self._dirty: set[int] = set()
        self._flush_failing = False
        self.expected: tuple[str, bytes] | None = None
        # A fault of our own found while serving (``DamagedLedger``): the daemon's
        # ``watch_faults`` task raises it, which stops the daemon with that message.
        self.fault: PtmError | None = None
        self._fault_found = trio.Event()
        self._load()

    # --- loading ------------------------------------------------------------------------

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
        for note_size, note in self.store.checkpoints():
            if note_size <= size:
                self._remember_note(note_size, note)
        for item in self.store.evidence():
            kind = getattr(item, "kind", "")
            # Distrust survives a restart: a site that proved a split view (or a signed
            # rule-breaking entry) must not resume following and cosigning for that hub.
            if kind == "split-view":
                self.split_view = True
                self.trust.distrust("hub", "split view evidence in the store (see `ptm status`)")
            elif kind == "invalid-entry":
                self.trust.distrust("hub", "signed a checkpoint over a rule-breaking entry")
            elif kind == "equivocation":
                with contextlib.suppress(LedgerError):
                    author = Entry.from_bytes(bytes(item.first)).author
                    self.trust.restore(f"author {short(author)}", str(item.detail))
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

    # --- checkpoints --------------------------------------------------------------------

    @property
    def latest_note(self) -> str | None:
        return self.notes[self.sizes[-1]] if self.sizes else None

    def note_at_least(self, size: int) -> str | None:
        """The first checkpoint we hold of size >= ``size``; the latest if there is none."""
        i = bisect.bisect_left(self.sizes, size)
        if i < len(self.sizes):
            return self.notes[self.sizes[i]]
        return self.latest_note

    def _remember_note(self, size: int, note: str) -> None:
        if size not in self.notes:
            bisect.insort(self.sizes, size)
        self.notes[size] = note

    def record_checkpoint(self, signed: cp.SignedCheckpoint) -> None:
        """Store, then serve: a checkpoint whose write failed is not handed to anyone."""
        size = signed.checkpoint.size
        self.store.add_checkpoint(signed.text, size)
        self._remember_note(size, signed.text)
        self._notify()

    def merge_cosignatures(self, incoming: cp.SignedCheckpoint) -> int:
        """Add the valid witness cosignatures of ``incoming`` to our note of the same tree.

        Returns how many new cosignatures were added. Unknown signers are dropped (C2SP
        signed-note: ignore unknown keys); a known witness's bad cosignature is an error.
        """
        size = incoming.checkpoint.size
        ours_text = self.notes.get(size)
        if ours_text is None:
            return 0
        ours = cp.parse_checkpoint(ours_text)
        if ours.checkpoint != incoming.checkpoint:
            return 0  # observe() handles disagreeing checkpoints
        witnesses = self.witness_verifiers()
        cp.verify_cosignatures(incoming, witnesses)  # raises on a forged cosignature
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
        self._remember_note(size, merged.text)
        # Persisted by flush_notes about once a second: every cosignature arriving would
        # otherwise cost an fsync'd transaction on the hub's hot path.
        self._dirty.add(size)
        self._notify()
        return len(new)

    def flush_notes(self) -> None:
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

    def cosigners(self, note: str | None = None) -> list[str]:
        note = note or self.latest_note
        if note is None:
            return []
        try:
            return [
                c.name
                for c in cp.verify_cosignatures(cp.parse_checkpoint(note), self.witness_verifiers())
            ]
        except LedgerError:
            return []

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for_change(self, after: int, timeout: float) -> None:
        if self.waiters >= MAX_WAITERS:
            return  # answer at once: the caller simply asks again
        self.waiters += 1
        try:
            with trio.move_on_after(timeout):
                while not self.sizes or self.sizes[-1] <= after:
                    await self._changed.wait()
        finally:
            self.waiters -= 1

    # --- verifying and appending -----------------------------------------------------------

    def parse_signed(self, note: str) -> cp.SignedCheckpoint:
        """Parse and check the hub's signature (raises CheckpointError)."""
        signed = cp.parse_checkpoint(note)
        cp.verify_checkpoint(signed, self.log_verifier())
        return signed

    def verify_batch(
        self, start: int, raws: Sequence[bytes], signed: cp.SignedCheckpoint, source: str
    ) -> tuple[list[Entry], merkle.CompactRange]:
        """Steps 1-2 of the module docstring; returns the entries and the new frontier."""
        target = signed.checkpoint
        if start != self.size:
            raise BadRange(f"{source} sent entries from {start}, we hold {self.size}")
        if start + len(raws) != target.size:
            raise BadRange(
                f"{source} sent {len(raws)} entries from {start} for a checkpoint of size "
                f"{target.size}: the range is truncated or padded"
            )
        entries = decode_entries(raws, start, source)
        return entries, self.check_root(start, entries, signed, source)

    async def verify_batch_async(
        self, start: int, raws: Sequence[bytes], signed: cp.SignedCheckpoint, source: str
    ) -> tuple[list[Entry], merkle.CompactRange]:
        """``verify_batch`` with signature checks spread over worker threads.

        PyNaCl's C calls release the GIL, so on two cores two threads verify nearly twice as
        fast, and the trio thread keeps serving peers meanwhile.
        """
        target = signed.checkpoint
        if start != self.size or start + len(raws) != target.size:
            return self.verify_batch(start, raws, signed, source)  # raises the precise error
        if len(raws) < 256:
            return self.verify_batch(start, raws, signed, source)
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
        entries = parts[0] + parts[1]
        return entries, self.check_root(start, entries, signed, source)

    def check_root(
        self, start: int, entries: list[Entry], signed: cp.SignedCheckpoint, source: str
    ) -> merkle.CompactRange:
        target = signed.checkpoint
        frontier = self.frontier.copy()
        frontier.extend([merkle.leaf_hash(e.raw) for e in entries])
        if frontier.root() != target.root:
            raise RootMismatch(
                f"{source} served entries {start}..{target.size - 1} that do not hash to the "
                f"root the hub signed for size {target.size}: forged, altered or reordered"
            )
        return frontier

    def commit(
        self,
        entries: list[Entry],
        frontier: merkle.CompactRange,
        signed: cp.SignedCheckpoint,
        source: str,
    ) -> None:
        """Steps 3-4: replay rules, then the durable append."""
        start = self.size
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
            self._rebuild_state()
            bad = entries[applied]
            self.trust.distrust("hub", f"signed a checkpoint over a rule-breaking entry: {exc}")
            self.record_evidence("invalid-entry", bad.raw, signed.text.encode(), str(exc))
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
            self._rebuild_state()
            self.trust.distrust(f"author {short(entries[0].author)}", str(exc))
            raise
        except BaseException:
            self._rebuild_state()
            raise
        self.frontier = frontier
        self._remember_note(signed.checkpoint.size, signed.text)
        self._notify()
        log.debug("appended %d entries from %s, size now %d", len(entries), source, self.size)

    def _rebuild_state(self) -> None:
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

        A mismatch is a split view: evidence is stored, the hub distrusted, and
        ``SplitViewError`` raised.
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
        ours_text = self.note_at_least(theirs.size) or ""
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
        self.record_evidence("split-view", ours_text.encode(), signed.text.encode(), detail)
        self.split_view = True
        self.trust.distrust("hub", "split view: signed two inconsistent checkpoints")
        raise SplitViewError(f"split view detected: {detail}", ours_text, signed.text)

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

    def record_evidence(self, kind: str, first: bytes, second: bytes, detail: str) -> bool:
        """Store evidence once (the same pair reported twice is stored once), at most
        ``MAX_EVIDENCE`` items in all."""
        stored = self.store.evidence()
        for item in stored:
            if item.kind == kind and {bytes(item.first), bytes(item.second)} == {first, second}:
                return False
        if len(stored) >= MAX_EVIDENCE:
            log.error("evidence table full (%d items); not storing: %s", len(stored), detail[:300])
            return False
        try:
            self.store.add_evidence(kind, first, second, detail)
        except StoreError as exc:
            if not is_local_fault(exc):
                raise
            # What we found is still true and acted on (in memory); only its record failed.
            log.error("evidence (%s) could not be stored: %s: %s", kind, exc, detail[:300])
            return False
        log.error("evidence recorded (%s): %s", kind, detail[:300])
        return True

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

    # --- serving -----------------------------------------------------------------------------

    async def serve(self, op: str, fields: dict[str, Any], peer: Any) -> dict[str, Any]:
        """Answer the read-side requests every peer serves (hub and sites alike)."""
        if op == "checkpoint":
            at_least = fields.get("at_least")
            note = self.latest_note if at_least is None else self.note_at_least(at_least)
            return protocol.ok(note=note, size=self.size)
        if op == "wait":
            timeout = min(fields["timeout_ms"], protocol.MAX_WAIT_MS) / 1000
            await self.wait_for_change(fields["after"], timeout)
            return protocol.ok(note=self.latest_note, size=self.size)
        if op == "entries":
            return self._serve_entries(fields["start"], fields["end"], fields["old_size"])
        if op == "peers":
            return protocol.ok(peers=self.member_peers()[:64])
        if op == "hello":
            addrs = [a for a in fields["addrs"][:16] if isinstance(a, str) and _is_tcp_addr(a)]
            if addrs and peer is not None:
                self.note_hello(str(peer), addrs[:4], fields.get("name", ""))
            return protocol.ok(origin=self.origin, size=self.size)
        if op == "head":
            seq, last = self.state.heads.get(fields["author"], (0, bytes(32)))
            return protocol.ok(seq=seq, hash=last)
        if op == "cosign":
            return self._receive_note(fields["note"], str(peer))
        if op == "evidence":
            return self._receive_evidence(fields, str(peer))
        raise ProtocolError(
            f"operation {op!r} is not served by this peer", detail=protocol.UNKNOWN_OP
        )

    def is_member(self, pid: str) -> bool:
        """Whether the peer id names the key of an active member of the collaboration."""
        try:
            key = public_key_of(ID.from_base58(pid))
        except Exception:  # ids in the book came from the wire or a file
            return False
        member = self.state.members.get(key) if key is not None else None
        return member is not None and member.active

    def pin_peer(self, pid: str, addr: str) -> None:
        """An address the operator gave for ``pid``: dialed first, kept whatever others say."""
        pinned = self.pinned.setdefault(pid, [])
        if addr not in pinned:
            pinned.append(addr)
        self.peers[pid] = PeerRecord(list(pinned), self.peers.get(pid, PeerRecord([])).name)

    def with_pinned(self, pid: str, addrs: list[str]) -> list[str]:
        """``addrs`` for ``pid`` as others told them, behind the operator's own (if any)."""
        pinned = self.pinned.get(pid, [])
        return pinned + [a for a in addrs if a not in pinned]

    def note_hello(self, pid: str, addrs: list[str], name: str) -> None:
        """Remember where a peer (authenticated by Noise) says it listens."""
        record = PeerRecord(self.with_pinned(pid, addrs), name, time.time())
        if pid in self.peers or self.is_member(pid):
            self.strangers.pop(pid, None)
            self.peers[pid] = record
            return
        self.strangers.pop(pid, None)
        while len(self.strangers) >= MAX_STRANGERS:
            del self.strangers[next(iter(self.strangers))]  # the least recently heard
        self.strangers[pid] = record

    def member_peers(self) -> list[dict[str, Any]]:
        """Known addresses of active members only: anyone may connect and say hello, but a
        stranger must not fill every site's address book with places to dial."""
        out = []
        for book in (self.peers, self.strangers):  # a stranger may have been admitted since
            for pid, rec in book.items():
                if rec.addrs and self.is_member(pid):
                    out.append({"id": pid, "addrs": rec.addrs, "name": rec.name})
        return out

    def _serve_entries(self, start: int, end: int, old_size: int) -> dict[str, Any]:
        if not start < end:
            raise ProtocolError(f"entries: empty or reversed range {start}..{end}")
        if end > self.size:
            return protocol.error(protocol.NOT_FOUND, f"we hold {self.size} entries, not {end}")
        note = self.note_at_least(end)
        if note is None:
            return protocol.error(protocol.NOT_FOUND, "no checkpoint yet")
        note_size = cp.parse_checkpoint(note).checkpoint.size
        if old_size > note_size:
            raise ProtocolError(f"entries: old_size {old_size} beyond checkpoint {note_size}")
        stop = min(end, start + protocol.MAX_ENTRIES_PER_REQUEST)
        raws = self.store.raw_range(start, stop)
        # Keep the response under the frame budget: cut the range, the client continues.
        total, kept = 0, 0
        for raw in raws:
            total += len(raw) + 5
            if total > RESPONSE_BUDGET and kept:
                break
            kept += 1
        proof = (
            self.store.consistency_proof(old_size, note_size) if 0 < old_size < note_size else []
        )
        return protocol.ok(entries=raws[:kept], note=note, proof=proof)

    def _receive_note(self, note: str, source: str) -> dict[str, Any]:
        signed = self.parse_signed(note)
        if signed.checkpoint.size <= self.size:
            self.check_against_ours(signed, source)
            added = self.merge_cosignatures(signed)
            return protocol.ok(added=added)
        return protocol.ok(added=0)

    def _receive_evidence(self, fields: dict[str, Any], source: str) -> dict[str, Any]:
        kind = fields["kind"]
        if kind == "split-view":
            # Check it ourselves: both notes must carry valid hub signatures and disagree.
            try:
                a = self.parse_signed(fields["first"].decode())
                b = self.parse_signed(fields["second"].decode())
            except (LedgerError, UnicodeDecodeError) as exc:
                raise ProtocolError(f"split-view evidence does not verify: {exc}") from exc
            for signed in (a, b):
                try:
                    self.check_against_ours(signed, source)
                except SplitViewError:
                    return protocol.ok(confirmed=True)
            same_size = a.checkpoint.size == b.checkpoint.size
            if same_size and a.checkpoint.root != b.checkpoint.root:
                self.record_evidence(
                    kind,
                    fields["first"],
                    fields["second"],
                    f"reported by {source}: {fields['detail']}",
                )
                self.split_view = True
                self.trust.distrust("hub", "split view reported and checked")
                return protocol.ok(confirmed=True)
            return protocol.ok(confirmed=False)
        if kind == "equivocation":
            return protocol.ok(confirmed=self._check_equivocation(fields, source))
        # Anything else cannot be checked here: log it, store nothing (a stranger must not
        # be able to write to our disk).
        _peer_noise.log(
            log,
            logging.WARNING,
            "unknown-evidence",
            "peer %s reported %r evidence we cannot check; ignored",
            source,
            kind[:64],
        )
        return protocol.ok(confirmed=False)

    def _check_equivocation(self, fields: dict[str, Any], source: str) -> bool:
        """Two validly signed entries of one member with one seq: store them as evidence."""
        try:
            a, b = Entry.from_bytes(fields["first"]), Entry.from_bytes(fields["second"])
        except LedgerError as exc:
            raise ProtocolError(f"equivocation evidence does not verify: {exc}") from exc
        if (a.author, a.seq) != (b.author, b.seq) or a.hash == b.hash:
            raise ProtocolError("equivocation evidence: the entries are not two versions of one")
        if a.author not in self.state.members:
            # A stranger can equivocate with a fresh key at will; only members' forks matter.
            return False
        detail = (
            f"reported by {source}: author {self.member_name(a.author)} signed two entries "
            f"with seq {a.seq}"
        )
        self.record_evidence("equivocation", a.raw, b.raw, detail)
        self.trust.distrust(f"author {short(a.author)}", detail)
        return True

    # --- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        note = self.latest_note
        checkpoint_size = cp.parse_checkpoint(note).checkpoint.size if note else 0
        return {
            "name": self.name,
            "origin": self.origin,
            "size": self.size,
            "checkpoint_size": checkpoint_size,
            "checkpoint": note,
            "cosigners": self.cosigners(note),
            "split_view": self.split_view,
            "distrusted": dict(self.trust.distrusted),
            "evidence": [{"kind": e.kind, "detail": e.detail} for e in self.store.evidence()],
        }


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


def _is_tcp_addr(text: str) -> bool:
    if len(text) > 200:
        return False
    try:
        addr = multiaddr.Multiaddr(text)
        return addr.value_for_protocol("tcp") is not None and "/p2p/" not in text
    except Exception:  # multiaddr raises assorted errors on junk
        return False


def describe_error(exc: PtmError) -> str:
    return f"{type(exc).__name__}: {exc}"


__all__ = ["BadRange", "DamagedLedger", "RootMismatch", "Replica", "ProofError"]
