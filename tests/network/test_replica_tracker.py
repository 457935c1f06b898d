"""``ReplicaTracker`` against real sync servers in process (real stores, real signatures; the
transport is their ``answer``, no sockets)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from ledgers import ORIGIN, HubLog

from ptm_p2p.errors import NetworkError, RootMismatch, SplitViewError, StoreError
from ptm_p2p.hub.sequencer import Sequencer
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.entry import AuthorChain, Entry, membership_payload
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.network import protocol
from ptm_p2p.network.host import peer_id_of
from ptm_p2p.network.replica import Limits, ReplicaTracker
from ptm_p2p.network.sync_server import SyncServer


class Peer:
    """The transport: a real server's answers, as a ``PeerClient`` parses them."""

    def __init__(self, server: SyncServer, who: bytes) -> None:
        self.server, self.who, self.asked = server, str(peer_id_of(who)), []

    async def ask(self, request: protocol.Request, timeout: float = 0) -> Any:
        self.asked.append(request)
        answer = protocol.as_map(await self.server.answer(request, self.who))
        return protocol.parse_reply(request, answer)


def _grow(log: HubLog, count: int, times: int = 1) -> None:
    """``times`` batches of ``count`` admissions, each under its own signed checkpoint."""
    now = int(time.time() * 1000)
    for _ in range(times):
        key = lambda: Signer.generate().public_key  # noqa: E731
        log.append(
            [
                log.chain.append(
                    "membership", membership_payload("admit", key(), "x", "researcher"), now
                )
                for _ in range(count)
            ]
        )


def _entries_asked(peer: Peer) -> list[protocol.EntriesRequest]:
    return [r for r in peer.asked if isinstance(r, protocol.EntriesRequest)]


def test_catch_up_walks_checkpoint_by_checkpoint(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 3)  # size 5
    _grow(log, 10, times=4)  # checkpoints at 15, 25, 35, 45
    site = log.fresh_site()
    tracker = ReplicaTracker(site.log, Limits(step=10))
    peer = Peer(log.server, log.site.public_key)
    added = trio.run(tracker.catch_up, peer, log.signed, "hub")
    assert added == 45 and site.log.frontier.root() == log.signed.checkpoint.root
    # Each step ended at a signed checkpoint at least ``step`` further, and was stored with it.
    assert [r.end for r in _entries_asked(peer)] == [15, 25, 35, 45]
    assert {15, 25, 35, 45} <= set(site.book.sizes)
    assert tracker.checkpoint == log.signed.text and tracker.last_synced > 0


def test_a_step_too_large_falls_back_to_the_next_checkpoint_or_skips_the_peer(
    tmp_path: Path,
) -> None:
    log = HubLog(tmp_path, 3)  # size 5
    _grow(log, 10, times=2)  # 15, 25
    site = log.fresh_site()
    peer = Peer(log.server, log.site.public_key)
    # Steps of 100 would ask for all 25 entries at once; 16 are allowed: each fallback takes
    # the peer's very next checkpoint (5, then 15), then the rest fits.
    tracker = ReplicaTracker(site.log, Limits(step=100, max_step_entries=16))
    assert trio.run(tracker.catch_up, peer, log.signed, "hub") == 25
    assert [r.end for r in _entries_asked(peer)] == [5, 15, 25]
    # Nothing within 5 entries: not a lie, but this peer is skipped; nothing is stored.
    _grow(log, 10)
    tight = ReplicaTracker(site.log, Limits(step=100, max_step_entries=5))
    with pytest.raises(NetworkError, match="offers no checkpoint within 5 entries"):
        trio.run(tight.catch_up, peer, log.signed, "hub")
    assert site.log.size == 25


def test_a_local_fault_pauses_blames_nobody_and_recovers(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 3)
    path = tmp_path / "locked.db"
    site = SyncServer(SqliteStore(path, busy_timeout_ms=50), "site")
    site.log.expect(ORIGIN, log.hub.public_key)
    tracker = ReplicaTracker(site.log, where=str(path))
    peer = Peer(log.server, log.site.public_key)
    holder = sqlite3.connect(path, isolation_level=None, timeout=5)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        with pytest.raises(StoreError):
            trio.run(tracker.update, peer, log.signed, "hub")
        assert tracker.local_fault and tracker.paused
        assert trio.run(tracker.catch_up, peer, log.signed, "hub") == 0  # not during the pause
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert site.log.size == 0 and site.trust.hub_trusted and not site.trust.distrusted()
    trio.run(tracker.wait_out_pause)
    assert trio.run(tracker.update, peer, log.signed, "hub") == 5
    assert tracker.local_fault is None and not tracker.paused


def _fork(log: HubLog, root: Path, keep: int, extra: int) -> SyncServer:
    """The hub's own key signing another history: ``keep`` entries of ``log``, then ``extra``
    others (a split view, served by a peer that holds it)."""
    fork = SyncServer(SqliteStore(root / "fork.db"), "fork", public=True)
    raws = log.raws()[:keep]
    fork.log.append_genesis(raws[0])
    other = AuthorChain(Signer.generate())
    now = int(time.time() * 1000)
    fork.log.append_local(
        [Entry.from_bytes(r) for r in raws[1:]]
        + [
            other.append(
                "membership",
                membership_payload("admit", Signer.generate().public_key, "y", "site"),
                now,
            )
            for i in range(extra)
        ]
    )
    Sequencer(fork.log, fork.book, fork.trust, log.hub).sign_head()
    return fork


def test_an_inconsistency_comes_back_with_its_evidence(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 3)  # size 5
    fork = _fork(log, tmp_path, keep=3, extra=6)  # size 9, another tree at size 5
    site = log.fresh_site()
    tracker = ReplicaTracker(site.log)
    assert trio.run(tracker.update, Peer(log.server, log.site.public_key), log.signed, "hub")
    fork_note = fork.book.latest
    assert fork_note is not None
    signed = site.log.parse_signed(fork_note)
    with pytest.raises(SplitViewError) as found:
        trio.run(tracker.update, Peer(fork, log.site.public_key), signed, "peer-f")
    # Rehashing the peer's log showed the hub signed both trees: both notes are the evidence.
    assert found.value.first == log.signed.text and found.value.second == fork_note
    assert not site.trust.hub_trusted and site.log.size == 5


def test_a_peer_serving_what_the_hub_never_signed_is_a_root_mismatch(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 3)
    _grow(log, 4)  # size 9
    site = log.fresh_site()
    tracker = ReplicaTracker(site.log)

    class Liar(Peer):
        async def ask(self, request: protocol.Request, timeout: float = 0) -> Any:
            reply = await super().ask(request, timeout)
            if isinstance(request, protocol.EntriesRequest):
                reply.entries[-1] = log.raws()[1]  # a validly signed entry, in the wrong place
            return reply

    with pytest.raises(RootMismatch):
        trio.run(tracker.update, Liar(log.server, log.site.public_key), log.signed, "peer-l")
    assert site.log.size == 0 and site.trust.hub_trusted
