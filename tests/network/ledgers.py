"""Small real ledgers for the network's unit tests: SQLite stores in a tmp dir, real keys.

``HubLog`` is an honest hub's side (genesis, a site and some researchers admitted, a signed
checkpoint); ``fresh_site`` opens an empty copy that expects that log, as ``ptm node`` does.
"""

from __future__ import annotations

import time
from pathlib import Path

from ptm_p2p.hub.sequencer import Sequencer
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.entry import AuthorChain, Entry, genesis_payload, membership_payload
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.network.sync_server import SyncServer
from ptm_p2p.network.verified_log import VerifiedLog

ORIGIN = "test.example/replica"


class HubLog:
    """An honest hub's parts (``SyncServer``) with ``researchers`` admitted researchers."""

    def __init__(self, root: Path, researchers: int) -> None:
        self.root = root
        self.admin, self.hub = Signer.generate(), Signer.generate()
        self.site = Signer.generate()
        self.chain = AuthorChain(self.admin)
        now = int(time.time() * 1000)
        self.server = SyncServer(SqliteStore(root / "hub.db"), "hub")
        genesis = self.chain.append(
            "genesis",
            genesis_payload(ORIGIN, self.admin.public_key, "uni", self.hub.public_key, "hub"),
            now,
        )
        self.server.log.append_genesis(genesis.raw)
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
        self.append(entries)

    @property
    def log(self) -> VerifiedLog:
        return self.server.log

    def append(self, entries: list[Entry], check: bool = True) -> None:
        """Sequence ``entries`` (``check=False``: as a lying hub would, rules unchecked)."""
        if check:
            for entry in entries:
                self.log.state.apply(entry)
        self.log.append_local(entries)
        self.signed = self.sequencer().sign_head()

    def sequencer(self) -> Sequencer:
        return Sequencer(self.server.log, self.server.book, self.server.trust, self.hub)

    def raws(self, start: int = 0) -> list[bytes]:
        return self.log.store.raw_range(start, self.log.size)

    def fresh_site(self, name: str = "site") -> SyncServer:
        site = SyncServer(SqliteStore(self.root / f"{name}.db"), name)
        site.log.expect(ORIGIN, self.hub.public_key)
        return site
