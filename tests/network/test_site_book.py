"""A site's address book and its memory of refused peers, on a real home (no daemon).

The ``Site`` object is built on a real home folder and store; the hub's ``peers`` answer is
handed to it the way ``follow_hub`` does, by a stand-in for the hub connection (only the
answer is faked, not the code under test).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from ptm_p2p.home import Home
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.network import protocol
from ptm_p2p.network.host import peer_id_of
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.site.replicator import DISTRUST_FILE, PEERS_FILE, Site

ORIGIN = "test.example/book"


class HubAnswer:
    """What ``Site._refresh_peers`` needs of a hub connection: one ``peers`` answer."""

    def __init__(self, peers: list[dict[str, Any]]) -> None:
        self.peers = peers

    async def ask(self, request: protocol.Request, **_: Any) -> protocol.PeersReply:
        assert request.op == "peers"
        return protocol.parse_reply(request, {"ok": True, "peers": self.peers})


def _pid() -> str:
    return str(peer_id_of(Signer.generate().public_key))


def _site(root: Path, peers: Sequence[str] = ()) -> Site:
    hub = Signer.generate()
    invitation = Invitation(
        f"/ip4/127.0.0.1/tcp/4001/p2p/{peer_id_of(hub.public_key)}", hub.public_key, ORIGIN
    )
    path = root / "site"
    home = Home.load(path) if (path / "identity.key").exists() else Home.init(path, "site")
    return Site(home, invitation, list(peers))


def test_the_hubs_peer_list_adds_to_but_never_replaces_operator_addresses(tmp_path: Path) -> None:
    given, other = _pid(), _pid()
    operator_addr = "/ip4/127.0.0.1/tcp/5001"
    site = _site(tmp_path, [f"{operator_addr}/p2p/{given}"])
    try:
        answer = HubAnswer(
            [
                # The hub knows `given` elsewhere (stale, wrong or lying): it may add, not replace.
                {"id": given, "addrs": ["/ip4/127.0.9.9/tcp/7000"], "name": "site-b"},
                {"id": other, "addrs": ["/ip4/127.0.0.1/tcp/5002"], "name": "site-c"},
                # The hub itself: its address comes from the invitation only.
                {"id": str(site.hub_id), "addrs": ["/ip4/127.6.6.6/tcp/1"], "name": "evil"},
            ]
        )
        trio.run(site._refresh_peers, answer)
        assert site.peers[given].addrs == [operator_addr, "/ip4/127.0.9.9/tcp/7000"]
        assert site.peers[given].name == "site-b"
        assert site.peers[other].addrs == ["/ip4/127.0.0.1/tcp/5002"]
        assert str(site.hub_id) not in site.peers
        # The client dials the operator's address first.
        client = site.client(None, given)
        assert [str(a) for a in client.addrs][0] == operator_addr

        # A later answer that moves or drops the peer still leaves the operator's address.
        trio.run(site._refresh_peers, HubAnswer([{"id": given, "addrs": ["/ip4/127.0.9.8/tcp/1"]}]))
        assert site.peers[given].addrs == [operator_addr, "/ip4/127.0.9.8/tcp/1"]
        trio.run(site._refresh_peers, HubAnswer([]))
        assert site.peers[given].addrs[0] == operator_addr
        # And so does the peer's own hello.
        site.peers.note_hello(given, ["/ip4/127.0.9.7/tcp/2"], "site-b")
        assert site.peers[given].addrs == [operator_addr, "/ip4/127.0.9.7/tcp/2"]
        # Peers the operator did not name follow the hub's latest answer, as before.
        trio.run(site._refresh_peers, HubAnswer([{"id": other, "addrs": ["/ip4/127.0.0.1/tcp/6"]}]))
        assert site.peers[other].addrs == ["/ip4/127.0.0.1/tcp/6"]
    finally:
        site.store.close()

    # After a restart with the same --peer, the operator's address again comes first,
    # whatever peers.json recorded from the hub.
    saved = json.loads((tmp_path / "site" / PEERS_FILE).read_text())
    assert saved[given]["addrs"][0] == operator_addr
    site = _site(tmp_path, [f"/ip4/127.0.0.1/tcp/5003/p2p/{given}"])
    try:
        assert site.peers[given].addrs == ["/ip4/127.0.0.1/tcp/5003"]
        assert site.peers[other].addrs == ["/ip4/127.0.0.1/tcp/6"]
    finally:
        site.store.close()


def test_refused_peers_stay_distrusted_across_restarts(tmp_path: Path) -> None:
    liar, honest = _pid(), _pid()
    peers = [f"/ip4/127.0.0.1/tcp/5001/p2p/{liar}", f"/ip4/127.0.0.1/tcp/5002/p2p/{honest}"]
    site = _site(tmp_path, peers)
    try:
        assert sorted(site._candidates()) == sorted([liar, honest])

        async def refuse() -> None:
            await site._refuse(liar, "served entries that do not hash to the root the hub signed")
            await site._refuse("hub", "a hub's refusal is not a peer's")  # handled apart

        trio.run(refuse)
        assert site._candidates() == [honest]
    finally:
        site.store.close()
    path = tmp_path / "site" / DISTRUST_FILE
    recorded = json.loads(path.read_text())
    assert list(recorded) == [liar]
    assert "do not hash" in recorded[liar]["reason"]

    site = _site(tmp_path, peers)
    try:
        assert site._candidates() == [honest]
        status = site.status(None)
        assert "do not hash" in status["distrusted"][f"peer {liar}"]
    finally:
        site.store.close()

    # An unreadable file is reported and ignored: liars are caught again by the same checks.
    path.write_text("{not json")
    site = _site(tmp_path, peers)
    try:
        assert sorted(site._candidates()) == sorted([liar, honest])
    finally:
        site.store.close()
