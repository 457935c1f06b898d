"""What the CLI modules share: the options every role uses (``--home``, ``--json``, the
invitation file, the ``--to``/``--to-all`` targets, a public key), printing a result as
text or JSON, and silencing libp2p's loggers in one-shot commands.

Each option is written once here; a command that words its help differently passes its
own text, the option's name, type and default stay the same everywhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ptm_p2p.errors import LedgerError
from ptm_p2p.home import Home, resolve_home

if TYPE_CHECKING:
    from ptm_p2p.client import Client

Decorator = Callable[[Any], Any]

HOME_HELP = "Identity folder (default: $PTM_HOME)."
RESEARCHER_HOME_HELP = "The researcher's home folder (default: $PTM_HOME)."


def home_option(help: str = HOME_HELP, as_path: bool = False) -> Decorator:
    """``--home DIR`` (default: $PTM_HOME, resolved by ``ptm_p2p.home.resolve_home``);
    ``as_path``: the command receives a ``Path`` rather than a string."""
    kind = click.Path(file_okay=False, path_type=Path) if as_path else click.Path(file_okay=False)
    return click.option("--home", "home", type=kind, default=None, help=help)


def json_option(help: str = "Print JSON.") -> Decorator:
    """``--json``: the command's result as JSON on stdout; the command receives ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def file_option(
    *names: str,
    help: str,
    exists: bool = False,
    writable: bool = False,
    as_path: bool = False,
    required: bool = False,
    metavar: str | None = None,
) -> Decorator:
    """An option naming one file (never a folder): one the command reads (``exists``) or
    writes (``writable``: checked up front); the command receives a string, a ``Path``
    with ``as_path``, or None when the option is not given."""
    kind = click.Path(
        dir_okay=False, exists=exists, writable=writable, path_type=Path if as_path else None
    )
    return click.option(
        *names, type=kind, default=None, required=required, metavar=metavar, help=help
    )


def folder_option(
    *names: str, help: str, exists: bool = False, as_path: bool = False, required: bool = False
) -> Decorator:
    """An option naming a folder (never a file): one the command reads (``exists``) or
    writes files into; the command receives a string, a ``Path`` with ``as_path``, or None
    when the option is not given."""
    kind = click.Path(file_okay=False, exists=exists, path_type=Path if as_path else None)
    return click.option(*names, type=kind, default=None, required=required, help=help)


def positive_number_option(*names: str, help: str, metavar: str | None = None) -> Decorator:
    """An optional number above 0 (a time step, unit or resolution); the command receives
    a float, or None when the option is not given."""
    kind = click.FloatRange(0, min_open=True)
    return click.option(
        *names, type=kind, default=None, metavar=metavar, help=help, callback=_finite
    )


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """FloatRange lets ``inf`` and ``nan`` through: no step, unit or resolution is either."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
    return value


def client_invitation_option() -> Decorator:
    """The researcher's ``--invitation FILE`` (alias ``--join``), optional: the client
    falls back to HOME/invitation.json or $PTM_INVITATION."""
    return click.option(
        "--invitation",
        "--join",
        "invitation",
        type=click.Path(dir_okay=False, exists=True),
        default=None,
        help="The hub's invitation file (default: HOME/invitation.json or $PTM_INVITATION). "
        "--join is an alias.",
    )


def invitation_option(required: bool = True, purpose: str = "") -> Decorator:
    """``--invitation FILE`` (the file ``ptm hub --invitation FILE`` wrote), plus the hidden
    old name ``--join FILE``; the command receives ``invitation`` and ``join_alias``, which
    ``chosen_invitation`` makes one."""
    hint = " Its old name, --join FILE, still works."

    def decorate(f: Any) -> Any:
        f = click.option(
            "--join",
            "join_alias",
            type=click.Path(dir_okay=False, exists=True),
            default=None,
            hidden=True,
        )(f)
        return click.option(
            "--invitation",
            "invitation",
            type=click.Path(dir_okay=False, exists=True),
            default=None,
            help=(purpose or "Invitation file the hub wrote (`ptm hub --invitation FILE`).")
            + (" Required." if required else "")
            + hint,
        )(f)

    return decorate


def chosen_invitation(invitation: str | None, join_alias: str | None, required: bool) -> str | None:
    """The invitation file given as ``--invitation`` or by its old name ``--join``."""
    if invitation and join_alias and Path(invitation) != Path(join_alias):
        raise click.UsageError(
            "--invitation and --join (its old name) name different files; give one of them"
        )
    chosen = invitation or join_alias
    if chosen is None and required:
        raise click.UsageError(
            "Missing option '--invitation': give the invitation file the hub wrote "
            "(`ptm hub --invitation FILE`)"
        )
    return chosen


def parse_pubkey(text: str) -> bytes:
    """A public key given as 64 hex digits; ``click.BadParameter`` with a hint otherwise."""
    hint = "print a home's key with `ptm id --home THAT_HOME`"
    try:
        key = bytes.fromhex(text)
    except ValueError:
        if text.startswith(("12D3KooW", "Qm")):
            raise click.BadParameter(
                f"{text[:16]}… is a libp2p peer id (as `ptm status` shows), not a key; "
                f"give the key as 64 hex digits: {hint}"
            ) from None
        raise click.BadParameter(f"{text[:80]!r} is not hex; {hint}") from None
    if len(key) != 32:
        raise click.BadParameter(
            f"a public key is 32 bytes (64 hex digits), this is {len(key)}; {hint}"
        )
    return key


def pubkey_param(ctx: click.Context, param: click.Parameter, value: str | None) -> bytes | None:
    """``parse_pubkey`` as a click callback, so that click's "Invalid value for 'PUBKEY'"
    names the argument."""
    return None if value is None else parse_pubkey(value)


def emit(data: Any, as_json: bool, text: str) -> None:
    """Print ``data`` as indented JSON with ``--json``, else the human-readable ``text``."""
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def targets(to: str | None, to_all: bool, what: str = "targets") -> list[str] | None:
    """``--to A,B,C`` as names, or None for ``--to-all`` (every admitted site); exactly one
    of the two must be given."""
    if bool(to) == to_all:
        raise click.UsageError(f"name the {what}: --to SITE[,SITE…] or --to-all")
    if to_all:
        return None
    return [s.strip() for s in (to or "").split(",") if s.strip()]


def echo_lines(lines: list[str]) -> None:
    for line in lines:
        click.echo(line)


def quiet_libp2p() -> None:
    """Silence py-libp2p's own loggers in one-shot commands.

    It logs every failed dial at ERROR ("Failed to open TCP stream…") straight to stderr;
    the command reports the outcome itself, in one line.
    """
    import logging

    import libp2p  # noqa: F401 - importing it (re)configures its loggers; quiet them after

    quiet = logging.getLogger("libp2p")
    quiet.setLevel(logging.CRITICAL + 1)
    quiet.addHandler(logging.NullHandler())


# --- the daemons' start (`ptm hub`, `ptm node`) ----------------------------------------------

listen_host_option = click.option(
    "--host", default="127.0.0.1", show_default=True, help="IP address to listen on."
)
verbose_option = click.option("-v", "--verbose", is_flag=True, help="Debug logging.")


def load_home(home: str | None) -> Home:
    """The identity at ``--home`` (or $PTM_HOME)."""
    return Home.load(resolve_home(home))


def check_daemon_home(identity: Home, role: str) -> None:
    """Refuse to start ``role``'s daemon on a configuration error or a home it cannot write
    (as `ptm config check` would say)."""
    from ptm_p2p.admin import daemons

    daemons.check_config(identity)
    daemons.check_writable(identity.path, role)


def run_daemon(identity: Home, role: str, verbose: bool, run: Callable[[], None]) -> None:
    """Log to stderr (debug with ``verbose``) and run the daemon until it stops; a damaged
    ledger copy is reported as such, naming what to do."""
    from ptm_p2p.admin import daemons
    from ptm_p2p.network.daemon_runner import setup_logging

    setup_logging(verbose)
    try:
        run()
    except LedgerError as exc:
        raise daemons.damaged_ledger(identity, exc, role) from exc


def client_options(f: Any) -> Any:
    """``--home``, ``--invitation`` and ``--json`` of a researcher's command that talks to
    the hub through ``ptm_p2p.client.Client`` (in this order in its help)."""
    f = json_option()(f)
    f = client_invitation_option()(f)
    return home_option(RESEARCHER_HOME_HELP)(f)


def open_client(home: str | None, invitation: str | None) -> Client:
    """The researcher's client for ``home`` and ``invitation``, libp2p's own logs quieted."""
    from ptm_p2p.client import Client

    quiet_libp2p()
    return Client(home, invitation)
