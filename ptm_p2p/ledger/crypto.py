"""Keys, signatures and sealed boxes: the ledger's only cryptography, over PyNaCl.

One 32-byte Ed25519 seed is a whole identity: it signs ledger entries and checkpoints, it is
the libp2p peer identity, and (converted to X25519, RFC 7748 birational map as in libsodium's
``crypto_sign_ed25519_*_to_curve25519``) it opens sealed boxes addressed to that identity.
So a task's input can be sealed to a site knowing nothing but the site's ledger public key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions
import nacl.public
import nacl.signing

from ptm_p2p.errors import DecodeError, SignatureError

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32


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

    def __repr__(self) -> str:
        return f"Signer(public_key={short(self.public_key)}…)"


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
