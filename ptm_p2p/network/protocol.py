"""The sync protocol's messages: one protocol id, a handful of typed request/response pairs.

Every request is a msgpack map ``{"v": 1, "op": NAME, ...fields}``; every response is either
``{"ok": True, ...fields}`` or ``{"ok": False, "error": CODE, "message": TEXT}`` (a refusal
of a non-member also carries ``"refusal": "not-member"``, see ``not_member``). Nothing here
knows about libp2p: the same messages could run over any framed byte stream.

Each request and each successful response is a typed msgspec Struct below (``EntriesRequest``
→ ``EntriesReply`` …): strict (no unknown fields, no bool for a number, numbers and lengths in
range), checked in one pass. ``parse_request`` is what a server applies to what arrives;
``parse_reply`` is what a client applies to the answer, so no caller reads an unchecked map.

Requests (see docs/network.md for the full table):

- ``hello``      {addrs, name}                  → {origin, size}; a peer says where it listens
- ``peers``      {}                             → {peers: [{id, addrs, name}]}: active members
- ``checkpoint`` {at_least?}                    → {note, size}: latest (or first ≥ at_least)
- ``wait``       {after, timeout_ms}            → {note, size}: long-poll until a checkpoint > after
- ``entries``    {start, end, old_size}         → {entries, note, proof}: raw entries [start, end)
  plus the signed checkpoint of size ``end`` and the consistency proof old_size → end
- ``submit``     {entries}                      → {indexes, size}: hub only
- ``head``       {author}                       → {seq, hash}: an author's last entry
- ``cosign``     {note}                         → {added}: cosignatures merged from the note
- ``evidence``   {kind, first, second, detail}  → {confirmed}: whether the receiver checked it
- ``consistency`` {old_size, new_size}          → {old, new, proof}: the two signed checkpoints
  and the RFC 9162 consistency proof between them, for anyone (it reveals no entry)
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Generic, TypeVar, cast

import msgspec
import msgspec.inspect

from ptm_p2p.errors import MalformedAnswer, NotAMember, ProtocolError
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
# Why a ``refused`` error was given, when a client should act on it (the optional ``refusal``
# field of the error map; peers of the first version ignore it and see a plain refusal).
NOT_MEMBER = "not-member"


# --- typed messages -------------------------------------------------------------------------
# Every request and every successful response is a msgspec Struct: the schema is the class,
# checked strictly (no unknown fields, no bool where a number belongs, numbers in range,
# bounded lengths) in one C pass. A request class names its response class (``reply``), so a
# caller gets a typed answer back (``PeerClient.ask``) instead of a dict checked ad hoc.

Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
Note = Annotated[str, msgspec.Meta(max_length=MAX_NOTE)]
R = TypeVar("R", bound="Reply")


class Reply(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A successful response: ``{"ok": True, ...fields}`` on the wire."""

    ok: bool = True


class HelloReply(Reply):
    origin: str | None
    size: Count


class PeerAddress(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    addrs: list[str]
    name: str = ""


class PeersReply(Reply):
    peers: list[PeerAddress]


class CheckpointReply(Reply):
    """The answer to ``checkpoint`` and ``wait``: a hub-signed note (None before the first)."""

    note: str | None
    size: Count


class EntriesReply(Reply):
    entries: list[bytes]
    note: str
    proof: list[bytes]


class SubmitReply(Reply):
    indexes: list[Count]
    size: Count


class HeadReply(Reply):
    seq: Count
    hash: bytes


class CosignReply(Reply):
    added: Count


class EvidenceReply(Reply):
    confirmed: bool


class ConsistencyReply(Reply):
    old: Note
    new: Note
    proof: Annotated[list[bytes], msgspec.Meta(max_length=128)]


class Request(
    msgspec.Struct,
    Generic[R],
    kw_only=True,
    frozen=True,
    forbid_unknown_fields=True,
    tag_field="op",
):
    """A request: ``{"v": 1, "op": NAME, ...fields}`` on the wire; ``reply`` is its answer."""

    v: int = VERSION
    reply: ClassVar[type[Reply]]

    @property
    def op(self) -> str:
        return str(type(self).__struct_config__.tag)


class HelloRequest(Request[HelloReply], tag="hello", frozen=True):
    # Kept loose (any item): a peer's addresses are filtered one by one where they are used.
    addrs: Annotated[list[Any], msgspec.Meta(max_length=16)]
    name: Annotated[str, msgspec.Meta(max_length=64)] = ""
    reply = HelloReply


class PeersRequest(Request[PeersReply], tag="peers", frozen=True):
    reply = PeersReply


class CheckpointRequest(Request[CheckpointReply], tag="checkpoint", frozen=True):
    # Left out of the message when not given (UNSET), as peers of the first protocol
    # version require: they refuse a nil where they expect a number.
    at_least: Count | msgspec.UnsetType = msgspec.UNSET
    reply = CheckpointReply


class WaitRequest(Request[CheckpointReply], tag="wait", frozen=True):
    after: Count
    timeout_ms: Count
    reply = CheckpointReply


class EntriesRequest(Request[EntriesReply], tag="entries", frozen=True):
    start: Count
    end: Count
    old_size: Count
    reply = EntriesReply


class SubmitRequest(Request[SubmitReply], tag="submit", frozen=True):
    # Items are checked by the hub (``submit: entry N is not bytes``), with their index.
    entries: Annotated[list[Any], msgspec.Meta(max_length=MAX_ENTRIES_PER_REQUEST)]
    reply = SubmitReply


class HeadRequest(Request[HeadReply], tag="head", frozen=True):
    author: Annotated[bytes, msgspec.Meta(max_length=32)]
    reply = HeadReply


class CosignRequest(Request[CosignReply], tag="cosign", frozen=True):
    note: Note
    reply = CosignReply


class EvidenceRequest(Request[EvidenceReply], tag="evidence", frozen=True):
    kind: Annotated[str, msgspec.Meta(max_length=64)]
    first: Annotated[bytes, msgspec.Meta(max_length=MAX_NOTE * 4)]
    second: Annotated[bytes, msgspec.Meta(max_length=MAX_NOTE * 4)]
    detail: Annotated[str, msgspec.Meta(max_length=4096)]
    reply = EvidenceReply


class ConsistencyRequest(Request[ConsistencyReply], tag="consistency", frozen=True):
    """Added in this version (a first-version peer answers ``unknown-op``): what a key that
    is not a member may still check — that two checkpoints the hub signed are one history."""

    old_size: Count
    new_size: Count
    reply = ConsistencyReply


REQUESTS: dict[str, type[Request[Any]]] = {
    str(cls.__struct_config__.tag): cls
    for cls in (
        HelloRequest,
        PeersRequest,
        CheckpointRequest,
        WaitRequest,
        EntriesRequest,
        SubmitRequest,
        HeadRequest,
        CosignRequest,
        EvidenceRequest,
        ConsistencyRequest,
    )
}
OPS = frozenset(REQUESTS)
# Field names of each request, and the required ones (checked by hand, for clear messages).
_FIELDS = {
    op: {f.name: f.required for f in msgspec.structs.fields(cls) if f.name != "v"}
    for op, cls in REQUESTS.items()
}


def _limits(kind: Any) -> tuple[int | None, int | None]:
    """(maximum length, maximum number) of a field's msgspec type, for error messages."""
    for option in getattr(kind, "types", (kind,)):  # a union: int | UNSET
        if isinstance(option, msgspec.inspect.IntType):
            return None, option.le
        if hasattr(option, "max_length"):
            return option.max_length, None
    return None, None


_LIMITS = {
    op: {
        f.name: _limits(f.type)
        for f in cast(msgspec.inspect.StructType, msgspec.inspect.type_info(cls)).fields
    }
    for op, cls in REQUESTS.items()
}


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


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def parse_request(message: dict[str, Any]) -> Request[Any]:
    """Check version, op and fields of a decoded request; the typed request or ``ProtocolError``.

    Version, op, missing and unexpected fields are checked here (so their messages say which
    field, in our words); types, ranges and lengths by msgspec against the request's class.
    """
    if message.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {shown(message.get('v'))}, expected 1")
    op = message.get("op")
    if not isinstance(op, str) or op not in REQUESTS:
        raise ProtocolError(f"unknown operation {shown(op)}", detail=UNKNOWN_OP)
    fields = _FIELDS[op]
    for name, required in fields.items():
        if required and name not in message:
            raise ProtocolError(f"{op}: field {name!r} is missing")
    extra = set(message) - set(fields) - {"v", "op"}
    if extra:
        names = sorted(shown(k, 40) for k in extra)
        raise ProtocolError(f"{op}: {len(extra)} unexpected field(s) {', '.join(names[:5])}")
    try:
        parsed: Request[Any] = msgspec.convert(message, REQUESTS[op], strict=True)
        return parsed
    except msgspec.ValidationError as exc:
        raise ProtocolError(_in_our_words(op, message, exc)) from exc


def _in_our_words(op: str, message: dict[str, Any], exc: msgspec.ValidationError) -> str:
    """msgspec's complaint about a request field, said as this protocol always said it:
    "entries: field 'start' out of range: -1", "head: field 'author' too long (33 > 32)",
    "wait: field 'after' must be int, got bool"."""
    found = re.search(r"- at `\$\.(\w+)`$", str(exc))
    name = found.group(1) if found else ""
    if name not in _LIMITS[op]:
        return f"{op}: {_cut(str(exc))}"
    value, (max_len, max_int) = message[name], _LIMITS[op][name]
    if isinstance(value, int) and not isinstance(value, bool) and max_int is not None:
        return f"{op}: field {name!r} out of range: {_cut(str(value), 40)}"
    if isinstance(value, str | bytes | list) and max_len is not None and len(value) > max_len:
        return f"{op}: field {name!r} too long ({len(value)} > {max_len})"
    wanted = re.match(r"Expected `(\w+)`", str(exc))
    kind = wanted.group(1) if wanted else "another type"
    kind = {"array": "list", "object": "map"}.get(kind, kind)
    return f"{op}: field {name!r} must be {kind}, got {type(value).__name__}"


def validate_request(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``parse_request`` as (op, the fields the message carried)."""
    parsed = parse_request(message)
    fields = {name: getattr(parsed, name) for name in _FIELDS[parsed.op] if name in message}
    return parsed.op, fields


def encode_message(message: Request[Any] | Reply | dict[str, Any]) -> bytes:
    """A request, a typed reply or an error map as msgpack (bytes stay bytes, str stays str)."""
    return msgspec.msgpack.encode(message)


def as_map(message: Request[Any] | Reply | dict[str, Any]) -> dict[str, Any]:
    """A typed message as the map it is on the wire (bytes stay bytes), for loose readers."""
    if isinstance(message, dict):
        return message
    return cast(dict[str, Any], msgspec.to_builtins(message, builtin_types=(bytes,)))


def parse_reply(request: Request[R], message: dict[str, Any]) -> R:
    """A successful, well-formed answer to ``request``; else ``RemoteError`` (the peer said
    no) or ``MalformedAnswer`` (what it said is not the reply type of the request)."""
    check_response(message)
    try:
        return cast(R, msgspec.convert(message, request.reply, strict=True))
    except msgspec.ValidationError as exc:
        raise MalformedAnswer(f"malformed {request.op} answer: {_cut(str(exc))}") from exc


def ok(**fields: Any) -> dict[str, Any]:
    return {"ok": True, **fields}


def error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": code, "message": message[:1000]}


def not_member(message: str, revoked_at: int | None = None) -> dict[str, Any]:
    """The refusal of a request only members may make: a ``refused`` error (what peers of
    the first version understand) that says why in its ``refusal`` field, and for a revoked
    key the log index of its revocation (``revoked_at``), so a revoked site can stop its work
    without the revocation entry it is no longer served."""
    refusal = {**error(REFUSED, message), "refusal": NOT_MEMBER}
    if revoked_at is not None:
        refusal["revoked_at"] = revoked_at
    return refusal


def check_response(message: dict[str, Any]) -> dict[str, Any]:
    """Return a successful response or raise ``RemoteError`` / ``ProtocolError``."""
    status = message.get("ok")
    if status is True:
        return message
    if status is False:
        code = message.get("error")
        text = message.get("message")
        if code == REFUSED and message.get("refusal") == NOT_MEMBER:
            revoked_at = message.get("revoked_at")
            if isinstance(revoked_at, bool) or not isinstance(revoked_at, int):
                revoked_at = None
            raise NotAMember(REFUSED, str(text)[:1000], revoked_at)
        raise RemoteError(str(code)[:64], str(text)[:1000])
    raise ProtocolError("response has no boolean 'ok' field")
