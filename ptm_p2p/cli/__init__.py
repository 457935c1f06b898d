"""The ``ptm`` command line: one click group, with each role's commands in its own module.

Conventions (see README, 'Command line'): human-readable output on stdout by default, ``--json``
for machines; logs and progress on stderr. The exit code tells the kind of outcome: the one
table is ``ptm_p2p.errors.EXIT_CODES`` (0 ok, 1 domain error, 2 usage error — click's own,
3 refused, 4 not done by the deadline, 5 unreachable), shown at the end of ``ptm --help``.
"""

from __future__ import annotations

import errno
import inspect
import sys
from typing import Any

import click

from ptm_p2p import __version__
from ptm_p2p.errors import EXIT_CODES, EXIT_DOMAIN, PtmError, exit_code_of

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# Operating-system refusals an operator fixes without a traceback: a read-only home or disk,
# missing permissions, a full disk. Other OSErrors are bugs and keep their traceback.
OPERATOR_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


class PtmGroup(click.Group):
    """A click group that turns any ``PtmError`` into a one-line message and the exit code of
    its kind (``exit_code_of``), and an operating-system refusal (read-only folder,
    permissions, full disk) into one naming the file and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PtmError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exit_code_of(exc))
        except OSError as exc:
            if exc.errno not in OPERATOR_ERRNOS:
                raise
            where = f" {exc.filename}" if exc.filename else ""
            click.echo(
                f"error: cannot write or read{where}: {exc.strerror}; check that this user may "
                "write there and that the disk is neither read-only nor full",
                err=True,
            )
            sys.exit(EXIT_DOMAIN)


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


# The exit codes close `ptm --help`, from the one table in ptm_p2p.errors.
main.help = (
    inspect.cleandoc(main.help or "")
    + "\n\n\b\nExit codes:\n"
    + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())
)


def _register_all() -> None:
    # Each module adds its commands to ``main``, one module per role or command group.
    from ptm_p2p.cli import (
        collab,
        demo,
        dev,
        explore,
        hub,
        identity,
        ledger,
        node,
        run_local,
        status,
        study,
        tasks,
    )

    for module in (
        demo,
        identity,
        ledger,
        explore,
        hub,
        node,
        collab,
        status,
        tasks,
        study,
        run_local,
        dev,
    ):
        module.register(main)


_register_all()
