"""Signed ledger entries: the wire format, the four kinds and their payload schemas.

An entry is bytes first (``docs/ledger.md``, section Entries, has the exact layout)::

    body      = canonical msgpack [1, kind, author(bin32), seq, prev(bin32), timestamp_ms, payload]
    signature = Ed25519(author, b"ptm/entry/v1\\n" + body)
    raw       = canonical msgpack [body(bin), signature(bin64)]
    hash      = SHA-256(raw)            (the entry's id: task ids and ``prev`` links use it)

``Entry.from_bytes`` is the only way bytes become an ``Entry``: size limit, canonical form,
field types, payload schema for the kind, then the signature. ``Entry.create`` signs and then
goes through the same checks, so an entry that can be created can always be read back.

Each kind's payload is a strict msgspec Struct (``GenesisPayload`` … ``CancelPayload``):
decoding a well-formed entry is one C-level decode into those Structs and one re-encode
compared byte for byte with the input (the canonical-form check). When that fast path
refuses an entry, the hand-written checks below (``_decode_by_hand``) decode it again to say
exactly what is wrong, so every error message stays as precise as before; they are also the
reference the Structs are tested against. ``Entry.payload`` stays a plain dict for callers;
``Entry.typed_payload`` is the same payload as its Struct.

Tasks and results are versioned by an optional payload key ``format`` (``docs/ledger.md``,
"Format 2"): absent is format 1 (``TaskPayload``/``ResultPayload``: anonymous sealed boxes
and a plain digest of the output; still read forever, so old logs keep auditing), 2 is
``TaskPayloadV2``/``ResultPayloadV2``: inputs boxed by their publisher and bound to one task
entry, outputs under secretstream with only commitments in public. New code writes format 2
(``task_payload_v2``, ``sealed_output`` + ``result_payload_v2``); ``open_input_v2`` and
``open_output_v2`` are the receiving ends.

What this module does *not* know is the log's state: whether the author is a member, whether
a task exists, whether ``seq``/``prev`` continue the author's chain. That is ``replay``'s job.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec

from ptm_p2p.errors import DecodeError, FaultyOutput, InputRefused, SignatureError
from ptm_p2p.ledger import crypto
from ptm_p2p.ledger.encoding import pack, unpack_canonical

# --- format constants -------------------------------------------------------------------------

VERSION = 1
SIGNING_PREFIX = b"ptm/entry/v1\n"
"""Domain separation: an entry signature can never be replayed as a checkpoint's or a note's."""

HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)
"""``prev`` of an author's first entry (seq 1)."""

GENESIS, MEMBERSHIP, TASK, RESULT = "genesis", "membership", "task", "result"
CANCEL = "cancel"
KINDS = (GENESIS, MEMBERSHIP, TASK, RESULT, CANCEL)

ROLES = ("hub", "site", "researcher", "auditor")
"""Roles a membership entry can give. The admin's role ("admin") comes only from genesis."""
ACTIONS = ("admit", "revoke")
STATUSES = ("ok", "failed", "timeout", "refused", "cancelled")
TIMING_FIELDS = frozenset({"prepare_ms", "run_ms", "total_ms"})
"""Optional timings of a result, whole milliseconds: what the site measured, for the researcher."""

# --- limits -----------------------------------------------------------------------------------

MAX_ENTRY_SIZE = 1024 * 1024
"""Largest ``raw`` accepted (1 MiB): bounds memory per entry and sync message size."""
MAX_BODY_SIZE = MAX_ENTRY_SIZE - 64 - 8
"""raw = array header (1) + bin header (<= 5) + body + bin8 header (2) + 64-byte signature."""
MAX_DEPTH = 3
"""body array -> payload map -> inputs/limits map or targets array: three levels, no more."""
MAX_SEQ = 2**63 - 1
MAX_TIMESTAMP_MS = 2**63 - 1
MAX_TARGETS = 256
MAX_ORIGIN_LEN = 255
MAX_TEXT_LEN = 4096
"""description / reason strings, in bytes of UTF-8."""
MAX_ALGORITHM_LEN = 128
SEAL_OVERHEAD = 48
"""A sealed box adds a 32-byte ephemeral key and a 16-byte tag: anything shorter is not one."""
FORMAT_2 = 2
"""The ``format`` of the task and result payloads new code writes."""
FORMATS = (1, FORMAT_2)
INLINE_MAX = 64 * 1024
"""A format-2 output ciphertext of at most this many bytes is written into the result entry
(``output.inline``); a larger one is meant for the hub's blob store (fetched by
``output.blob``). Readers accept any ``inline`` that fits the entry."""
MAX_KEY_BOX = 256
"""Upper bound of ``output.key`` (the boxed {k, n, l} map is 149 bytes as written)."""

LIMIT_RANGES: dict[str, tuple[int, int]] = {
    "timeout_s": (1, 7 * 24 * 3600),
    "memory_mb": (16, 1024 * 1024),
    # CPUs in thousandths, so no floats are needed: 1500 = one and a half CPUs.
    "cpu_millis": (10, 1024 * 1000),
}
"""Every task states all three limits explicitly: what a site agreed to run is auditable."""

ORIGIN_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~:/-]*$")
"""A C2SP log origin such as ``ptm.example/collab-1``: no spaces or '+', so it can be a
signed-note key name."""
ORG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""Organisation names double as witness key names in cosignatures (same rule as ``ptm init``)."""
ALGORITHM_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
IMAGE_PATTERN = re.compile(
    rf"^(?P<repo>(?:{_DOMAIN}(?::[0-9]{{1,5}})?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    r"@(?P<digest>sha256:[0-9a-f]{64})$"
)
"""Docker's reference grammar (distribution/reference), restricted to ``name@sha256:digest``:
a task never names an image by tag, so what runs is fixed by the signed entry."""
MAX_IMAGE_LEN = 255 + len("@sha256:") + 64


# --- the entry --------------------------------------------------------------------------------


class Entry(msgspec.Struct, frozen=True, eq=False):
    """One signed ledger entry. Every field is derived from ``raw``; equality is on ``raw``.

    A frozen msgspec Struct rather than a frozen dataclass: an audit builds one per entry,
    and a Struct is built in C, about ten times faster (0.2 µs against 2.7 µs for these
    eleven fields, a tenth of what an audit spends per entry besides the signature check).
    """

    version: int
    kind: str
    author: bytes
    seq: int
    prev: bytes
    timestamp_ms: int
    typed_payload: Payload
    """The payload as its kind's Struct: what the replay reads (typed, checked by mypy)."""
    signature: bytes
    raw: bytes
    hash: bytes
    _payload: dict[str, Any] | None = None

    @property
    def payload(self) -> dict[str, Any]:
        """The payload as a plain dict, exactly as msgpack decodes it. Made on first use:
        the replay reads ``typed_payload``, so an audit never pays for building it."""
        payload = self._payload
        if payload is None:
            payload = msgspec.to_builtins(self.typed_payload, builtin_types=(bytes,))
            _cache_payload(self, payload)
        return payload

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Entry):
            return NotImplemented
        return self.raw == other.raw

    def __hash__(self) -> int:
        return hash(self.hash)

    @property
    def body(self) -> bytes:
        """The signed body (the first element of ``raw``)."""
        return split_raw(self.raw)[0]

    def __repr__(self) -> str:
        return (
            f"Entry({self.kind} #{self.seq} by {crypto.short(self.author)}, "
            f"t={self.timestamp_ms}, hash={self.hash.hex()[:16]}…, {len(self.raw)} bytes)"
        )

    def describe(self) -> str:
        """``task #3 by 3f2a1b9c`` for human messages."""
        return f"{self.kind} #{self.seq} by {crypto.short(self.author)}"

    @classmethod
    def create(
        cls,
        signer: crypto.Signer,
        kind: str,
        seq: int,
        prev: bytes,
        timestamp_ms: int,
        payload: Mapping[str, Any],
    ) -> Entry:
        """Sign a new entry; the result is checked exactly as ``from_bytes`` checks bytes."""
        body = pack([VERSION, kind, signer.public_key, seq, prev, timestamp_ms, dict(payload)])
        if len(body) > MAX_BODY_SIZE:
            raise DecodeError(
                f"{kind} entry body is {len(body)} bytes, over the {MAX_BODY_SIZE}-byte limit; "
                "make the payload smaller (e.g. fewer targets or smaller inputs)"
            )
        signature = signer.sign(SIGNING_PREFIX + body)
        # No need to verify a signature we have just made; everything else is checked.
        return cls._decode(pack([body, signature]), check_signature=False)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Entry:
        """Parse and verify ``raw``; DecodeError (format, schema) or SignatureError."""
        return cls._decode(raw, check_signature=True)

    @classmethod
    def from_bytes_signature_checked_elsewhere(cls, raw: bytes) -> Entry:
        """Parse ``raw`` with every check but the signature, for a caller that has verified
        this exact byte string's signature already (the audit's parallel workers)."""
        return cls._decode(raw, check_signature=False)

    @classmethod
    def _decode(cls, raw: bytes, check_signature: bool) -> Entry:
        if type(raw) is not bytes:
            if not isinstance(raw, (bytearray, memoryview)):
                raise DecodeError(f"an entry is bytes, got {type(raw).__name__}")
            raw = bytes(raw)
        if len(raw) > MAX_ENTRY_SIZE:
            raise DecodeError(f"entry is {len(raw)} bytes, over the {MAX_ENTRY_SIZE}-byte limit")
        body_bytes, signature = split_raw(raw)
        fast = _decode_typed(body_bytes)
        payload: dict[str, Any] | None = None
        if fast is not None:
            kind, author, seq = fast.kind, fast.author, fast.seq
            prev, timestamp_ms, typed = fast.prev, fast.timestamp_ms, fast.payload
        else:
            # Raises the precise DecodeError; returns only if the two schemas disagree.
            _, kind, author, seq, prev, timestamp_ms, payload = _decode_by_hand(body_bytes)
            typed = _typed_from_dict(kind, payload)
        if check_signature and not crypto.verify(author, SIGNING_PREFIX + body_bytes, signature):
            raise SignatureError(
                f"{kind} #{seq} by {crypto.short(author)}: signature does not verify "
                f"(key {author.hex()}); the copy is corrupt or forged"
            )
        return cls(
            VERSION,
            kind,
            author,
            seq,
            prev,
            timestamp_ms,
            typed,
            signature,
            raw,
            crypto.sha256(raw),
            payload,
        )


def _decode_by_hand(
    body_bytes: bytes,
) -> tuple[int, str, bytes, int, bytes, int, dict[str, Any]]:
    """The entry body's fields, each checked by hand: slower than ``_decode_typed`` but it
    names the first thing wrong (DecodeError), which is what it is called for."""
    body = unpack_canonical(body_bytes, MAX_BODY_SIZE, max_depth=MAX_DEPTH)
    if type(body) is not list or len(body) != 7:
        raise DecodeError(
            "entry body is a 7-element array "
            "[version, kind, author, seq, prev, timestamp_ms, payload]"
        )
    version, kind, author, seq, prev, timestamp_ms, payload = body
    if version != VERSION or type(version) is not int:
        raise DecodeError(f"entry version {version!r} is not supported (this code reads 1)")
    validate = _VALIDATORS.get(kind) if type(kind) is str else None
    if validate is None:
        raise DecodeError(f"unknown entry kind {kind!r}; known kinds: {', '.join(KINDS)}")
    if type(author) is not bytes or len(author) != crypto.PUBLIC_KEY_SIZE:
        raise DecodeError(f"{kind} entry: author must be a 32-byte public key")
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
        raise DecodeError(f"{kind} entry by {crypto.short(author)}: seq {seq!r} is not >= 1")
    if type(prev) is not bytes or len(prev) != HASH_SIZE:
        raise DecodeError(f"{kind} entry by {crypto.short(author)}: prev must be 32 bytes")
    if seq == 1 and prev != ZERO_HASH:
        raise DecodeError(
            f"{kind} entry by {crypto.short(author)}: seq 1 must have an all-zero prev"
        )
    if type(timestamp_ms) is not int or not 0 <= timestamp_ms <= MAX_TIMESTAMP_MS:
        raise DecodeError(
            f"{kind} entry by {crypto.short(author)}: timestamp_ms {timestamp_ms!r} "
            "is not a non-negative integer"
        )
    if type(payload) is not dict:
        raise DecodeError(f"{kind} entry by {crypto.short(author)}: payload must be a map")
    validate(payload, author, seq)
    return version, kind, author, seq, prev, timestamp_ms, payload


# A cache, not a change of value: the slot's own setter is the one way to fill it in a
# frozen Struct (its __setattr__ refuses everyone).
_cache_payload = Entry.__dict__["_payload"].__set__


def split_raw(raw: bytes) -> tuple[bytes, bytes]:
    """``raw`` -> (body, signature), accepting only the canonical encoding of
    ``[body (bin), signature (bin, 64 bytes)]``.

    Equivalent to ``unpack_canonical`` for this one shape, done by hand because it runs for
    every entry an auditor replays and the generic path would decode and re-encode the whole
    entry once more: 0x92, a minimal bin header (bin8 < 256 <= bin16 < 65536 <= bin32) and
    the body, then 0xc4 0x40 and the 64 signature bytes, then nothing.
    """
    size = len(raw)
    if size < 3 or raw[0] != 0x92:
        raise DecodeError("an entry is a msgpack array [body (bin), signature (bin)]")
    marker = raw[1]
    if marker == 0xC4:
        start, length = 3, raw[2]
    elif marker == 0xC5:
        start, length = 4, int.from_bytes(raw[2:4], "big")
    elif marker == 0xC6:
        start, length = 6, int.from_bytes(raw[2:6], "big")
    else:
        raise DecodeError("an entry's first element (the body) must be a msgpack bin")
    minimal = 0xC4 if length < 256 else 0xC5 if length < 65536 else 0xC6
    if marker != minimal:
        raise DecodeError("not canonical msgpack: the body's bin length is not minimal")
    end = start + length
    if size != end + 2 + crypto.SIGNATURE_SIZE or raw[end : end + 2] != b"\xc4\x40":
        raise DecodeError(
            "an entry ends with its 64-byte signature (bin8) and nothing after it; "
            f"this one is {size} bytes where its body length says {end + 66}"
        )
    return raw[start:end], raw[end + 2 :]


def claimed_author(body: bytes) -> bytes | None:
    """The author key in an entry body, read at its fixed offset without decoding the body;
    None if the body does not start as a canonical one does.

    A canonical body starts ``0x97`` (array of 7), ``0x01`` (version 1), the kind as a fixstr
    (``0xa0 | length``, then the name), then the author as ``0xc4 0x20`` and 32 bytes. The
    audit's workers verify signatures under this key while the main process decodes: if the
    body then decodes, it has exactly this layout, so the key verified is the entry's author.
    """
    if len(body) < 40 or body[0] != 0x97 or body[1] != 0x01:
        return None
    at = body[2] - 0xA0 + 3
    if not 3 <= at < 35 or body[at : at + 2] != b"\xc4\x20":
        return None
    return body[at + 2 : at + 2 + crypto.PUBLIC_KEY_SIZE]


# --- payload schemas: one validator per kind ---------------------------------------------------


def _fields(
    kind: str,
    payload: dict[str, Any],
    required: frozenset[str],
    optional: frozenset[str] = frozenset(),
) -> None:
    keys = payload.keys()
    if keys == required:
        return
    missing = required - keys
    if missing:
        raise DecodeError(f"{kind} payload: missing {', '.join(sorted(missing))}")
    extra = keys - required - optional
    if extra:
        raise DecodeError(
            f"{kind} payload: unknown field {', '.join(sorted(map(repr, extra)))}; "
            f"allowed: {', '.join(sorted(required | optional))}"
        )


def _key(kind: str, name: str, value: Any) -> bytes:
    if type(value) is not bytes or len(value) != crypto.PUBLIC_KEY_SIZE:
        raise DecodeError(f"{kind} payload: {name} must be a 32-byte key (bin)")
    return value


def _text(
    kind: str, name: str, value: Any, max_len: int, pattern: re.Pattern[str] | None = None
) -> str:
    if type(value) is not str or not value:
        raise DecodeError(f"{kind} payload: {name} must be a non-empty string")
    # isascii() is O(1) in CPython: skip encoding the common ASCII case to count bytes.
    if (len(value) if value.isascii() else len(value.encode("utf-8"))) > max_len:
        raise DecodeError(f"{kind} payload: {name} is over {max_len} bytes")
    # fullmatch, not match: "$" would let a trailing newline through.
    if pattern is not None and not pattern.fullmatch(value):
        raise DecodeError(f"{kind} payload: {name} {value!r} is not allowed ({pattern.pattern})")
    return value


def _choice(kind: str, name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if type(value) is not str or value not in allowed:
        raise DecodeError(f"{kind} payload: {name} {value!r} is not one of {', '.join(allowed)}")
    return value


def _boxed(kind: str, name: str, value: Any) -> bytes:
    if type(value) is not bytes or len(value) < crypto.BOX_OVERHEAD:
        raise DecodeError(
            f"{kind} payload: {name} must be a box (bin of at least {crypto.BOX_OVERHEAD} bytes)"
        )
    return value


def _sealed(kind: str, name: str, value: Any) -> bytes:
    if type(value) is not bytes or len(value) < SEAL_OVERHEAD:
        raise DecodeError(
            f"{kind} payload: {name} must be a sealed box (bin of at least {SEAL_OVERHEAD} bytes)"
        )
    return value


_GENESIS_FIELDS = frozenset({"origin", "admin", "admin_org", "hub", "hub_org"})
_GENESIS_OPTIONAL = frozenset({"description"})


def _validate_genesis(payload: dict[str, Any], author: bytes, seq: int) -> None:
    _fields(GENESIS, payload, _GENESIS_FIELDS, _GENESIS_OPTIONAL)
    _text(GENESIS, "origin", payload["origin"], MAX_ORIGIN_LEN, ORIGIN_PATTERN)
    admin = _key(GENESIS, "admin", payload["admin"])
    hub = _key(GENESIS, "hub", payload["hub"])
    _text(GENESIS, "admin_org", payload["admin_org"], 64, ORG_PATTERN)
    _text(GENESIS, "hub_org", payload["hub_org"], 64, ORG_PATTERN)
    if "description" in payload:
        _text(GENESIS, "description", payload["description"], MAX_TEXT_LEN)
    if admin == hub:
        raise DecodeError("genesis payload: admin and hub must be different keys")
    if author != admin:
        raise DecodeError(
            f"genesis payload: signed by {crypto.short(author)} but names admin "
            f"{crypto.short(admin)}; the admin signs the genesis entry"
        )
    if seq != 1:
        raise DecodeError(f"genesis entry has seq {seq}: it is the admin's first entry (seq 1)")


_MEMBERSHIP_FIELDS = frozenset({"action", "key", "org", "role"})
_MEMBERSHIP_OPTIONAL = frozenset({"reason"})


def _validate_membership(payload: dict[str, Any], author: bytes, seq: int) -> None:
    _fields(MEMBERSHIP, payload, _MEMBERSHIP_FIELDS, _MEMBERSHIP_OPTIONAL)
    _choice(MEMBERSHIP, "action", payload["action"], ACTIONS)
    _key(MEMBERSHIP, "key", payload["key"])
    _text(MEMBERSHIP, "org", payload["org"], 64, ORG_PATTERN)
    _choice(MEMBERSHIP, "role", payload["role"], ROLES)
    if "reason" in payload:
        _text(MEMBERSHIP, "reason", payload["reason"], MAX_TEXT_LEN)


_TASK_FIELDS = frozenset({"image", "targets", "inputs", "limits"})
_TASK_OPTIONAL = frozenset({"algorithm", "description", "data"})
_TASK_V2_OPTIONAL = _TASK_OPTIONAL | {"aggregate"}
AGGREGATES = ("secure-sum",)
"""Format 2's optional ``aggregate``: how the sites' answers are to be combined.
``secure-sum`` asks each target to mask its answer so only the sum opens
(``ledger/secagg.py``); it needs at least two targets."""
MAX_DATA_LABELS = 16
DATA_LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""A site data source label (``[policy.data]`` in a site's config): which data a task reads
is public in the log, so an auditor sees what each task was allowed to touch."""
_LIMIT_FIELDS = frozenset(LIMIT_RANGES)


def _format_of(kind: str, payload: dict[str, Any]) -> int:
    """1 when ``format`` is absent, 2 when it is 2; anything else is refused."""
    if "format" not in payload:
        return 1
    value = payload["format"]
    if type(value) is not int or value != FORMAT_2:
        raise DecodeError(
            f"{kind} payload: format {value!r} is not supported (format 2, or no format key "
            "for format 1)"
        )
    return FORMAT_2


def _validate_task(payload: dict[str, Any], author: bytes, seq: int) -> None:
    v2 = _format_of(TASK, payload) == FORMAT_2
    if v2:
        _fields(TASK, payload, _TASK_FIELDS | {"format"}, _TASK_V2_OPTIONAL)
    else:
        _fields(TASK, payload, _TASK_FIELDS, _TASK_OPTIONAL)
    image = payload["image"]
    if type(image) is str and "@" not in image and len(image) <= MAX_IMAGE_LEN:
        # The common mistake gets its own message instead of the reference grammar.
        raise DecodeError(
            f"task payload: image {image!r} has no digest; name the image by digest "
            "(REPO@sha256:…); `ptm publish` resolves tags for you"
        )
    _text(TASK, "image", image, MAX_IMAGE_LEN, IMAGE_PATTERN)
    targets = payload["targets"]
    if type(targets) is not list or not 1 <= len(targets) <= MAX_TARGETS:
        raise DecodeError(f"task payload: targets must be a list of 1..{MAX_TARGETS} site keys")
    for target in targets:
        _key(TASK, "each target", target)
    if len(set(targets)) != len(targets):
        raise DecodeError("task payload: targets lists a site twice")
    inputs = payload["inputs"]
    if type(inputs) is not dict:
        raise DecodeError("task payload: inputs must be a map site key -> sealed input")
    if inputs.keys() != set(targets):
        raise DecodeError(
            "task payload: inputs must have exactly one sealed input per target "
            f"({len(inputs)} inputs for {len(targets)} targets, or different keys)"
        )
    for value in inputs.values():
        if v2:
            _boxed(TASK, "each input", value)
        else:
            _sealed(TASK, "each input", value)
    limits = payload["limits"]
    if type(limits) is not dict:
        raise DecodeError("task payload: limits must be a map")
    _fields("task limits", limits, _LIMIT_FIELDS)
    for name, (low, high) in LIMIT_RANGES.items():
        value = limits[name]
        if type(value) is not int or not low <= value <= high:
            raise DecodeError(f"task payload: limits.{name} {value!r} is not in {low}..{high}")
    if "aggregate" in payload:
        _choice(TASK, "aggregate", payload["aggregate"], AGGREGATES)
        if len(targets) < 2:
            raise DecodeError(
                "task payload: aggregate secure-sum needs at least two targets (the masks "
                "of one site alone would hide nothing from the researcher)"
            )
    if "algorithm" in payload:
        _text(TASK, "algorithm", payload["algorithm"], MAX_ALGORITHM_LEN, ALGORITHM_PATTERN)
    if "description" in payload:
        _text(TASK, "description", payload["description"], MAX_TEXT_LEN)
    if "data" in payload:
        labels = payload["data"]
        if type(labels) is not list or not 1 <= len(labels) <= MAX_DATA_LABELS:
            raise DecodeError(
                f"task payload: data must be a list of 1..{MAX_DATA_LABELS} data labels"
            )
        for label in labels:
            _text(TASK, "each data label", label, 64, DATA_LABEL_PATTERN)
        if len(set(labels)) != len(labels):
            raise DecodeError("task payload: data lists a label twice")


_RESULT_FIELDS = frozenset({"task", "status", "output", "image_digest", "log_digest"})
_RESULT_OPTIONAL = frozenset({"reason", "timings", "output_digest"})


_RESULT_V2_FIELDS = frozenset({"format", "task", "status", "output", "image_digest", "log_commit"})
_RESULT_V2_OPTIONAL = frozenset({"reason", "timings"})
_OUTPUT_V2_FIELDS = frozenset({"key", "commit", "size", "blob"})
_OUTPUT_V2_OPTIONAL = frozenset({"inline"})


def _bin32(name: str, value: Any) -> bytes:
    if type(value) is not bytes or len(value) != HASH_SIZE:
        raise DecodeError(f"result payload: {name} must be 32 bytes (bin)")
    return value


def _validate_result(payload: dict[str, Any], author: bytes, seq: int) -> None:
    v2 = _format_of(RESULT, payload) == FORMAT_2
    if v2:
        _fields(RESULT, payload, _RESULT_V2_FIELDS, _RESULT_V2_OPTIONAL)
    else:
        _fields(RESULT, payload, _RESULT_FIELDS, _RESULT_OPTIONAL)
    task = payload["task"]
    if type(task) is not bytes or len(task) != HASH_SIZE:
        raise DecodeError("result payload: task must be the 32-byte hash of the task entry")
    _choice(RESULT, "status", payload["status"], STATUSES)
    if v2:
        _validate_output_v2(payload["output"])
        _bin32("log_commit", payload["log_commit"])
    else:
        _sealed(RESULT, "output", payload["output"])
        _bin32("log_digest", payload["log_digest"])
    _text(RESULT, "image_digest", payload["image_digest"], 71, DIGEST_PATTERN)
    if "reason" in payload:
        _text(RESULT, "reason", payload["reason"], MAX_TEXT_LEN)
    if "output_digest" in payload:
        _bin32("output_digest", payload["output_digest"])
    if "timings" in payload:
        timings = payload["timings"]
        if type(timings) is not dict or not timings.keys() <= TIMING_FIELDS:
            raise DecodeError(
                f"result payload: timings must be a map with keys among "
                f"{', '.join(sorted(TIMING_FIELDS))}"
            )
        for name, value in timings.items():
            if type(value) is not int or not 0 <= value <= MAX_TIMESTAMP_MS:
                raise DecodeError(f"result payload: timings.{name} {value!r} is not a whole ms")


def _validate_output_v2(output: Any) -> None:
    if type(output) is not dict:
        raise DecodeError("result payload: output must be a map (format 2)")
    _fields("result output", output, _OUTPUT_V2_FIELDS, _OUTPUT_V2_OPTIONAL)
    key = output["key"]
    if type(key) is not bytes or not crypto.BOX_OVERHEAD <= len(key) <= MAX_KEY_BOX:
        raise DecodeError(
            f"result payload: output.key must be a box of {crypto.BOX_OVERHEAD}..{MAX_KEY_BOX} "
            "bytes"
        )
    _bin32("output.commit", output["commit"])
    _bin32("output.blob", output["blob"])
    size = output["size"]
    if type(size) is not int or not crypto.STREAM_MIN_SIZE <= size <= MAX_SEQ:
        raise DecodeError(
            f"result payload: output.size {size!r} is not a ciphertext size "
            f"(at least {crypto.STREAM_MIN_SIZE} bytes)"
        )
    if "inline" in output:
        inline = output["inline"]
        if type(inline) is not bytes or len(inline) != size:
            raise DecodeError(
                "result payload: output.inline must be the ciphertext, exactly output.size bytes"
            )


_CANCEL_FIELDS = frozenset({"task"})
_CANCEL_OPTIONAL = frozenset({"reason"})


def _validate_cancel(payload: dict[str, Any], author: bytes, seq: int) -> None:
    _fields(CANCEL, payload, _CANCEL_FIELDS, _CANCEL_OPTIONAL)
    task = payload["task"]
    if type(task) is not bytes or len(task) != HASH_SIZE:
        raise DecodeError("cancel payload: task must be the 32-byte hash of the task entry")
    if "reason" in payload:
        _text(CANCEL, "reason", payload["reason"], MAX_TEXT_LEN)


_VALIDATORS: dict[str, Callable[[dict[str, Any], bytes, int], None]] = {
    GENESIS: _validate_genesis,
    MEMBERSHIP: _validate_membership,
    TASK: _validate_task,
    RESULT: _validate_result,
    CANCEL: _validate_cancel,
}


# --- typed payloads: the fast decode --------------------------------------------------------
#
# One frozen msgspec Struct per kind. msgspec checks in C what the validators above check in
# Python: field names (no unknown, none missing), types, fixed lengths, ranges, choices.
# ``well_formed`` adds the rules a type cannot state (patterns, UTF-8 byte lengths, unique
# targets, who signs genesis). Fields are declared in canonical key order (shorter names
# first, then bytewise: the order ``pack`` emits), so re-encoding a decoded Struct gives the
# canonical bytes and comparing them with the input is the canonical-form check. Optional
# fields default to None and are omitted when encoding, so an explicit nil on the wire does
# not round-trip and is refused. ``tests/ledger/test_typed_payloads.py`` holds the Structs
# and the validators to the same verdicts.

Key = Annotated[bytes, msgspec.Meta(min_length=HASH_SIZE, max_length=HASH_SIZE)]
"""A 32-byte public key or SHA-256 hash (bin)."""
Sealed = Annotated[bytes, msgspec.Meta(min_length=SEAL_OVERHEAD)]
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_LEN)]
"""Free text; msgspec counts characters, ``_fits`` then counts UTF-8 bytes."""
Org = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Label = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=MAX_TIMESTAMP_MS)]


# The ranges of LIMIT_RANGES, as types.
TimeoutS = Annotated[int, msgspec.Meta(ge=1, le=7 * 24 * 3600)]
MemoryMb = Annotated[int, msgspec.Meta(ge=16, le=1024 * 1024)]
CpuMillis = Annotated[int, msgspec.Meta(ge=10, le=1024 * 1000)]


def _fits(text: str | None, max_len: int) -> bool:
    """``text`` is absent or at most ``max_len`` bytes of UTF-8 (ASCII: one byte a char)."""
    return text is None or text.isascii() or len(text.encode("utf-8")) <= max_len


def _matches(pattern: re.Pattern[str], text: str | None) -> bool:
    return text is None or _fullmatch(pattern, text)


@functools.lru_cache(maxsize=4096)
def _fullmatch(pattern: re.Pattern[str], text: str) -> bool:
    # fullmatch, as the validators: "$" in the patterns would let a trailing newline through.
    # Cached because a log names the same few images, digests and organisations in entry
    # after entry, and the image grammar costs more to match than the whole typed decode.
    return pattern.fullmatch(text) is not None


class _Typed(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True
):
    """Base of the payload Structs (strict: unknown fields are refused)."""

    def well_formed(self, author: bytes, seq: int) -> bool:
        """The kind's rules that no field type states; False sends the entry to the
        hand-written checks, which say what is wrong."""
        return True


class GenesisPayload(_Typed, frozen=True, kw_only=True):
    hub: Key
    admin: Key
    origin: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ORIGIN_LEN)]
    hub_org: Org
    admin_org: Org
    description: Text | None = None

    def well_formed(self, author: bytes, seq: int) -> bool:
        return (
            _matches(ORIGIN_PATTERN, self.origin)
            and _matches(ORG_PATTERN, self.hub_org)
            and _matches(ORG_PATTERN, self.admin_org)
            and _fits(self.description, MAX_TEXT_LEN)
            and self.admin != self.hub
            and author == self.admin
            and seq == 1
        )


class MembershipPayload(_Typed, frozen=True, kw_only=True):
    key: Key
    org: Org
    role: Literal["hub", "site", "researcher", "auditor"]
    action: Literal["admit", "revoke"]
    reason: Text | None = None

    def well_formed(self, author: bytes, seq: int) -> bool:
        return _matches(ORG_PATTERN, self.org) and _fits(self.reason, MAX_TEXT_LEN)


class TaskLimits(_Typed, frozen=True, kw_only=True):
    memory_mb: MemoryMb
    timeout_s: TimeoutS
    cpu_millis: CpuMillis


class TaskPayload(_Typed, frozen=True, kw_only=True):
    data: Annotated[list[Label], msgspec.Meta(min_length=1, max_length=MAX_DATA_LABELS)] | None = (
        None
    )
    image: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_IMAGE_LEN)]
    inputs: dict[Key, Sealed]
    limits: TaskLimits
    targets: Annotated[list[Key], msgspec.Meta(min_length=1, max_length=MAX_TARGETS)]
    algorithm: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ALGORITHM_LEN)] | None = (
        None
    )
    description: Text | None = None

    def well_formed(self, author: bytes, seq: int) -> bool:
        targets, inputs, data = self.targets, self.inputs, self.data
        unique = set(targets)
        return (
            _matches(IMAGE_PATTERN, self.image)
            and len(unique) == len(targets)
            and inputs.keys() == unique
            # A dict re-encodes in wire order, so its key order is checked here: all keys are
            # 32-byte bins, whose canonical order is plain bytewise order.
            and list(inputs) == sorted(inputs)
            and _matches(ALGORITHM_PATTERN, self.algorithm)
            and _fits(self.description, MAX_TEXT_LEN)
            and (
                data is None
                or (
                    len(set(data)) == len(data)
                    and all(_fullmatch(DATA_LABEL_PATTERN, label) for label in data)
                )
            )
        )


Boxed = Annotated[bytes, msgspec.Meta(min_length=crypto.BOX_OVERHEAD)]


class TaskPayloadV2(_Typed, frozen=True, kw_only=True):
    """Format 2: each input is a box from the publisher to its site over
    ``{"bind": input_bind(...), "input": plaintext}`` (``docs/ledger.md``, "Format 2")."""

    data: Annotated[list[Label], msgspec.Meta(min_length=1, max_length=MAX_DATA_LABELS)] | None = (
        None
    )
    image: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_IMAGE_LEN)]
    format: Literal[2]
    inputs: dict[Key, Boxed]
    limits: TaskLimits
    targets: Annotated[list[Key], msgspec.Meta(min_length=1, max_length=MAX_TARGETS)]
    # canonical key order: "aggregate" < "algorithm" (same length, bytewise)
    aggregate: Literal["secure-sum"] | None = None
    algorithm: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ALGORITHM_LEN)] | None = (
        None
    )
    description: Text | None = None

    def well_formed(self, author: bytes, seq: int) -> bool:
        return TaskPayload.well_formed(self, author, seq) and (  # type: ignore[arg-type]
            self.aggregate is None or len(self.targets) >= 2
        )


class ResultTimings(_Typed, frozen=True, kw_only=True):
    run_ms: Millis | None = None
    total_ms: Millis | None = None
    prepare_ms: Millis | None = None


class ResultPayload(_Typed, frozen=True, kw_only=True):
    task: Key
    output: Sealed
    reason: Text | None = None
    status: Literal["ok", "failed", "timeout", "refused", "cancelled"]
    timings: ResultTimings | None = None
    log_digest: Key
    image_digest: Annotated[str, msgspec.Meta(min_length=1, max_length=71)]
    output_digest: Key | None = None

    def well_formed(self, author: bytes, seq: int) -> bool:
        return _matches(DIGEST_PATTERN, self.image_digest) and _fits(self.reason, MAX_TEXT_LEN)


class OutputV2(_Typed, frozen=True, kw_only=True):
    """A format-2 result's ``output`` map: commitments and where the ciphertext is."""

    key: Annotated[bytes, msgspec.Meta(min_length=crypto.BOX_OVERHEAD, max_length=MAX_KEY_BOX)]
    blob: Key
    size: Annotated[int, msgspec.Meta(ge=crypto.STREAM_MIN_SIZE, le=MAX_SEQ)]
    commit: Key
    inline: bytes | None = None


class ResultPayloadV2(_Typed, frozen=True, kw_only=True):
    """Format 2: no digest of any plaintext; the output is a secretstream ciphertext whose
    key and commitment nonces are boxed from the site to the publisher."""

    task: Key
    format: Literal[2]
    output: OutputV2
    reason: Text | None = None
    status: Literal["ok", "failed", "timeout", "refused", "cancelled"]
    timings: ResultTimings | None = None
    log_commit: Key
    image_digest: Annotated[str, msgspec.Meta(min_length=1, max_length=71)]

    def well_formed(self, author: bytes, seq: int) -> bool:
        inline = self.output.inline
        return (
            (inline is None or len(inline) == self.output.size)
            and _matches(DIGEST_PATTERN, self.image_digest)
            and _fits(self.reason, MAX_TEXT_LEN)
        )

    @property
    def log_digest(self) -> bytes:
        """The log commitment, under the name the replay's ``Result`` has kept."""
        return self.log_commit


class CancelPayload(_Typed, frozen=True, kw_only=True):
    task: Key
    reason: Text | None = None

    def well_formed(self, author: bytes, seq: int) -> bool:
        return _fits(self.reason, MAX_TEXT_LEN)


Payload = (
    GenesisPayload
    | MembershipPayload
    | TaskPayload
    | TaskPayloadV2
    | ResultPayload
    | ResultPayloadV2
    | CancelPayload
)
AnyTask = TaskPayload | TaskPayloadV2
AnyResult = ResultPayload | ResultPayloadV2
PAYLOAD_TYPES: dict[str, type[Payload]] = {
    GENESIS: GenesisPayload,
    MEMBERSHIP: MembershipPayload,
    TASK: TaskPayload,
    RESULT: ResultPayload,
    CANCEL: CancelPayload,
}
"""Each kind's format-1 payload type (the only format of genesis, membership, cancel)."""
PAYLOAD_TYPES_V2: dict[str, type[Payload]] = {TASK: TaskPayloadV2, RESULT: ResultPayloadV2}
"""The format-2 payload types of the kinds that have one."""


_P = TypeVar("_P", bound=_Typed)


class _Body(msgspec.Struct, Generic[_P], frozen=True, array_like=True):
    """The signed body array, its payload typed by kind (one decoder per kind)."""

    version: Literal[1]
    kind: str
    author: Key
    seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]
    prev: Key
    timestamp_ms: Millis
    payload: _P


def _decoder(payload_type: type[Payload]) -> msgspec.msgpack.Decoder[_Body[Any]]:
    return msgspec.msgpack.Decoder(_Body[payload_type])  # type: ignore[valid-type]


# Keyed by the kind's UTF-8 name, as it appears in the body (see ``_decode_typed``): the
# format-1 decoder and, for tasks and results, the format-2 one.
_BODY_DECODERS: dict[bytes, tuple[msgspec.msgpack.Decoder[_Body[Any]], ...]] = {
    kind.encode(): tuple(
        _decoder(t) for t in (payload_type, PAYLOAD_TYPES_V2.get(kind)) if t is not None
    )
    for kind, payload_type in PAYLOAD_TYPES.items()
}
_FORMAT_KEY = b"\xa6format"
"""The ``format`` key as canonical msgpack writes it (fixstr of 6): a body without these
bytes cannot be format 2, so a format-1 log never pays for a format-2 decode attempt."""
_ENCODER = msgspec.msgpack.Encoder()


def _decode_typed(body: bytes) -> _Body[Any] | None:
    """The body, typed, if it is a valid canonical entry body; else None (the caller then
    runs the hand-written checks to say why).

    The kind picks the decoder. It is read from the bytes, where a canonical body has it
    (``0x97 0x01``, then the kind as a fixstr), so the body is decoded once, straight into
    its Structs; the re-encoding comparison below also confirms the kind was read right.
    """
    if len(body) > MAX_BODY_SIZE or len(body) < 40:
        return None
    decoders = _BODY_DECODERS.get(body[3 : body[2] - 0x9D])  # 3 + (body[2] - 0xa0)
    if decoders is None:
        return None
    if len(decoders) == 2:
        # Format 2 first when the body names a format (the bytes could also sit inside a
        # format-1 input by chance: then the format-2 decode fails and format 1 is tried).
        decoders = decoders[::-1] if _FORMAT_KEY in body else decoders[:1]
    for decoder in decoders:
        try:
            decoded = decoder.decode(body)
            again = _ENCODER.encode(decoded)
        except (msgspec.MsgspecError, ValueError):  # ValueError: e.g. a str that is not UTF-8
            continue
        break
    else:
        return None
    if again != body or (decoded.seq == 1 and decoded.prev != ZERO_HASH):
        return None
    if not decoded.payload.well_formed(decoded.author, decoded.seq):
        return None
    return decoded


def _typed_from_dict(kind: str, payload: dict[str, Any]) -> Payload:
    """The Struct of a payload the hand-written checks accepted but the fast path did not.

    Never reached while the two agree (the tests hold them to that); if they ever disagree,
    the hand-written checks, which carry the messages, decide."""
    types = PAYLOAD_TYPES_V2 if "format" in payload else PAYLOAD_TYPES
    try:
        return msgspec.convert(payload, types[kind])
    except msgspec.MsgspecError as exc:
        raise DecodeError(f"{kind} payload: {exc}") from exc


@functools.lru_cache(maxsize=1024)
def digest_of_image(image: str) -> str:
    """``sha256:…`` of a ``repo@sha256:…`` reference (DecodeError if it is not one).

    Cached: the replay compares every ``ok`` result with its task's image digest, and a log
    names a few images many times over."""
    match = IMAGE_PATTERN.fullmatch(image) if len(image) <= MAX_IMAGE_LEN else None
    if match is None:
        raise DecodeError(f"image {image!r} is not a 'repository@sha256:<64 hex>' reference")
    return match["digest"]


# --- payload builders ------------------------------------------------------------------------


def genesis_payload(
    origin: str,
    admin: bytes,
    admin_org: str,
    hub: bytes,
    hub_org: str,
    description: str | None = None,
) -> dict[str, Any]:
    admin_side = {"origin": origin, "admin": admin, "admin_org": admin_org}
    return {**admin_side, "hub": hub, "hub_org": hub_org, **_present(description=description)}


def _present(**optional: Any) -> dict[str, Any]:
    """The optional payload fields that are given: a None field is left out of the entry."""
    return {name: value for name, value in optional.items() if value is not None}


def membership_payload(
    action: str, key: bytes, org: str, role: str, reason: str | None = None
) -> dict[str, Any]:
    """A membership payload. Admitting a key that is not a usable Ed25519 point (a typo, 32
    zero bytes) is refused here, where admins build entries. Replicas do not repeat the
    check on every decode: it costs as much as a signature check, and such a key could never
    sign anything anyway (libsodium refuses small-order keys when verifying)."""
    if action == "admit" and type(key) is bytes and not crypto.is_usable_public_key(key):
        raise DecodeError(
            f"membership payload: key {key.hex()} is not a usable Ed25519 public key "
            "(small-order or malformed point); take the key from `ptm id` on that home"
        )
    return {"action": action, "key": key, "org": org, "role": role, **_present(reason=reason)}


def task_payload(
    image: str,
    inputs: Mapping[bytes, bytes],
    limits: Mapping[str, int],
    algorithm: str | None = None,
    description: str | None = None,
    data: Sequence[str] = (),
) -> dict[str, Any]:
    """A task payload; ``inputs`` maps each target site key to its *plaintext* input, which
    is sealed here to that site (targets keep the mapping's order); ``data`` names the site
    data sources (labels) the task reads."""
    payload: dict[str, Any] = {
        "image": image,
        "targets": list(inputs),
        "inputs": {site: crypto.seal(site, data) for site, data in inputs.items()},
        "limits": dict(limits),
    }
    return _with_task_options(payload, algorithm, description, list(data))


def result_payload(
    task: Entry,
    status: str,
    output: bytes,
    image_digest: str,
    log_digest: bytes,
    reason: str | None = None,
    timings: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A result payload for ``task``; the plaintext ``output`` is sealed to the task's author
    and its SHA-256 recorded, so the researcher can show it opened exactly what was signed."""
    payload: dict[str, Any] = {
        "task": task.hash,
        "status": status,
        "output": crypto.seal(task.author, output),
        "image_digest": image_digest,
        "log_digest": log_digest,
        "output_digest": crypto.sha256(output),
    }
    if reason is not None:
        payload["reason"] = reason.encode()[:MAX_TEXT_LEN].decode(errors="ignore")
    if timings is not None:
        payload["timings"] = dict(timings)
    return payload


# --- format 2: inputs bound to their task, outputs behind commitments ---------------------------

INPUT_NOT_OURS = (
    "the input for this site was not encrypted by the task's publisher for this site; "
    "nothing was run"
)
"""Public reason of a ``refused`` answer: the input box does not open (FORMAT.md)."""
INPUT_BOUND_ELSEWHERE = "the input is bound to another task; nothing was run"
"""Public reason of a ``refused`` answer: the input opens but is bound to another task."""
INPUT_MALFORMED = (
    "the input for this site is not a {bind, input} map as format 2 writes it; nothing was run"
)


def task_payload_v2(
    publisher: crypto.Signer,
    publisher_seq: int,
    image: str,
    inputs: Mapping[bytes, bytes],
    limits: Mapping[str, int],
    algorithm: str | None = None,
    description: str | None = None,
    data: Sequence[str] = (),
    aggregate: str | None = None,
) -> dict[str, Any]:
    """A format-2 task payload to be signed by ``publisher`` as its entry ``publisher_seq``.

    ``inputs`` maps each target site key to its plaintext input (targets keep the mapping's
    order); each is boxed from the publisher to that site together with its binding to this
    very entry (``crypto.input_bind``), so a copy of the box in any other task is refused.
    """
    targets = list(inputs)
    labels = list(data)
    boxed = {}
    for site, plaintext in inputs.items():
        bind = crypto.input_bind(publisher.public_key, publisher_seq, site, image, labels, targets)
        boxed[site] = publisher.box_to(site, pack({"bind": bind, "input": bytes(plaintext)}))
    payload: dict[str, Any] = {
        "format": FORMAT_2,
        "image": image,
        "targets": targets,
        "inputs": boxed,
        "limits": dict(limits),
    }
    if aggregate is not None:
        payload["aggregate"] = aggregate
    return _with_task_options(payload, algorithm, description, labels)


def _with_task_options(
    payload: dict[str, Any], algorithm: str | None, description: str | None, data: list[str]
) -> dict[str, Any]:
    """A task payload with its optional keys, each only when given (both formats)."""
    if algorithm is not None:
        payload["algorithm"] = algorithm
    if description is not None:
        payload["description"] = description
    if data:
        payload["data"] = data
    return payload


def task_format(task: Entry) -> int:
    """1 or 2: the format of a task or result entry's payload."""
    return FORMAT_2 if isinstance(task.typed_payload, (TaskPayloadV2, ResultPayloadV2)) else 1


def open_input_v2(site: crypto.Signer, task: Entry) -> bytes:
    """The plaintext input of a format-2 ``task`` for ``site``, or InputRefused.

    Opens the box with (site key, the task entry's author) and checks its binding against
    this entry's author, seq, the site, the image, data labels and targets as signed."""
    payload = task.typed_payload
    if not isinstance(payload, TaskPayloadV2):
        raise DecodeError(f"{task.describe()} is not a format-2 task")
    me = site.public_key
    boxed = payload.inputs.get(me)
    if boxed is None:
        raise InputRefused(f"{task.describe()} has no input for this site", INPUT_NOT_OURS)
    try:
        opened = site.box_open(task.author, boxed)
    except (SignatureError, DecodeError) as exc:
        raise InputRefused(
            f"{task.describe()}: the input box does not open with this site's key and the "
            f"publisher's ({exc})",
            INPUT_NOT_OURS,
        ) from exc
    try:
        inner = unpack_canonical(opened, len(opened), max_depth=1)
    except DecodeError as exc:
        raise InputRefused(f"{task.describe()}: the opened input: {exc}", INPUT_MALFORMED) from exc
    if (
        type(inner) is not dict
        or inner.keys() != {"bind", "input"}
        or type(inner["bind"]) is not bytes
        or type(inner["input"]) is not bytes
    ):
        raise InputRefused(
            f"{task.describe()}: the opened input is not a {{bind, input}} map", INPUT_MALFORMED
        )
    expected = crypto.input_bind(
        task.author, task.seq, me, payload.image, payload.data or [], payload.targets
    )
    if inner["bind"] != expected:
        raise InputRefused(
            f"{task.describe()}: the input is bound to another task (its binding is not this "
            "entry's publisher, seq, site, image, data labels and targets)",
            INPUT_BOUND_ELSEWHERE,
        )
    data: bytes = inner["input"]
    return data


class SealedOutput(msgspec.Struct, frozen=True):
    """A site's sealed output before it is placed (inline or in the blob store).

    ``ciphertext`` is what leaves the site; ``log_nonce`` and ``log_commit`` are what the
    site keeps (in its journal) to prove its container log later."""

    key: bytes
    commit: bytes
    blob: bytes
    ciphertext: bytes
    log_nonce: bytes
    log_commit: bytes

    @property
    def size(self) -> int:
        return len(self.ciphertext)

    def output_map(self, inline: bool) -> dict[str, Any]:
        """The result's ``output`` map: with ``inline`` the ciphertext goes into the entry,
        without it the entry names the blob (which must then be in the hub's blob store)."""
        output: dict[str, Any] = {
            "key": self.key,
            "blob": self.blob,
            "size": self.size,
            "commit": self.commit,
        }
        if inline:
            output["inline"] = self.ciphertext
        return output


def sealed_output(
    site: crypto.Signer, publisher: bytes, plaintext: bytes, container_log: bytes
) -> SealedOutput:
    """Encrypt ``plaintext`` for ``publisher`` as format 2 writes it.

    Fresh random k (secretstream key), n (commitment nonce), l (log nonce); the key box
    from ``site`` to ``publisher`` carries all three."""
    k, n, log_nonce = crypto.random_key(), crypto.random_key(), crypto.random_key()
    ciphertext = crypto.stream_encrypt(k, plaintext)
    return SealedOutput(
        key=site.box_to(publisher, pack({"k": k, "n": n, "l": log_nonce})),
        commit=crypto.commit(n, plaintext),
        blob=crypto.sha256(ciphertext),
        ciphertext=ciphertext,
        log_nonce=log_nonce,
        log_commit=crypto.log_commit(log_nonce, container_log),
    )


def result_payload_v2(
    task: Entry,
    status: str,
    output: Mapping[str, Any],
    log_commit: bytes,
    image_digest: str,
    reason: str | None = None,
    timings: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """A format-2 result payload; ``output`` is ``SealedOutput.output_map(...)``."""
    payload: dict[str, Any] = {
        "format": FORMAT_2,
        "task": task.hash,
        "status": status,
        "output": dict(output),
        "image_digest": image_digest,
        "log_commit": log_commit,
    }
    if reason is not None:
        payload["reason"] = reason.encode()[:MAX_TEXT_LEN].decode(errors="ignore")
    if timings is not None:
        payload["timings"] = dict(timings)
    return payload


class OpenedOutput(msgspec.Struct, frozen=True):
    """A format-2 output opened by its researcher: the plaintext and the two nonces (``n``
    proves the plaintext to anyone, ``l`` lets the site's container log be checked)."""

    plaintext: bytes
    nonce: bytes
    log_nonce: bytes


def open_output_v2(
    researcher: crypto.Signer, site: bytes, output: OutputV2, ciphertext: bytes
) -> OpenedOutput:
    """Open a format-2 output signed by ``site``; FaultyOutput names the failed check.

    ``ciphertext`` is ``output.inline`` or the blob fetched by ``output.blob``; it is checked
    against ``blob`` and ``size`` here, so a fetch needs no trust in where it came from."""
    try:
        opened = researcher.box_open(site, output.key)
    except (SignatureError, DecodeError) as exc:
        raise FaultyOutput(f"the output key box does not open: {exc}", "key box") from exc
    try:
        keys = unpack_canonical(opened, len(opened), max_depth=1)
    except DecodeError as exc:
        raise FaultyOutput(
            f"the opened key box is not canonical msgpack: {exc}", "key box"
        ) from exc
    if (
        type(keys) is not dict
        or keys.keys() != {"k", "n", "l"}
        or any(type(v) is not bytes or len(v) != crypto.NONCE_SIZE for v in keys.values())
    ):
        raise FaultyOutput("the opened key box is not a {k, n, l} map of 32-byte values", "key box")
    if len(ciphertext) != output.size or crypto.sha256(ciphertext) != output.blob:
        raise FaultyOutput(
            f"the ciphertext ({len(ciphertext)} bytes) does not hash to the signed blob id "
            f"{output.blob.hex()[:16]}… ({output.size} bytes)",
            "blob",
        )
    try:
        plaintext = crypto.stream_decrypt(keys["k"], ciphertext)
    except (SignatureError, DecodeError) as exc:
        raise FaultyOutput(f"the ciphertext does not decrypt: {exc}", "decrypt") from exc
    if crypto.commit(keys["n"], plaintext) != output.commit:
        raise FaultyOutput(
            "the decrypted output does not match the commitment the site signed", "commitment"
        )
    return OpenedOutput(plaintext, keys["n"], keys["l"])


def cancel_payload(task: bytes, reason: str | None = None) -> dict[str, Any]:
    """A cancel payload: the publisher withdraws its task ``task`` (the task entry's hash)."""
    payload: dict[str, Any] = {"task": task}
    if reason is not None:
        payload["reason"] = reason
    return payload


class AuthorChain:
    """Numbers and links one author's entries: seq 1, 2, 3… each pointing at the last.

    Start from an author's current head (``seq``, ``prev``) when resuming an identity.
    """

    def __init__(self, signer: crypto.Signer, seq: int = 0, prev: bytes = ZERO_HASH) -> None:
        self.signer = signer
        self.seq = seq
        self.prev = prev

    def append(self, kind: str, payload: Mapping[str, Any], timestamp_ms: int) -> Entry:
        entry = Entry.create(self.signer, kind, self.seq + 1, self.prev, timestamp_ms, payload)
        self.seq, self.prev = entry.seq, entry.hash
        return entry
