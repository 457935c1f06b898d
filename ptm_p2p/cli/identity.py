"""CLI commands for identities: ``ptm init`` makes one, ``ptm id`` shows its public key.

An identity is a home folder (see ``ptm_p2p.home``): the Ed25519 seed in ``identity.key``
(mode 0600, never printed), ``config.toml`` and an empty ledger copy. The public key printed
here is what the collaboration's admin admits in a membership entry.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ptm_p2p.cli.common import home_option, json_option
from ptm_p2p.errors import ConfigError, PtmError
from ptm_p2p.home import CONFIG_FILE, KEY_FILE, Home, resolve_home

ROLES = ("admin", "hub", "site", "researcher", "auditor")

# Written, commented out, into every new config.toml: a site operator uncomments and edits it
# instead of copying a policy from the README (only a site reads [policy]; deny by default).
POLICY_TEMPLATE = """
# A site's policy: which images run here, for which researchers, on which data. Deny by
# default: without [policy] this site runs nothing. Uncomment, edit, then check it with
# `ptm config check --home HOME` (it also warns on publishers no admitted member has).
#
# [policy]
# images = ["127.0.0.1:5000/ptm/summary"]   # image repositories (any digest) or REPO@sha256:…
# publishers = ["uni-research"]             # researchers' --org as admitted, or their keys
# min_group_size = 5                        # no aggregate over fewer patients
#
# [policy.data]                             # data sources by label, mounted read-only
# gbsg2 = "/srv/ptm-data/gbsg2.csv"
#
# [policy.limits]                           # sizes need a unit: "512m", "2g"
# memory = "512m"
# timeout = 600                             # seconds; also cpus, pids, output, logs, tmp
#
# [tasks]
# parallel = 1                              # tasks run at once (1-64)
"""


@click.command("init")
@home_option("Folder for the new identity (default: $PTM_HOME); created if missing.", as_path=True)
@click.option(
    "--name",
    required=True,
    help="Organisation name: 1-64 letters, digits, '.', '_' or '-' (e.g. hospital-a).",
)
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default=None,
    help="What this identity will be; only tailors the next steps printed (nothing is stored: "
    "the role comes from the log).",
)
@json_option()
def init_command(home: Path | None, name: str, role: str | None, as_json: bool) -> None:
    """Create a new identity: a private key, config.toml and an empty ledger copy.

    The private key is written with mode 0600 and never printed. What comes next depends on
    the role: the admin creates the collaboration, the hub is named by the admin, and sites,
    researchers and auditors give their public key to the admin to be admitted.

    \b
    Examples:
      ptm init --home ~/.ptm/hospital-a --name hospital-a --role site
      ptm init --home admin --name admin --role admin
    """
    path = resolve_home(home)
    created = Home.init(path, name, POLICY_TEMPLATE)
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
    click.echo("Next:")
    for line in next_steps(created.path, role):
        click.echo(f"  {line}")


def next_steps(home: Path, role: str | None) -> list[str]:
    """What to do after ``ptm init``, for one role or (role unknown) for each."""
    steps = {
        "admin": [
            "as the admin: create the collaboration, naming its hub (a separate home):",
            f"  ptm collab create --home {home} --hub-home HUB_HOME --origin example.org/study "
            "--org ORG",
        ],
        "hub": [
            "as the hub: the admin names this home in `ptm collab create --hub-home "
            f"{home}` (or this key with --hub-key); then start it:",
            f"  ptm hub --home {home} --port 4001 --invitation invite.json",
        ],
        "site": [
            "as a site: give the public key to the collaboration's admin (`ptm collab admit "
            "--role site`), write [policy] in config.toml, check it, and start:",
            f"  ptm config check --home {home} && ptm node --home {home} --invitation invite.json",
        ],
        "researcher": [
            "as a researcher: give the public key to the collaboration's admin "
            "(`ptm collab admit --role researcher`)",
        ],
        "auditor": [
            "as an auditor: give the public key to the collaboration's admin (`ptm collab "
            "admit --role auditor`), then audit copies of the log with `ptm audit`",
        ],
    }
    if role is not None:
        return steps[role]
    return [line for r in ROLES for line in steps[r]]


@click.command("id")
@home_option(as_path=True)
@json_option("Print JSON (name, public_key, home).")
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


@click.group("config")
def config_group() -> None:
    """Check a home's config.toml before starting a daemon on it.

    \b
    Example:
      ptm config check --home ~/.ptm/hospital-a
    """


@config_group.command("check")
@home_option(as_path=True)
@json_option("Print the checked settings as JSON.")
def config_check(home: Path | None, as_json: bool) -> None:
    """Validate HOME/config.toml as `ptm node` does when it starts.

    Unknown sections or keys, values of the wrong type and data paths that are missing, not
    files or folders of the site's own, or unreadable by the task user are each reported
    with the file, the key and what to write instead. Exit 0 when all is well, 1 otherwise.

    \b
    Examples:
      ptm config check --home ~/.ptm/hospital-a
      PTM_HOME=~/.ptm/hospital-a ptm config check --json
    """
    from ptm_p2p.config import load_config

    path = resolve_home(home)
    config = load_config(path)
    problems = config.check_data()
    members = _known_members(path)
    warnings = config.check_publishers(members) if members is not None else []
    policy = config.policy
    images = sorted([*policy.repositories, *policy.pinned, *policy.digests])
    data = {
        "config": str(config.path),
        "name": config.name,
        "ok": not problems,
        "problems": problems,
        # publishers that name no admitted researcher (None: no log copy to compare with)
        "warnings": warnings,
        "publishers_checked": members is not None,
        "policy": {
            "images": images,
            "publishers": sorted(policy.publishers),
            "data": {label: str(p) for label, p in sorted(policy.data.items())},
            "min_group_size": policy.min_group_size,
            # None: no disclosure control (exact answers); else the time lattice
            "time_resolution": policy.time_resolution,
            "limits": policy.limits.to_dict(),
        },
        "tasks": {"parallel": config.tasks_parallel},
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"{config.path}: name {config.name!r}")
        click.echo(
            f"  images      {', '.join(images) or 'none (this site runs no task: deny by default)'}"
        )
        click.echo(f"  publishers  {', '.join(sorted(policy.publishers)) or 'none'}")
        click.echo(f"  data        {', '.join(sorted(policy.data)) or 'none'}")
        click.echo(f"  tasks       {config.tasks_parallel} at a time")
        if members is None and policy.publishers:
            click.echo(
                "  (publishers not compared with the members: this home's ledger copy is "
                "empty until `ptm node` has run)"
            )
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        click.echo("config ok" if not problems else f"{len(problems)} problem(s)")
    if problems:
        raise SystemExit(1)


def _known_members(home: Path) -> dict[str, str] | None:
    """Unrevoked members of this home's ledger copy: organisation and key hex -> role
    (None when the copy is empty or unreadable: nothing to compare with)."""
    from ptm_p2p.ledger_copy import read_only_copy
    from ptm_p2p.network.home_status import members_state

    try:
        with read_only_copy(home) as store:
            state = members_state(store)
    except PtmError:  # no copy, or an unreadable one
        return None
    if state is None:
        return None
    known: dict[str, str] = {}
    for member in state.members.values():
        if member.revoked_at is None:
            known[member.key.hex()] = member.role
            # one name held by a researcher and by another role: the researcher counts
            if known.get(member.org) != "researcher":
                known[member.org] = member.role
    return known


def register(main: click.Group) -> None:
    """Add ``init``, ``id`` and ``config`` to the ``ptm`` group."""
    main.add_command(init_command)
    main.add_command(id_command)
    main.add_command(config_group)
