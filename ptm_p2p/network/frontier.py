"""The right frontier of a Merkle tree: enough to extend it and compute its root in O(log n).

A replica keeps the frontier of its verified log in memory. To check a batch of entries
against a signed checkpoint it extends a *copy* of the frontier with the batch's leaf hashes
and compares the resulting root with the checkpoint's root (RFC 9162 §2.1.1 tree hash): no
entry is stored before the whole batch is proven to be exactly the prefix the hub signed.
"""

from __future__ import annotations

from collections.abc import Sequence

from ptm_p2p.ledger import merkle


class Frontier:
    """Perfect-subtree hashes of ``[0, size)``, largest first (``merkle.frontier`` order)."""

    __slots__ = ("size", "hashes")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        self.size = size
        self.hashes = list(hashes)

    def copy(self) -> Frontier:
        return Frontier(self.size, self.hashes)

    def extend(self, leaf_hashes: Sequence[bytes]) -> None:
        # The stack of (level, hash) pairs merges exactly like binary addition: appending
        # leaf i completes one parent per trailing 1-bit of i.
        sizes = [1 << level for level, _ in merkle.frontier(self.size)]
        stack = list(zip(sizes, self.hashes, strict=True))
        node_hash = merkle.node_hash
        for h in leaf_hashes:
            width, acc = 1, h
            while stack and stack[-1][0] == width:
                acc = node_hash(stack.pop()[1], acc)
                width <<= 1
            stack.append((width, acc))
        self.size += len(leaf_hashes)
        self.hashes = [h for _, h in stack]

    def root(self) -> bytes:
        if not self.hashes:
            return merkle.empty_root()
        # RFC 9162: MTH splits at the largest power of two below n, i.e. the leftmost
        # perfect subtree; folding from the right reproduces that recursion.
        acc = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            acc = merkle.node_hash(h, acc)
        return acc
