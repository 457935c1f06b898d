"""``ptm collab …``: the admin creates a collaboration and manages its members.

``create`` writes the genesis entry (admin and hub, two identities); ``admit`` and
``revoke`` sign membership entries the hub sequences; ``members`` lists them from a
verified log. What the commands do lives in ``ptm_p2p.admin`` (genesis, members); this
module parses, calls and prints. libp2p loads inside the commands that reach the hub.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ptm_p2p.cli.common import (
    Decorator,
    chosen_invitation,
    emit,
    file_option,
    folder_option,
    home_option,
    invitation_option,
    json_option,
    load_home,
    pubkey_param,
    quiet_libp2p,
)
from ptm_p2p.home import resolve_home


@click.group()
def collab() -> None:
    """Create a collaboration and manage its members (run by the admin).

    \b
    Example:
      ptm collab create --home admin/ --hub-home hub/ --origin example.org/study --org uni
      ptm collab admit --home admin/ --invitation invite.json --role site --org site-a KEY
      ptm collab members --home admin/ --invitation invite.json
    """


@collab.command("create")
@home_option()
@click.option("--origin", required=True, help="The log's name, e.g. example.org/breast-study.")
@click.option("--org", "admin_org", required=True, help="The admin's organisation name.")
@folder_option(
    "--hub-home",
    exists=True,
    help="The hub's home on this machine: its key is read and the genesis entry is written there.",
)
@click.option(
    "--hub-key",
    default=None,
    callback=pubkey_param,
    help="The hub's public key (hex), if not --hub-home.",
)
@click.option("--hub-org", default="hub", show_default=True, help="The hub's organisation.")
@click.option("--description", default=None, help="A line describing the study.")
@file_option("--out", help="Also write the genesis entry to this file.")
@json_option()
def collab_create(
    home: str | None,
    origin: str,
    admin_org: str,
    hub_home: str | None,
    hub_key: bytes | None,
    hub_org: str,
    description: str | None,
    out: str | None,
    as_json: bool,
) -> None:
    """Make the genesis entry: the admin (this home) and the hub, two separate identities.

    \b
    Example:
      ptm collab create --home admin/ --hub-home hub/ --origin example.org/study --org uni
      ptm hub --home hub/ --invitation invite.json
    """
    from ptm_p2p.admin.genesis import create_genesis, hub_key_of_home
    from ptm_p2p.home import GENESIS_FILE  # where the hub reads it from

    admin = load_home(home)
    if hub_home:
        hub_pk = hub_key_of_home(Path(hub_home))
    elif hub_key:
        hub_pk = hub_key
    else:
        raise click.UsageError("give --hub-home DIR or --hub-key HEX")
    # --out, and the hub's home when it is here; else the admin's own home.
    targets = [Path(out)] if out else []
    if hub_home:
        targets.append(Path(hub_home) / GENESIS_FILE)
    if not targets:
        targets.append(admin.path / GENESIS_FILE)
    genesis = create_genesis(admin, origin, admin_org, hub_pk, hub_org, description, targets)
    written = ", ".join(str(p) for p in genesis.written)
    emit(
        genesis.to_dict(),
        as_json,
        f"genesis {genesis.entry.hash.hex()[:16]}… for {origin} written to {written}",
    )


MEMBER_ROLES = ("site", "researcher", "auditor")


def _member_options(required: bool, role_help: str, org_help: str) -> Decorator:
    """``--home``, ``--invitation``, ``--role`` and ``--org`` of `admit` and `revoke` (in
    this order in their help); admitting needs the role and organisation, revoking checks
    them against the admission when given."""

    def decorate(f: Any) -> Any:
        f = click.option("--org", required=required, help=org_help)(f)
        f = click.option(
            "--role",
            required=required,
            type=click.Choice(MEMBER_ROLES),
            help=role_help,
        )(f)
        f = invitation_option()(f)
        return home_option()(f)

    return decorate


def _membership(
    home: str | None,
    invitation: str | None,
    join_alias: str | None,
    action: str,
    role: str | None,
    org: str | None,
    key: bytes,
    reason: str | None,
    as_json: bool,
    same_org: bool = False,
) -> None:
    from ptm_p2p.admin import members
    from ptm_p2p.network.invitation import Invitation

    join = chosen_invitation(invitation, join_alias, required=True)
    assert join is not None
    admin = load_home(home)
    log_invitation = Invitation.load(Path(join))
    quiet_libp2p()
    if action == "revoke":
        change = members.revoke(admin, log_invitation, key, role, org, reason)
    else:
        assert role is not None and org is not None
        change = members.admit(admin, log_invitation, key, role, org, same_org)
    emit(
        change.to_dict(),
        as_json,
        f"{action}: {change.org} ({change.role}) {key.hex()[:16]}… at log index {change.index}",
    )


@collab.command("admit")
@_member_options(
    required=True,
    role_help="What the key may do: a site runs tasks, a researcher publishes them, an auditor "
    "reads.",
    org_help="The member's organisation name.",
)
@click.option(
    "--same-org",
    is_flag=True,
    help="Admit this key although another member already has --org's name (one organisation, "
    "two keys: e.g. two researchers of one lab).",
)
@click.argument("pubkey", callback=pubkey_param)
@json_option()
def collab_admit(
    home: str | None,
    invitation: str | None,
    join_alias: str | None,
    role: str,
    org: str,
    same_org: bool,
    pubkey: bytes,
    as_json: bool,
) -> None:
    """Admit a member's key (64 hex digits, from `ptm id`) with a role.

    The admin signs a membership entry and the hub sequences it. The organisation name is
    what sites list in `[policy] publishers` and what `ptm tasks` and `ptm audit` show, so a
    name another active member (or the admin or hub) already holds is refused (exit 3)
    unless --same-org says both keys are one organisation.

    \b
    Example:
      ptm collab admit --home admin/ --invitation invite.json --role site --org hospital-a 3f2a…
    """
    _membership(home, invitation, join_alias, "admit", role, org, pubkey, None, as_json, same_org)


@collab.command("revoke")
@_member_options(
    required=False,
    role_help="The member's role (default: as admitted; checked against the admission if given).",
    org_help="The member's organisation (default: as admitted; checked).",
)
@click.option("--reason", default=None, help="Why (kept in the log).")
@click.argument("pubkey", callback=pubkey_param)
@json_option()
def collab_revoke(
    home: str | None,
    invitation: str | None,
    join_alias: str | None,
    role: str | None,
    org: str | None,
    reason: str | None,
    pubkey: bytes,
    as_json: bool,
) -> None:
    """Revoke a member's key: it may sign nothing after this entry.

    Role and organisation are taken from the key's admission in the hub's log.

    \b
    Example:
      ptm collab revoke --home admin/ --invitation invite.json --reason "left the study" 3f2a…
    """
    _membership(home, invitation, join_alias, "revoke", role, org, pubkey, reason, as_json)


@collab.command("members")
@click.argument("ledger", required=False, type=click.Path(exists=True, path_type=Path))
@home_option()
@invitation_option(
    required=False,
    purpose="Read the hub's current log instead of a local copy: the entries are checked "
    "against the hub's signed checkpoint and replayed here.",
)
@json_option()
def collab_members(
    ledger: Path | None,
    home: str | None,
    invitation: str | None,
    join_alias: str | None,
    as_json: bool,
) -> None:
    """List the collaboration's members, roles and revocations from a verified log.

    LEDGER is a ledger file (e.g. from `ptm ledger copy`) or a home folder; without it, the
    ledger copy of --home (a hub's or a site's). The copy is replayed in full — every
    signature, chain and rule — and members are listed only from a copy that verifies. An
    admin or researcher home keeps no copy: give --invitation to read the hub's log.

    \b
    Examples:
      ptm collab members /tmp/hospital-a.db
      ptm collab members --home admin/ --invitation invite.json --json
    """
    join = chosen_invitation(invitation, join_alias, required=False)
    from ptm_p2p.admin.members import members_from_copy, members_from_hub

    if join is not None:
        from ptm_p2p.network.invitation import Invitation

        identity = load_home(home)
        loaded = Invitation.load(Path(join))
        quiet_libp2p()
        found = members_from_hub(identity, loaded, Path(join))
    else:
        found = members_from_copy(ledger if ledger is not None else resolve_home(home))
    state, source, size = found.state, found.source, found.size
    members: list[dict[str, Any]] = [
        {
            "key": m.key.hex(),
            "org": m.org,
            "role": m.role,
            "admitted_at": m.admitted_at,
            "revoked_at": m.revoked_at,
            "active": m.revoked_at is None,
        }
        for m in state.members.values()
    ]
    if as_json:
        data = {"source": source, "origin": state.origin, "size": size, "members": members}
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{state.origin}: {len(members)} members in {size} entries ({source})")
    for m in members:
        status = "active" if m["active"] else f"revoked at entry {m['revoked_at']}"
        click.echo(
            f"  {m['org']:<20} {m['role']:<11} {m['key'][:16]}…  admitted at entry "
            f"{m['admitted_at']}, {status}"
        )


def register(main: click.Group) -> None:
    """Add ``ptm collab`` to the ``ptm`` group."""
    main.add_command(collab)
