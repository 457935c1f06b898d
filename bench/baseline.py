"""Baselines that the benchmarks divide by, measured in the same run on the same machine.

Ratios, not absolute numbers, are what the targets speak of: a slower machine slows both the
baseline and the thing measured.
"""

from __future__ import annotations

import time

import nacl.signing


def raw_ed25519_verifies_per_second(seconds: float = 2.0, message_size: int = 300) -> float:
    """PyNaCl ``VerifyKey.verify`` calls per second on one core, on ``message_size``-byte messages.

    300 bytes is about the size of a simulated ledger entry body.
    """
    key = nacl.signing.SigningKey.generate()
    verify_key = key.verify_key
    message = bytes(range(256)) * (message_size // 256) + bytes(message_size % 256)
    signature = key.sign(message).signature
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            verify_key.verify(message, signature)
        count += 200
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


if __name__ == "__main__":
    print(f"raw Ed25519 verifications: {raw_ed25519_verifies_per_second():,.0f}/s")
