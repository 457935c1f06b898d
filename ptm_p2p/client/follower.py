"""The researcher's verified copy of the log, kept up to date from the hub.

A researcher acts on results only after checking them as a site would: every entry's
signature and chain, the replay rules, and that the entries hash to a root the hub signed
(RFC 9162 tree, C2SP checkpoint). The copy lives in the researcher's home
(``HOME/ledger.db``), so later syncs fetch only what is new, through the tracker the sites
use (``network/replica.py``: bounded steps, one set of limits): the new entries appended to
the verified frontier must give the hub-signed root (which proves the old tree a prefix of
the new one), and the hub's consistency proof must verify.

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
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.network.replica import ReplicaTracker, open_replica
from ptm_p2p.network.rpc import PeerClient


class LogFollower:
    def __init__(self, home: Home, invitation: Invitation) -> None:
        parts = open_replica(SqliteStore(home.ledger_path))  # closes the store if it fails
        self.store, self.trust, self.book = parts.store, parts.trust, parts.book
        self.replica = parts.log  # the verified copy
        try:
            self.replica.expect(invitation.origin, invitation.hub_key)
        except BaseException:
            self.store.close()
            raise
        # Catch-up in bounded steps, with the limits the sites use.
        self.tracker = ReplicaTracker(self.replica, where=str(home.ledger_path))
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
            request = protocol.CheckpointRequest()
            resp = await hub.ask(request, timeout=self.tracker.limits.timeout)
            if not resp.note:
                return self.replica.size
            signed = self.replica.parse_signed(resp.note)  # the hub's signature, or an error
            if signed.checkpoint.size > self.replica.size:
                await self.tracker.catch_up(hub, signed, "the hub")  # then ask again
                continue
            self.replica.check_against_ours(signed, "the hub")  # a split view raises
            with contextlib.suppress(LedgerError):
                self.book.merge_cosignatures(signed, self.replica.witness_verifiers())
            self._note_cosigners(signed)
            return self.replica.size

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
