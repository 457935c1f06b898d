"""Where other peers listen: members we may dial, the operator's pinned addresses, strangers.

Anyone who completes a Noise handshake may say hello; only active members are listed to
others (``member_peers``) and dialed. Strangers are remembered in a small book whose oldest
entry is evicted (``MAX_STRANGERS``), so they can neither grow our memory nor push members
out. Addresses the operator gave (``ptm node --peer``) are *pinned*: authoritative for that
peer id, dialed first; the hub's list or the peer's own hello may add addresses, never drop
or replace them. Every address learnt from the network or a file passes one check
(``host.is_listen_addr``) when it is learnt, so a bad one can never fail a dial later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libp2p.peer.id import ID

from ptm_p2p.home_files import PeerEntry, load_peers, save_peers
from ptm_p2p.network.host import is_listen_addr, public_key_of

log = logging.getLogger(__name__)

MAX_STRANGERS = 256
MAX_PEERS = 1_024  # members taken from the hub's list (sites of one collaboration)
MAX_ADDRS = 4  # addresses kept per peer
MAX_OFFERED = 16  # addresses looked at per peer in one answer or hello


@dataclass
class PeerRecord:
    addrs: list[str]
    name: str = ""
    last_seen: float = 0.0


def listen_addrs(peer_id: str, offered: Any) -> list[str]:
    """The (at most ``MAX_ADDRS``) valid listen addresses among the first ones offered."""
    if not isinstance(offered, list):
        return []
    return [a for a in offered[:MAX_OFFERED] if is_listen_addr(peer_id, a)][:MAX_ADDRS]


class PeerBook(Mapping[str, PeerRecord]):
    """The peers we may dial, by peer id (a read-only mapping; change it through methods)."""

    def __init__(self, is_member_key: Callable[[bytes], bool]) -> None:
        self._is_member_key = is_member_key
        self._peers: dict[str, PeerRecord] = {}
        self.pinned: dict[str, list[str]] = {}
        # Non-members that said hello (bounded; listed once they are admitted).
        self.strangers: dict[str, PeerRecord] = {}

    # --- the mapping of dialable peers --------------------------------------------------------

    def __getitem__(self, pid: str) -> PeerRecord:
        return self._peers[pid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._peers)

    def __len__(self) -> int:
        return len(self._peers)

    def names(self) -> dict[str, str]:
        return {pid: rec.name for pid, rec in self._peers.items()}

    # --- membership -------------------------------------------------------------------------

    def is_member(self, pid: str) -> bool:
        """Whether the peer id names the key of an active member of the collaboration."""
        try:
            key = public_key_of(ID.from_base58(pid))
        except Exception:  # ids in the book came from the wire or a file
            return False
        return key is not None and self._is_member_key(key)

    def member_peers(self) -> list[dict[str, Any]]:
        """Known addresses of active members only: anyone may connect and say hello, but a
        stranger must not fill every site's address book with places to dial."""
        out = []
        for book in (self._peers, self.strangers):  # a stranger may have been admitted since
            for pid, rec in book.items():
                if rec.addrs and self.is_member(pid):
                    out.append({"id": pid, "addrs": rec.addrs, "name": rec.name})
        return out

    # --- learning addresses -------------------------------------------------------------------

    def pin(self, pid: str, addr: str) -> None:
        """An address the operator gave for ``pid``: dialed first, kept whatever others say."""
        pinned = self.pinned.setdefault(pid, [])
        if addr not in pinned:
            pinned.append(addr)
        self._peers[pid] = PeerRecord(list(pinned), self._peers.get(pid, PeerRecord([])).name)

    def with_pinned(self, pid: str, addrs: list[str]) -> list[str]:
        """``addrs`` for ``pid`` as others told them, behind the operator's own (if any)."""
        pinned = self.pinned.get(pid, [])
        return pinned + [a for a in addrs if a not in pinned]

    def note_hello(self, pid: str, offered: Any, name: str) -> None:
        """Remember where a peer (authenticated by Noise) says it listens."""
        addrs = listen_addrs(pid, offered)
        if not addrs:
            return
        record = PeerRecord(self.with_pinned(pid, addrs), name, time.time())
        if pid in self._peers or self.is_member(pid):
            self.strangers.pop(pid, None)
            self._peers[pid] = record
            return
        self.strangers.pop(pid, None)
        while len(self.strangers) >= MAX_STRANGERS:
            del self.strangers[next(iter(self.strangers))]  # the least recently heard
        self.strangers[pid] = record

    def offer(self, pid: str, offered: Any, name: str) -> bool:
        """Addresses of a member from the hub's list; True if the record changed (so a
        client built from the old addresses should be dropped)."""
        clean = listen_addrs(pid, offered)
        if not clean:
            return False
        if pid not in self._peers and len(self._peers) >= MAX_PEERS:
            return False
        # The hub may add addresses; the operator's (--peer) stay, and stay first.
        merged = self.with_pinned(pid, clean)
        rec = self._peers.get(pid)
        if rec is not None and rec.addrs == merged:
            return False
        self._peers[pid] = PeerRecord(merged, name[:64])
        return True

    # --- persistence --------------------------------------------------------------------------

    def load(self, path: Path) -> None:
        """Peers saved by ``save`` (before any ``pin``: the operator's addresses come last)."""
        for pid, rec in load_peers(path).items():  # an unreadable file: warned, empty
            addrs = listen_addrs(pid, rec.addrs)
            if addrs:
                self._peers[pid] = PeerRecord(addrs, rec.name)

    def save(self, path: Path) -> None:
        data = {pid: PeerEntry(rec.addrs, rec.name) for pid, rec in self._peers.items()}
        try:
            save_peers(path, data)
        except OSError as exc:  # a full disk: the addresses stay known in memory
            log.warning("could not write %s: %s", path, exc)


__all__ = ["MAX_STRANGERS", "PeerBook", "PeerRecord", "listen_addrs"]
