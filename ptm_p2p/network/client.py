"""A short-lived client of the hub: sign entries as this identity and submit them.

Used by ``ptm collab admit/revoke`` and by researchers' tools. The client asks the hub for
its own chain head (``head``), so one identity can submit from several machines; the hub's
replay rules refuse anything out of order, so a lying hub can only cause a refusal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import trio

from ptm_p2p.errors import PtmError
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.entry import AuthorChain, Entry
from ptm_p2p.network.host import free_port, listen_addr, make_host, parse_peer_addr
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.network.protocol import RemoteError
from ptm_p2p.network.rpc import PeerClient

Build = Callable[[AuthorChain], list[Entry]]


async def _with_hub(
    signer: Signer, invitation: Invitation, work: Callable[[PeerClient], Any]
) -> Any:
    host = make_host(signer.seed)
    info = parse_peer_addr(invitation.hub_addr)
    async with host.run([listen_addr("127.0.0.1", free_port())]):
        client = PeerClient(host, info.peer_id, info.addrs)
        try:
            # Return domain errors as values: raised inside libp2p's nurseries they would
            # reach the caller wrapped in an ExceptionGroup.
            return True, await work(client)
        except PtmError as exc:
            return False, exc
        finally:
            await client.close()


def _run(signer: Signer, invitation: Invitation, work: Callable[[PeerClient], Any]) -> Any:
    ok, value = trio.run(_with_hub, signer, invitation, work)
    if not ok:
        raise value
    return value


def submit(signer: Signer, invitation: Invitation, build: Build) -> dict[str, Any]:
    """Sign the entries ``build(chain)`` makes from our current head and submit them.

    Returns the hub's answer: ``indexes`` (log positions) and ``size``. Raises
    ``RemoteError`` with the hub's reason when it refuses.
    """

    async def work(hub: PeerClient) -> dict[str, Any]:
        head = await hub.call("head", author=signer.public_key, timeout=15)
        chain = AuthorChain(signer, int(head["seq"]), bytes(head["hash"]))
        entries = build(chain)
        return await hub.call("submit", entries=[e.raw for e in entries], timeout=30)

    result: dict[str, Any] = _run(signer, invitation, work)
    return result


def submit_one(
    signer: Signer, invitation: Invitation, kind: str, payload: Mapping[str, Any]
) -> dict[str, Any]:
    return submit(
        signer, invitation, lambda chain: [chain.append(kind, payload, int(time.time() * 1000))]
    )


__all__ = ["submit", "submit_one", "RemoteError"]
