"""The one compact range (``merkle.CompactRange``) against the list-based RFC 9162 root."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptm_p2p.errors import ProofError
from ptm_p2p.ledger import merkle


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 300), cuts=st.lists(st.integers(0, 300), max_size=4))
def test_compact_range_matches_root_for_any_size_and_batching(size: int, cuts: list[int]) -> None:
    leaves = _leaves(size)
    bounds = sorted({0, size, *(c for c in cuts if c <= size)})
    tree, one_by_one, with_nodes = (merkle.CompactRange() for _ in range(3))
    for start, end in zip(bounds, bounds[1:], strict=False):
        tree.extend(leaves[start:end])
        nodes = with_nodes.extend_nodes(leaves[start:end])
        # what a store writes: every new leaf and every perfect node it completes
        for level, index, h in nodes:
            assert h == merkle.root(leaves[index << level : (index + 1) << level])
        assert tree.root() == merkle.root(leaves[:end])
    for leaf in leaves:
        one_by_one.append(leaf)
    for compact in (tree, one_by_one, with_nodes):
        assert compact.size == size
        assert compact.root() == merkle.root(leaves)
        assert len(compact.hashes) == len(merkle.frontier(size))


@given(size=st.integers(0, 1000), more=st.integers(0, 40))
def test_a_copy_extends_independently(size: int, more: int) -> None:
    leaves = _leaves(size + more)
    base = merkle.CompactRange()
    base.extend(leaves[:size])
    copy = base.copy()
    copy.extend(leaves[size:])
    assert base.root() == merkle.root(leaves[:size])
    assert copy.root() == merkle.root(leaves)
    # restarting from the frontier alone gives the same tree
    restarted = merkle.CompactRange(base.size, base.hashes)
    restarted.extend(leaves[size:])
    assert restarted.root() == copy.root()


def test_frontier_must_fit_the_size() -> None:
    with pytest.raises(ProofError, match="frontier"):
        merkle.CompactRange(3, [hashlib.sha256().digest()])
    assert merkle.CompactRange().root() == merkle.empty_root()
