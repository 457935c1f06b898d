"""RFC 9162 §2.1 Merkle tree hashing, inclusion proofs and consistency proofs.

Two families of functions compute the same values:

* list-based (``root``, ``inclusion_proof``, ``consistency_proof``): take every leaf hash of
  the tree. Simple and obviously correct; used by tests, tools and small trees.
* node-based (``root_from_nodes``, ``inclusion_proof_from_nodes``,
  ``consistency_proof_from_nodes``): take a batch reader of *perfect subtree* hashes keyed
  ``(level, index)`` — the node at level L, index i is the root of the 2**L leaves
  ``[i * 2**L, (i + 1) * 2**L)``; level 0 holds the leaf hashes. Every range the RFC's
  recursive MTH is evaluated on is either perfect or a "ragged right edge" range
  ``[start, size)`` whose start is aligned to a power of two at least as large as its
  length, so it splits into at most log2(n) aligned perfect subtrees (the binary digits of
  its length, largest first) folded from the right. A root or proof therefore needs at most
  O(log² n) — in practice ~2 log n — node reads, fetched in one batch.

``CompactRange`` is the one compact range (the "right frontier": the perfect subtrees of
``[0, size)``): extended leaf by leaf it gives any prefix root in O(log n), and
``extend_nodes`` reports every perfect node an append completes, so a store never recomputes
the whole tree. The store, the audit and replication all use it.

Verification follows the iterative algorithms of RFC 9162 §2.1.3.2 (inclusion) and
§2.1.4.2 (consistency) and raises ``ProofError`` on any mismatch or malformed input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence

from ptm_p2p.errors import ProofError

HASH_SIZE = 32

# RFC 9162 §2.1.1: domain separation between leaves and interior nodes (second-preimage
# resistance: a leaf can never be confused with a node).
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

#: A node coordinate: (level, index); the node covers leaves [index << level, (index+1) << level).
Coord = tuple[int, int]
#: Batch reader of perfect-subtree hashes, returned in the order of the coordinates asked.
NodeReader = Callable[[Sequence[Coord]], Sequence[bytes]]

_EMPTY_ROOT = hashlib.sha256(b"").digest()


# --- hashing ---------------------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) (RFC 9162 §2.1.1)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def empty_root() -> bytes:
    """MTH({}) = SHA-256() — the hash of the empty string (RFC 9162 §2.1.1)."""
    return _EMPTY_ROOT


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2): RFC 9162's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(leaves: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH(D[start:end]) computed bottom-up, O(end - start) hashes, no recursion depth."""
    if end == start:
        return _EMPTY_ROOT
    # Folding the perfect subtrees of the range from the right gives the RFC's shape for
    # any range that is an RFC subtree of the whole tree (and for [0, n) in particular).
    parts = [_perfect_root(leaves, lv, ix) for lv, ix in range_decomposition(start, end)]
    return _fold_right(parts)


def _perfect_root(leaves: Sequence[bytes], level: int, index: int) -> bytes:
    layer = list(leaves[index << level : (index + 1) << level])
    while len(layer) > 1:
        layer = [node_hash(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


def _fold_right(parts: Sequence[bytes]) -> bytes:
    acc = parts[-1]
    for h in reversed(parts[:-1]):
        acc = node_hash(h, acc)
    return acc


def _check_leaves(leaf_hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(leaf_hashes):
        if len(h) != HASH_SIZE:
            raise ProofError(f"leaf hash {i} is {len(h)} bytes, expected {HASH_SIZE}")


# --- ranges and node coordinates -------------------------------------------------------------


def range_decomposition(start: int, end: int) -> list[Coord]:
    """The maximal aligned perfect subtrees covering ``[start, end)``, left to right.

    For the ranges the RFC recursion visits (perfect ones, and ``[start, size)`` with
    ``start`` aligned to a power of two >= its length) their sizes are the binary digits of
    ``end - start``, largest first, and MTH of the range is their right fold.
    """
    if not 0 <= start <= end:
        raise ProofError(f"bad leaf range [{start}, {end})")
    coords: list[Coord] = []
    pos = start
    while pos < end:
        # largest level aligned at pos (pos == 0 is aligned at every level) ...
        level = (pos & -pos).bit_length() - 1 if pos else (end - pos).bit_length() - 1
        # ... that still fits in the range
        while (1 << level) > end - pos:
            level -= 1
        coords.append((level, pos >> level))
        pos += 1 << level
    return coords


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTH form PATH(index, D[0:size]), in proof order (leaf upward).

    RFC 9162 §2.1.3.1: PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) if m < k,
    PATH(m - k, D[k:n]) : MTH(D[0:k]) otherwise; PATH(0, D[1]) = {}.
    """
    out: list[tuple[int, int]] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = _split(hi - lo)
        if m < k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m = lo + k, m - k
    out.reverse()
    return out


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose MTH form PROOF(old_size, D[0:new_size]), in proof order.

    RFC 9162 §2.1.4.1: SUBPROOF(m, D[n], b):
      m == n: {} if b else {MTH(D[n])};
      m <= k: SUBPROOF(m, D[0:k], b) : MTH(D[k:n]);
      m > k:  SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]).
    """
    out: list[tuple[int, int]] = []
    lo, hi, m, b = 0, new_size, old_size, True
    while m != hi - lo:
        n = hi - lo
        k = _split(n)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo, m, b = lo + k, m - k, False
    if not b:
        out.append((lo, hi))
    out.reverse()
    return out


def _check_int(what: str, value: object) -> None:
    # bool is an int subclass and floats compare fine: both would slip through the range
    # checks below and fail later with a raw TypeError, or (True) be taken as 1.
    if type(value) is not int:
        raise ProofError(f"{what} must be an integer, got {type(value).__name__}")


def _check_index(index: int, size: int) -> None:
    _check_int("leaf index", index)
    _check_int("tree size", size)
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")


def _check_sizes(old_size: int, new_size: int) -> None:
    _check_int("old tree size", old_size)
    _check_int("new tree size", new_size)
    if not 0 <= old_size <= new_size:
        raise ProofError(
            f"consistency needs 0 <= old size <= new size, got {old_size} and {new_size}"
        )


# --- list-based -------------------------------------------------------------------------------


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the tree with these leaf hashes; SHA-256(b"") for the empty tree."""
    _check_leaves(leaf_hashes)
    return _mth(leaf_hashes, 0, len(leaf_hashes))


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[0:n]) of RFC 9162 §2.1.3.1, ordered from the leaf's sibling upward."""
    _check_leaves(leaf_hashes)
    _check_index(index, len(leaf_hashes))
    return [_mth(leaf_hashes, a, b) for a, b in _inclusion_ranges(index, len(leaf_hashes))]


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(old_size, D[0:n]) of RFC 9162 §2.1.4.1, deepest node first.

    ``old_size == n`` and ``old_size == 0`` both give ``[]`` (the RFC defines no proof from
    an empty tree: every tree is consistent with it).
    """
    _check_leaves(leaf_hashes)
    _check_sizes(old_size, len(leaf_hashes))
    if old_size == 0:
        return []
    return [_mth(leaf_hashes, a, b) for a, b in _consistency_ranges(old_size, len(leaf_hashes))]


# --- node-based (for stores) ----------------------------------------------------------------


def _eval_ranges(read: NodeReader, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """MTH of each range from perfect-subtree hashes, with one batched read."""
    groups = [range_decomposition(a, b) for a, b in ranges]
    coords = sorted({c for g in groups for c in g})
    hashes = read(coords)
    if len(hashes) != len(coords):
        raise ProofError(f"node reader returned {len(hashes)} hashes for {len(coords)} nodes")
    table = dict(zip(coords, hashes, strict=True))
    return [_fold_right([table[c] for c in g]) if g else _EMPTY_ROOT for g in groups]


def root_from_nodes(read: NodeReader, size: int) -> bytes:
    """MTH(D[0:size]) from at most log2(size) + 1 perfect-subtree hashes."""
    if size < 0:
        raise ProofError(f"tree size {size} is negative")
    return _eval_ranges(read, [(0, size)])[0]


def inclusion_proof_from_nodes(read: NodeReader, index: int, size: int) -> list[bytes]:
    """Same value as ``inclusion_proof(leaves[:size], index)``, from O(log² n) node reads."""
    _check_index(index, size)
    return _eval_ranges(read, _inclusion_ranges(index, size))


def consistency_proof_from_nodes(read: NodeReader, old_size: int, new_size: int) -> list[bytes]:
    """Same value as ``consistency_proof(leaves[:new_size], old_size)``."""
    _check_sizes(old_size, new_size)
    if old_size == 0:
        return []
    return _eval_ranges(read, _consistency_ranges(old_size, new_size))


def frontier(size: int) -> list[Coord]:
    """The perfect subtrees of ``[0, size)``: what ``extend_nodes`` needs of the old tree."""
    return range_decomposition(0, size)


class CompactRange:
    """The compact range ``[0, size)`` (RFC 9162 §2.1.1 tree hash, kept incrementally).

    ``hashes`` are the perfect-subtree hashes of ``frontier(size)``, largest first: one per
    set bit of ``size``. Appending leaf ``i`` merges exactly like binary addition: it
    completes one parent per trailing 1-bit of ``i``.
    """

    __slots__ = ("size", "hashes")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        _check_int("tree size", size)
        if size < 0:
            raise ProofError(f"tree size {size} is negative")
        if len(hashes) != size.bit_count():
            raise ProofError(
                f"tree of size {size} has {size.bit_count()} frontier nodes, got {len(hashes)}"
            )
        self.size = size
        self.hashes = list(hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.hashes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash."""
        hashes, i, acc = self.hashes, self.size, leaf
        while i & 1:
            acc = node_hash(hashes.pop(), acc)
            i >>= 1
        hashes.append(acc)
        self.size += 1

    def extend(self, leaf_hashes: Sequence[bytes]) -> None:
        """Add leaf hashes in order."""
        for leaf in leaf_hashes:
            self.append(leaf)

    def extend_nodes(self, leaf_hashes: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
        """Add leaf hashes; return ``(level, index, hash)`` of every perfect node completed.

        That is the new leaves (level 0) and every interior node they complete, about 2 per
        leaf: what a store writes on append.
        """
        hashes, pos = self.hashes, self.size
        out: list[tuple[int, int, bytes]] = []
        for leaf in leaf_hashes:
            out.append((0, pos, leaf))
            acc, level, index = leaf, 0, pos
            # a right child completes its parent, whose left sibling is the last hash held
            while index & 1:
                acc = node_hash(hashes.pop(), acc)
                level, index = level + 1, index >> 1
                out.append((level, index, acc))
            hashes.append(acc)
            pos += 1
        self.size = pos
        return out

    def root(self) -> bytes:
        """MTH(D[0:size]): RFC 9162 splits at the largest power of two below n, i.e. the
        leftmost perfect subtree; folding the frontier from the right reproduces that."""
        return _fold_right(self.hashes) if self.hashes else _EMPTY_ROOT


def extend_nodes(
    old_size: int, frontier_hashes: Sequence[bytes], new_leaf_hashes: Sequence[bytes]
) -> list[tuple[int, int, bytes]]:
    """Every perfect node completed by appending ``new_leaf_hashes`` to a tree of ``old_size``.

    ``frontier_hashes`` are the hashes of ``frontier(old_size)`` in order. Returns
    ``(level, index, hash)`` for the new leaves (level 0) and every interior node they
    complete (``CompactRange.extend_nodes``).
    """
    tree = CompactRange(old_size, frontier_hashes)
    _check_leaves(new_leaf_hashes)
    return tree.extend_nodes(new_leaf_hashes)


# --- verification ---------------------------------------------------------------------------


def _check_hash(what: str, h: bytes) -> None:
    if type(h) is not bytes:
        raise ProofError(f"{what} must be bytes, got {type(h).__name__}")
    if len(h) != HASH_SIZE:
        raise ProofError(f"{what} is {len(h)} bytes, expected a {HASH_SIZE}-byte SHA-256 hash")


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof (RFC 9162 §2.1.3.2); raise ``ProofError`` if it fails."""
    _check_hash("leaf hash", leaf_hash)
    _check_hash("root hash", root)
    for i, p in enumerate(proof):
        _check_hash(f"inclusion proof element {i}", p)
    _check_index(index, size)
    expected_len = len(_inclusion_ranges(index, size))
    if len(proof) != expected_len:
        raise ProofError(
            f"inclusion proof for leaf {index} of {size} has {len(proof)} hashes, "
            f"expected {expected_len}"
        )
    # RFC 9162 §2.1.3.2 steps 3-6
    r = leaf_hash
    for p, left in _walk_path(index, size - 1, proof, "inclusion"):
        r = node_hash(p, r) if left else node_hash(r, p)
    if r != root:
        raise ProofError(
            f"inclusion proof for leaf {index} of {size} does not lead to root "
            f"{root.hex()[:16]}… (got {r.hex()[:16]}…): the entry is not in that tree"
        )


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Check a consistency proof (RFC 9162 §2.1.4.2); raise ``ProofError`` if it fails.

    Edge cases: ``old_size == new_size`` needs an empty proof and equal roots;
    ``old_size == 0`` needs an empty proof and ``old_root`` must be the empty-tree root
    (the RFC gives no proof for it; any tree extends the empty one).
    """
    _check_hash("old root hash", old_root)
    _check_hash("new root hash", new_root)
    for i, p in enumerate(proof):
        _check_hash(f"consistency proof element {i}", p)
    _check_sizes(old_size, new_size)
    if old_size == 0 or old_size == new_size:
        if proof:
            raise ProofError(
                f"consistency proof from {old_size} to {new_size} must be empty, "
                f"got {len(proof)} hashes"
            )
        if old_size == 0 and old_root != _EMPTY_ROOT:
            raise ProofError("old root of an empty tree must be SHA-256 of the empty string")
        if old_size == new_size and old_root != new_root:
            raise ProofError(
                f"two trees of size {new_size} with different roots "
                f"({old_root.hex()[:16]}… and {new_root.hex()[:16]}…): not consistent"
            )
        return
    expected_len = len(_consistency_ranges(old_size, new_size))
    if len(proof) != expected_len:
        raise ProofError(
            f"consistency proof from {old_size} to {new_size} has {len(proof)} hashes, "
            f"expected {expected_len}"
        )
    # RFC 9162 §2.1.4.2 step 2: if old_size is a power of two, prepend old_root.
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    # step 4: shift right while the LSB of fn is set
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c, left in _walk_path(fn, sn, path[1:], "consistency"):
        if left:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
        else:
            sr = node_hash(sr, c)
    if fr != old_root or sr != new_root:
        raise ProofError(
            f"consistency proof from size {old_size} to {new_size} does not match the roots: "
            "the newer tree does not extend the older one (or the proof is corrupt)"
        )


def _walk_path(fn: int, sn: int, proof: Sequence[bytes], kind: str) -> Iterator[tuple[bytes, bool]]:
    """Walk an RFC 9162 proof path from node ``fn`` of last node ``sn`` up to the root.

    Yields each proof hash with whether it is a left sibling (hash it before the running
    value); the inclusion (§2.1.3.2) and consistency (§2.1.4.2) checks share this walk.
    Raises ``ProofError`` if the proof is longer or shorter than the path.
    """
    for p in proof:
        if sn == 0:
            raise ProofError(f"{kind} proof is longer than the path to the root")
        left = bool(fn & 1 or fn == sn)
        yield p, left
        if left and not fn & 1:
            # the right edge of the tree: climb until fn is a right child or the root
            while True:
                fn, sn = fn >> 1, sn >> 1
                if fn & 1 or fn == 0:
                    break
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"{kind} proof is shorter than the path to the root")
