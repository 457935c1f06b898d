"""Signed checkpoints: C2SP signed-note, tlog-checkpoint and tlog-cosignature (Ed25519).

A checkpoint is the hub's signed statement "the log named <origin> has <size> entries and
this RFC 9162 root". Its wire form is a C2SP signed note::

    <origin>\\n
    <size, ASCII decimal, no leading zeros>\\n
    <base64 root>\\n
    [<extension line>\\n ...]
    \\n
    — <key name> <base64(4-byte key id || signature)>\\n     (one line per signature)

* The hub signs the note text (the body, including its final newline) with Ed25519,
  signature type 0x01: key id = SHA-256(name || 0x0A || 0x01 || pubkey)[:4]
  (C2SP signed-note, "Ed25519 signatures").
* A witness (a site) adds a tlog-cosignature/v1 line, signature type 0x04:
  key id = SHA-256(name || 0x0A || 0x04 || pubkey)[:4], value = key id || u64 big-endian
  timestamp || Ed25519 signature over "cosignature/v1\\ntime <ts>\\n" + body
  (C2SP tlog-cosignature, "Ed25519 signed message").

Verification follows signed-note §Signatures: signatures whose (name, key id) match no known
key are ignored; a known key whose signature fails rejects the whole note; the log's own
signature is required.

Limits (signed-note asks verifiers to bound notes, and to accept at least 16 signatures):
a note is at most ``MAX_NOTE_BYTES`` = 16 KiB of UTF-8, carries at most
``MAX_SIGNATURES`` = 100 signature lines and at most ``MAX_EXTENSIONS`` = 16 extension lines.

Pure code: no clock reads — cosignature timestamps are passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ptm_p2p.errors import CheckpointError, ProofError, SplitViewError
from ptm_p2p.ledger import merkle
from ptm_p2p.ledger.crypto import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, Signer, verify

MAX_NOTE_BYTES = 16 * 1024
MAX_SIGNATURES = 100
MAX_EXTENSIONS = 16

#: signed-note signature type byte for plain Ed25519 note signatures (the log's key).
ALG_ED25519 = 0x01
#: signed-note signature type byte for tlog-cosignature/v1 Ed25519 cosignatures (witnesses).
ALG_COSIGNATURE_V1 = 0x04

_SIG_PREFIX = "\u2014 "  # em dash, space
_COSIG_HEADER = "cosignature/v1\n"
_SIZE_RE = re.compile(r"0|[1-9][0-9]*")
_MAX_TREE_SIZE = 2**63 - 1
_MAX_TIMESTAMP = 2**63 - 1  # tlog-cosignature: "MUST NOT exceed 2^63 - 1"


# --- keys ------------------------------------------------------------------------------------


def _check_key_name(name: str) -> None:
    # signed-note: "Key names MUST be non-empty and MUST NOT contain any Unicode spaces or
    # plus (U+002B) characters." (and no control characters anywhere in a note)
    if not name:
        raise CheckpointError("a signature key name must not be empty")
    if any(c.isspace() or c == "+" or ord(c) < 0x20 or c == "\x7f" for c in name):
        raise CheckpointError(f"key name {name!r} contains a space, '+' or control character")


def key_id(name: str, alg: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || alg || public_key)[:4] (C2SP signed-note, key IDs)."""
    _check_key_name(name)
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:4]


@dataclass(frozen=True)
class Verifier:
    """A known key: a note signature counts only if both name and key id match."""

    name: str
    alg: int  # ALG_ED25519 for the log, ALG_COSIGNATURE_V1 for witnesses
    public_key: bytes
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        if self.alg not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise CheckpointError(
                f"verifier {self.name!r}: signature type 0x{self.alg:02x} is not supported "
                "(use 0x01 Ed25519 or 0x04 Ed25519 cosignature/v1)"
            )
        if len(self.public_key) != PUBLIC_KEY_SIZE:
            raise CheckpointError(
                f"verifier {self.name!r}: Ed25519 public key is {len(self.public_key)} bytes, "
                f"expected {PUBLIC_KEY_SIZE}"
            )
        object.__setattr__(self, "key_id", key_id(self.name, self.alg, self.public_key))

    @classmethod
    def log(cls, name: str, public_key: bytes) -> Verifier:
        return cls(name, ALG_ED25519, public_key)

    @classmethod
    def witness(cls, name: str, public_key: bytes) -> Verifier:
        return cls(name, ALG_COSIGNATURE_V1, public_key)


def verifiers_from_mapping(known: Mapping[str, tuple[int, bytes]]) -> list[Verifier]:
    """``{name: (alg, pubkey)}`` → verifiers (a convenience for configuration files)."""
    return [Verifier(name, alg, pk) for name, (alg, pk) in known.items()]


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """The note text of a tlog-checkpoint: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if type(self.origin) is not str or not self.origin:
            raise CheckpointError("checkpoint origin line must be a non-empty string")
        if self.origin != self.origin.strip() or "\ufeff" in self.origin:
            # One origin, one spelling: " log" or a BOM-prefixed "log" must not pass as "log".
            raise CheckpointError(
                f"checkpoint origin {self.origin!r} has surrounding white space or a BOM"
            )
        for what, line in [("origin", self.origin), *(("extension", e) for e in self.extensions)]:
            if not line:
                raise CheckpointError(f"checkpoint {what} line must not be empty")
            if any(ord(c) < 0x20 or c == "\x7f" for c in line):
                raise CheckpointError(f"checkpoint {what} line {line!r} has a control character")
        if len(self.extensions) > MAX_EXTENSIONS:
            raise CheckpointError(
                f"checkpoint has {len(self.extensions)} extension lines, at most {MAX_EXTENSIONS}"
            )
        if type(self.size) is not int or not 0 <= self.size <= _MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint tree size {self.size} is out of range")
        if len(self.root) != merkle.HASH_SIZE:
            raise CheckpointError(
                f"checkpoint root hash is {len(self.root)} bytes, expected {merkle.HASH_SIZE}"
            )

    def body(self) -> str:
        """The note text that signatures cover, ending in a newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode()]
        return "\n".join([*lines, *self.extensions]) + "\n"

    @classmethod
    def from_body(cls, text: str) -> Checkpoint:
        """Parse a note text (tlog-checkpoint §Note text); raise ``CheckpointError``."""
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError(
                f"checkpoint text has {len(lines)} lines, needs origin, size and root hash"
            )
        origin, size_line, root_line, *ext = lines
        if not _SIZE_RE.fullmatch(size_line):
            raise CheckpointError(
                f"checkpoint size line {size_line!r} is not a decimal without leading zeros"
            )
        size = int(size_line)
        return cls(origin, size, _b64("checkpoint root hash", root_line), tuple(ext))


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, 4-byte key id, and the signature bytes after the id."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        value = base64.b64encode(self.key_id + self.signature).decode()
        return f"{_SIG_PREFIX}{self.name} {value}\n"


@dataclass(frozen=True)
class Cosignature:
    """A witness cosignature that verified: who, and the time it says it was made."""

    name: str
    timestamp: int


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint with its signature lines, exactly as parsed or produced."""

    checkpoint: Checkpoint
    signatures: tuple[NoteSignature, ...]

    @property
    def body(self) -> str:
        return self.checkpoint.body()

    @property
    def text(self) -> str:
        """The whole signed note: body, blank line, signature lines."""
        return self.body + "\n" + "".join(s.line() for s in self.signatures)

    def __str__(self) -> str:
        return self.text


def _b64(what: str, s: str) -> bytes:
    try:
        raw = base64.b64decode(s.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise CheckpointError(f"{what} {s[:60]!r} is not valid base64") from exc
    # reject non-canonical encodings (stray padding bits) so a note has one spelling
    if base64.b64encode(raw).decode() != s:
        raise CheckpointError(f"{what} {s[:60]!r} is not canonical base64")
    return raw


# --- parsing ---------------------------------------------------------------------------------


def parse_checkpoint(note: str | bytes) -> SignedCheckpoint:
    """Parse a signed checkpoint note; raise ``CheckpointError`` on anything malformed.

    Does not verify signatures: use ``verify_checkpoint`` before trusting the text.
    """
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise CheckpointError(f"note is {len(note)} bytes, at most {MAX_NOTE_BYTES}")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointError(f"note is not valid UTF-8 ({exc.reason})") from exc
    size = len(note.encode("utf-8", "surrogatepass"))
    if size > MAX_NOTE_BYTES:
        raise CheckpointError(f"note is {size} bytes, at most {MAX_NOTE_BYTES}")
    for c in note:
        # signed-note: "MUST NOT contain any ASCII control characters ... other than newline"
        if (ord(c) < 0x20 and c != "\n") or c == "\x7f":
            raise CheckpointError(f"note contains control character U+{ord(c):04X}")
        if 0xD800 <= ord(c) <= 0xDFFF:
            raise CheckpointError("note is not valid UTF-8 (lone surrogate)")
    # "the text is separated from the signatures by the last empty line in the note"
    cut = note.rfind("\n\n")
    if cut < 0:
        raise CheckpointError("note has no blank line between text and signatures")
    text, sig_block = note[: cut + 1], note[cut + 2 :]
    if not sig_block:
        raise CheckpointError("note has no signature lines")
    if not sig_block.endswith("\n"):
        raise CheckpointError("note's last signature line does not end with a newline")
    sig_lines = sig_block[:-1].split("\n")
    if len(sig_lines) > MAX_SIGNATURES:
        raise CheckpointError(f"note has {len(sig_lines)} signatures, at most {MAX_SIGNATURES}")
    signatures = tuple(_parse_signature_line(line) for line in sig_lines)
    return SignedCheckpoint(Checkpoint.from_body(text), signatures)


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise CheckpointError(f"signature line {line[:60]!r} does not start with '\u2014 '")
    name, sep, value = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep:
        raise CheckpointError(f"signature line {line[:60]!r} has no space before the signature")
    _check_key_name(name)
    raw = _b64(f"signature of {name!r}", value)
    if len(raw) < 5:
        raise CheckpointError(f"signature of {name!r} is {len(raw)} bytes, needs key id + bytes")
    return NoteSignature(name, raw[:4], raw[4:])


# --- signing ---------------------------------------------------------------------------------


def sign_checkpoint(
    checkpoint: Checkpoint, signer: Signer, key_name: str | None = None
) -> SignedCheckpoint:
    """The log (hub) signs a checkpoint; its key name defaults to the origin (tlog-checkpoint
    "The log's key name in its signature line SHOULD match the origin line")."""
    name = checkpoint.origin if key_name is None else key_name
    kid = key_id(name, ALG_ED25519, signer.public_key)
    sig = signer.sign(checkpoint.body().encode())
    return SignedCheckpoint(checkpoint, (NoteSignature(name, kid, sig),))


def cosignature_message(body: str, timestamp: int) -> bytes:
    """tlog-cosignature Ed25519 signed message: header, time line, whole note body."""
    return f"{_COSIG_HEADER}time {timestamp}\n{body}".encode()


def cosign(signed: SignedCheckpoint, signer: Signer, name: str, timestamp: int) -> SignedCheckpoint:
    """Add (or replace) a witness's cosignature/v1 line, made at ``timestamp`` (POSIX s).

    The caller must have checked consistency with the last checkpoint it cosigned first:
    a cosignature states "this is the largest consistent tree I have seen".
    """
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise CheckpointError(f"cosignature timestamp {timestamp} is out of range")
    kid = key_id(name, ALG_COSIGNATURE_V1, signer.public_key)
    sig = signer.sign(cosignature_message(signed.body, timestamp))
    new = NoteSignature(name, kid, timestamp.to_bytes(8, "big") + sig)
    kept = tuple(s for s in signed.signatures if (s.name, s.key_id) != (name, kid))
    return SignedCheckpoint(signed.checkpoint, (*kept, new))


# --- verification ----------------------------------------------------------------------------


def _matches(sig: NoteSignature, v: Verifier) -> bool:
    return sig.name == v.name and sig.key_id == v.key_id


def _check_one(signed: SignedCheckpoint, sig: NoteSignature, v: Verifier) -> int | None:
    """Verify a signature line from a known key; return the cosignature timestamp if any."""
    where = f"checkpoint {signed.checkpoint.origin} size {signed.checkpoint.size}"
    if v.alg == ALG_ED25519:
        if len(sig.signature) != SIGNATURE_SIZE or not verify(
            v.public_key, signed.body.encode(), sig.signature
        ):
            raise CheckpointError(
                f"{where}: signature by known key {v.name} ({v.key_id.hex()}) does not verify; "
                "the note was altered or forged — do not trust it, fetch it again from the hub"
            )
        return None
    if len(sig.signature) != 8 + SIGNATURE_SIZE:
        raise CheckpointError(
            f"{where}: cosignature by {v.name} is {len(sig.signature)} bytes, expected 72 "
            "(8-byte timestamp + Ed25519 signature)"
        )
    ts = int.from_bytes(sig.signature[:8], "big")
    if ts > _MAX_TIMESTAMP or not verify(
        v.public_key, cosignature_message(signed.body, ts), sig.signature[8:]
    ):
        raise CheckpointError(
            f"{where}: cosignature by known witness {v.name} ({v.key_id.hex()}) does not "
            "verify; the note was altered or the cosignature forged"
        )
    return ts


def verify_checkpoint(
    signed: SignedCheckpoint | str | bytes, log: Verifier, others: Iterable[Verifier] = ()
) -> Checkpoint:
    """Check a signed checkpoint and return its checkpoint.

    Requires a valid signature by ``log`` (the hub's key); checks every signature made by a
    key in ``others`` too and rejects the note if one fails; ignores unknown keys
    (C2SP signed-note §Signatures).
    """
    if not isinstance(signed, SignedCheckpoint):
        signed = parse_checkpoint(signed)
    if log.alg != ALG_ED25519:
        raise CheckpointError(f"log key {log.name} must be an Ed25519 (0x01) note key")
    known = [log, *others]
    log_signed = False
    for sig in signed.signatures:
        for v in known:
            if _matches(sig, v):
                _check_one(signed, sig, v)
                log_signed = log_signed or v == log
    if not log_signed:
        raise CheckpointError(
            f"checkpoint {signed.checkpoint.origin} size {signed.checkpoint.size} carries no "
            f"signature by the log key {log.name} ({log.key_id.hex()}); "
            "check the hub's public key in your configuration"
        )
    return signed.checkpoint


def verify_cosignatures(
    signed: SignedCheckpoint, witnesses: Iterable[Verifier]
) -> list[Cosignature]:
    """The given witnesses that validly cosigned, with their timestamps, in note order.

    A cosignature line from one of ``witnesses`` that fails rejects the note
    (``CheckpointError``); witnesses that did not cosign are simply absent. This does not
    check the log's own signature: call ``verify_checkpoint`` for that.
    """
    ws = [w for w in witnesses if w.alg == ALG_COSIGNATURE_V1]
    out: list[Cosignature] = []
    for sig in signed.signatures:
        for w in ws:
            if _matches(sig, w):
                ts = _check_one(signed, sig, w)
                assert ts is not None
                out.append(Cosignature(w.name, ts))
    return out


def check_consistent(
    first: SignedCheckpoint,
    second: SignedCheckpoint,
    proof: Sequence[bytes],
    log: Verifier,
) -> None:
    """Raise ``SplitViewError`` if two validly signed checkpoints of one log disagree.

    ``proof`` is the RFC 9162 consistency proof from the smaller to the larger tree, as
    served by the log (or computed from its entries). Since the log must be able to prove
    consistency between any two checkpoints it signed (C2SP tlog-checkpoint §Signatures),
    a proof that fails — or two different roots at the same size — is evidence of a split
    view: both notes are carried in the error. Bad signatures or different origins raise
    ``CheckpointError`` instead (that is not the log's fault).
    """
    a = verify_checkpoint(first, log)
    b = verify_checkpoint(second, log)
    if a.origin != b.origin:
        raise CheckpointError(f"checkpoints of different logs: {a.origin!r} and {b.origin!r}")
    if a.size > b.size:
        first, second, a, b = second, first, b, a
    try:
        merkle.verify_consistency(a.size, b.size, proof, a.root, b.root)
    except ProofError as exc:
        raise SplitViewError(
            f"split view of log {a.origin}: checkpoints at sizes {a.size} and {b.size} are "
            f"both signed by {log.name} but not consistent ({exc}); stop acting on this log, "
            "keep both notes as evidence and tell the other members",
            first.text,
            second.text,
        ) from exc
