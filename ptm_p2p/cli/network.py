"""CLI commands of the network: ``ptm hub``, ``ptm node``, ``ptm collab …``, ``ptm status``.

The daemons log to stderr and stop cleanly on SIGTERM or Ctrl-C; the one-shot commands print
their result on stdout (``--json`` for machines).

One name for the invitation file everywhere: the hub writes it with ``--invitation FILE`` and
every other command reads it with ``--invitation FILE``. ``--join FILE``, its old name on the
reading side, still works (hidden, noted in each command's help) for one release.

Nothing heavy is imported at module level: ``ptm --help`` and ``ptm status`` must not pay for
libp2p (~1 s); each command imports what it uses. What the commands do lives in
``ptm_p2p.admin`` (genesis, members, a daemon's home); this module parses, calls and prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ptm_p2p.cli.common import quiet_libp2p
from ptm_p2p.errors import LedgerError
from ptm_p2p.home import Home, resolve_home

home_option = click.option(
    "--home",
    "home",
    type=click.Path(file_okay=False),
    default=None,
    help="Identity folder (default: $PTM_HOME).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def invitation_option(required: bool = True, purpose: str = "") -> Callable[[Any], Any]:
    """``--invitation FILE`` (the file ``ptm hub --invitation FILE`` wrote), plus the hidden
    old name ``--join FILE``; the command receives one ``invitation`` argument."""
    hint = " Its old name, --join FILE, still works."

    def decorate(f: Any) -> Any:
        f = click.option(
            "--join",
            "join_alias",
            type=click.Path(dir_okay=False, exists=True),
            default=None,
            hidden=True,
        )(f)
        return click.option(
            "--invitation",
            "invitation",
            type=click.Path(dir_okay=False, exists=True),
            default=None,
            help=(purpose or "Invitation file the hub wrote (`ptm hub --invitation FILE`).")
            + (" Required." if required else "")
            + hint,
        )(f)

    return decorate


def _invitation(invitation: str | None, join_alias: str | None, required: bool) -> str | None:
    if invitation and join_alias and Path(invitation) != Path(join_alias):
        raise click.UsageError(
            "--invitation and --join (its old name) name different files; give one of them"
        )
    chosen = invitation or join_alias
    if chosen is None and required:
        raise click.UsageError(
            "Missing option '--invitation': give the invitation file the hub wrote "
            "(`ptm hub --invitation FILE`)"
        )
    return chosen


def _home(home: str | None) -> Home:
    return Home.load(resolve_home(home))


def _pubkey(text: str) -> bytes:
    """A public key given as 64 hex digits; ``click.BadParameter`` with a hint otherwise."""
    hint = "print a home's key with `ptm id --home THAT_HOME`"
    try:
        key = bytes.fromhex(text)
    except ValueError:
        if text.startswith(("12D3KooW", "Qm")):
            raise click.BadParameter(
                f"{text[:16]}… is a libp2p peer id (as `ptm status` shows), not a key; "
                f"give the key as 64 hex digits: {hint}"
            ) from None
        raise click.BadParameter(f"{text[:80]!r} is not hex; {hint}") from None
    if len(key) != 32:
        raise click.BadParameter(
            f"a public key is 32 bytes (64 hex digits), this is {len(key)}; {hint}"
        )
    return key


def _pubkey_param(ctx: click.Context, param: click.Parameter, value: str | None) -> bytes | None:
    # As a callback, so click's "Invalid value for 'PUBKEY'" names the argument.
    return None if value is None else _pubkey(value)


def _emit(data: dict[str, Any], as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def register(main: click.Group) -> None:
    """Add this module's commands to the `ptm` group."""
    main.add_command(hub)
    main.add_command(node)
    main.add_command(collab)
    main.add_command(status)


# --- daemons -------------------------------------------------------------------------------


@click.command()
@home_option
@click.option("--host", default="127.0.0.1", show_default=True, help="IP address to listen on.")
@click.option("--port", default=4001, show_default=True, type=int, help="TCP port to listen on.")
@click.option(
    "--genesis",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Genesis entry file for a new log (default: HOME/genesis.entry).",
)
@click.option(
    "--invitation",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the invitation file (hub address, key, origin) here, for sites and the admin "
    "(they read it with --invitation FILE). Give it again after a change of --host/--port.",
)
@click.option(
    "--pardon",
    "pardons",
    multiple=True,
    callback=lambda ctx, param, values: [_pubkey(v) for v in values],
    help="Let an author the hub refuses for equivocation sign again (a key, 64 hex; "
    "repeatable; recorded in HOME/pardoned.json). Only after its owner confirms an honest "
    "collision (two of its own processes), never for a key that may be stolen.",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def hub(
    home: str | None,
    host: str,
    port: int,
    genesis: str | None,
    invitation: str | None,
    pardons: list[bytes],
    verbose: bool,
) -> None:
    """Run the hub: sequencer, checkpoint signer and bootstrap peer.

    The hub remembers where it last wrote its invitation; started on another address
    without --invitation, it warns that the file is stale. An author that signed two entries
    with one sequence number is refused from then on (the evidence is kept); --pardon KEY
    is the way out for an honest collision: the author goes on from the entry that was
    sequenced, and the evidence stays for auditors.

    \b
    Example:
      ptm hub --home hub/ --port 4001 --invitation invite.json
    """
    identity = _home(home)
    if pardons:
        from ptm_p2p.hub.daemon import add_pardons

        add_pardons(identity.path, pardons)
        click.echo(
            f"pardoned {len(pardons)} key(s) for equivocation (HOME/pardoned.json)", err=True
        )
    from ptm_p2p.admin import daemons

    daemons.check_config(identity)
    daemons.check_writable(identity.path, "hub")
    written = Path(invitation) if invitation else None
    for warning in daemons.remember_invitation(identity, host, port, written):
        click.echo(f"warning: {warning}", err=True)

    from ptm_p2p.hub.daemon import run_hub
    from ptm_p2p.network.daemon import setup_logging

    setup_logging(verbose)
    try:
        run_hub(identity, host, port, Path(genesis) if genesis else None, written)
    except LedgerError as exc:
        raise daemons.damaged_ledger(identity, exc, "hub") from exc


@click.command()
@home_option
@invitation_option()
@click.option("--host", default="127.0.0.1", show_default=True, help="IP address to listen on.")
@click.option("--port", default=0, type=int, help="TCP port to listen on (default: a free port).")
@click.option(
    "--peer",
    "peers",
    multiple=True,
    help="Another site's address /ip4/…/tcp/…/p2p/ID to sync from (repeatable).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def node(
    home: str | None,
    invitation: str | None,
    join_alias: str | None,
    host: str,
    port: int,
    peers: tuple[str, ...],
    verbose: bool,
) -> None:
    """Run a site daemon: replicate, verify and witness the ledger.

    Checks HOME/config.toml first (as `ptm config check` does) and refuses to start on a
    configuration error, an unreadable data path or a home it cannot write.

    \b
    Example:
      ptm node --home site-a/ --invitation invite.json --port 4101
    """
    join = _invitation(invitation, join_alias, required=True)
    assert join is not None
    identity = _home(home)
    from ptm_p2p.admin import daemons

    daemons.check_config(identity)
    daemons.check_writable(identity.path, "node")

    from ptm_p2p.network.daemon import setup_logging
    from ptm_p2p.network.invitation import Invitation
    from ptm_p2p.site.daemon import run_node

    setup_logging(verbose)
    if not port:
        port = daemons.node_port(identity, host)
    try:
        run_node(identity, Invitation.load(Path(join)), host, port, list(peers))
    except LedgerError as exc:
        raise daemons.damaged_ledger(identity, exc, "node") from exc


# --- collaboration set-up ------------------------------------------------------------------


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
@home_option
@click.option("--origin", required=True, help="The log's name, e.g. example.org/breast-study.")
@click.option("--org", "admin_org", required=True, help="The admin's organisation name.")
@click.option(
    "--hub-home",
    type=click.Path(file_okay=False, exists=True),
    default=None,
    help="The hub's home on this machine: its key is read and the genesis entry is written there.",
)
@click.option(
    "--hub-key",
    default=None,
    callback=_pubkey_param,
    help="The hub's public key (hex), if not --hub-home.",
)
@click.option("--hub-org", default="hub", show_default=True, help="The hub's organisation.")
@click.option("--description", default=None, help="A line describing the study.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the genesis entry to this file.",
)
@json_option
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

    admin = _home(home)
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
    _emit(
        genesis.to_dict(),
        as_json,
        f"genesis {genesis.entry.hash.hex()[:16]}… for {origin} written to {written}",
    )


def _membership(
    home: str | None,
    join: str,
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

    admin = _home(home)
    invitation = Invitation.load(Path(join))
    quiet_libp2p()
    if action == "revoke":
        change = members.revoke(admin, invitation, key, role, org, reason)
    else:
        assert role is not None and org is not None
        change = members.admit(admin, invitation, key, role, org, same_org)
    _emit(
        change.to_dict(),
        as_json,
        f"{action}: {change.org} ({change.role}) {key.hex()[:16]}… at log index {change.index}",
    )


@collab.command("admit")
@home_option
@invitation_option()
@click.option(
    "--role",
    required=True,
    type=click.Choice(["site", "researcher", "auditor"]),
    help="What the key may do: a site runs tasks, a researcher publishes them, an auditor reads.",
)
@click.option("--org", required=True, help="The member's organisation name.")
@click.option(
    "--same-org",
    is_flag=True,
    help="Admit this key although another member already has --org's name (one organisation, "
    "two keys: e.g. two researchers of one lab).",
)
@click.argument("pubkey", callback=_pubkey_param)
@json_option
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
    join = _invitation(invitation, join_alias, required=True)
    assert join is not None
    _membership(home, join, "admit", role, org, pubkey, None, as_json, same_org)


@collab.command("revoke")
@home_option
@invitation_option()
@click.option(
    "--role",
    default=None,
    type=click.Choice(["site", "researcher", "auditor"]),
    help="The member's role (default: as admitted; checked against the admission if given).",
)
@click.option(
    "--org", default=None, help="The member's organisation (default: as admitted; checked)."
)
@click.option("--reason", default=None, help="Why (kept in the log).")
@click.argument("pubkey", callback=_pubkey_param)
@json_option
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
    join = _invitation(invitation, join_alias, required=True)
    assert join is not None
    _membership(home, join, "revoke", role, org, pubkey, reason, as_json)


@collab.command("members")
@click.argument("ledger", required=False, type=click.Path(exists=True, path_type=Path))
@home_option
@invitation_option(
    required=False,
    purpose="Read the hub's current log instead of a local copy: the entries are checked "
    "against the hub's signed checkpoint and replayed here.",
)
@json_option
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
    join = _invitation(invitation, join_alias, required=False)
    from ptm_p2p.admin.members import members_from_copy, members_from_hub

    if join is not None:
        from ptm_p2p.network.invitation import Invitation

        identity = _home(home)
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


# --- status --------------------------------------------------------------------------------


@click.command()
@home_option
@json_option
def status(home: str | None, as_json: bool) -> None:
    """Show this peer's view: membership, log size, checkpoint, cosigners, peers, lag, evidence.

    Reads the home's ledger and the running daemon's status file (refreshed every second).
    Membership (admitted? with which role, since which log entry; revoked?) comes from the
    home's own verified ledger copy.

    \b
    Example:
      ptm status --home site-a/ --json
    """
    from ptm_p2p.network.status import collect

    data = collect(resolve_home(home))
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    from ptm_p2p.network.status import render

    click.echo(render(data))
