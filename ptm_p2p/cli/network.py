"""CLI commands of the network: ``ptm hub``, ``ptm node``, ``ptm collab …``, ``ptm status``.

The daemons log to stderr and stop cleanly on SIGTERM or Ctrl-C; the one-shot commands print
their result on stdout (``--json`` for machines).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from ptm_p2p.errors import ConfigError, PtmError
from ptm_p2p.home import Home, resolve_home

home_option = click.option(
    "--home",
    "home",
    type=click.Path(file_okay=False),
    default=None,
    help="Identity folder (default: $PTM_HOME).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _home(home: str | None) -> Home:
    return Home.load(resolve_home(home))


def _pubkey(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not hex") from exc
    if len(key) != 32:
        raise click.BadParameter("a public key is 32 bytes (64 hex digits)")
    return key


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
    help="Write the invitation file (hub address, key, origin) here.",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def hub(
    home: str | None,
    host: str,
    port: int,
    genesis: str | None,
    invitation: str | None,
    verbose: bool,
) -> None:
    """Run the hub: sequencer, checkpoint signer and bootstrap peer.

    \b
    Example:
      ptm hub --home hub/ --port 4001 --invitation invite.json
    """
    from ptm_p2p.hub.daemon import run_hub
    from ptm_p2p.network.daemon import setup_logging

    setup_logging(verbose)
    run_hub(
        _home(home),
        host,
        port,
        Path(genesis) if genesis else None,
        Path(invitation) if invitation else None,
    )


@click.command()
@home_option
@click.option(
    "--join",
    "join",
    type=click.Path(dir_okay=False, exists=True),
    required=True,
    help="Invitation file from the hub operator.",
)
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
    home: str | None, join: str, host: str, port: int, peers: tuple[str, ...], verbose: bool
) -> None:
    """Run a site daemon: replicate, verify and witness the ledger.

    \b
    Example:
      ptm node --home site-a/ --join invite.json --port 4101
    """
    from ptm_p2p.network.daemon import setup_logging
    from ptm_p2p.network.host import free_port
    from ptm_p2p.network.invitation import Invitation
    from ptm_p2p.site.replicator import run_node

    setup_logging(verbose)
    identity = _home(home)
    if not port:
        # Keep the port across restarts so the addresses other sites remember stay valid.
        port_file = identity.path / "node.port"
        try:
            port = int(port_file.read_text()) if port_file.exists() else free_port(host)
        except ValueError as exc:
            raise ConfigError(
                f"{port_file} does not hold a port number; fix it or delete it"
            ) from exc
        if not 0 < port < 65536:
            raise ConfigError(f"{port_file} holds {port}, not a TCP port; fix it or delete it")
        port_file.write_text(f"{port}\n")
    run_node(identity, Invitation.load(Path(join)), host, port, list(peers))


# --- collaboration set-up ------------------------------------------------------------------


@click.group()
def collab() -> None:
    """Create a collaboration and manage its members (run by the admin)."""


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
@click.option("--hub-key", default=None, help="The hub's public key (hex), if not --hub-home.")
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
    hub_key: str | None,
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
    from ptm_p2p.hub.daemon import GENESIS_FILE
    from ptm_p2p.ledger.entry import AuthorChain, genesis_payload

    admin = _home(home)
    if hub_home:
        hub_pk = Home.load(Path(hub_home)).public_key
    elif hub_key:
        hub_pk = _pubkey(hub_key)
    else:
        raise click.UsageError("give --hub-home DIR or --hub-key HEX")
    if hub_pk == admin.public_key:
        raise ConfigError("the admin and the hub must be different identities (two homes)")
    payload = genesis_payload(origin, admin.public_key, admin_org, hub_pk, hub_org, description)
    entry = AuthorChain(admin.signer).append("genesis", payload, int(time.time() * 1000))
    written = []
    targets = [Path(out)] if out else []
    if hub_home:
        targets.append(Path(hub_home) / GENESIS_FILE)
    if not targets:
        targets.append(admin.path / GENESIS_FILE)
    for path in targets:
        path.write_bytes(entry.raw)
        written.append(str(path))
    data = {
        "origin": origin,
        "genesis": entry.hash.hex(),
        "admin": admin.public_key.hex(),
        "hub": hub_pk.hex(),
        "written": written,
    }
    _emit(
        data,
        as_json,
        f"genesis {entry.hash.hex()[:16]}… for {origin} written to " + ", ".join(written),
    )


def _membership(
    home: str | None,
    join: str,
    action: str,
    role: str,
    org: str,
    pubkey: str,
    reason: str | None,
    as_json: bool,
) -> None:
    from ptm_p2p.ledger.entry import membership_payload
    from ptm_p2p.network.client import submit_one
    from ptm_p2p.network.invitation import Invitation

    admin = _home(home)
    key = _pubkey(pubkey)
    payload = membership_payload(action, key, org, role, reason)
    try:
        answer = submit_one(admin.signer, Invitation.load(Path(join)), "membership", payload)
    except PtmError as exc:
        raise PtmError(f"the hub refused the {action}: {exc}") from exc
    data = {
        "action": action,
        "key": key.hex(),
        "org": org,
        "role": role,
        "index": answer["indexes"][0] if answer.get("indexes") else None,
        "size": answer.get("size"),
    }
    _emit(data, as_json, f"{action}: {org} ({role}) {key.hex()[:16]}… at log index {data['index']}")


@collab.command("admit")
@home_option
@click.option(
    "--join",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="Invitation file (the hub's address).",
)
@click.option("--role", required=True, type=click.Choice(["site", "researcher", "auditor"]))
@click.option("--org", required=True, help="The member's organisation name.")
@click.argument("pubkey")
@json_option
def collab_admit(
    home: str | None, join: str, role: str, org: str, pubkey: str, as_json: bool
) -> None:
    """Admit a member's key with a role (the admin signs a membership entry).

    \b
    Example:
      ptm collab admit --home admin/ --join invite.json --role site --org hospital-a 3f2a…
    """
    _membership(home, join, "admit", role, org, pubkey, None, as_json)


@collab.command("revoke")
@home_option
@click.option(
    "--join",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="Invitation file (the hub's address).",
)
@click.option("--role", required=True, type=click.Choice(["site", "researcher", "auditor"]))
@click.option("--org", required=True, help="The member's organisation name.")
@click.option("--reason", default=None, help="Why (kept in the log).")
@click.argument("pubkey")
@json_option
def collab_revoke(
    home: str | None, join: str, role: str, org: str, reason: str | None, pubkey: str, as_json: bool
) -> None:
    """Revoke a member's key: it may sign nothing after this entry.

    \b
    Example:
      ptm collab revoke --home admin/ --join invite.json --role site --org hospital-a 3f2a…
    """
    _membership(home, join, "revoke", role, org, pubkey, reason, as_json)


# --- status --------------------------------------------------------------------------------


@click.command()
@home_option
@json_option
def status(home: str | None, as_json: bool) -> None:
    """Show this peer's view: log size, checkpoint, cosigners, peers, lag, evidence.

    Reads the home's ledger and the running daemon's status file (refreshed every second).

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
