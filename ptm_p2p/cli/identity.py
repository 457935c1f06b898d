"""CLI commands for identities: ``ptm init`` makes one, ``ptm id`` shows its public key.

An identity is a home folder (see ``ptm_p2p.home``): the Ed25519 seed in ``identity.key``
(mode 0600, never printed), ``config.toml`` and an empty ledger copy. The public key printed
here is what the collaboration's admin admits in a membership entry.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ptm_p2p.errors import ConfigError
from ptm_p2p.home import CONFIG_FILE, KEY_FILE, Home, resolve_home


@click.command("init")
@click.option(
    "--home",
    "home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for the new identity (default: $PTM_HOME); created if missing.",
)
@click.option(
    "--name",
    required=True,
    help="Organisation name: 1-64 letters, digits, '.', '_' or '-' (e.g. hospital-a).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def init_command(home: Path | None, name: str, as_json: bool) -> None:
    """Create a new identity: a private key, config.toml and an empty ledger copy.

    The private key is written with mode 0600 and never printed. Give the printed public key
    to the collaboration's admin, who admits it with a role.

    \b
    Example:
      ptm init --home ~/.ptm/hospital-a --name hospital-a
    """
    path = resolve_home(home)
    created = Home.init(path, name)
    public_key = created.public_key.hex()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "name": created.name,
                    "public_key": public_key,
                    "home": str(created.path),
                    "key_file": str(created.path / KEY_FILE),
                    "config": str(created.config_path),
                    "ledger": str(created.ledger_path),
                },
                indent=2,
            )
        )
        return
    click.echo(f"created identity {created.name!r} in {created.path}")
    click.echo(f"  public key  {public_key}")
    click.echo(f"  private key {created.path / KEY_FILE} (mode 0600; keep it secret, back it up)")
    click.echo(f"  config      {created.path / CONFIG_FILE}")
    click.echo(f"  ledger      {created.ledger_path}")
    click.echo("Send the public key to the collaboration's admin to be admitted.")


@click.command("id")
@click.option(
    "--home",
    "home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Identity folder (default: $PTM_HOME).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (name, public_key, home).")
def id_command(home: Path | None, as_json: bool) -> None:
    """Print this identity's public key (hex) — never the private key.

    \b
    Examples:
      ptm id --home ~/.ptm/hospital-a
      PTM_HOME=~/.ptm/hospital-a ptm id --json
    """
    path = resolve_home(home)
    if not path.is_dir():
        raise ConfigError(
            f"{path} does not exist: run `ptm init --home {path} --name NAME` to create it"
        )
    loaded = Home.load(path)
    public_key = loaded.public_key.hex()
    if as_json:
        click.echo(
            json.dumps({"name": loaded.name, "public_key": public_key, "home": str(loaded.path)})
        )
    else:
        click.echo(public_key)


def register(main: click.Group) -> None:
    """Add ``init`` and ``id`` to the ``ptm`` group."""
    main.add_command(init_command)
    main.add_command(id_command)
