"""In-process tests of the replica's verification and of its bounds against strangers.

A hub-side replica (genesis, members, a signed checkpoint) is built in memory; a fresh
site-side replica is then fed ranges and requests directly, without sockets.
"""

from __future__ import annotations

import time

import pytest
import trio

from ptm_p2p.errors import ProtocolError, SplitViewError
from ptm_p2p.hub.sequencer import Sequencer
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger.crypto import Signer, short
from ptm_p2p.ledger.entry import AuthorChain, genesis_payload, membership_payload
from ptm_p2p.ledger.store import MemoryStore
from ptm_p2p.network import replica as replica_module
from ptm_p2p.network.host import peer_id_of
from ptm_p2p.network.replica import BadRange, Replica

ORIGIN = "test.example/replica"
# A real key: the entry codec refuses small-order points such as 32 zero bytes.
MEMBER_KEY = Signer.generate().public_key


class Log:
    """An honest hub's replica with ``researchers`` admitted researchers."""

    def __init__(self, researchers: int) -> None:
        self.admin, self.hub = Signer.generate(), Signer.generate()
        self.site = Signer.generate()
        self.chain = AuthorChain(self.admin)
        now = int(time.time() * 1000)
        self.replica = Replica(MemoryStore(), "hub")
        genesis = self.chain.append(
            "genesis",
            genesis_payload(ORIGIN, self.admin.public_key, "uni", self.hub.public_key, "hub"),
            now,
        )
        self.replica.append_genesis(genesis.raw)
        entries = [
            self.chain.append(
                "membership", membership_payload("admit", self.site.public_key, "site", "site"), now
            )
        ]
        entries += [
            self.chain.append(
                "membership",
                membership_payload("admit", Signer.generate().public_key, f"lab-{i}", "researcher"),
                now,
            )
            for i in range(researchers)
        ]
        for i, entry in enumerate(entries, start=1):
            self.replica.state.apply(entry, i)
        self.replica.append_local(entries)
        self.signed = Sequencer(self.replica, self.hub).sign_head()

    def raws(self) -> list[bytes]:
        return self.replica.store.raw_range(0, self.replica.size)

    def fresh_site(self) -> Replica:
        site = Replica(MemoryStore(), "site")
        site.expect(ORIGIN, self.hub.public_key)
        return site


def test_a_forged_entry_in_a_large_batch_names_the_peer_and_stores_nothing() -> None:
    # >= 256 entries take the two-thread path; its error must still be a plain BadRange
    # (an ExceptionGroup would escape every `except BadRange` and leave the peer trusted).
    log = Log(400)
    raws = log.raws()
    bad = bytearray(raws[300])
    bad[-1] ^= 1
    raws[300] = bytes(bad)
    site = log.fresh_site()

    async def main() -> None:
        with pytest.raises(BadRange, match="peer-x served entry 300"):
            await site.verify_batch_async(0, raws, log.signed, "peer-x")

    trio.run(main)
    assert site.size == 0 and site.store.size() == 0


def test_a_verified_large_batch_commits() -> None:
    log = Log(300)
    site = log.fresh_site()

    async def main() -> None:
        entries, frontier = await site.verify_batch_async(0, log.raws(), log.signed, "hub")
        site.commit(entries, frontier, log.signed, "hub")

    trio.run(main)
    assert site.size == log.replica.size
    assert site.frontier.root() == log.signed.checkpoint.root


def test_strangers_cannot_fill_the_address_book(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica_module, "MAX_STRANGERS", 8)
    log = Log(1)
    hub = log.replica
    site_pid = str(peer_id_of(log.site.public_key))

    async def hello(pid: str) -> None:
        await hub.serve("hello", {"addrs": ["/ip4/127.0.0.1/tcp/4999"], "name": "x"}, pid)

    async def main() -> None:
        for _ in range(50):
            await hello(str(peer_id_of(Signer.generate().public_key)))
        await hello(site_pid)
        listed = await hub.serve("peers", {}, None)
        assert [p["id"] for p in listed["peers"]] == [site_pid]

    trio.run(main)
    assert len(hub.strangers) == 8  # bounded, oldest evicted
    assert list(hub.peers) == [site_pid]  # the member is kept apart from strangers


def test_unverifiable_evidence_from_strangers_is_not_stored() -> None:
    log = Log(1)
    hub = log.replica

    async def main() -> None:
        for i in range(20):
            fields = {"kind": f"rumour-{i}", "first": b"a" * 100, "second": b"b", "detail": "x"}
            answer = await hub.serve("evidence", fields, "stranger")
            assert answer["confirmed"] is False
        # A stranger equivocating with its own fresh key proves nothing about the log.
        stranger = Signer.generate()
        a = AuthorChain(stranger).append(
            "membership", membership_payload("admit", MEMBER_KEY, "one", "researcher"), 1
        )
        b = AuthorChain(stranger).append(
            "membership", membership_payload("admit", MEMBER_KEY, "two", "researcher"), 1
        )
        fields = {"kind": "equivocation", "first": a.raw, "second": b.raw, "detail": "x"}
        assert (await hub.serve("evidence", fields, "stranger"))["confirmed"] is False
        with pytest.raises(ProtocolError):
            bad = {"kind": "equivocation", "first": a.raw, "second": a.raw, "detail": "x"}
            await hub.serve("evidence", bad, "stranger")

    trio.run(main)
    assert hub.store.evidence() == []


def test_a_members_equivocation_reported_by_a_peer_is_checked_and_kept() -> None:
    log = Log(1)
    hub = log.replica
    twin = AuthorChain(log.admin, log.chain.seq, log.chain.prev)
    a = log.chain.append(
        "membership", membership_payload("admit", MEMBER_KEY, "one", "researcher"), 5
    )
    b = twin.append("membership", membership_payload("admit", MEMBER_KEY, "two", "researcher"), 5)
    fields = {"kind": "equivocation", "first": a.raw, "second": b.raw, "detail": "seen"}

    async def main() -> None:
        assert (await hub.serve("evidence", fields, "site-b"))["confirmed"] is True
        assert (await hub.serve("evidence", fields, "site-c"))["confirmed"] is True

    trio.run(main)
    assert [e.kind for e in hub.store.evidence()] == ["equivocation"]  # stored once
    distrusted = f"author {short(log.admin.public_key)}"
    assert distrusted in hub.trust.distrusted
    # A restart (a new replica over the same store) still names the equivocator.
    again = Replica(hub.store, "hub")
    assert "signed two entries" in again.trust.distrusted[distrusted]


def test_split_view_distrust_survives_a_restart() -> None:
    log = Log(2)
    store = MemoryStore()
    site = Replica(store, "site")
    site.expect(ORIGIN, log.hub.public_key)
    entries, frontier = site.verify_batch(0, log.raws(), log.signed, "hub")
    site.commit(entries, frontier, log.signed, "hub")
    # The hub signs another root for the same size: a split view.
    other = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, site.size, bytes(32)), log.hub)
    with pytest.raises(SplitViewError):
        site.check_against_ours(other, "site-b")
    assert not site.trust.trusted("hub")
    restarted = Replica(store, "site")
    assert restarted.split_view
    assert not restarted.trust.trusted("hub")
