"""One open ``PeerClient`` per peer a daemon talks to, and telling them all of evidence.

The hub's address comes from the invitation (nobody else may name it); every other peer's
from the ``PeerBook``. A client whose peer changed its addresses, or lied, is dropped with
``forget``, which also resets its open streams: left open they would linger in libp2p's
connection until the peer's idle timeout (minutes) cut them.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from ptm_p2p.errors import NetworkError
from ptm_p2p.network import protocol
from ptm_p2p.network.host import parse_peer_addr
from ptm_p2p.network.peer_book import MAX_PEERS, PeerBook
from ptm_p2p.network.rpc import PeerClient

log = logging.getLogger(__name__)

MAX_DETAIL = 4000  # characters of an evidence report's detail sent to each peer


class PeerPool:
    """The clients of one daemon, by peer id (text)."""

    def __init__(self, peers: PeerBook, hub_id: Any, hub_addrs: list[Any]) -> None:
        self.peers = peers
        self.hub_id = hub_id
        self.hub_addrs = hub_addrs
        self.clients: dict[str, PeerClient] = {}

    def client(self, host: Any, peer_id: str) -> PeerClient:
        """The client for a peer; ``NetworkError`` if its recorded addresses are unusable."""
        existing = self.clients.get(peer_id)
        if existing is not None:
            return existing
        if peer_id == str(self.hub_id):
            client = PeerClient(host, self.hub_id, self.hub_addrs)
        else:
            rec = self.peers.get(peer_id)
            if rec is None or not rec.addrs:
                raise NetworkError(f"no address known for peer {peer_id}")
            infos = [parse_peer_addr(f"{r}/p2p/{peer_id}") for r in rec.addrs]
            client = PeerClient(host, infos[0].peer_id, [a for i in infos for a in i.addrs])
        self.clients[peer_id] = client
        return client

    async def forget(self, peer_id: str) -> None:
        """Drop a peer's client and reset its open streams."""
        client = self.clients.pop(peer_id, None)
        if client is not None:
            await client.close()

    def load(self, path: Path, extra: list[str]) -> None:
        """Peers from ``path`` (``peers.json``), then the operator's ``--peer`` addresses,
        authoritative for their peer ids."""
        self.peers.load(path)
        for addr in extra:
            info = parse_peer_addr(addr)
            self.peers.pin(str(info.peer_id), addr.split("/p2p/")[0])

    async def refresh(self, hub: Any, me: str, path: Path) -> None:
        """Add the peers the hub lists (never the hub itself, nor us); save if any changed."""
        resp = await hub.ask(protocol.PeersRequest(), timeout=10)
        changed = False
        for item in resp.peers[:MAX_PEERS]:
            pid = item.id
            if not pid or me.endswith(pid):
                continue
            if pid == str(self.hub_id):
                continue  # the invitation gives the hub's address; nobody else does
            if self.peers.offer(pid, item.addrs, item.name):
                await self.forget(pid)  # its addresses changed
                changed = True
        if changed:
            self.peers.save(path)

    async def broadcast_evidence(
        self, host: Any, targets: list[str], kind: str, first: bytes, second: bytes, detail: str
    ) -> None:
        """Tell every target what we found, in random order; they check it themselves."""
        targets = list(targets)
        random.shuffle(targets)
        report = protocol.EvidenceRequest(
            kind=kind, first=first, second=second, detail=detail[:MAX_DETAIL]
        )
        for pid in targets:
            try:
                client = self.clients.get(pid)
                if client is None:
                    if host is None:
                        continue
                    client = self.client(host, pid)
                await client.ask(report, timeout=5)
            except (NetworkError, KeyError) as exc:
                log.debug("could not report evidence to %s: %s", pid[-8:], exc)


__all__ = ["PeerPool"]
