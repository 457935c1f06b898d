"""CLI command ``ptm demo``: the main job, a whole small study on this machine."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("ptm-demo"),
    show_default=True,
    help="Folder for the demo's data shares, ledgers and identities.",
)
def demo_command(workdir: Path) -> None:
    """Run a federated study on real survival data on this machine, then audit it.

    Sets up the local Docker engine, registry and images if needed; splits the GBSG2 breast
    cancer study over three hospitals, each with a site daemon and a deny-by-default policy;
    a researcher publishes signed tasks (images by digest, sealed inputs) that the site
    daemons run on their own; the pooled summary, a federated Cox regression and Kaplan-Meier
    curves are printed beside central computations; every ledger copy is audited, and the
    audit catches a forged entry. Exit 0 when everything checks out; the last line names the
    study's ledger copy for `ptm audit`.

    \b
    Example:
      ptm demo --workdir /tmp/ptm-demo
    """
    from ptm_p2p.demo_study import run_demo

    ok = run_demo(workdir, lambda line: click.echo(line))
    raise SystemExit(0 if ok else 1)


def register(main: click.Group) -> None:
    """Add ``ptm demo`` to the ``ptm`` group."""
    main.add_command(demo_command)
