"""A site's disclosure record: what it has revealed about each data source, across queries
and researchers, and the refusals that follow from it (docs/privacy.md, "The disclosure
record").

Each site answers every request from its own coarse intervals (``algorithms/survival_site``),
but the image that computes the answer is stateless: it cannot know what the site answered
before. This record lives in the site daemon, which opens every task's input anyway, and
holds per data source (data label):

* **β probes**: each distinct coefficient vector a Cox request was answered at (with its
  model, duration, event and covariates), with who asked. Researchers may collude, so the
  budget ``[policy] max_beta_probes`` counts everyone's probes together.
* **populations**: the patient rows each answered label held when it was answered (a
  16-byte digest per row), so that a second label, or a new version of the same file, that
  differs from an answered one by 1 … k − 1 rows is refused: answering both would let their
  difference be computed.
* **groupings**: each column set the site's answers were split by (a Kaplan–Meier
  ``group``; a categorical Cox covariate, ≤ 3 values at the site), so that a new grouping
  whose cells, crossed with an earlier one's, make a cell of 1 … k − 1 patients is refused.
* **secure sums**: the target set of each secure sum answered per query, so that a round
  whose total, with earlier ones, gives one site's own answer by subtraction is refused.

The daemon asks ``check`` before a task runs (a refusal is a public reason that names the
rule, never a count of patients) and calls ``settle`` once the result is signed: only an
``ok`` answer is recorded. A check reserves what it allows until ``settle`` or ``release``,
so tasks running in parallel cannot overspend the budget together.

Typed rows in one SQLite file per site home (``HOME/disclosure.db``, WAL,
``synchronous=FULL``): a write is durable when the call returns. The file is *derived*: the
site's own ``ok`` results in its ledger copy, their inputs (which the site can always open
again: they are boxed to it) and its journal's signed results rebuild it
(``catch_up``, at every start), so a deleted or lost file loses nothing but the digests of
data versions that no longer exist. It holds row digests of the site's data: keep it as
private as the data.

The parts, one job each:

* ``disclosure_request``: what a task asks (``Request``, ``parse_request``);
* ``disclosure_data``: the site's data as text cells and row digests (``Table``);
* ``disclosure_store``: the SQLite rows of what was revealed (``DisclosureStore``);
* ``disclosure_rules``: the β-probe, near-identical-label and grouping rules;
* ``disclosure_differencing``: the rule against differencing secure-sum rounds;
* ``disclosure_catch_up``: the rebuild from the ledger and the journal at start;
* this module: ``DisclosureRecord``, which holds the reservations of tasks in flight and
  puts the parts together under one lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path

from ptm_p2p.executor.policy import DEFAULT_MAX_BETA_PROBES
from ptm_p2p.site.disclosure_data import (
    CATEGORICAL_LEVELS,
    DIGEST_BYTES,
    MISSING,
    DataTables,
    Table,
    data_file,
    read_table,
)
from ptm_p2p.site.disclosure_differencing import DifferencingRule, LedgerView, isolated
from ptm_p2p.site.disclosure_request import COX_KINDS, QUERY_FIELDS, Request, parse_request
from ptm_p2p.site.disclosure_rules import LabelRules, asked_groupings
from ptm_p2p.site.disclosure_store import DisclosureStore, Reservation

__all__ = [
    "CATEGORICAL_LEVELS",
    "COX_KINDS",
    "DIGEST_BYTES",
    "DISCLOSURE_FILE",
    "MISSING",
    "QUERY_FIELDS",
    "REFUSED",
    "DisclosureRecord",
    "LedgerView",
    "Request",
    "Table",
    "data_file",
    "isolated",
    "parse_request",
    "read_table",
]

DISCLOSURE_FILE = "disclosure.db"
REFUSED = "refused by this site's disclosure record: "


class DisclosureRecord:
    """What a site has revealed and the rules checked against it: the reservations of
    tasks in flight (``pending``), under one lock, over the parts (``store``: the rows of
    ``HOME/disclosure.db``; ``tables``: the data; ``rules`` and ``differencing``).

    ``data`` maps each data label to its path (the site's ``[policy.data]``); ``k`` is the
    site's minimum group size; ``max_beta_probes`` its β budget per data source;
    ``ledger`` its verified ledger copy, for the differencing rule (None: not checked).
    """

    def __init__(
        self,
        path: Path,
        data: Mapping[str, Path],
        k: int,
        max_beta_probes: int = DEFAULT_MAX_BETA_PROBES,
        ledger: LedgerView | None = None,
    ) -> None:
        self.path = Path(path)
        self.tables = DataTables(data)
        self.data = self.tables.data
        self.lock = threading.Lock()
        self.pending: dict[bytes, Reservation] = {}
        self.store = DisclosureStore(self.path)
        self.rules = LabelRules(
            self.store, self.tables, self.pending, max(1, int(k)), int(max_beta_probes)
        )
        # the site's verified ledger (``LedgerView``), for the differencing rule: which
        # tasks are secure sums, over which targets, and whether their total can open.
        # The daemon gives it (``disclosure_gate``); without it that rule is not checked.
        self.differencing = DifferencingRule(self.store, self.pending, ledger)

    @property
    def k(self) -> int:
        """The site's minimum group size, as the rules apply it."""
        return self.rules.k

    @property
    def max_beta_probes(self) -> int:
        """The β budget per data source, as the rules apply it."""
        return self.rules.max_beta_probes

    @property
    def ledger(self) -> LedgerView | None:
        """The differencing rule's view of the verified ledger (None: not checked)."""
        return self.differencing.ledger

    @ledger.setter
    def ledger(self, ledger: LedgerView | None) -> None:
        self.differencing.ledger = ledger

    @property
    def db(self) -> sqlite3.Connection:
        """The open ``HOME/disclosure.db`` (the store's)."""
        return self.store.db

    def close(self) -> None:
        self.store.close()

    def answered(self, task: bytes) -> bool:
        return self.store.answered(task)

    def probes_used(self, label: str) -> int:
        return self.store.probes_used(label)

    def table(self, label: str) -> Table | None:
        """The data source's current content (cached while the file is unchanged)."""
        return self.tables.get(label)

    def check(
        self, task: bytes, task_index: int, request: Request, publisher: str, org: str
    ) -> str | None:
        """A public refusal reason, or None: then what the request adds is reserved for
        ``task`` until ``settle``/``release``. Reasons name the rule, never a count of
        patients."""
        targets = self.ledger.sum_targets(task) if self.ledger is not None else None
        with self.lock:
            reservation = Reservation(request, publisher, org, task_index)
            for label in request.labels:
                reason = self.rules.check(label, request, reservation)
                if reason is None and targets is not None:
                    reason = self.differencing.check(task, label, request, targets, reservation)
                if reason is not None:
                    return REFUSED + reason + "; nothing was run"
            self.pending[task] = reservation
            return None

    def settle(self, task: bytes, ok: bool) -> None:
        """After the result is signed: an ``ok`` answer is recorded, anything else released."""
        with self.lock:
            reservation = self.pending.pop(task, None)
            if reservation is None or not ok:
                return
            self.store.write(task, reservation)

    def release(self, task: bytes) -> None:
        """Drop what ``check`` reserved for a task that was not answered ``ok``."""
        with self.lock:
            self.pending.pop(task, None)

    def record(
        self, task: bytes, task_index: int, request: Request, publisher: str, org: str
    ) -> None:
        """Record an ``ok`` answer found in the ledger or journal (``catch_up``): what it
        revealed, whether or not the rules would allow it today."""
        targets = self.ledger.sum_targets(task) if self.ledger is not None else None
        with self.lock:
            if self.answered(task):
                return
            reservation = Reservation(request, publisher, org, task_index)
            for label in request.labels:
                reservation.probes[label] = request.probes()
                if targets is not None:
                    reservation.sums[label] = (request.query(label), targets)
                table = self.table(label)
                if table is None:
                    continue
                reservation.populations[label] = table
                reservation.groupings[label] = asked_groupings(request, table)
            self.store.write(task, reservation)
