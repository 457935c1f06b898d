"""The task journal (``journal.py``) as the worker uses it: a call that fails for a local
fault (a full disk, a locked or read-only file) is retried after a jittered back-off shown in
``ptm status`` (``faults.py``); a damaged journal halts execution instead."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, TypeVar

from ptm_p2p.errors import StoreError
from ptm_p2p.ledger.store import is_local_fault
from ptm_p2p.site.faults import LocalFaults
from ptm_p2p.site.journal import JOURNAL_FILE, Journal

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)
T = TypeVar("T")


class GuardedJournal:
    """A ``Journal`` with the worker's failure policy; ``halted`` says why it stopped us."""

    def __init__(self, journal: Journal, faults: LocalFaults) -> None:
        self.journal = journal
        self.faults = faults
        self.halted: str | None = None

    async def io(self, doing: str, call: Callable[[], T]) -> T:
        """Run a journal call until it works, backing off while it fails (a local fault);
        a damaged journal halts execution and raises."""
        while True:
            try:
                value = call()
            except StoreError as exc:
                await self.failed(exc, doing)
                continue
            # A write that works clears any fault; a read only a read fault.
            self.faults.cleared(JOURNAL_FILE, None if doing == "write" else doing)
            return value

    async def failed(self, exc: StoreError, doing: str) -> None:
        """A journal call failed: pause for a local fault, else halt and raise ``exc``."""
        if not is_local_fault(exc):
            self.damaged(exc)
            raise exc
        await self.faults.pause(JOURNAL_FILE, exc, doing)

    def damaged(self, exc: StoreError) -> None:
        self.halted = (
            f"the task journal {self.journal.path} is damaged ({exc}): executing nothing. "
            "Stop the daemon, move the file away (keep it: it records what ran) and start "
            "again; tasks it recorded as running are then answered once more"
        )
        log.error("%s", self.halted)
