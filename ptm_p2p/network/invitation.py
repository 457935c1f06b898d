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
from typing import Annotated

import msgspec

from ptm_p2p.atomic_file import write_bytes_atomic
from ptm_p2p.errors import ConfigError, PtmError
from ptm_p2p.network.host import parse_peer_addr, peer_id_of
from ptm_p2p.strict_decode import Problem, convert, describe

HINT = "ask the hub operator for the file `ptm hub --invitation FILE` wrote"


@dataclass(frozen=True)
class Invitation:
    hub_addr: str
    hub_key: bytes
    origin: str

    def __post_init__(self) -> None:
        if len(self.hub_key) != 32:
            raise ConfigError(
                "invitation: field hub_key must be a 32-byte Ed25519 key (64 hex digits)"
            )
        try:
            info = parse_peer_addr(self.hub_addr)
        except PtmError as exc:
            raise ConfigError(f"invitation: field hub_addr: {exc}") from exc
        if info.peer_id != peer_id_of(self.hub_key):
            raise ConfigError(
                "invitation: the hub address's peer id does not belong to hub_key; the file "
                "was altered or mixes two hubs — ask the hub operator for a fresh one"
            )

    def to_json(self) -> str:
        fields = InvitationFile(self.hub_addr, self.hub_key.hex(), self.origin)
        return msgspec.json.format(msgspec.json.encode(fields), indent=2).decode() + "\n"

    def save(self, path: Path) -> None:
        write_bytes_atomic(Path(path), self.to_json().encode())

    @classmethod
    def load(cls, path: Path) -> Invitation:
        """Read an invitation file; every problem is a ``ConfigError`` naming file and field."""
        try:
            text = Path(path).read_text()
        except FileNotFoundError as exc:
            raise ConfigError(f"invitation file {path} does not exist") from exc
        except UnicodeDecodeError:
            raise ConfigError(f"{path} is not a ptm invitation: it is not text; {HINT}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read invitation file {path}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path} is not a ptm invitation: it is not JSON (error at line {exc.lineno}); "
                + HINT
            ) from None
        fields = convert(data, InvitationFile, lambda problem: _invalid(path, problem))
        try:
            key = bytes.fromhex(fields.hub_key)
        except ValueError:
            raise ConfigError(
                f"{path}: field hub_key must be 64 hex digits (the hub's public key), "
                f"got {fields.hub_key[:80]!r}"
            ) from None
        try:
            return cls(fields.hub_addr, key, fields.origin)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {str(exc).removeprefix('invitation: ')}") from exc


NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class InvitationFile(msgspec.Struct):
    """The file's fields as written (unknown keys are ignored: a newer hub may add some)."""

    hub_addr: NonEmpty
    hub_key: NonEmpty  # hex
    origin: NonEmpty


def _invalid(path: Path, problem: Problem) -> ConfigError:
    if not problem.where and problem.kind == "invalid":  # a list, a number…: not ours at all
        return ConfigError(
            f"{path} is not a ptm invitation: it {describe(problem)} with hub_addr, hub_key "
            "and origin; " + HINT
        )
    return ConfigError(f"{path}: {describe(problem)}; {HINT}")
