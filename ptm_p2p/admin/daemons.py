"""What an operator's ``ptm hub`` and ``ptm node`` check and keep in their home before the
daemon starts: a writable home, a valid config, the node's port file, where the hub last
wrote its invitation, and the message for a ledger copy that does not verify.

Each check refuses at once, in one line naming the file and the fix, rather than with a
traceback from the first file the daemon touches.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from ptm_p2p.errors import ConfigError, LedgerError, PtmError
from ptm_p2p.home import Home

# Where a hub remembers the invitation file it last wrote (an absolute path, one line), so a
# restart on another address without --invitation can warn that the file is stale.
INVITATION_RECORD = "invitation.last"
# Where a node keeps its TCP port across restarts, so the addresses other sites remember
# stay valid.
NODE_PORT_FILE = "node.port"


def check_writable(path: Path, role: str) -> None:
    """A daemon writes its ledger, status and lock in its home: refuse a home it cannot
    write (``ConfigError``)."""
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(
            f"home {path} is not writable ({exc.strerror}): a {role} keeps its ledger copy, "
            "status and lock there; make the folder writable by this user (or run as its "
            "owner), or choose another --home"
        ) from None


def check_config(identity: Home) -> Any:
    """The home's validated config.toml, data paths included: a daemon refuses to start on
    a configuration `ptm config check` would refuse (the file, the key, the fix)."""
    from ptm_p2p.config import load_config

    config = load_config(identity.path)
    problems = config.check_data()
    if problems:
        raise ConfigError("; ".join(problems) + " (check again with `ptm config check`)")
    return config


def damaged_ledger(identity: Home, exc: LedgerError, role: str) -> PtmError:
    """The start-up error for a ledger copy whose own entries do not verify; ``role`` is
    "hub" or "node", whose ways to recover differ."""
    path = identity.ledger_path
    if role == "node":
        recover = (
            "start the node again: it fetches a fresh copy from the hub and peers and "
            "verifies every entry"
        )
    else:
        recover = (
            "restore the log from a site's verified copy (`ptm ledger copy SITE_HOME "
            f"{path}`) and start the hub again"
        )
    return PtmError(
        f"{path}: this home's ledger copy holds an entry that does not verify ({exc}). The "
        "file was damaged or changed outside ptm; nothing in it is acted on. To recover, keep "
        f"it as evidence (`mv {path} {path}.bad`; `ptm audit {path}.bad` lists every bad "
        f"entry), then {recover}"
    )


def node_port(identity: Home, host: str) -> int:
    """The node's TCP port, kept in HOME/node.port: a free one the first time, then the same
    one at every restart."""
    from ptm_p2p.network.host import free_port

    port_file = identity.path / NODE_PORT_FILE
    try:
        port = int(port_file.read_text()) if port_file.exists() else free_port(host)
    except ValueError as exc:
        raise ConfigError(f"{port_file} does not hold a port number; fix it or delete it") from exc
    if not 0 < port < 65536:
        raise ConfigError(f"{port_file} holds {port}, not a TCP port; fix it or delete it")
    port_file.write_text(f"{port}\n")
    return port


def remember_invitation(identity: Home, host: str, port: int, written: Path | None) -> list[str]:
    """Record where the hub writes its invitation (``written``); the warnings to show when an
    earlier invitation no longer names this hub."""
    record = identity.path / INVITATION_RECORD
    previous: Path | None = None
    try:
        previous = Path(record.read_text().strip()) if record.exists() else None
    except OSError:
        previous = None
    if written is not None:
        record.write_text(f"{written.resolve()}\n")
        if previous is not None and previous != written.resolve() and previous.exists():
            return [
                f"the invitation is now written to {written}; {previous}, written by an "
                "earlier run, may be stale"
            ]
        return []
    if previous is None or not previous.exists():
        return []
    old = invitation_address(previous)
    if old is None:
        return []
    if port == 0 or old != (host, port):
        return [
            f"{previous} (the invitation an earlier run of this hub wrote) names "
            f"{old[0]}:{old[1]}, but this hub listens on {host}:{port or 'a random port'}: "
            "sites and the admin holding that file cannot reach it. Restart with "
            f"--invitation {previous} and send the new file to them"
        ]
    return []


def invitation_address(path: Path) -> tuple[str, int] | None:
    """(host, port) of an invitation file's hub address, without importing libp2p."""
    try:
        parts = str(json.loads(path.read_text())["hub_addr"]).split("/")
        return parts[2], int(parts[4])
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
