"""The invitation file: what a new site or researcher needs to join a collaboration.

It holds the hub's peer address (a multiaddr ending in /p2p/PEERID), the hub's Ed25519 key
and the log's origin. The key is checked against the peer id (they come from the same seed)
and, once the genesis entry arrives, against the hub key the genesis names. Written by
``ptm hub --invitation FILE``; read by ``ptm node --join FILE`` and the client commands.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ptm_p2p.errors import ConfigError, PtmError
from ptm_p2p.network.host import parse_peer_addr, peer_id_of


@dataclass(frozen=True)
class Invitation:
    hub_addr: str
    hub_key: bytes
    origin: str

    def __post_init__(self) -> None:
        if len(self.hub_key) != 32:
            raise ConfigError("invitation: hub_key must be a 32-byte Ed25519 key (64 hex digits)")
        try:
            info = parse_peer_addr(self.hub_addr)
        except PtmError as exc:
            raise ConfigError(f"invitation: {exc}") from exc
        if info.peer_id != peer_id_of(self.hub_key):
            raise ConfigError(
                "invitation: the hub address's peer id does not belong to hub_key; the file "
                "was altered or mixes two hubs — ask the hub operator for a fresh one"
            )

    def to_json(self) -> str:
        return (
            json.dumps(
                {"hub_addr": self.hub_addr, "hub_key": self.hub_key.hex(), "origin": self.origin},
                indent=2,
            )
            + "\n"
        )

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: Path) -> Invitation:
        try:
            data = json.loads(Path(path).read_text())
            return cls(str(data["hub_addr"]), bytes.fromhex(data["hub_key"]), str(data["origin"]))
        except FileNotFoundError as exc:
            raise ConfigError(f"invitation file {path} does not exist") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path} is not a ptm invitation (JSON with hub_addr, hub_key, origin): {exc}"
            ) from exc
