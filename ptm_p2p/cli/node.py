"""``ptm node``: run a site daemon that replicates, verifies and witnesses the ledger.

The daemon logs to stderr and stops cleanly on SIGTERM or Ctrl-C. libp2p loads inside the
command, so ``ptm --help`` does not pay for it; the daemon is assembled in
``ptm_p2p.site.daemon``.
"""

from __future__ import annotations

from pathlib import Path

import click

from ptm_p2p.cli.common import (
    check_daemon_home,
    chosen_invitation,
    home_option,
    invitation_option,
    listen_host_option,
    load_home,
    run_daemon,
    verbose_option,
)


@click.command()
@home_option()
@invitation_option()
@listen_host_option
@click.option("--port", default=0, type=int, help="TCP port to listen on (default: a free port).")
@click.option(
    "--peer",
    "peers",
    multiple=True,
    help="Another site's address /ip4/…/tcp/…/p2p/ID to sync from (repeatable).",
)
@verbose_option
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
    join = chosen_invitation(invitation, join_alias, required=True)
    assert join is not None
    identity = load_home(home)
    check_daemon_home(identity, "node")

    from ptm_p2p.admin import daemons
    from ptm_p2p.network.invitation import Invitation
    from ptm_p2p.site.daemon import run_node

    if not port:
        port = daemons.node_port(identity, host)
    run_daemon(
        identity,
        "node",
        verbose,
        lambda: run_node(identity, Invitation.load(Path(join)), host, port, list(peers)),
    )


def register(main: click.Group) -> None:
    """Add ``ptm node`` to the ``ptm`` group."""
    main.add_command(node)
