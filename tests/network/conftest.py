"""Fixtures for the network tests: a ``cluster`` of real daemons, always cleaned up."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The harness and the helper scripts live next to this file; make them importable however
# pytest is invoked (from the repository root or from this folder).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import ADMIN_ORG, ORIGIN, Cluster  # noqa: E402


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.create(ORIGIN, ADMIN_ORG)
        yield c
    finally:
        c.close()
