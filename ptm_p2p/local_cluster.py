"""Moved to :mod:`ptm_p2p.dev.cluster`; this name stays importable for older callers."""

from __future__ import annotations

from ptm_p2p.dev.cluster import PTM, STOP_TIMEOUT, LocalCluster, wait_for

__all__ = ["PTM", "STOP_TIMEOUT", "LocalCluster", "wait_for"]
