"""``ptm status``: this peer's view (membership, log size, checkpoint, peers, evidence).

Read from the home's ledger copy and the running daemon's status file by
``ptm_p2p.network.home_status``; this module only prints it.
"""

from __future__ import annotations

import json

import click

from ptm_p2p.cli.common import home_option, json_option
from ptm_p2p.home import resolve_home


@click.command()
@home_option()
@json_option()
def status(home: str | None, as_json: bool) -> None:
    """Show this peer's view: membership, log size, checkpoint, cosigners, peers, lag, evidence.

    Reads the home's ledger and the running daemon's status file (refreshed every second).
    Membership (admitted? with which role, since which log entry; revoked?) comes from the
    home's own verified ledger copy.

    \b
    Example:
      ptm status --home site-a/ --json
    """
    from ptm_p2p.network.home_status import collect

    data = collect(resolve_home(home))
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    from ptm_p2p.network.home_status import render

    click.echo(render(data))


def register(main: click.Group) -> None:
    """Add ``ptm status`` to the ``ptm`` group."""
    main.add_command(status)
