"""A short-lived client of the hub: sign entries as this identity and submit them.

Used by ``ptm collab admit/revoke`` and by researchers' tools. The client asks the hub for
its own chain head (``head``), so one identity can submit from several machines; the hub's
replay rules refuse anything out of order, so a lying hub can only cause a refusal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import trio

from ptm_p2p.errors import NetworkError, PeerUnreachable, PtmError, RemoteError
from ptm_p2p.home import author_lock
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.entry import AuthorChain, Entry
from ptm_p2p.network import protocol
from ptm_p2p.network.fetch import fetch_range
from ptm_p2p.network.host import make_host, parse_peer_addr
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.network.rpc import PeerClient

Build = Callable[[AuthorChain], list[Entry]]


async def _with_hub(
    signer: Signer, invitation: Invitation, work: Callable[[PeerClient], Any]
) -> Any:
    host = make_host(signer.seed)
    info = parse_peer_addr(invitation.hub_addr)
    async with host.run([]):  # no listen address: a one-shot client only dials
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
    if isinstance(value, PeerUnreachable):
        raise NetworkError(
            f"cannot reach the hub at {invitation.hub_addr} — is `ptm hub` running? ({value.why})"
        ) from value
    if not ok:
        raise value
    return value


def submit(
    signer: Signer, invitation: Invitation, build: Build, home: Path | None = None
) -> dict[str, Any]:
    """Sign the entries ``build(chain)`` makes from our current head and submit them.

    Returns the hub's answer: ``indexes`` (log positions) and ``size``. Raises
    ``RemoteError`` with the hub's reason when it refuses. With ``home`` (the signer's home
    folder) the whole read-head, sign, submit runs under the home's author lock, so two
    processes of one identity can never sign two entries with one sequence number.
    """
    if home is not None:
        with author_lock(home):
            return submit(signer, invitation, build)

    async def work(hub: PeerClient) -> dict[str, Any]:
        head = await hub.ask(protocol.HeadRequest(author=signer.public_key), timeout=15)
        entries = build(AuthorChain(signer, head.seq, head.hash))
        reply = await hub.ask(protocol.SubmitRequest(entries=[e.raw for e in entries]), timeout=30)
        return protocol.as_map(reply)

    result: dict[str, Any] = _run(signer, invitation, work)
    return result


def submit_one(
    signer: Signer,
    invitation: Invitation,
    kind: str,
    payload: Mapping[str, Any],
    home: Path | None = None,
) -> dict[str, Any]:
    return submit(
        signer,
        invitation,
        lambda chain: [chain.append(kind, payload, int(time.time() * 1000))],
        home,
    )


def fetch_log(signer: Signer, invitation: Invitation) -> list[Entry]:
    """The hub's whole log, checked against its signed checkpoint (decoded, signatures checked).

    For one-shot commands that need the current state of the log (who is a member, with
    which role) without a replica of their own.
    """

    hub_key = cp.Verifier.log(invitation.origin, invitation.hub_key)

    async def work(hub: PeerClient) -> list[Entry]:
        resp = await hub.ask(protocol.CheckpointRequest(), timeout=15)
        signed = cp.parse_checkpoint(resp.note or "")
        cp.verify_checkpoint(signed, hub_key)
        return (await fetch_range(hub, signed, hub_key, "the hub")).entries

    entries: list[Entry] = _run(signer, invitation, work)
    return entries


def check_consistency(signer: Signer, invitation: Invitation, old_note: str) -> cp.SignedCheckpoint:
    """What anyone holding the invitation may check without being a member: that the hub's
    latest checkpoint extends ``old_note`` (one it signed earlier), by the RFC 9162 proof.

    Returns the latest checkpoint, verified; ``SplitViewError`` carries both notes when the
    hub signed two histories, ``RemoteError`` when the hub cannot prove it.
    """
    hub_key = cp.Verifier.log(invitation.origin, invitation.hub_key)
    old = cp.parse_checkpoint(old_note)
    cp.verify_checkpoint(old, hub_key)

    async def work(hub: PeerClient) -> cp.SignedCheckpoint:
        latest = await hub.ask(protocol.CheckpointRequest(), timeout=15)
        new = cp.parse_checkpoint(latest.note or "")
        cp.verify_checkpoint(new, hub_key)
        request = protocol.ConsistencyRequest(
            old_size=old.checkpoint.size, new_size=new.checkpoint.size
        )
        reply = await hub.ask(request, timeout=15)
        # The notes served must be the very ones we compare: ours, and the latest.
        served_old = cp.parse_checkpoint(reply.old)
        cp.verify_checkpoint(served_old, hub_key)
        cp.check_consistent(old, served_old, [], hub_key)  # one size: one root
        cp.check_consistent(old, new, reply.proof, hub_key)
        return new

    checked: cp.SignedCheckpoint = _run(signer, invitation, work)
    return checked


__all__ = ["submit", "submit_one", "fetch_log", "check_consistency", "RemoteError"]
