"""Bringing signed results to the log: every result the journal holds as signed is handed to
the hub, in seq order and the same bytes every time, at once when it is signed and again
every ``RESUBMIT_INTERVAL`` (jittered) until the log holds it; while handing over fails, the
pauses back off up to ``RESUBMIT_RETRY_MAX`` (``backoff.py``). Exactly once: the hub takes a
resubmitted entry as the same entry (its hash), never as a second result."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ptm_p2p.backoff import Backoff
from ptm_p2p.errors import NetworkError, PtmError, StoreError
from ptm_p2p.ledger.crypto import sha256
from ptm_p2p.site.journal import JOURNAL_FILE, SIGNED

if TYPE_CHECKING:
    from ptm_p2p.site.decide import SiteView
    from ptm_p2p.site.journal_guard import GuardedJournal

log = logging.getLogger(__name__)

RESUBMIT_INTERVAL = 1.0  # while signed results wait for the log to hold them
RESUBMIT_RETRY_MAX = 5.0  # after a failed hand-over: back off from RESUBMIT_INTERVAL to this


class Resubmitter:
    """The loop that hands this site's signed results to the hub until the log holds them."""

    def __init__(self, site: SiteView, journal: GuardedJournal) -> None:
        self.site = site
        self.journal = journal
        self._wanted = trio.Event()

    def now(self) -> None:
        """A result was signed: hand it over without waiting for the next interval."""
        self._wanted.set()

    async def run(self) -> None:
        retry = Backoff(RESUBMIT_INTERVAL, RESUBMIT_RETRY_MAX)
        while True:
            self._wanted = trio.Event()
            try:
                await self.once()
                retry.reset()
                pause = retry.at(0)  # the interval, jittered like every other pause
            except (NetworkError, trio.TooSlowError) as exc:
                log.debug("handing results to the hub failed: %s (retrying)", exc)
                pause = retry.next()
            except StoreError as exc:  # our journal, not the hub: back off and show it
                await self.journal.failed(exc, "write")
                continue
            except PtmError as exc:
                log.warning("the hub refused our results: %s (retrying)", exc)
                pause = retry.next()
            except Exception:
                log.exception("resubmitting results failed unexpectedly")
                pause = retry.next()
            with trio.move_on_after(pause):
                await self._wanted.wait()

    async def once(self) -> None:
        """Mark done what the log holds; hand the rest to the hub in one submission."""
        journal = self.journal.journal
        state = self.site.state
        waiting = []
        for row in sorted(journal.in_state(SIGNED), key=lambda r: r.seq or 0):
            raw = row.result or b""
            if sha256(raw) in state.results:
                journal.done(row.task)
                self.journal.faults.cleared(JOURNAL_FILE)
                continue
            waiting.append(raw)
        if waiting:
            await self.site.submit(waiting)
