"""The small state files a home keeps beside its ledger: one typed struct each, one writer,
one failure policy each.

Every file is decoded strictly into a msgspec struct (``strict_decode.py``), so a problem is
reported with the file and the field (``HOME/witness.json: field root: expected `str`
matching …``), and written through one atomic writer (``atomic_file.write_bytes_atomic``:
readers see the old or the new file, never half). ``config.toml`` is decoded the same way in
``config.py`` (its messages also give the form expected and the closest known key).

=================  ===============================  =========  =================================
file               written by / read by             missing    corrupt (not JSON, wrong form)
=================  ===============================  =========  =================================
witness.json       the site when it cosigns          never      FATAL: the site refuses to start
                   (durable) / the site at start     cosigned   (it could cosign a checkpoint
                                                                inconsistent with one it vouched
                                                                for); restore or delete by hand
distrusted.json    the trust registry when it        none       WARN and start empty: a liar is
                   refuses a peer (durable) / it,    refused    caught again by the same checks
                   at start
peers.json         the site's peer book / the same,  none       WARN and start empty: the hub
                   at start                          known      lists the members again
pardoned.json      ``ptm hub --pardon`` (durable) /  none       FATAL (``HomeFileError``): a
                   the hub at start, ``ptm audit``   pardoned   pardon silently lost would
                                                                refuse an honest author
status.json        every daemon, each second and     no daemon  the daemon counts as not
                   when it stops or fails / ``ptm    has run    running (it was seen); ``ptm
                   status``                                     status`` still shows the ledger
invitation.json    ``ptm hub --invitation`` /        FATAL      FATAL, naming the field
                   ``ptm node``, the client                     (``network/invitation.py``)
config.toml        ``ptm init``, the operator /      FATAL      FATAL, naming key and form, with
                   everything (``config.py``)                   "did you mean" for unknown keys
=================  ===============================  =========  =================================

The loaders return typed values; only the trust registry and the peer book turn them into
their own records (their address checks need libp2p, which this module must not import).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from ptm_p2p.atomic_file import write_bytes_atomic
from ptm_p2p.errors import ConfigError
from ptm_p2p.strict_decode import convert, describe

log = logging.getLogger(__name__)

T = TypeVar("T")

WITNESS_FILE = "witness.json"
DISTRUST_FILE = "distrusted.json"
PEERS_FILE = "peers.json"
PARDON_FILE = "pardoned.json"
STATUS_FILE = "status.json"

KeyHex = Annotated[str, msgspec.Meta(pattern="^[0-9a-fA-F]{64}$")]


class HomeFileError(ConfigError):
    """A home file is unreadable, not JSON, or not of its form (the message names the file
    and the field)."""


def read_json(path: Path, type_: type[T]) -> T | None:
    """``path`` decoded strictly as ``type_``; None when the file does not exist."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HomeFileError(f"{path} cannot be read: {exc.strerror}") from exc
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise HomeFileError(f"{path} is not JSON ({exc})") from None
    return convert(data, type_, lambda problem: HomeFileError(f"{path}: {describe(problem)}"))


def write_json(path: Path, value: Any, *, durable: bool = False) -> None:
    """``value`` (a struct or builtins) as indented JSON in ``path``, atomically."""
    encoded = msgspec.json.encode(value, enc_hook=str)
    write_bytes_atomic(path, msgspec.json.format(encoded, indent=2) + b"\n", durable=durable)


def _warn_and_empty(path: Path, type_: type[T], consequence: str) -> T | None:
    """The policy of files whose loss costs little: a corrupt one is reported, not fatal."""
    try:
        return read_json(path, type_)
    except HomeFileError as exc:
        log.warning("%s; %s", exc, consequence)
        return None


def _read_or_stop(path: Path, type_: type[T], advice: str) -> T | None:
    """The policy of files whose loss is unsafe: a corrupt one stops, naming file, field
    and what to do (``advice``, after the problem)."""
    try:
        return read_json(path, type_)
    except HomeFileError as exc:
        raise HomeFileError(f"{exc}; {advice}") from None


# --- witness.json: the last checkpoint this site cosigned (fatal) ------------------------------


class WitnessRecord(msgspec.Struct, forbid_unknown_fields=True):
    size: Annotated[int, msgspec.Meta(ge=0)]
    root: KeyHex  # the tree's root hash, hex (32 bytes, as a key)


def load_witness(home: Path) -> tuple[int, bytes] | None:
    """The size and root this site last cosigned; None if it never cosigned."""
    # Starting over would let us cosign a checkpoint inconsistent with one we already
    # vouched for: refuse to guess.
    advice = (
        "it records the last checkpoint this site cosigned. Restore it from a backup, or "
        "delete it only if you are sure this witness key never cosigned a checkpoint of "
        "another log view"
    )
    record = _read_or_stop(home / WITNESS_FILE, WitnessRecord, advice)
    return None if record is None else (record.size, bytes.fromhex(record.root))


def save_witness(home: Path, size: int, root: bytes) -> None:
    write_json(home / WITNESS_FILE, WitnessRecord(size, root.hex()), durable=True)


# --- distrusted.json: peers refused for serving bad ranges (warn) ------------------------------


class DistrustedPeer(msgspec.Struct, forbid_unknown_fields=True):
    reason: str
    since: float = 0.0


def load_distrusted(path: Path) -> dict[str, DistrustedPeer]:
    """Peers refused in earlier runs, by peer id (empty when missing or unreadable)."""
    consequence = (
        "peers refused in earlier runs are trusted again until they serve a bad range again"
    )
    return _warn_and_empty(path, dict[str, DistrustedPeer], consequence) or {}


def save_distrusted(path: Path, refused: dict[str, DistrustedPeer]) -> None:
    # Durable: the whole point is that the refusal outlives a crash or restart.
    write_json(path, refused, durable=True)


# --- peers.json: where members listen (warn) ---------------------------------------------------


class PeerEntry(msgspec.Struct, forbid_unknown_fields=True):
    addrs: list[str]
    name: str = ""


def load_peers(path: Path) -> dict[str, PeerEntry]:
    """Saved peer addresses, by peer id (empty when missing or unreadable)."""
    return _warn_and_empty(path, dict[str, PeerEntry], "starting with no known peers") or {}


def save_peers(path: Path, peers: dict[str, PeerEntry]) -> None:
    write_json(path, peers)


# --- pardoned.json: authors the hub operator pardoned (fatal) ----------------------------------


class Pardons(msgspec.Struct, forbid_unknown_fields=True):
    keys: list[KeyHex]


def load_pardons(home: Path) -> list[bytes]:
    """Keys the hub operator pardoned for an honest equivocation (``ptm hub --pardon``)."""
    advice = "it should list the pardoned keys; fix or remove it"
    pardons = _read_or_stop(home / PARDON_FILE, Pardons, advice)
    return [] if pardons is None else [bytes.fromhex(key) for key in pardons.keys]


def add_pardons(home: Path, keys: Iterable[bytes]) -> list[bytes]:
    """Record pardons durably (they hold across restarts); returns every pardoned key."""
    merged = list(dict.fromkeys([*load_pardons(home), *keys]))
    write_json(home / PARDON_FILE, Pardons([k.hex() for k in merged]), durable=True)
    return merged


# --- status.json: what a running daemon knows (advisory) ---------------------------------------


class DaemonStatus(msgspec.Struct):
    """What ``ptm status`` reads of a daemon's status file. Unknown keys are ignored (each
    role writes its own); a key the daemon did not write stays ``UNSET``."""

    updated: float = 0.0
    pid: int | None = None
    stopped: float | UnsetType = UNSET
    role: str | UnsetType = UNSET
    address: str | UnsetType = UNSET
    connected: list[str] | UnsetType = UNSET
    cosigners: list[str] | UnsetType = UNSET
    error: str | None | UnsetType = UNSET
    distrusted: dict[str, str] | UnsetType = UNSET
    # Role-specific figures, shown as the daemon wrote them.
    lag: Any = UNSET
    hub_up: Any = UNSET
    known_peers: Any = UNSET
    witness_size: Any = UNSET
    split_view: Any = UNSET
    sequenced: Any = UNSET
    blobs: Any = UNSET
    tasks: Any = UNSET
    local_fault: Any = UNSET
    not_admitted: Any = UNSET
    public_log: Any = UNSET
    refused_non_members: Any = UNSET

    def shown(self) -> dict[str, Any]:
        """The keys the daemon wrote that ``ptm status`` passes on (``updated``, ``pid`` and
        ``cosigners`` are read, not shown as they are)."""
        written = msgspec.structs.asdict(self)
        return {
            key: value
            for key, value in written.items()
            if value is not UNSET and key not in ("updated", "pid", "cosigners")
        }


def read_status(home: Path) -> DaemonStatus | None:
    """The daemon's status file; None if no daemon ever wrote one. A corrupt file reads as
    an empty status (the daemon then counts as not running)."""
    try:
        return read_json(home / STATUS_FILE, DaemonStatus)
    except HomeFileError:
        return DaemonStatus()


def write_status(home: Path, data: dict[str, Any]) -> None:
    """Rewritten every second: atomic, not fsynced."""
    write_json(home / STATUS_FILE, data)


def mark_stopped(home: Path) -> None:
    """Say in the status file that the daemon stopped, so ``ptm status`` knows at once."""
    path = home / STATUS_FILE
    try:
        data = read_json(path, dict[str, Any])
        if data is None:  # no daemon wrote one: nothing to correct
            return
        data.update(stopped=time.time(), connected=[])
        write_status(home, data)
    except (OSError, HomeFileError):
        with contextlib.suppress(OSError):
            path.unlink()


def write_failed_status(home: Path, role: str, error: str) -> None:
    """Why a daemon stopped at start (a damaged ledger copy, a bad policy), for ``ptm
    status``: the operator should not have to dig through logs."""
    write_status(home, {"role": role, "stopped": time.time(), "error": error, "updated": 0})
