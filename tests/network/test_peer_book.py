"""The peer book: members, the operator's pinned addresses, bounded strangers, one address check."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from ledgers import HubLog

from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.network import peer_book
from ptm_p2p.network.host import is_listen_addr, peer_id_of
from ptm_p2p.network.peer_book import PeerBook


def _pid() -> str:
    return str(peer_id_of(Signer.generate().public_key))


def test_strangers_cannot_fill_the_address_book(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(peer_book, "MAX_STRANGERS", 8)
    log = HubLog(tmp_path, 1)
    hub = log.server
    site_pid = str(peer_id_of(log.site.public_key))

    async def hello(pid: str) -> None:
        await hub.serve("hello", {"addrs": ["/ip4/127.0.0.1/tcp/4999"], "name": "x"}, pid)

    async def main() -> None:
        for _ in range(50):
            await hello(_pid())
        await hello(site_pid)
        listed = await hub.serve("peers", {}, site_pid)  # a member asks (others get none)
        assert [p["id"] for p in listed["peers"]] == [site_pid]

    trio.run(main)
    assert len(hub.peers.strangers) == 8  # bounded, oldest evicted
    assert list(hub.peers) == [site_pid]  # the member is kept apart from strangers


def test_one_check_for_every_address_learnt() -> None:
    pid = _pid()
    assert is_listen_addr(pid, "/ip4/127.0.0.1/tcp/4001")
    assert is_listen_addr(pid, "/dns4/site-a.example/tcp/4001")
    for bad in (
        "/ip4/127.0.0.1/udp/4001",  # we dial TCP only
        f"/ip4/127.0.0.1/tcp/4001/p2p/{pid}",  # the peer id is ours to add
        "/ip4/127.0.0.1/tcp/" + "1" * 300,
        "not an address",
        4001,
        None,
    ):
        assert not is_listen_addr(pid, bad), bad
    assert not is_listen_addr("not-a-peer-id", "/ip4/127.0.0.1/tcp/4001")
    # The same check whether the address comes in a hello, the hub's list or a file.
    book = PeerBook(lambda key: True)
    good, udp = "/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/udp/1"
    book.note_hello(pid, [udp, good], "a")
    assert book[pid].addrs == [good]
    other = _pid()
    assert book.offer(other, [udp, good, "/ip4/127.0.0.1/tcp/2"], "b")
    assert book[other].addrs == [good, "/ip4/127.0.0.1/tcp/2"]
    assert not book.offer(_pid(), [udp, "junk"], "c")  # nothing usable: not added


def test_at_most_four_addresses_per_peer() -> None:
    pid = _pid()
    book = PeerBook(lambda key: True)
    book.note_hello(pid, [f"/ip4/127.0.0.1/tcp/{p}" for p in range(1, 30)], "a")
    assert book[pid].addrs == [f"/ip4/127.0.0.1/tcp/{p}" for p in range(1, 5)]


def test_pinned_addresses_stay_first() -> None:
    pid = _pid()
    book = PeerBook(lambda key: False)  # not even a member: the operator named it
    book.pin(pid, "/ip4/127.0.0.1/tcp/5001")
    assert book.offer(pid, ["/ip4/127.0.9.9/tcp/7000"], "site-b")
    assert book[pid].addrs == ["/ip4/127.0.0.1/tcp/5001", "/ip4/127.0.9.9/tcp/7000"]
    assert book[pid].name == "site-b"
    assert not book.offer(pid, ["/ip4/127.0.9.9/tcp/7000"], "site-b")  # unchanged
    book.note_hello(pid, ["/ip4/127.0.9.7/tcp/2"], "site-b")
    assert book[pid].addrs == ["/ip4/127.0.0.1/tcp/5001", "/ip4/127.0.9.7/tcp/2"]


def test_members_only_are_listed_and_a_stranger_admitted_later_is(tmp_path: Path) -> None:
    members: set[bytes] = set()
    book = PeerBook(lambda key: key in members)
    key = Signer.generate().public_key
    pid = str(peer_id_of(key))
    book.note_hello(pid, ["/ip4/127.0.0.1/tcp/1"], "late")
    assert pid in book.strangers and pid not in book
    assert book.member_peers() == []
    members.add(key)
    assert [p["id"] for p in book.member_peers()] == [pid]
    assert not book.is_member("garbage")


def test_saved_and_loaded(tmp_path: Path) -> None:
    path = tmp_path / "peers.json"
    pid = _pid()
    book = PeerBook(lambda key: True)
    book.offer(pid, ["/ip4/127.0.0.1/tcp/1"], "a")
    book.save(path)
    again = PeerBook(lambda key: True)
    again.load(path)
    assert again[pid].addrs == ["/ip4/127.0.0.1/tcp/1"] and again[pid].name == "a"
    path.write_text("{not json")
    broken = PeerBook(lambda key: True)
    broken.load(path)  # reported, not fatal
    assert len(broken) == 0
