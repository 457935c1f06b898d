"""Simulated ledgers for the CLI tests: written by ``ptm ledger simulate``, then damaged.

``simulate_ledger`` runs the real command (it must succeed); ``flip_byte`` damages one stored
entry in place, as a bad disk or a forger would, for the audit to find.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from click.testing import CliRunner

from ptm_p2p.cli import main


def simulate_ledger(path: Path, *options: str) -> str:
    """``ptm ledger simulate PATH OPTIONS…``, checked to exit 0; what it printed."""
    result = CliRunner().invoke(main, ["ledger", "simulate", str(path), *options])
    assert result.exit_code == 0, result.output
    return result.output


def flip_byte(path: Path, index: int, at: int | None = None, mask: int = 0x01) -> None:
    """XOR ``mask`` into byte ``at`` (default: the middle one) of stored entry ``index``."""
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT raw FROM entries WHERE idx = ?", (index,)).fetchone()
        raw = bytearray(row[0])
        raw[len(raw) // 2 if at is None else at] ^= mask
        db.execute("UPDATE entries SET raw = ? WHERE idx = ?", (bytes(raw), index))
