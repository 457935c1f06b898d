"""CLI commands: identity (placeholder until its issue lands)."""

import click


def register(main: click.Group) -> None:
    """Add this module's commands to the `ptm` group."""
