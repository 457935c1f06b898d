"""The sync protocol's messages: one protocol id, a handful of typed request/response pairs.

Every request is a msgpack map ``{"v": 1, "op": NAME, ...fields}``; every response is either
``{"ok": True, ...fields}`` or ``{"ok": False, "error": CODE, "message": TEXT}``. Nothing here
knows about libp2p: the same messages could run over any framed byte stream.

Requests (see docs/network.md for the full table):

- ``hello``      {addrs, name}                  → {origin, size}; a peer says where it listens
- ``peers``      {}                             → {peers: [{id, addrs}]}: sites known to this peer
- ``checkpoint`` {at_least?}                    → {note}: latest (or first ≥ at_least) checkpoint
- ``wait``       {after, timeout_ms}            → {note}: long-poll until a checkpoint > after
- ``entries``    {start, end, old_size}         → {entries, note, proof}: raw entries [start, end)
  plus the signed checkpoint of size ``end`` and the consistency proof old_size → end
- ``submit``     {entries}                      → {indexes, size}: hub only
- ``head``       {author}                       → {seq, hash}: an author's last entry
- ``cosign``     {note}                         → {}: hand over a checkpoint with cosignatures
- ``evidence``   {kind, first, second, detail}  → {}: report a split view or equivocation
"""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass
from typing import Any, cast

from ptm_p2p.errors import ProtocolError
from ptm_p2p.errors import RemoteError as RemoteError

PROTOCOL_ID = "/ptm/sync/1.0.0"
VERSION = 1

MAX_ENTRIES_PER_REQUEST = 5_000
MAX_WAIT_MS = 30_000
MAX_NOTE = 64 * 1024
MAX_INT = 2**53  # sizes and indexes: anything larger is nonsense, not a real log


# Error codes: stable strings a client can switch on.
BAD_REQUEST = "bad-request"
UNKNOWN_OP = "unknown-op"
NOT_FOUND = "not-found"
REFUSED = "refused"
UNAVAILABLE = "unavailable"
INTERNAL = "internal"


@dataclass(frozen=True)
class Field:
    kind: type | tuple[type, ...]
    required: bool = True
    max_len: int | None = None


_SCHEMAS: dict[str, dict[str, Field]] = {
    "hello": {
        "addrs": Field(list, max_len=16),
        "name": Field(str, required=False, max_len=64),
    },
    "peers": {},
    "checkpoint": {"at_least": Field(int, required=False)},
    "wait": {"after": Field(int), "timeout_ms": Field(int)},
    "entries": {"start": Field(int), "end": Field(int), "old_size": Field(int)},
    "submit": {"entries": Field(list, max_len=MAX_ENTRIES_PER_REQUEST)},
    "head": {"author": Field(bytes, max_len=32)},
    "cosign": {"note": Field(str, max_len=MAX_NOTE)},
    "evidence": {
        "kind": Field(str, max_len=64),
        "first": Field(bytes, max_len=MAX_NOTE * 4),
        "second": Field(bytes, max_len=MAX_NOTE * 4),
        "detail": Field(str, max_len=4096),
    },
}

OPS = frozenset(_SCHEMAS)


def request(op: str, **fields: Any) -> dict[str, Any]:
    return {"v": VERSION, "op": op, **fields}


def shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: what a message may quote of a peer's bytes.

    Error messages end up in our log and in the answer; quoting a peer's 8 MiB op name whole
    would let anyone write 8 MiB to our log disk per request.
    """
    text = repr(value[: limit + 1] if isinstance(value, str | bytes) else value)
    if len(text) > limit:
        size = f" ({len(value)} long)" if isinstance(value, str | bytes) else ""
        return text[:limit] + "…" + size
    return text


def validate_request(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Check version, op and field types; return (op, fields) or raise ``ProtocolError``."""
    if message.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {shown(message.get('v'))}, expected 1")
    op = message.get("op")
    if not isinstance(op, str) or op not in _SCHEMAS:
        raise ProtocolError(f"unknown operation {shown(op)}", detail=UNKNOWN_OP)
    schema = _SCHEMAS[op]
    fields: dict[str, Any] = {}
    for name, spec in schema.items():
        if name not in message:
            if spec.required:
                raise ProtocolError(f"{op}: field {name!r} is missing")
            continue
        value: Any = message[name]
        # bool is an int in Python; never accept it where a number is expected.
        if not isinstance(value, spec.kind) or isinstance(value, bool):
            raise ProtocolError(f"{op}: field {name!r} must be {spec.kind}, got {type(value)}")
        if isinstance(value, int) and not 0 <= value <= MAX_INT:
            raise ProtocolError(f"{op}: field {name!r} out of range: {value}")
        if spec.max_len is not None and len(cast(Sized, value)) > spec.max_len:
            size = len(cast(Sized, value))
            raise ProtocolError(f"{op}: field {name!r} too long ({size} > {spec.max_len})")
        fields[name] = value
    extra = set(message) - set(schema) - {"v", "op"}
    if extra:
        names = sorted(shown(k, 40) for k in extra)
        raise ProtocolError(f"{op}: {len(extra)} unexpected field(s) {', '.join(names[:5])}")
    return op, fields


def ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": code, "message": message[:1000]}


def check_response(message: dict[str, Any]) -> dict[str, Any]:
    """Return a successful response or raise ``RemoteError`` / ``ProtocolError``."""
    status = message.get("ok")
    if status is True:
        return message
    if status is False:
        code = message.get("error")
        text = message.get("message")
        raise RemoteError(str(code)[:64], str(text)[:1000])
    raise ProtocolError("response has no boolean 'ok' field")
