"""The researcher's verified copy of the log, kept up to date from the hub.

A researcher acts on results only after checking them as a site would: every entry's
signature and chain, the replay rules, and that the entries hash to a root the hub signed
(RFC 9162 tree, C2SP checkpoint). The copy lives in the researcher's home
(``HOME/ledger.db``), so later syncs fetch only what is new, through the same
``fetch.fetch_range`` the sites use: the new entries appended to the verified frontier must
give the hub-signed root (which proves the old tree a prefix of the new one), and the hub's
consistency proof must verify.

It also records, per site, the largest checkpoint the site cosigned (C2SP tlog-cosignature):
a site that cosigned a tree containing a task provably holds that task.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ptm_p2p.errors import LedgerError
from ptm_p2p.home import Home
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.network import protocol
from ptm_p2p.network.checkpoint_book import CheckpointBook
from ptm_p2p.network.fetch import fetch_range
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.network.rpc import PeerClient
from ptm_p2p.network.trust import TrustRegistry
from ptm_p2p.network.verified_log import VerifiedLog

MAX_CATCH_UP = 200_000  # entries verified in one step; beyond that, walk checkpoint by checkpoint


class LogFollower:
    def __init__(self, home: Home, invitation: Invitation) -> None:
        self.store = SqliteStore(home.ledger_path)
        try:
            self.trust = TrustRegistry(self.store)
            self.book = CheckpointBook(self.store)
            self.replica = VerifiedLog(self.store, self.book, self.trust)  # the verified copy
            self.replica.expect(invitation.origin, invitation.hub_key)
        except BaseException:
            self.store.close()
            raise
        self.vouched: dict[bytes, int] = {}  # site key -> largest size it cosigned (seen)

    @property
    def state(self) -> Any:
        return self.replica.state

    def close(self) -> None:
        self.book.flush()
        self.store.close()

    async def sync(self, hub: PeerClient) -> int:
        """Bring the copy up to the hub's latest checkpoint; return the verified size."""
        while True:
            resp = await hub.ask(protocol.CheckpointRequest(), timeout=15)
            if not resp.note:
                return self.replica.size
            signed = self.replica.parse_signed(resp.note)  # the hub's signature, or an error
            target = signed.checkpoint.size
            n = self.replica.size
            if target <= n:
                self.replica.check_against_ours(signed, "the hub")  # a split view raises
                with contextlib.suppress(LedgerError):
                    self.book.merge_cosignatures(signed, self.replica.witness_verifiers())
                self._note_cosigners(signed)
                return n
            if target - n > MAX_CATCH_UP:
                step = await self._checkpoint_at_least(hub, n + MAX_CATCH_UP, signed)
            else:
                step = signed
            await self._catch_up(hub, step)
            self._note_cosigners(step)

    async def _checkpoint_at_least(
        self, hub: PeerClient, size: int, fallback: cp.SignedCheckpoint
    ) -> cp.SignedCheckpoint:
        resp = await hub.ask(protocol.CheckpointRequest(at_least=size), timeout=15)
        if not resp.note:
            return fallback
        return self.replica.parse_signed(resp.note)

    async def _catch_up(self, hub: PeerClient, step: cp.SignedCheckpoint) -> None:
        ours = self.book.note_of(self.replica.size)
        fetched = await fetch_range(
            hub,
            step,
            self.replica.log_verifier(),
            "the hub",
            base=self.replica.frontier,
            base_note=cp.parse_checkpoint(ours) if ours else None,
        )
        self.replica.commit(fetched.entries, fetched.frontier, step, "the hub")

    def _note_cosigners(self, signed: cp.SignedCheckpoint) -> None:
        size = signed.checkpoint.size
        try:
            good = cp.verify_cosignatures(signed, self.replica.witness_verifiers())
        except LedgerError:
            return  # a forged cosignature proves nothing; the hub's copy will be audited
        orgs = {m.org: m.key for m in self.replica.state.active_members("site")}
        for cosig in good:
            key = orgs.get(cosig.name)
            if key is not None and size > self.vouched.get(key, 0):
                self.vouched[key] = size
