"""Shared pytest fixtures, kept small and generic.

``signers`` makes deterministic Ed25519 identities from names, so a failing test (or a
hypothesis example) names the same keys every time it runs. ``stack`` is the Docker
development stack for the tests that run real containers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from ptm_p2p.ledger.crypto import Signer

if TYPE_CHECKING:
    from ptm_p2p.dev.stack import Stack


def signer_for(name: str) -> Signer:
    """The identity called ``name``: its seed is SHA-256 of the name (test keys only)."""
    return Signer(hashlib.sha256(f"ptm-test-key/{name}".encode()).digest())


@pytest.fixture
def signers() -> Callable[[str], Signer]:
    """``signers("site-a")`` -> the same Signer for the same name, within and across tests."""
    return signer_for


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The Docker engine, local registry and algorithm images (``ptm_p2p.dev``), brought up
    if they are not. A Docker test never skips: without the stack it fails, saying how to
    set it up by hand."""
    import docker

    from ptm_p2p.dev.stack import ensure_stack
    from ptm_p2p.errors import PtmError

    try:
        return ensure_stack()
    except (PtmError, docker.errors.DockerException) as exc:
        pytest.fail(
            f"the Docker stack is not available: {exc}\n"
            "Set it up with `ptm dev up` (or scripts/dev-up.sh) as root, then re-run.",
            pytrace=False,
        )
