"""Our own files failing: pause, back off, show it; never spin, never flood the log.

A write of a file this daemon owns (the task journal ``tasks.db``, …) can fail for reasons
of this machine: a full disk, a read-only file, another program holding a lock. Retrying at
once only repeats the failure (the site once wrote 28,348 identical ERROR lines in 12 s
that way). Instead each such file gets a back-off: the first pause is ``FIRST_PAUSE``,
each next one doubles up to ``MAX_PAUSE``, with ±25 % jitter so that retries of several
daemons sharing a disk do not fall in step (``ptm_p2p/backoff.py``). Every step writes
one log line (the first a warning that says whose fault it is), the fault shows in
``ptm status`` until a write of that file works again, and then one line says so.

Several tasks hitting the same file share its back-off: whoever comes while a pause runs
waits for its end, silently, and no step is taken twice.
"""

from __future__ import annotations

import logging
import time

import trio

from ptm_p2p.backoff import Backoff

log = logging.getLogger(__name__)

FIRST_PAUSE = 0.5
MAX_PAUSE = 30.0
JITTER = 0.25


class LocalFaults:
    """The files of this daemon that currently fail, and their back-off state."""

    def __init__(self, first: float = FIRST_PAUSE, cap: float = MAX_PAUSE) -> None:
        self.first = first
        self.cap = cap
        self.faults: dict[str, str] = {}  # file -> what failed
        self._steps: dict[str, Backoff] = {}  # file -> its back-off
        self._until: dict[str, float] = {}  # file -> monotonic end of the current pause
        self._doing: dict[str, str] = {}  # file -> what failed on it ("read", "write")

    def ready(self, file: str) -> bool:
        """False while a back-off step for ``file`` runs (for callers that cannot wait)."""
        return time.monotonic() >= self._until.get(file, 0.0)

    def failed(self, file: str, exc: BaseException, doing: str) -> float:
        """``doing`` failed on ``file`` with ``exc``: take one back-off step, logged in one
        line; returns the seconds until the next try."""
        now = time.monotonic()
        first = file not in self.faults
        steps = self._steps.setdefault(
            file, Backoff(self.first, self.cap, (1 - JITTER, 1 + JITTER))
        )
        wait = steps.next()
        self._until[file] = now + wait
        self.faults[file] = f"cannot {doing} {file}: {exc}"
        self._doing[file] = doing
        if first:
            log.warning(
                "cannot %s %s: %s. This is a fault of this machine (disk full? file not "
                "writable? another program holding it?), not of any peer; retrying with "
                "pauses of up to %.0f s (next in %.1f s)",
                doing,
                file,
                exc,
                self.cap,
                wait,
            )
        else:
            log.warning("%s still fails (%s); next try in %.1f s", file, exc, wait)
        return wait

    async def pause(self, file: str, exc: BaseException, doing: str) -> None:
        """``doing`` failed on ``file`` with ``exc``: wait one back-off step (logged once)."""
        remaining = self._until.get(file, 0.0) - time.monotonic()
        if remaining > 0:
            await trio.sleep(remaining)  # a step is under way: share it
            return
        await trio.sleep(self.failed(file, exc, doing))

    def cleared(self, file: str, doing: str | None = None) -> None:
        """Using ``file`` worked: forget its back-off (one line if it had failed). With
        ``doing``, only a fault of that kind is cleared (a read that works says nothing
        about writes)."""
        if file not in self._doing or (doing is not None and self._doing[file] != doing):
            return
        del self.faults[file], self._doing[file]
        log.info("%s works again; resumed", file)
        self._steps.pop(file, None)
        self._until.pop(file, None)

    def describe(self) -> str | None:
        """For ``ptm status``: every failing file and why, or None."""
        return "; ".join(self.faults.values()) or None
