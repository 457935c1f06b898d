"""Refusals when a site opens its home: entries never verified, an invitation naming the
wrong log. Both are this site's configuration, never a peer's fault: they stop the daemon
with what to do, and nobody is blamed.
"""

from __future__ import annotations

from ptm_p2p.errors import ConfigError, LedgerError
from ptm_p2p.home import Home
from ptm_p2p.ledger.crypto import short
from ptm_p2p.ledger.store import LogStore
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.network.verified_log import VerifiedLog


def check_covered(replica: VerifiedLog, home: Home, store: LogStore) -> None:
    """Refuse a store whose entries no stored hub-signed checkpoint covers.

    A site stores a checkpoint with every batch it verified (``VerifiedLog.commit``), so its
    whole log always sits under one. Entries beyond that were never verified (the home
    was used for something else, e.g. a ``ptm hub`` start that failed): comparing them
    with the hub's checkpoints would raise false split-view evidence against an honest hub.
    """
    size = replica.size
    if size == 0:
        return
    note = replica.book.note_of(size)
    problem = None
    if note is None:
        held = [s for s in replica.book.sizes if s <= size]
        problem = (
            f"its last checkpoint covers only {held[-1]} of them"
            if held
            else "it holds no checkpoint signed by the hub"
        )
    else:
        try:
            signed = replica.parse_signed(note)
        except LedgerError as exc:
            problem = f"its checkpoint of size {size} does not verify: {exc}"
        else:
            if signed.checkpoint.root != replica.frontier.root():
                problem = f"its checkpoint of size {size} has another root than its entries"
    if problem is not None:
        store.close()
        raise ConfigError(
            f"{home.path} holds {size} log entries that were never verified against "
            f"the hub ({problem}): this home was used for something else (a failed "
            "`ptm hub` start?). Give this site a fresh --home, or move "
            f"{home.ledger_path} away to resync the log from the hub"
        )


def wrong_origin(invitation: Invitation, served: str) -> ConfigError:
    """The error for a hub that signs another log than the invitation names."""
    return ConfigError(
        f"the invitation names the log {invitation.origin!r}, but its hub (key "
        f"{short(invitation.hub_key)}) signs the log {served!r}: the invitation's "
        "origin field is wrong or belongs to another collaboration. Nothing was stored and "
        "no peer was blamed; ask the hub operator for the file `ptm hub --invitation FILE` "
        "wrote and start this site again with it"
    )


__all__ = ["check_covered", "wrong_origin"]
