"""``ptm hub``: run the hub (sequencer, checkpoint signer and bootstrap peer) of a home.

The daemon logs to stderr and stops cleanly on SIGTERM or Ctrl-C. The hub writes the
invitation file (``--invitation FILE``) that every other command reads with the same option.
libp2p loads inside the command, so ``ptm --help`` does not pay for it; what starting a
daemon involves lives in ``ptm_p2p.admin.daemons`` and ``ptm_p2p.hub.daemon``.
"""

from __future__ import annotations

from pathlib import Path

import click

from ptm_p2p.cli.common import (
    check_daemon_home,
    file_option,
    home_option,
    listen_host_option,
    load_home,
    parse_pubkey,
    run_daemon,
    verbose_option,
)


@click.command()
@home_option()
@listen_host_option
@click.option("--port", default=4001, show_default=True, type=int, help="TCP port to listen on.")
@file_option(
    "--genesis", exists=True, help="Genesis entry file for a new log (default: HOME/genesis.entry)."
)
@file_option(
    "--invitation",
    help="Write the invitation file (hub address, key, origin) here, for sites and the admin "
    "(they read it with --invitation FILE). Give it again after a change of --host/--port.",
)
@click.option(
    "--pardon",
    "pardons",
    multiple=True,
    callback=lambda ctx, param, values: [parse_pubkey(v) for v in values],
    help="Let an author the hub refuses for equivocation sign again (a key, 64 hex; "
    "repeatable; recorded in HOME/pardoned.json). Only after its owner confirms an honest "
    "collision (two of its own processes), never for a key that may be stolen.",
)
@verbose_option
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
    identity = load_home(home)
    if pardons:
        from ptm_p2p.hub.daemon import add_pardons

        add_pardons(identity.path, pardons)
        click.echo(
            f"pardoned {len(pardons)} key(s) for equivocation (HOME/pardoned.json)", err=True
        )
    from ptm_p2p.admin import daemons

    check_daemon_home(identity, "hub")
    written = Path(invitation) if invitation else None
    for warning in daemons.remember_invitation(identity, host, port, written):
        click.echo(f"warning: {warning}", err=True)

    from ptm_p2p.hub.daemon import run_hub

    run_daemon(
        identity,
        "hub",
        verbose,
        lambda: run_hub(identity, host, port, Path(genesis) if genesis else None, written),
    )


def register(main: click.Group) -> None:
    """Add ``ptm hub`` to the ``ptm`` group."""
    main.add_command(hub)
