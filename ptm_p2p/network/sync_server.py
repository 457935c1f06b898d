"""The read side of the sync protocol, served by every daemon (hub and sites alike).

``SyncServer`` composes a daemon's parts and answers from them:

* ``VerifiedLog`` (``verified_log.py``): the store, replayed state and frontier;
* ``CheckpointBook`` (``checkpoint_book.py``): the signed notes served, cosignatures merged;
* ``PeerBook`` (``peer_book.py``): who said hello, and which members may be listed;
* ``TrustRegistry`` (``trust.py``): distrust and evidence;

the first, second and fourth assembled by ``replica.open_replica``, as every follower of
the log assembles them.

It answers ``checkpoint``, ``wait`` (long-polls, at most ``MAX_WAITERS`` parked at once),
``entries``, ``peers``, ``hello``, ``head``, ``cosign``, ``evidence`` and ``consistency``,
and gives the daemon's status. The write side (``submit``) is the hub's sequencer, not served here.

Members only (issue 14): the entries say who ran which image on which data label, when, and
how every result went, so by default they are served only to admitted, unrevoked members.
The peer's ledger key is its libp2p identity (one Ed25519 seed gives both, ``host.py``), so
no credential beyond the Noise handshake is needed. Anyone may still read what checks the
log without revealing it: the signed checkpoints (``checkpoint``, ``wait``), the genesis
entry (``entries`` 0..1, which names the origin, admin and hub), the proof that two signed
checkpoints are one history (``consistency``), ``hello``, and its own chain head (``head``).
Anything else is refused with ``protocol.not_member`` naming the key and the admin's
command; ``peers`` lists nobody to a non-member. ``public=True`` (the hub's
``[hub] public_log``) serves everything to everyone, as the first version did.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ptm_p2p.errors import DamagedLedger, LedgerError, ProtocolError, SplitViewError
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.ledger.store import LogStore
from ptm_p2p.network import protocol
from ptm_p2p.network.framing import RESPONSE_BUDGET
from ptm_p2p.network.host import public_key_of
from ptm_p2p.network.peer_book import PeerBook
from ptm_p2p.network.replica import ReplicaTracker, open_replica
from ptm_p2p.network.rpc import LogLimiter
from ptm_p2p.network.trust import EQUIVOCATION, SPLIT_VIEW, Party

log = logging.getLogger(__name__)

# What a request is answered with: a typed reply, or an error map (``protocol.error``).
Answer = protocol.Reply | dict[str, Any]
# Pending long-polls: each holds a task and a stream; beyond this, ``wait`` answers at once.
MAX_WAITERS = 4_096
# Complaints about what peers send, logged at most rpc.LOG_BURST times a minute per kind.
_peer_noise = LogLimiter()


class SyncServer:
    """One daemon's verified log, checkpoint book, peer book and trust, and their server."""

    def __init__(
        self,
        store: LogStore,
        name: str,
        distrust_file: Path | None = None,
        *,
        public: bool = False,
    ) -> None:
        """Assemble the parts over ``store`` (``replica.open_replica``: closed again if
        replaying it fails)."""
        self.store = store
        self.name = name
        self.public = public  # serve entries to anyone (``[hub] public_log``), not members only
        self.refused_non_members = 0
        replica = open_replica(store, distrust_file)
        self.trust, self.book, self.log = replica.trust, replica.book, replica.log
        # Keeps the copy up to date (a site's catch-up); compares the notes peers hand us.
        self.tracker = ReplicaTracker(self.log, where=str(getattr(store, "path", "")))
        self.peers = PeerBook(lambda key: self.log.is_member(key))
        self.waiters = 0

    # --- composed operations ---------------------------------------------------------------

    def observe(self, signed: cp.SignedCheckpoint, source: str) -> int:
        """A hub-signed checkpoint no larger than our log: compare it with our tree (a split
        view raises ``SplitViewError``), then merge its cosignatures; returns how many."""
        return self.tracker.observe(signed, source)

    def cosigners(self, note: str | None = None) -> list[str]:
        return self.book.cosigners(note, self.log.witness_verifiers())

    async def wait_for_change(self, after: int, timeout: float) -> None:
        if self.waiters >= MAX_WAITERS:
            return  # answer at once: the caller simply asks again
        self.waiters += 1
        try:
            await self.book.wait_newer(after, timeout)
        finally:
            self.waiters -= 1

    def tasks(self) -> list[Any]:
        """Daemon tasks the parts need: durable cosignatures, and stopping on our own fault."""
        return [self.book.keep_flushed, self.log.watch_faults]

    # --- serving ---------------------------------------------------------------------------

    async def answer(self, request: protocol.Request[Any], peer: Any) -> Answer:
        """Answer a read-side request every peer serves (hub and sites alike): a typed reply,
        or an error map (``protocol.error``) for a range we do not hold."""
        match request:
            case protocol.CheckpointRequest(at_least=at_least):
                if isinstance(at_least, int):
                    note = self.book.note_at_least(at_least)
                else:  # not given: the latest
                    note = self.book.latest
                return protocol.CheckpointReply(note=note, size=self.log.size)
            case protocol.WaitRequest(after=after, timeout_ms=timeout_ms):
                await self.wait_for_change(after, min(timeout_ms, protocol.MAX_WAIT_MS) / 1000)
                return protocol.CheckpointReply(note=self.book.latest, size=self.log.size)
            case protocol.EntriesRequest(start=start, end=end, old_size=old_size):
                if end > 1 and (refusal := self._members_only(peer, "the log's entries")):
                    return refusal  # entry 0 (genesis) is for anyone: it checks the origin
                return self._serve_entries(start, end, old_size)
            case protocol.PeersRequest():
                if self._members_only(peer, "the list of peers"):
                    # Who takes part is metadata too; an empty list keeps a waiting site's
                    # (or a first-version peer's) loop going to the checkpoint it may read.
                    return protocol.PeersReply(peers=[])
                listed = self.peers.member_peers()[:64]
                return protocol.PeersReply(peers=[protocol.PeerAddress(**p) for p in listed])
            case protocol.HelloRequest(addrs=addrs, name=name):
                if peer is not None:
                    self.peers.note_hello(str(peer), addrs, name)
                return protocol.HelloReply(origin=self.log.origin, size=self.log.size)
            case protocol.HeadRequest(author=author):
                # One's own head is no secret to oneself (a refused submit needs it).
                if author != peer_key(peer) and (
                    refusal := self._members_only(peer, "other authors' chain heads")
                ):
                    return refusal
                seq, last = self.log.state.heads.get(author, (0, bytes(32)))
                return protocol.HeadReply(seq=seq, hash=last)
            case protocol.CosignRequest(note=note):
                return self._guarded(self._receive_note, note, str(peer))
            case protocol.EvidenceRequest():
                return self._guarded(self._receive_evidence, request, str(peer))
            case protocol.ConsistencyRequest(old_size=old_size, new_size=new_size):
                return self._serve_consistency(old_size, new_size)
        raise ProtocolError(
            f"operation {request.op!r} is not served by this peer", detail=protocol.UNKNOWN_OP
        )

    async def serve(self, op: str, fields: dict[str, Any], peer: Any) -> dict[str, Any]:
        """``answer`` for a request given as op and fields, answered as the wire map (tests
        and tools that speak the protocol loosely; ``ProtocolError`` for a malformed one)."""
        request = protocol.parse_request({"v": protocol.VERSION, "op": op, **fields})
        return protocol.as_map(await self.answer(request, peer))

    def _members_only(self, peer: Any, what: str) -> dict[str, Any] | None:
        """None when ``peer`` may read ``what`` (a public log, or an active member's key);
        else the refusal that tells it why and what to do."""
        if self.public:
            return None
        key = peer_key(peer)
        if key is not None and self.log.is_member(key):
            return None
        self.refused_non_members += 1
        _peer_noise.log(
            log,
            logging.INFO,
            "not-member",
            "peer %s is not an active member: %s refused",
            str(peer)[-12:],
            what,
        )
        member = self.log.state.members.get(key) if key is not None else None
        revoked_at = member.revoked_at if member is not None else None
        return protocol.not_member(self.not_member_message(key, what), revoked_at)

    def not_member_message(self, key: bytes | None, what: str) -> str:
        allowed = (
            "until then it may read the genesis entry (entries 0..1), the signed checkpoints "
            "and the consistency proofs between them (`consistency`), enough to check that "
            "the hub keeps one history"
        )
        if key is None:
            return (
                f"{self.name} serves {what} to admitted members only, and the peer's id "
                "carries no Ed25519 key; connect with a ptm identity (`ptm init`)"
            )
        member = self.log.state.members.get(key)
        shown = key.hex()
        if member is not None and member.revoked_at is not None:
            return (
                f"{self.name} serves {what} to active members only, and key {shown} "
                f"({member.org}, {member.role}) was revoked at log index {member.revoked_at}; "
                "ask the collaboration's admin to admit a new key (`ptm collab admit`); " + allowed
            )
        return (
            f"{self.name} serves {what} to admitted members only, and key {shown} is not one "
            f"in its copy of the log ({self.log.size} entries): ask the collaboration's admin "
            f"to admit key {shown} (`ptm collab admit --role ROLE --org ORG {shown}`); " + allowed
        )

    def _guarded(self, handle: Any, *args: Any) -> protocol.Reply:
        """Run a handler that compares notes with our tree: a damaged file of ours found
        there stops the daemon (``VerifiedLog.watch_faults``)."""
        try:
            answer: protocol.Reply = handle(*args)
        except DamagedLedger as fault:
            self.log.report_fault(fault)
            raise
        return answer

    def _serve_entries(self, start: int, end: int, old_size: int) -> Answer:
        if not start < end:
            raise ProtocolError(f"entries: empty or reversed range {start}..{end}")
        size = self.log.size
        if end > size:
            return protocol.error(protocol.NOT_FOUND, f"we hold {size} entries, not {end}")
        note = self.book.note_at_least(end)
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
        return protocol.EntriesReply(entries=raws[:kept], note=note, proof=proof)

    def _serve_consistency(self, old_size: int, new_size: int) -> Answer:
        """Two checkpoints we hold and the proof between them: tree hashes only, so served
        to anyone (an outsider's one check that the hub keeps one history)."""
        if not 0 < old_size <= new_size:
            raise ProtocolError(
                f"consistency: sizes must be 0 < old <= new, got {old_size}..{new_size}"
            )
        old, new = self.book.note_of(old_size), self.book.note_of(new_size)
        if old is None or new is None or new_size > self.log.size:
            missing = old_size if old is None else new_size
            return protocol.error(
                protocol.NOT_FOUND,
                f"no checkpoint of size {missing} here (latest: "
                f"{self.book.latest_size}); ask for the sizes of checkpoints you were given",
            )
        proof = self.store.consistency_proof(old_size, new_size) if old_size < new_size else []
        return protocol.ConsistencyReply(old=old, new=new, proof=proof)

    def _receive_note(self, note: str, source: str) -> protocol.CosignReply:
        signed = self.log.parse_signed(note)
        if signed.checkpoint.size <= self.log.size:
            return protocol.CosignReply(added=self.observe(signed, source))
        return protocol.CosignReply(added=0)

    def _receive_evidence(
        self, report: protocol.EvidenceRequest, source: str
    ) -> protocol.EvidenceReply:
        kind = report.kind
        if kind == SPLIT_VIEW:
            # Check it ourselves: both notes must carry valid hub signatures and disagree.
            try:
                first, second = report.first.decode(), report.second.decode()
                a, b = self.log.parse_signed(first), self.log.parse_signed(second)
            except (LedgerError, UnicodeDecodeError) as exc:
                raise ProtocolError(f"split-view evidence does not verify: {exc}") from exc
            try:
                for signed in (a, b):
                    self.log.check_against_ours(signed, source)
                same_size = a.checkpoint.size == b.checkpoint.size
                if not same_size or a.checkpoint.root == b.checkpoint.root:
                    return protocol.EvidenceReply(confirmed=False)
                self.trust.declare_split_view(
                    first,
                    second,
                    f"reported by {source}: {report.detail}",
                    reason="split view reported and checked",
                )
            except SplitViewError:
                return protocol.EvidenceReply(confirmed=True)
        if kind == EQUIVOCATION:
            return protocol.EvidenceReply(confirmed=self._check_equivocation(report, source))
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
        return protocol.EvidenceReply(confirmed=False)

    def _check_equivocation(self, report: protocol.EvidenceRequest, source: str) -> bool:
        """Two validly signed entries of one member with one seq: store them as evidence."""
        try:
            a, b = Entry.from_bytes(report.first), Entry.from_bytes(report.second)
        except LedgerError as exc:
            raise ProtocolError(f"equivocation evidence does not verify: {exc}") from exc
        if (a.author, a.seq) != (b.author, b.seq) or a.hash == b.hash:
            raise ProtocolError("equivocation evidence: the entries are not two versions of one")
        if a.author not in self.log.state.members:
            # A stranger can equivocate with a fresh key at will; only members' forks matter.
            return False
        detail = (
            f"reported by {source}: author {self.log.member_name(a.author)} signed two entries "
            f"with seq {a.seq}"
        )
        self.trust.record_evidence(EQUIVOCATION, a.raw, b.raw, detail)
        self.trust.distrust(Party.author(a.author), detail)
        return True

    # --- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        note = self.book.latest
        checkpoint_size = cp.parse_checkpoint(note).checkpoint.size if note else 0
        return {
            "name": self.name,
            "origin": self.log.origin,
            "size": self.log.size,
            "checkpoint_size": checkpoint_size,
            "checkpoint": note,
            "cosigners": self.cosigners(note),
            "split_view": self.trust.split_view,
            "distrusted": self.trust.distrusted(),
            "evidence": [{"kind": e.kind, "detail": e.detail} for e in self.store.evidence()],
            "known_peers": self.peers.names(),
            "public_log": self.public,
            "refused_non_members": self.refused_non_members,
        }


def peer_key(peer: Any) -> bytes | None:
    """The Ed25519 ledger key of a peer (a libp2p peer id, or its text), or None."""
    if peer is None:
        return None
    if isinstance(peer, str):
        from libp2p.peer.id import ID

        try:
            peer = ID.from_base58(peer)
        except Exception:  # not a peer id (a name in a test, junk): no key
            return None
    return public_key_of(peer)


__all__ = ["MAX_WAITERS", "SyncServer", "peer_key"]
