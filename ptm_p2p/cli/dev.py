"""``ptm dev …``: the development infrastructure (Docker engine, local registry, base and
algorithm images). What each command does lives in ``ptm_p2p.dev.commands``."""

from __future__ import annotations

import click

from ptm_p2p.cli.common import echo_lines, json_option


@click.group("dev")
def dev() -> None:
    """Development infrastructure: Docker engine, local registry, base and algorithm images.

    \b
    Example:
      ptm dev up        # idempotent: start/prepare what is missing, print image digests
      ptm dev status
    """


@dev.command("up")
@click.option("--no-images", is_flag=True, help="Skip building and pushing algorithm images.")
@json_option("Print the image digests as JSON.")
def dev_up(no_images: bool, as_json: bool) -> None:
    """Start the engine and registry, build the base image and the algorithm images.

    \b
    Example:
      ptm dev up --json > images.json
    """
    from ptm_p2p.dev import commands

    echo_lines(commands.up(build_images=not no_images, as_json=as_json))


@dev.command("status")
@json_option("Print the engine, registry and images as JSON.")
def dev_status(as_json: bool) -> None:
    """Show what is running and built: engine, registry, base and algorithm images.

    Starts nothing and changes nothing.

    \b
    Examples:
      ptm dev status
      ptm dev status --json
    """
    from ptm_p2p.dev import commands

    echo_lines(commands.status(as_json=as_json))


@dev.command("down")
def dev_down() -> None:
    """Stop the registry and dockerd that `ptm dev up` started (by their pid files).

    An engine that was already running before is left alone.

    \b
    Example:
      ptm dev down
    """
    from ptm_p2p.dev import commands

    echo_lines(commands.down())


@dev.command("clear-cache")
def dev_clear_cache() -> None:
    """Delete the cached base-image tarball (the next `ptm dev up` debootstraps again).

    Images already in the engine are kept; only the tarball `ptm dev up` imports from is
    removed, e.g. to rebuild the base from a fresh Debian mirror.

    \b
    Example:
      ptm dev clear-cache && ptm dev up
    """
    from ptm_p2p.dev import commands

    echo_lines(commands.clear_cache())


def register(main: click.Group) -> None:
    """Add ``ptm dev`` to the ``ptm`` group."""
    main.add_command(dev)
