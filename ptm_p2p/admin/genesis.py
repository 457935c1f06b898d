"""The genesis entry: the admin names itself and the hub, and the log starts from it.

``create_genesis`` signs it as the admin and writes it to every target, checking first that
none exists: a second genesis would start a different log, so an existing file is never
overwritten (each is created exclusively), and a hub home that already holds a log gets none.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptm_p2p.errors import ConfigError
from ptm_p2p.home import Home
from ptm_p2p.ledger.entry import AuthorChain, Entry, genesis_payload
from ptm_p2p.ledger.store import SqliteStore


@dataclass(frozen=True)
class Genesis:
    """A signed genesis entry and the files it was written to."""

    entry: Entry
    origin: str
    admin_key: bytes
    hub_key: bytes
    written: list[Path] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "genesis": self.entry.hash.hex(),
            "admin": self.admin_key.hex(),
            "hub": self.hub_key.hex(),
            "written": [str(p) for p in self.written],
        }


def ledger_size(path: Path) -> int:
    """Entries in the ledger at ``path`` (0 if there is none), read without locking it."""
    if not path.exists():
        return 0
    store = SqliteStore(path, read_only=True)
    try:
        return store.size()
    finally:
        store.close()


def hub_key_of_home(hub_home: Path) -> bytes:
    """The public key of the hub home ``hub_home``, which must not run a log yet."""
    hub = Home.load(hub_home)
    held = ledger_size(hub.ledger_path)
    if held:
        entries = "1 entry" if held == 1 else f"{held} entries"
        raise ConfigError(
            f"the hub home {hub_home} already holds a log ({entries}): it runs a "
            "collaboration already. Use a fresh hub home (`ptm init`) for a new one"
        )
    return hub.public_key


def create_genesis(
    admin: Home,
    origin: str,
    admin_org: str,
    hub_key: bytes,
    hub_org: str,
    description: str | None,
    targets: Sequence[Path],
) -> Genesis:
    """Sign the genesis entry as ``admin`` and write it to each of ``targets``.

    Nothing is written when any target exists already (``ConfigError``); each file is
    created exclusively, so two racing admins cannot overwrite each other either.
    """
    if hub_key == admin.public_key:
        raise ConfigError("the admin and the hub must be different identities (two homes)")
    payload = genesis_payload(origin, admin.public_key, admin_org, hub_key, hub_org, description)
    entry = AuthorChain(admin.signer).append("genesis", payload, int(time.time() * 1000))
    for path in targets:
        if path.exists():
            raise ConfigError(
                f"{path} already exists: a genesis entry was made before (a second one would "
                "start a different log). Delete it first if you really mean to replace it"
            )
    written: list[Path] = []
    for path in targets:
        with open(path, "xb") as handle:  # "x": never overwrite, even in a race
            handle.write(entry.raw)
        written.append(path)
    return Genesis(entry, origin, admin.public_key, hub_key, written)
