"""The site as a witness: what it cosigned, and cosigning the next checkpoint.

After each verified catch-up the site cosigns the newest hub-signed checkpoint (C2SP
tlog-cosignature) once it has checked consistency with the last one it cosigned, and
``push_cosignatures`` hands it to the hub. What it vouched for is recorded in
``HOME/witness.json`` *before* the cosignature exists, so that after a crash it never
cosigns a tree inconsistent with one it already vouched for; a file that cannot be read
stops the daemon (``ConfigError``), one that cannot be written costs that cosignature only
(retried after a back-off, shown in ``ptm status``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import trio

from ptm_p2p import home_files
from ptm_p2p.errors import LedgerError, NetworkError
from ptm_p2p.home import Home
from ptm_p2p.home_files import WITNESS_FILE
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger import merkle
from ptm_p2p.network import protocol
from ptm_p2p.network.trust import TrustRegistry
from ptm_p2p.network.verified_log import VerifiedLog
from ptm_p2p.site.faults import LocalFaults

log = logging.getLogger(__name__)


def load_witness(home: Path) -> tuple[int, bytes]:
    """The size and root this site last cosigned (0 and the empty root if none); a file
    that cannot be read stops the daemon (``home_files``)."""
    cosigned = home_files.load_witness(home)
    return (0, merkle.empty_root()) if cosigned is None else cosigned


class Witness:
    """The last checkpoint this site cosigned, and the cosigning of newer ones."""

    def __init__(
        self, home: Home, replica: VerifiedLog, trust: TrustRegistry, faults: LocalFaults
    ) -> None:
        self.home = home
        self.log = replica
        self.book = replica.book
        self.trust = trust
        self.faults = faults  # our own files failing (witness.json among them)
        self.path = home.path / WITNESS_FILE
        self.size, self.root = load_witness(home.path)
        self._cosigned = trio.Event()

    def name(self) -> str | None:
        """Our organisation's name as a witness, while our key is an active site's."""
        member = self.log.state.members.get(self.home.public_key)
        if member is None or not member.active or member.role != "site":
            return None
        return member.org

    def cosign(self) -> None:
        """Cosign our newest checkpoint (C2SP tlog-cosignature) if it extends the last one."""
        name = self.name()
        note = self.book.latest
        if name is None or note is None or not self.trust.hub_trusted:
            return
        signed = cp.parse_checkpoint(note)
        size = signed.checkpoint.size
        if size <= self.size or size > self.log.size:
            return
        if self.size:
            problem = self._not_extending_witnessed(signed)
            if problem is not None:
                log.error(
                    "refusing to cosign size %d: not consistent with the checkpoint of "
                    "size %d we cosigned: %s",
                    size,
                    self.size,
                    problem,
                )
                return
        # Record what we vouch for durably *before* the cosignature exists: after a crash we
        # must never cosign a tree inconsistent with this one.
        if not self.faults.ready(WITNESS_FILE):
            return  # it failed a moment ago: the next try comes after the back-off step
        try:
            home_files.save_witness(self.home.path, size, signed.checkpoint.root)
        except OSError as exc:
            # No record, no cosignature; a later catch-up tries again (one line per step).
            self.faults.failed(WITNESS_FILE, exc, f"record the cosigned size {size} in")
            return
        self.faults.cleared(WITNESS_FILE)
        self.size, self.root = size, signed.checkpoint.root
        mine = cp.cosign(signed, self.home.signer, name, int(time.time()))
        self.book.merge_cosignatures(mine, self.log.witness_verifiers())
        self._cosigned.set()

    def _not_extending_witnessed(self, signed: cp.SignedCheckpoint) -> str | None:
        """Why ``signed`` does not extend the checkpoint we cosigned last, or None.

        The hub's note of the cosigned size and ``signed`` are checked with
        ``checkpoint.check_consistent`` and a consistency proof from our own verified store.
        """
        old_size, size = self.size, signed.checkpoint.size
        held = self.book.note_of(old_size)
        witnessed = cp.parse_checkpoint(held) if held else None
        store = self.log.store
        if witnessed is None or witnessed.checkpoint.root != self.root:
            # We no longer hold that note (the ledger was moved away and resynced along other
            # checkpoints): the tree we vouched for must then be our verified log's prefix.
            if store.root(old_size) != self.root:
                return f"our verified log has another root at size {old_size}"
            return None
        proof = store.consistency_proof(old_size, size)
        try:
            cp.check_consistent(witnessed, signed, proof, self.log.log_verifier())
        except LedgerError as exc:
            return str(exc.__cause__ or exc)
        return None

    async def push(self, hub: Any, hub_up: Any) -> None:
        """Hand each new cosignature of ours to ``hub`` while ``hub_up()`` says it answers."""
        while True:
            await self._cosigned.wait()
            self._cosigned = trio.Event()
            note = self.book.note_of(self.size)
            if note is None or not hub_up() or not self.trust.hub_trusted:
                continue
            try:
                await hub.ask(protocol.CosignRequest(note=note), channel="cosign", timeout=10)
            except NetworkError as exc:
                log.debug("could not hand our cosignature to the hub: %s", exc)


__all__ = ["WITNESS_FILE", "Witness", "load_witness"]
