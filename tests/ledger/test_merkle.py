"""merkle.py against a literal, recursive transcription of RFC 9162 §2.1.

Exhaustive for every tree size 0..64 (every index, every old size), bit-flip rejection for a
sample of sizes, RFC 6962 constants, and hypothesis for larger random sizes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptm_p2p.errors import ProofError
from ptm_p2p.ledger import merkle

# --- the RFC, transcribed literally (§2.1.1, §2.1.3.1, §2.1.4.1) ----------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    """MTH over *raw data* D[n]."""
    if len(d) == 0:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


def data(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


def leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(x) for x in data(n)]


def flip(b: bytes, bit: int) -> bytes:
    arr = bytearray(b)
    arr[bit // 8] ^= 1 << (bit % 8)
    return bytes(arr)


def nodes_reader(lh: Sequence[bytes]) -> merkle.NodeReader:
    """All perfect nodes of a tree, built with extend_nodes in uneven batches."""
    table: dict[merkle.Coord, bytes] = {}
    size = 0
    step = 1
    while size < len(lh):
        batch = lh[size : size + step]
        fr = [table[c] for c in merkle.frontier(size)]
        for lv, ix, h in merkle.extend_nodes(size, fr, batch):
            table[(lv, ix)] = h
        size += len(batch)
        step = step % 5 + 1

    def read(coords: Sequence[merkle.Coord]) -> list[bytes]:
        return [table[c] for c in coords]

    return read


# --- constants --------------------------------------------------------------------------------


def test_rfc6962_constants() -> None:
    assert (
        merkle.root([]).hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert (
        merkle.leaf_hash(b"").hex()
        == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert (
        merkle.node_hash(b"a" * 32, b"b" * 32)
        == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


# --- exhaustive small trees ---------------------------------------------------------------------


@pytest.mark.parametrize("n", range(65))
def test_roots_and_proofs_match_rfc(n: int) -> None:
    d = data(n)
    lh = leaves(n)
    read = nodes_reader(lh)
    r = merkle.root(lh)
    assert r == ref_mth(d)
    assert merkle.root_from_nodes(read, n) == r
    for m in range(n):
        proof = merkle.inclusion_proof(lh, m)
        assert proof == ref_path(m, d)
        assert merkle.inclusion_proof_from_nodes(read, m, n) == proof
        merkle.verify_inclusion(lh[m], m, n, proof, r)
    for old in range(n + 1):
        proof = merkle.consistency_proof(lh, old)
        assert proof == ([] if old == 0 else ref_proof(old, d))
        assert merkle.consistency_proof_from_nodes(read, old, n) == proof
        merkle.verify_consistency(old, n, proof, merkle.root(lh[:old]), r)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 16, 31, 33])
def test_every_single_bit_flip_rejected(n: int) -> None:
    lh = leaves(n)
    r = merkle.root(lh)
    for m in range(n):
        proof = merkle.inclusion_proof(lh, m)
        for bit in range(256):
            with pytest.raises(ProofError):
                merkle.verify_inclusion(flip(lh[m], bit), m, n, proof, r)
            with pytest.raises(ProofError):
                merkle.verify_inclusion(lh[m], m, n, proof, flip(r, bit))
            for j in range(len(proof)):
                bad = list(proof)
                bad[j] = flip(bad[j], bit)
                with pytest.raises(ProofError):
                    merkle.verify_inclusion(lh[m], m, n, bad, r)
    for old in range(1, n + 1):
        proof = merkle.consistency_proof(lh, old)
        old_root = merkle.root(lh[:old])
        for bit in range(256):
            with pytest.raises(ProofError):
                merkle.verify_consistency(old, n, proof, flip(old_root, bit), r)
            with pytest.raises(ProofError):
                merkle.verify_consistency(old, n, proof, old_root, flip(r, bit))
            for j in range(len(proof)):
                bad = list(proof)
                bad[j] = flip(bad[j], bit)
                with pytest.raises(ProofError):
                    merkle.verify_consistency(old, n, bad, old_root, r)


def test_wrong_index_size_or_length_rejected() -> None:
    lh = leaves(10)
    r = merkle.root(lh)
    proof = merkle.inclusion_proof(lh, 3)
    # the proof for leaf 3 must not verify for any other position
    for m in range(10):
        if m != 3:
            with pytest.raises(ProofError):
                merkle.verify_inclusion(lh[3], m, 10, proof, r)
    # sizes 9..16 share leaf 3's path shape (the root, not the proof, commits to the size);
    # every smaller size has a different shape and must fail
    for size in range(4, 9):
        with pytest.raises(ProofError):
            merkle.verify_inclusion(lh[3], 3, size, proof, r)
    with pytest.raises(ProofError, match="outside"):
        merkle.verify_inclusion(lh[3], 10, 10, proof, r)
    with pytest.raises(ProofError, match="outside"):
        merkle.verify_inclusion(lh[3], -1, 10, proof, r)
    with pytest.raises(ProofError, match="expected"):
        merkle.verify_inclusion(lh[3], 3, 10, proof[:-1], r)
    with pytest.raises(ProofError, match="expected"):
        merkle.verify_inclusion(lh[3], 3, 10, [*proof, r], r)
    with pytest.raises(ProofError, match="bytes"):
        merkle.verify_inclusion(lh[3][:31], 3, 10, proof, r)
    with pytest.raises(ProofError, match="bytes"):
        merkle.verify_inclusion(lh[3], 3, 10, [*proof[:-1], proof[-1] + b"\x00"], r)


def test_consistency_edge_cases() -> None:
    lh = leaves(10)
    r = merkle.root(lh)
    empty = merkle.root([])
    # old size 0: empty proof, old root must be the empty root
    merkle.verify_consistency(0, 10, [], empty, r)
    merkle.verify_consistency(0, 0, [], empty, empty)
    with pytest.raises(ProofError):
        merkle.verify_consistency(0, 10, [], r, r)
    with pytest.raises(ProofError, match="must be empty"):
        merkle.verify_consistency(0, 10, [r], empty, r)
    # same size: empty proof and equal roots
    merkle.verify_consistency(10, 10, [], r, r)
    with pytest.raises(ProofError, match="different roots"):
        merkle.verify_consistency(10, 10, [], merkle.root(leaves(11)[1:]), r)
    with pytest.raises(ProofError, match="must be empty"):
        merkle.verify_consistency(10, 10, [r], r, r)
    # old > new
    with pytest.raises(ProofError, match="old size <= new size"):
        merkle.verify_consistency(11, 10, [], r, r)
    with pytest.raises(ProofError):
        merkle.consistency_proof(lh, 11)
    # a proof for 4 -> 10 is not one for 5 -> 10, nor 4 -> 9
    proof = merkle.consistency_proof(lh, 4)
    with pytest.raises(ProofError):
        merkle.verify_consistency(5, 10, proof, merkle.root(lh[:5]), r)
    with pytest.raises(ProofError):
        merkle.verify_consistency(4, 9, proof, merkle.root(lh[:4]), merkle.root(lh[:9]))
    # a fork: same prefix length, one different leaf
    forked = list(lh)
    forked[2] = merkle.leaf_hash(b"forged")
    with pytest.raises(ProofError, match="does not extend"):
        merkle.verify_consistency(
            4, 10, merkle.consistency_proof(forked, 4), merkle.root(lh[:4]), merkle.root(forked)
        )


def test_extend_nodes_checks_frontier() -> None:
    with pytest.raises(ProofError, match="frontier"):
        merkle.extend_nodes(3, [b"\x00" * 32], [b"\x00" * 32])
    assert merkle.frontier(0) == []
    assert merkle.frontier(13) == [(3, 0), (2, 2), (0, 12)]


# --- random larger sizes ------------------------------------------------------------------------

_BIG = leaves(3000)
_BIG_READ = nodes_reader(_BIG)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_sizes(draw: st.DataObject) -> None:
    n = draw.draw(st.integers(1, len(_BIG)))
    m = draw.draw(st.integers(0, n - 1))
    old = draw.draw(st.integers(0, n))
    r = merkle.root_from_nodes(_BIG_READ, n)
    assert r == merkle.root(_BIG[:n])
    proof = merkle.inclusion_proof_from_nodes(_BIG_READ, m, n)
    assert proof == merkle.inclusion_proof(_BIG[:n], m)
    merkle.verify_inclusion(_BIG[m], m, n, proof, r)
    cproof = merkle.consistency_proof_from_nodes(_BIG_READ, old, n)
    assert cproof == merkle.consistency_proof(_BIG[:n], old)
    merkle.verify_consistency(old, n, cproof, merkle.root_from_nodes(_BIG_READ, old), r)
    # a proof for a different leaf of the same tree never verifies for this one
    if n > 1:
        other = (m + 1) % n
        with pytest.raises(ProofError):
            merkle.verify_inclusion(_BIG[other], m, n, proof, r)


# --- published RFC 6962 vectors (transparency-dev/merkle testonly data) ----------------------

_CT_DATA = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
_CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_published_rfc6962_vectors() -> None:
    lh = [merkle.leaf_hash(d) for d in _CT_DATA]
    for n in range(1, 9):
        assert merkle.root(lh[:n]).hex() == _CT_ROOTS[n - 1]
    assert [p.hex() for p in merkle.inclusion_proof(lh, 0)] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]
    assert [p.hex() for p in merkle.inclusion_proof(lh, 5)] == [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]
    assert [p.hex() for p in merkle.consistency_proof(lh, 2)] == [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]


@pytest.mark.parametrize(
    "call",
    [
        lambda h, r: merkle.verify_inclusion(h, True, 1, [], r),  # bool is not an index
        lambda h, r: merkle.verify_inclusion(h, 0.0, 1, [], r),  # nor is a float
        lambda h, r: merkle.verify_inclusion(h, 0, 2, ["x" * 32], r),  # str proof element
        lambda h, r: merkle.verify_inclusion(h.hex(), 0, 1, [], r),  # str leaf hash
        lambda h, r: merkle.verify_consistency(1, 2.0, [h], r, r),
    ],
)
def test_verifiers_reject_wrong_types_with_a_proof_error(call) -> None:  # type: ignore[no-untyped-def]
    leaf = merkle.leaf_hash(b"a")
    with pytest.raises(ProofError):
        call(leaf, leaf)
