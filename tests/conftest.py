"""Shared pytest fixtures, kept small and generic.

``signers`` makes deterministic Ed25519 identities from names, so a failing test (or a
hypothesis example) names the same keys every time it runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from ptm_p2p.ledger.crypto import Signer


def signer_for(name: str) -> Signer:
    """The identity called ``name``: its seed is SHA-256 of the name (test keys only)."""
    return Signer(hashlib.sha256(f"ptm-test-key/{name}".encode()).digest())


@pytest.fixture
def signers() -> Callable[[str], Signer]:
    """``signers("site-a")`` -> the same Signer for the same name, within and across tests."""
    return signer_for
