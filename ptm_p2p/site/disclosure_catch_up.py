"""The catch-up of the disclosure record (``disclosure.py``) from the ledger and the journal,
at every start of the site daemon: each ``ok`` answer of this site that the record lacks
(in its verified ledger copy, or signed in its journal but not yet in the log) is recorded
from its input, opened again with the site's own key. So a deleted or lost
``disclosure.db`` loses nothing but the digests of data versions that no longer exist."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ptm_p2p.site.disclosure_request import parse_request

if TYPE_CHECKING:
    from ptm_p2p.site.disclosure import DisclosureRecord

log = logging.getLogger(__name__)


def catch_up(record: DisclosureRecord, site: Any, journal: Any) -> int:
    """Record every ``ok`` answer of this site that the record lacks: those in its verified
    ledger copy, and those signed in its journal but not yet in the log. Each input is
    opened again with the site's own key. Returns how many answers were added."""
    from ptm_p2p.ledger.entry import Entry, open_input_v2
    from ptm_p2p.site.journal import DONE, SIGNED

    me = site.home.public_key
    state = site.log.state
    answered = {
        t.hash for t in state.tasks.values() if me in t.results and t.results[me].status == "ok"
    }
    for state_name in (SIGNED, DONE):
        for row in journal.in_state(state_name):
            if row.status == "ok":
                answered.add(row.task)
    added = 0
    # in log order, as they were answered: a probe is credited to whoever asked it first
    tasks = sorted((state.tasks[h] for h in answered if h in state.tasks), key=lambda t: t.index)
    for task in tasks:
        task_hash = task.hash
        if record.answered(task_hash):
            continue
        try:
            entry = Entry.from_bytes(site.store.raw(task.index))
            raw_input = open_input_v2(site.home.signer, entry)
        except Exception as exc:  # an input we cannot open again selected nothing we know
            log.warning("disclosure record: task at entry %d not replayed: %s", task.index, exc)
            continue
        member = state.members.get(task.publisher)
        request = parse_request(task.image, list(entry.payload.get("data", [])), raw_input)
        record.record(
            task_hash, task.index, request, task.publisher.hex(), member.org if member else "?"
        )
        added += 1
    if added:
        log.info("disclosure record: %d answer(s) recorded from the ledger and journal", added)
    return added
