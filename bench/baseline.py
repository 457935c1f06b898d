"""Baselines that the benchmarks divide by, measured in the same run on the same machine.

Ratios, not absolute numbers, are what the targets speak of: a slower machine slows both the
baseline and the thing measured.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Sequence

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


def bare_docker_runs(
    image: str, volumes: Sequence[str], count: int, each: int = 1, env: Sequence[str] = ()
) -> float:
    """Seconds until ``count`` parallel lanes have each run ``each`` bare ``docker run --rm``
    of ``image`` (no network, ``volumes`` as ``-v`` mounts, ``env`` as ``-e``, the output
    tmpfs a site also gives): the container floor the task benchmarks divide by."""
    argv = ["docker", "run", "--rm", "--network", "none"]
    for volume in volumes:
        argv += ["-v", volume]
    for item in env:
        argv += ["-e", item]
    argv += ["--tmpfs", "/ptm/output:uid=65534", image]

    def lane() -> None:
        for _ in range(each):
            subprocess.run(argv, check=True, capture_output=True)

    threads = [threading.Thread(target=lane) for _ in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


if __name__ == "__main__":
    print(f"raw Ed25519 verifications: {raw_ed25519_verifies_per_second():,.0f}/s")
