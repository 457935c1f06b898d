"""Open a ledger copy read-only: a ledger file, or a home folder holding one.

Auditors, the explorer, ``ptm config check`` and the demo all read copies they must never
change: the store is opened read-only (no side files, see ``SqliteStore``), a missing file
is a ``StoreError`` that says what to give instead, and the store is closed on the way out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ptm_p2p.errors import StoreError
from ptm_p2p.home import LEDGER_FILE

if TYPE_CHECKING:  # imported where used: `ptm --help` imports this module
    from ptm_p2p.ledger.store import SqliteStore

# What to give instead of a path that holds no ledger file (after "no such ledger file; ").
GIVE_A_COPY = (
    "give the path of a ledger copy, e.g. HOME/ledger.db, or make one with `ptm ledger simulate`"
)


def ledger_file(path: Path) -> Path:
    """A ledger file, or a home folder holding one."""
    return path / LEDGER_FILE if path.is_dir() else path


def open_read_only(path: Path, instead: str = GIVE_A_COPY) -> SqliteStore:
    """The ledger at ``path`` (a file or a home folder) opened read-only; the caller closes
    it. ``instead``: what the error on a missing file tells the user to give."""
    from ptm_p2p.ledger.store import SqliteStore

    ledger = ledger_file(path)
    if not ledger.is_file():
        raise StoreError(f"{ledger}: no such ledger file; {instead}")
    return SqliteStore(ledger, read_only=True)


@contextmanager
def read_only_copy(path: Path, instead: str = GIVE_A_COPY) -> Iterator[SqliteStore]:
    """``open_read_only`` for a ``with`` block: the store is closed when it ends."""
    store = open_read_only(path, instead)
    try:
        yield store
    finally:
        store.close()
