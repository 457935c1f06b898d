"""Keys, signatures and sealed boxes: the ledger's only cryptography, over PyNaCl.

One 32-byte Ed25519 seed is a whole identity: it signs ledger entries and checkpoints, it is
the libp2p peer identity, and (converted to X25519, RFC 7748 birational map as in libsodium's
``crypto_sign_ed25519_*_to_curve25519``) it opens sealed boxes addressed to that identity.
So a task's input can be sealed to a site knowing nothing but the site's ledger public key.

Format 2 of tasks and results (``docs/ledger.md``, "Format 2") adds, all over libsodium:

* ``Signer.box_to`` / ``Signer.box_open``: authenticated public-key encryption between two
  identities (``crypto_box``, X25519 + XSalsa20-Poly1305, random 24-byte nonce). Unlike a
  sealed box, the recipient learns *who* encrypted, which is what binds an input to its
  publisher and an output key to its site.
* ``stream_encrypt`` / ``stream_decrypt``: a whole output under a fresh 32-byte key with
  secretstream (XChaCha20-Poly1305, chunks of 1 MiB, the last tagged FINAL, so truncation and
  reordering are detected).
* ``commit`` / ``log_commit`` / ``input_bind``: SHA-256 under a domain string over a random
  nonce (or the task's public fields) and the plaintext: only who holds the nonce can
  confirm a guess, unlike a plain digest of the plaintext.

Every failure is a ``SignatureError`` or ``DecodeError`` (``ptm_p2p.errors``): no PyNaCl
exception leaves this module.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

from ptm_p2p.errors import DecodeError, SignatureError
from ptm_p2p.ledger.encoding import pack

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32

# --- format 2 constants (docs/ledger.md, "Format 2") -------------------------------------------

BIND_DOMAIN = b"ptm/input-bind/v2\n"
"""Domain of an input's binding to its task: SHA-256(BIND_DOMAIN || msgpack([...]))."""
COMMIT_DOMAIN = b"ptm/commit/v2\n"
"""Domain of an output's commitment: SHA-256(COMMIT_DOMAIN || n || plaintext)."""
LOG_DOMAIN = b"ptm/log/v2\n"
"""Domain of a container log's commitment: SHA-256(LOG_DOMAIN || l || log)."""
NONCE_SIZE = 32
"""Commitment nonces and secretstream keys are 32 random bytes."""
BOX_NONCE_SIZE = nacl.bindings.crypto_box_NONCEBYTES  # 24
BOX_OVERHEAD = BOX_NONCE_SIZE + 16  # nonce + Poly1305 tag
"""A box is nonce24 || mac16 || ciphertext: anything shorter than 40 bytes is not one."""
STREAM_CHUNK = 1024 * 1024
"""Plaintext bytes per secretstream chunk: every chunk but the last holds exactly this many."""
STREAM_HEADER_SIZE = nacl.bindings.crypto_secretstream_xchacha20poly1305_HEADERBYTES  # 24
STREAM_ABYTES = nacl.bindings.crypto_secretstream_xchacha20poly1305_ABYTES  # 17
STREAM_MIN_SIZE = STREAM_HEADER_SIZE + STREAM_ABYTES
"""The ciphertext of an empty output: the header and one FINAL chunk of 0 bytes (41 bytes)."""
_TAG_MESSAGE = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
_TAG_FINAL = nacl.bindings.crypto_secretstream_xchacha20poly1305_TAG_FINAL


def short(key: bytes) -> str:
    """A key's first 8 hex digits, for human messages (never for decisions)."""
    return key.hex()[:8]


@dataclass(frozen=True, repr=False)
class Signer:
    """An Ed25519 private key. ``repr`` never shows the seed."""

    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_SIZE:
            raise DecodeError(f"an Ed25519 seed is {SEED_SIZE} bytes, got {len(self.seed)}")

    @classmethod
    def generate(cls) -> Signer:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def _key(self) -> nacl.signing.SigningKey:
        return nacl.signing.SigningKey(self.seed)

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    def sign(self, message: bytes) -> bytes:
        """Detached 64-byte Ed25519 signature over ``message``."""
        return bytes(self._key.sign(message).signature)

    def open_sealed(self, ciphertext: bytes) -> bytes:
        """Open a sealed box addressed to this identity's public key."""
        curve_sk = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(self.seed + self.public_key)
        box = nacl.public.SealedBox(nacl.public.PrivateKey(curve_sk))
        try:
            return bytes(box.decrypt(ciphertext))
        except nacl.exceptions.CryptoError as exc:
            raise SignatureError(
                "sealed box does not open with this key: it was sealed to someone else or altered"
            ) from exc

    @property
    def _curve_private(self) -> nacl.public.PrivateKey:
        curve_sk = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(self.seed + self.public_key)
        return nacl.public.PrivateKey(curve_sk)

    def box_to(self, their_key: bytes, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` from this identity to ``their_key`` (an Ed25519 public
        key): ``nonce24 || mac16 || ciphertext``. Only ``their_key``'s holder opens it, and
        opening it proves this identity made it (or that identity itself)."""
        box = nacl.public.Box(self._curve_private, _curve_public(their_key))
        return bytes(box.encrypt(plaintext, secrets.token_bytes(BOX_NONCE_SIZE)))

    def box_open(self, their_key: bytes, ciphertext: bytes) -> bytes:
        """Open a box that ``their_key``'s holder made for this identity (``box_to``).

        SignatureError if it was made by anyone else, for anyone else, or altered."""
        if len(ciphertext) < BOX_OVERHEAD:
            raise SignatureError(
                f"a box is at least {BOX_OVERHEAD} bytes (nonce and tag), got {len(ciphertext)}"
            )
        box = nacl.public.Box(self._curve_private, _curve_public(their_key))
        try:
            return bytes(box.decrypt(ciphertext))
        except nacl.exceptions.CryptoError as exc:
            raise SignatureError(
                f"box does not open between this key and {short(their_key)}: it was made by "
                "another key, for another key, or altered"
            ) from exc

    def agree(self, their_key: bytes) -> bytes:
        """The 32-byte X25519 shared secret between this identity and ``their_key`` (both
        converted from Ed25519): the same bytes on either side, known to no one else. Raw:
        hash it with both public keys before use (``secagg.pair_seed``). DecodeError if
        ``their_key`` is not a usable key (a small-order point gives an all-zero secret)."""
        try:
            shared = nacl.bindings.crypto_scalarmult(
                self._curve_private.encode(), _curve_public(their_key).encode()
            )
        except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError) as exc:
            raise DecodeError(f"no key agreement with {short(their_key)}: {exc}") from exc
        if shared == bytes(32):
            raise DecodeError(f"no key agreement with {short(their_key)}: a small-order key")
        return bytes(shared)

    def __repr__(self) -> str:
        return f"Signer(public_key={short(self.public_key)}…)"


def _curve_public(public_key: bytes) -> nacl.public.PublicKey:
    if type(public_key) is not bytes or len(public_key) != PUBLIC_KEY_SIZE:
        raise DecodeError(f"a public key is {PUBLIC_KEY_SIZE} bytes")
    try:
        curve_pk = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(public_key)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError) as exc:
        raise DecodeError(f"key {short(public_key)} is not a valid Ed25519 public key") from exc
    return nacl.public.PublicKey(curve_pk)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (
        nacl.exceptions.BadSignatureError,
        nacl.exceptions.ValueError,
        nacl.exceptions.TypeError,
    ):
        return False
    return True


def is_usable_public_key(public_key: bytes) -> bool:
    """True for a 32-byte Ed25519 point that can sign and receive sealed boxes.

    libsodium's conversion to X25519 refuses non-canonical encodings and small-order
    points (such as 32 zero bytes), keys under which no one could be held to a signature.
    """
    if len(public_key) != PUBLIC_KEY_SIZE:
        return False
    try:
        nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(public_key)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError):
        return False
    return True


def seal(public_key: bytes, plaintext: bytes) -> bytes:
    """Encrypt ``plaintext`` so only the holder of ``public_key``'s seed can read it."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise DecodeError(f"a public key is {PUBLIC_KEY_SIZE} bytes, got {len(public_key)}")
    try:
        curve_pk = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(public_key)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError) as exc:
        raise DecodeError(f"key {short(public_key)} is not a valid Ed25519 public key") from exc
    return bytes(nacl.public.SealedBox(nacl.public.PublicKey(curve_pk)).encrypt(plaintext))


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def random_key() -> bytes:
    """32 random bytes: a secretstream key or a commitment nonce."""
    return secrets.token_bytes(NONCE_SIZE)


# --- secretstream: an output of any size under one key ------------------------------------------


def stream_encrypt(key: bytes, plaintext: bytes) -> bytes:
    """``header24 || chunk || … || chunk``: secretstream XChaCha20-Poly1305 under ``key``.

    Every chunk but the last holds exactly ``STREAM_CHUNK`` plaintext bytes (so a reader
    can split the ciphertext without framing); the last, possibly empty, is tagged FINAL.
    Each ciphertext chunk is its plaintext plus 17 bytes (tag byte and MAC)."""
    _stream_key(key)
    state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
    header = nacl.bindings.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    parts = [header]
    view = memoryview(plaintext)
    starts = range(0, max(len(plaintext), 1), STREAM_CHUNK)
    last = starts[-1]
    for start in starts:
        tag = _TAG_FINAL if start == last else _TAG_MESSAGE
        chunk = bytes(view[start : start + STREAM_CHUNK])
        parts.append(
            nacl.bindings.crypto_secretstream_xchacha20poly1305_push(state, chunk, None, tag)
        )
    return b"".join(parts)


def stream_decrypt(key: bytes, ciphertext: bytes) -> bytes:
    """The plaintext of ``stream_encrypt(key, …)``; SignatureError if the key is wrong or the
    ciphertext was altered, truncated (no FINAL chunk) or extended (bytes after FINAL)."""
    _stream_key(key)
    if len(ciphertext) < STREAM_MIN_SIZE:
        raise SignatureError(
            f"a secretstream ciphertext is at least {STREAM_MIN_SIZE} bytes, got {len(ciphertext)}"
        )
    state = nacl.bindings.crypto_secretstream_xchacha20poly1305_state()
    try:
        nacl.bindings.crypto_secretstream_xchacha20poly1305_init_pull(
            state, bytes(ciphertext[:STREAM_HEADER_SIZE]), key
        )
    except nacl.exceptions.CryptoError as exc:  # pragma: no cover - any 24 bytes are a header
        raise SignatureError(f"secretstream header refused: {exc}") from exc
    view = memoryview(ciphertext)
    step = STREAM_CHUNK + STREAM_ABYTES
    out = []
    at = STREAM_HEADER_SIZE
    while True:
        chunk = bytes(view[at : at + step])
        at += len(chunk)
        if len(chunk) < STREAM_ABYTES:
            raise SignatureError("the ciphertext ends before its FINAL chunk: truncated")
        try:
            plain, tag = nacl.bindings.crypto_secretstream_xchacha20poly1305_pull(
                state, chunk, None
            )
        except nacl.exceptions.CryptoError as exc:
            raise SignatureError(
                f"the ciphertext does not decrypt at byte {at - len(chunk)}: wrong key, or "
                "the bytes were altered"
            ) from exc
        out.append(plain)
        if tag == _TAG_FINAL:
            if at != len(ciphertext):
                raise SignatureError(
                    f"{len(ciphertext) - at} bytes follow the FINAL chunk: the ciphertext was "
                    "extended"
                )
            return b"".join(out)
        if at >= len(ciphertext):
            raise SignatureError("the ciphertext ends before its FINAL chunk: truncated")


def stream_size(plaintext_size: int) -> int:
    """The ciphertext size ``stream_encrypt`` gives for ``plaintext_size`` bytes."""
    chunks = max(1, -(-plaintext_size // STREAM_CHUNK))
    return STREAM_HEADER_SIZE + plaintext_size + chunks * STREAM_ABYTES


def _stream_key(key: bytes) -> None:
    if type(key) is not bytes or len(key) != NONCE_SIZE:
        raise DecodeError(f"a secretstream key is {NONCE_SIZE} bytes")


# --- commitments ----------------------------------------------------------------------------


def commit(nonce: bytes, plaintext: bytes) -> bytes:
    """SHA-256(``ptm/commit/v2\n`` || nonce || plaintext): the output commitment of a
    format-2 result. Without the 32-byte nonce no guess of the plaintext can be checked."""
    return hashlib.sha256(COMMIT_DOMAIN + nonce + plaintext).digest()


def log_commit(nonce: bytes, log: bytes) -> bytes:
    """SHA-256(``ptm/log/v2\n`` || nonce || container log): a result's ``log_commit``."""
    return hashlib.sha256(LOG_DOMAIN + nonce + log).digest()


def input_bind(
    publisher: bytes,
    publisher_seq: int,
    site: bytes,
    image: str,
    data: Sequence[str],
    targets: Sequence[bytes],
) -> bytes:
    """SHA-256(``ptm/input-bind/v2\n`` || msgpack([publisher, seq, site, image, data,
    targets])): what ties a format-2 input to exactly one task entry of one publisher.

    ``data`` and ``targets`` are the task's lists as signed (``data`` is [] when absent)."""
    fields = [publisher, publisher_seq, site, image, list(data), list(targets)]
    return hashlib.sha256(BIND_DOMAIN + pack(fields)).digest()
