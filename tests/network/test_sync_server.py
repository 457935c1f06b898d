"""The sync server's read side, in process: evidence intake and long-polls, without sockets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
import trio.testing
from ledgers import HubLog

from ptm_p2p.errors import ProtocolError
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger.crypto import Signer, short
from ptm_p2p.ledger.entry import AuthorChain, membership_payload
from ptm_p2p.network import sync_server
from ptm_p2p.network.sync_server import SyncServer

# A real key: the entry codec refuses small-order points such as 32 zero bytes.
MEMBER_KEY = Signer.generate().public_key


def test_unverifiable_evidence_from_strangers_is_not_stored(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 1)
    hub = log.server

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


def test_a_members_equivocation_reported_by_a_peer_is_checked_and_kept(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 1)
    hub = log.server
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
    assert distrusted in hub.trust.distrusted()
    # A restart (a new server over the same store) still names the equivocator.
    again = SyncServer(hub.store, "hub")
    assert "signed two entries" in again.trust.distrusted()[distrusted]


def test_a_reported_split_view_is_checked_then_declared(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 1)
    site = log.fresh_site()
    other = cp.sign_checkpoint(
        cp.Checkpoint(log.signed.checkpoint.origin, log.log.size + 5, bytes(32)), log.hub
    )
    twin = cp.sign_checkpoint(
        cp.Checkpoint(log.signed.checkpoint.origin, log.log.size + 5, bytes([1]) * 32), log.hub
    )

    async def report(first: str, second: str) -> bool:
        fields = {"kind": "split-view", "first": first.encode(), "second": second.encode()}
        answer = await site.serve("evidence", {**fields, "detail": "seen"}, "site-b")
        return bool(answer["confirmed"])

    async def main() -> None:
        # Two different sizes beyond our log: nothing we can check.
        assert not await report(log.signed.text, other.text)
        assert site.trust.hub_trusted
        # One size, two roots, both hub-signed: checked and declared.
        assert await report(other.text, twin.text)

    trio.run(main)
    assert not site.trust.hub_trusted and site.trust.split_view
    (item,) = site.store.evidence()
    assert item.kind == "split-view" and item.detail.startswith("reported by site-b")


def test_long_polls_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_server, "MAX_WAITERS", 2)
    log = HubLog(tmp_path, 1)
    hub, size = log.server, log.log.size

    async def main() -> None:
        answered: list[float] = []

        async def wait() -> None:
            await hub.serve("wait", {"after": size, "timeout_ms": 10_000}, "peer")
            answered.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(wait)
        # Two were parked for the whole timeout, the third answered at once.
        assert sorted(answered) == [0, 10, 10]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_what_a_non_member_may_read(tmp_path: Path) -> None:
    """Members only (issue 14): a stranger gets checkpoints, the genesis entry, its own head
    and consistency proofs; entries, peers and others' heads are refused or empty."""
    from ptm_p2p.network.host import peer_id_of

    log = HubLog(tmp_path, 2)
    first = log.signed
    log.append(
        [
            log.chain.append(
                "membership",
                membership_payload("admit", MEMBER_KEY, "m", "researcher"),
                int(time.time() * 1000),
            )
        ]
    )
    hub = log.server
    stranger = Signer.generate()
    who, member = str(peer_id_of(stranger.public_key)), str(peer_id_of(log.site.public_key))

    async def main() -> None:
        with pytest.raises(Exception, match="admit key " + stranger.public_key.hex()):
            await _checked(hub.serve("entries", {"start": 0, "end": 2, "old_size": 0}, who))
        genesis = await hub.serve("entries", {"start": 0, "end": 1, "old_size": 0}, who)
        assert len(genesis["entries"]) == 1
        assert (await hub.serve("peers", {}, who))["peers"] == []
        own = await hub.serve("head", {"author": stranger.public_key}, who)
        assert own["seq"] == 0
        with pytest.raises(Exception, match="other authors' chain heads"):
            await _checked(hub.serve("head", {"author": log.admin.public_key}, who))
        sizes = {"old_size": first.checkpoint.size, "new_size": log.signed.checkpoint.size}
        proof = await hub.serve("consistency", sizes, who)
        old, new = cp.parse_checkpoint(proof["old"]), cp.parse_checkpoint(proof["new"])
        cp.check_consistent(old, new, proof["proof"], log.log.log_verifier())
        missing = await hub.serve("consistency", {"old_size": 2, "new_size": 3}, who)
        assert missing["error"] == "not-found"
        # A member reads it all; a public log serves the stranger too.
        assert (
            len(
                (await hub.serve("entries", {"start": 0, "end": 2, "old_size": 0}, member))[
                    "entries"
                ]
            )
            == 2
        )
        hub.public = True
        assert (
            len((await hub.serve("entries", {"start": 0, "end": 2, "old_size": 0}, who))["entries"])
            == 2
        )

    trio.run(main)


async def _checked(answer: object) -> object:
    from ptm_p2p.network import protocol

    return protocol.check_response(await answer)  # type: ignore[misc]
