"""The ``ptm`` command line: one click group, with each role's commands in its own module.

Conventions (see README, 'Command line'): human-readable output on stdout by default, ``--json``
for machines; logs and progress on stderr; exit 0 when all is well, 1 on a domain error
(a ``PtmError``), 2 on a usage error (click's own).
"""

from __future__ import annotations

import errno
import sys
from typing import Any

import click

from ptm_p2p import __version__
from ptm_p2p.errors import PtmError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# Operating-system refusals an operator fixes without a traceback: a read-only home or disk,
# missing permissions, a full disk. Other OSErrors are bugs and keep their traceback.
OPERATOR_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


class PtmGroup(click.Group):
    """A click group that turns any ``PtmError`` into a one-line message and exit code 1, and
    so does an operating-system refusal (read-only folder, permissions, full disk), naming the
    file."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PtmError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except OSError as exc:
            if exc.errno not in OPERATOR_ERRNOS:
                raise
            where = f" {exc.filename}" if exc.filename else ""
            click.echo(
                f"error: cannot write or read{where}: {exc.strerror}; check that this user may "
                "write there and that the disk is neither read-only nor full",
                err=True,
            )
            sys.exit(1)


@click.group(cls=PtmGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="ptm")
def main() -> None:
    """ptm: federated analysis of medical data over a signed, replicated ledger.

    \b
    Examples, to start with:
      ptm demo                      run a whole study on this machine
      ptm init --home DIR --name N  make an identity (key, config, ledger copy)
      ptm audit LEDGER              replay and verify a ledger copy offline

    Every command has -h/--help with an example.
    """


def _register_all() -> None:
    # Each module adds its commands to ``main``; the import order is the help order.
    from ptm_p2p.cli import demo, executor, identity, ledger, network, researcher, study

    for module in (demo, identity, ledger, network, researcher, study, executor):
        module.register(main)


_register_all()
