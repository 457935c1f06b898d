"""``ptm explore``: serve a read-only web view of a verified ledger copy on 127.0.0.1."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import click


@click.command("explore")
@click.argument("ledger", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port on 127.0.0.1 (0: any free port).",
)
def explore_command(ledger: Path, port: int) -> None:
    """Browse a ledger copy in a web page: studies, tasks, sites, members, checkpoints.

    LEDGER is a ledger file or a home folder. It is snapshotted and audited first (as
    `ptm audit` does), then served read-only on http://127.0.0.1:PORT/ with no login: only
    this machine can reach it, and nothing on the page can change the ledger. Every entry's
    inclusion in a hub-signed checkpoint, and the consistency of two checkpoints, are
    checked in the browser itself (WebCrypto), not taken from the server. Entries the audit
    refused are shown in red. Stop with Ctrl-C.

    \b
    Examples:
      ptm explore ~/.ptm/hospital-a
      ptm ledger simulate /tmp/demo.db -n 20000 && ptm explore /tmp/demo.db --port 8080
    """
    from ptm_p2p.explorer.index import Explorer
    from ptm_p2p.explorer.server import make_server

    started = time.perf_counter()
    explorer = Explorer.open(ledger)
    try:
        try:
            server = make_server(explorer, port)
        except OSError as exc:
            raise click.UsageError(
                f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); pick another --port "
                "(0 picks a free one)"
            ) from exc
        verdict = "verified" if explorer.audit.ok else "FAILED the audit (problems shown in red)"
        click.echo(
            f"{explorer.source}: {explorer.audit.size} entries, {verdict}; indexed in "
            f"{time.perf_counter() - started:.1f} s"
        )
        click.echo(
            f"serving http://127.0.0.1:{server.server_address[1]}/  (read-only; Ctrl-C stops)"
        )
        signal.signal(signal.SIGTERM, _interrupt)  # stop as on Ctrl-C: the snapshot is removed
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    finally:
        explorer.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def register(main: click.Group) -> None:
    """Add ``ptm explore`` to the ``ptm`` group."""
    main.add_command(explore_command)
