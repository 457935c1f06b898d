"""Deterministic real signed entries for store tests, and the child process of the kill test.

Entry ``k`` of the sequence is a real, signed ``membership`` entry (``genesis`` for k = 0) by
one of four fixed authors, so a parent process can regenerate exactly the bytes a child wrote.
Ed25519 signatures are deterministic (RFC 8032), so the same inputs give the same bytes.

As a script::

    python store_writer.py LEDGER.db BATCH_SIZE

opens a ``SqliteStore``, appends batches continuing from its current size forever, and prints
each acknowledged size (after ``append`` returned, i.e. durably committed) on its own line.
"""

from __future__ import annotations

import hashlib
import sys

from ptm_p2p.ledger import entry as entry_mod
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.entry import AuthorChain, Entry

ADMIN = Signer(bytes([1]) * 32)
HUB = Signer(bytes([2]) * 32)
AUTHORS = [ADMIN, Signer(bytes([3]) * 32), Signer(bytes([4]) * 32), Signer(bytes([5]) * 32)]
T0 = 1_700_000_000_000

_chains = [AuthorChain(s) for s in AUTHORS]
_made: list[Entry] = []


def _payload(k: int) -> dict[str, object]:
    # A real public key per entry: membership entries only admit usable Ed25519 points.
    key = Signer(hashlib.sha256(k.to_bytes(8, "big")).digest()).public_key
    return entry_mod.membership_payload("admit", key, f"site-{k}", "site", reason=f"entry {k}")


def entries(start: int, end: int) -> list[Entry]:
    """Entries ``start .. end-1`` of the fixed sequence (generated once, then cached)."""
    while len(_made) < end:
        k = len(_made)
        if k == 0:
            genesis = entry_mod.genesis_payload(
                "ptm.test/store", ADMIN.public_key, "admin-org", HUB.public_key, "hub-org"
            )
            _made.append(_chains[0].append(entry_mod.GENESIS, genesis, T0))
        else:
            chain = _chains[k % len(AUTHORS)]
            _made.append(chain.append(entry_mod.MEMBERSHIP, _payload(k), T0 + k))
    return _made[start:end]


def equivocating_twin(e: Entry) -> Entry:
    """A different entry with the same author and seq as ``e`` (the author double-signs)."""
    signer = next(s for s in AUTHORS if s.public_key == e.author)
    payload = (
        entry_mod.membership_payload("revoke", bytes(32), "evil-twin", "site")
        if e.kind == entry_mod.MEMBERSHIP
        else {**e.payload, "description": "twin"}
    )
    return Entry.create(signer, e.kind, e.seq, e.prev, e.timestamp_ms + 1, payload)


def main(argv: list[str]) -> None:
    from ptm_p2p.ledger.store import SqliteStore

    path, batch = argv[1], int(argv[2])
    store = SqliteStore(path)
    size = store.size()
    # Sign ahead, so that the loop below spends its time inside append's transaction and
    # the parent's SIGKILL most likely lands in the middle of a commit.
    entries(size, size + 16 * batch)
    while True:
        size = store.append(entries(size, size + batch))
        print(size, flush=True)


if __name__ == "__main__":
    main(sys.argv)
