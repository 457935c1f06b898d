"""A collaboration's log as tests write it by hand: genesis, then membership changes.

``collaboration_log`` signs the genesis entry and each admit or revoke with the admin's key,
one millisecond apart, so a test states only who joined or left and as what.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ptm_p2p.home import Home
from ptm_p2p.ledger.entry import AuthorChain, Entry, genesis_payload, membership_payload

Change = tuple[str, str, str, str] | tuple[str, str, str, str, str]
"""``(action, name in homes, org, role)``, and for a revoke optionally a reason."""


def collaboration_log(
    homes: Mapping[str, Home], origin: str, admin_org: str, changes: Iterable[Change], t0: int
) -> list[Entry]:
    """Genesis at ``t0`` by ``homes["admin"]`` (with ``homes["hub"]``, org ``hub``), then each
    ``(action, name, org, role[, reason])`` as a membership entry at ``t0 + 1``, ``t0 + 2``, …"""
    chain = AuthorChain(homes["admin"].signer)
    admin_key, hub_key = homes["admin"].public_key, homes["hub"].public_key
    genesis = genesis_payload(origin, admin_key, admin_org, hub_key, "hub")
    entries = [chain.append("genesis", genesis, t0)]
    for i, (action, name, *rest) in enumerate(changes, start=1):
        payload = membership_payload(action, homes[name].public_key, *rest)
        entries.append(chain.append("membership", payload, t0 + i))
    return entries
