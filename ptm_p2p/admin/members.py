"""Members of a collaboration: admit and revoke them, and list them from a verified log.

The admin signs a membership entry and the hub sequences it (``admit``, ``revoke``). An admin
home keeps no copy of the log, so a revocation first reads the key's admission from the
hub's log, checked against the hub's signed checkpoint and replayed here (``hub_state``):
the entry must repeat the role and organisation the key was admitted with, and nothing is
signed for a key that is not a member.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptm_p2p.errors import EXIT_REFUSED, PtmError, Refused, RemoteError
from ptm_p2p.home import Home
from ptm_p2p.ledger.audit import audit, default_workers
from ptm_p2p.ledger.entry import membership_payload
from ptm_p2p.ledger.replay import State, replay
from ptm_p2p.ledger_copy import ledger_file, read_only_copy

if TYPE_CHECKING:  # libp2p (~1 s) is imported by what talks to the hub, not by a local read
    from ptm_p2p.network.invitation import Invitation


@dataclass(frozen=True)
class MembershipChange:
    """A membership entry the hub sequenced: who, as what, and where in the log."""

    action: str  # "admit" | "revoke"
    key: bytes
    org: str
    role: str
    index: int | None
    size: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "key": self.key.hex(),
            "org": self.org,
            "role": self.role,
            "index": self.index,
            "size": self.size,
        }


@dataclass(frozen=True)
class Members:
    """The replayed state of a verified log, where it was read and how many entries it has."""

    state: State
    source: str
    size: int


def admit(
    admin: Home, invitation: Invitation, key: bytes, role: str, org: str, same_org: bool = False
) -> MembershipChange:
    """Admit ``key`` as ``role`` of ``org``: sign a membership entry, have the hub sequence it.

    An organisation name is how sites' ``publishers`` lists, ``ptm tasks`` and the audit
    report name a member, so a second key under a name some other active member already
    holds is refused (``Refused``, exit 3) unless ``same_org`` says it is meant (two researchers of
    one lab): checked against the hub's log before anything is signed."""
    if not same_org:
        try:
            state = hub_state(admin, invitation)
        except PtmError:
            # The log cannot be read (the hub is down, this home is not the admin): the
            # submit below meets the same hub and reports the real reason with its own code.
            state = None
        if state is not None:
            check_org_free(state, key, org)
    return _membership(admin, invitation, "admit", key, role, org, None)


def check_org_free(state: State, key: bytes, org: str) -> None:
    """Refuse ``org`` when another, unrevoked member (or the admin or hub of genesis) holds
    it; the same key admitted again is not a second member."""
    for member in state.members.values():
        if member.key == key or member.org != org or member.revoked_at is not None:
            continue
        raise Refused(
            f"organisation {org!r} is already {member.role} key {member.key.hex()[:16]}… "
            f"(admitted at log index {member.admitted_at}); a second member under one name "
            "cannot be told apart in sites' publishers lists, `ptm tasks` or the audit: give "
            "this member its own --org, or pass --same-org if both keys really are one "
            "organisation"
        )


def revoke(
    admin: Home,
    invitation: Invitation,
    key: bytes,
    role: str | None = None,
    org: str | None = None,
    reason: str | None = None,
) -> MembershipChange:
    """Revoke ``key``: it may sign nothing after this entry.

    Role and organisation default to the key's admission in the hub's log; given ones are
    checked against it before anything is signed.
    """
    role, org = admission(hub_state(admin, invitation), invitation.origin, key, role, org)
    return _membership(admin, invitation, "revoke", key, role, org, reason)


def _membership(
    admin: Home,
    invitation: Invitation,
    action: str,
    key: bytes,
    role: str,
    org: str,
    reason: str | None,
) -> MembershipChange:
    from ptm_p2p.network.hub_requests import submit_one

    payload = membership_payload(action, key, org, role, reason)
    try:
        answer = submit_one(admin.signer, invitation, "membership", payload, home=admin.path)
    except RemoteError as exc:
        # A "no" stays a refusal; a busy or confused hub keeps its own kind (the cause).
        kind = Refused if exc.exit_code == EXIT_REFUSED else PtmError
        raise kind(f"the hub refused the {action}: {exc.reason}") from exc
    indexes = answer.get("indexes")
    return MembershipChange(
        action, key, org, role, indexes[0] if indexes else None, answer.get("size")
    )


def hub_state(identity: Home, invitation: Invitation) -> State:
    """The hub's whole log, checked against its signed checkpoint and replayed here."""
    from ptm_p2p.network.hub_requests import fetch_log

    return replay(fetch_log(identity.signer, invitation))


def admission(
    state: State, origin: str, key: bytes, role: str | None, org: str | None
) -> tuple[str, str]:
    """The role and organisation ``key`` holds now in ``state``, for its revocation.

    A revocation must repeat them exactly; given ones that differ are reported with what the
    admission said, before anything is signed.
    """
    member = state.members.get(key)
    if member is None:
        raise Refused(f"key {key.hex()[:16]}… was never admitted to {origin}; nothing to revoke")
    if member.revoked_at is not None:
        raise Refused(f"key {key.hex()[:16]}… was already revoked at log index {member.revoked_at}")
    if (role or member.role, org or member.org) != (member.role, member.org):
        raise PtmError(
            f"key {key.hex()[:16]}… was admitted as {member.role} of {member.org} (log index "
            f"{member.admitted_at}), not as {role or member.role} of {org or member.org}; "
            "leave out --role/--org to take them from the admission"
        )
    return member.role, member.org


def members_from_copy(path: Path) -> Members:
    """The members of a ledger copy (a file, or a home folder holding one), fully audited
    first: every signature, chain and rule; a copy that does not verify lists nobody."""
    path = ledger_file(path)
    with read_only_copy(path) as store:
        if store.size() == 0:
            raise PtmError(
                f"{path} holds no entries (only a hub's or a site's home keeps a copy of the "
                "log); give a copy (`ptm ledger copy`) or read the hub's with --invitation FILE"
            )
        report = audit(store, None, default_workers(store.size(), os.cpu_count()))
    if report.problems:
        raise PtmError(
            f"{path} does not verify ({report.problems[0].message}); members are listed only "
            f"from a copy that verifies — `ptm audit {path}` shows everything found"
        )
    return Members(report.state, str(path), report.size)


def members_from_hub(identity: Home, invitation: Invitation, invitation_path: Path) -> Members:
    """The members of the hub's current log (checked against its signed checkpoint)."""
    state = hub_state(identity, invitation)
    return Members(state, f"the hub's log, {invitation_path}", state.size)
