"""The worker's use of the disclosure record (``disclosure.py``, kept only under disclosure
control, ``docs/privacy.md``): ask it before a task runs, settle or release what it reserved
once the task is answered, and catch up at start on answers signed while it was lost or off.
Without disclosure control every call here does nothing."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import trio

from ptm_p2p.errors import StoreError
from ptm_p2p.site.disclosure import (
    DISCLOSURE_FILE,
    DisclosureRecord,
    LedgerView,
    parse_request,
)
from ptm_p2p.site.disclosure_catch_up import catch_up

if TYPE_CHECKING:
    from ptm_p2p.executor.policy import SitePolicy
    from ptm_p2p.ledger.entry import Entry
    from ptm_p2p.ledger.replay import LoggedTask
    from ptm_p2p.site.journal import Journal
    from ptm_p2p.site.worker_site import WorkerSite

log = logging.getLogger(__name__)

UNREADABLE = (
    "this site's disclosure record could not be read, so it cannot tell what answering "
    "would reveal; nothing was run"
)


class _SiteLedger:
    """What the record reads of a site (``catch_up``, ``LedgerView``): its key, its
    replayed state as it is *now* (read at each use), its stored entries."""

    def __init__(self, site: WorkerSite) -> None:
        self.home = site.home
        self.store = SimpleNamespace(raw=site.stored_entry)
        self._site = site

    @property
    def log(self) -> Any:
        return SimpleNamespace(state=self._site.state)


class DisclosureGate:
    """The disclosure record of a site, or nothing when its policy does not keep one."""

    def __init__(self, site: WorkerSite, policy: SitePolicy, journal: Journal) -> None:
        self.site = _SiteLedger(site)
        self.journal = journal
        self.record = (
            DisclosureRecord(
                site.home.path / DISCLOSURE_FILE,
                policy.data,
                policy.min_group_size,
                policy.max_beta_probes,
                # the differencing rule reads which tasks are secure sums from the ledger
                ledger=LedgerView(self.site),
            )
            if policy.time_resolution is not None
            else None
        )

    def catch_up(self) -> None:
        """Record the ``ok`` answers signed while the record was lost or off."""
        if self.record is not None:
            catch_up(self.record, self.site, self.journal)

    async def check(
        self, task: LoggedTask, entry: Entry, task_input: bytes, org: str
    ) -> str | None:
        """Whether the record refuses the task (a public reason), else None, with what it
        would reveal reserved until ``settle``."""
        if self.record is None:
            return None
        request = parse_request(task.image, list(entry.payload.get("data", [])), task_input)
        try:
            return await trio.to_thread.run_sync(
                self.record.check, task.hash, task.index, request, task.publisher.hex(), org
            )
        except StoreError as exc:
            log.error("task at entry %d: %s", task.index, exc)
            return UNREADABLE

    def settle(self, task: LoggedTask) -> None:
        """Record the task's answer if what was signed is ``ok`` (a failure here is
        repaired from the ledger at the next start: ``catch_up``)."""
        if self.record is None:
            return
        try:
            row = self.journal.get(task.hash)
            self.record.settle(task.hash, row is not None and row.status == "ok")
        except StoreError as exc:
            log.error("task at entry %d: not recorded yet: %s", task.index, exc)

    def release(self, task_hash: bytes) -> None:
        """The task was not answered ``ok``: nothing of it to keep."""
        if self.record is not None:
            self.record.release(task_hash)

    def close(self) -> None:
        if self.record is not None:
            self.record.close()
