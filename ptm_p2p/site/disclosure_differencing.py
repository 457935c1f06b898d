"""The disclosure record's rule against differencing across secure-sum rounds
(docs/privacy.md, "Differencing"; rule 4 of ``disclosure.py``): a secure sum whose total,
with the totals of the same query over other target sets that this site answered, gives one
site's own answer by subtraction is refused. ``LedgerView`` reads from the site's verified
ledger which tasks are secure sums, over which targets, and whether their total can open;
``isolated`` decides by exact rational elimination whether a set of totals isolates a site."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from ptm_p2p.errors import LedgerError
from ptm_p2p.site.disclosure_request import Request
from ptm_p2p.site.disclosure_store import DisclosureStore, Reservation

log = logging.getLogger(__name__)


class LedgerView:
    """What the differencing rule reads from the site's verified ledger copy."""

    def __init__(self, site: Any) -> None:
        self.site = site

    def sum_targets(self, task: bytes) -> tuple[str, ...] | None:
        """The target keys (hex, sorted) of a secure-sum task; None for any other task."""
        from ptm_p2p.ledger.entry import Entry
        from ptm_p2p.ledger.secagg import SECURE_SUM
        from ptm_p2p.site.masking import aggregate_of

        logged = self.site.log.state.tasks.get(task)
        if logged is None:
            return None
        try:
            entry = Entry.from_bytes(self.site.store.raw(logged.index))
        except LedgerError as exc:  # an entry that does not decode was never a task to run
            # (a store that fails to read raises: the gate then refuses, never skips the rule)
            log.warning("disclosure record: task at entry %d unread: %s", logged.index, exc)
            return None
        if aggregate_of(entry) != SECURE_SUM:
            return None
        return tuple(sorted(t.hex() for t in logged.targets))

    def deliverable(self, task: bytes) -> bool:
        """Whether a secure sum's total can (still) open: masks cancel only when every
        target answers ok, so a task with a result that is not ``ok`` (a refusal, a
        failure, ``cancelled``) or that its publisher cancelled can never give its
        total — the rerun after a dropped site is then not a difference of two totals."""
        logged = self.site.log.state.tasks.get(task)
        if logged is None:
            return True  # not in the log yet: assume it can
        if logged.cancelled_at is not None:
            return False
        return all(result.status == "ok" for result in logged.results.values())


class DifferencingRule:
    """Rule 4 for one data source of a secure sum, against the sums answered
    (``disclosure_store``) and those in flight (``pending``, the record's, read only)."""

    def __init__(
        self,
        store: DisclosureStore,
        pending: Mapping[bytes, Reservation],
        ledger: LedgerView | None,
    ) -> None:
        self.store = store
        self.pending = pending
        self.ledger = ledger

    def _can_open(self, task: bytes) -> bool:
        return self.ledger is None or self.ledger.deliverable(task)

    def check(
        self,
        task: bytes,
        label: str,
        request: Request,
        targets: tuple[str, ...],
        reservation: Reservation,
    ) -> str | None:
        """A public reason when the same query's earlier totals (whose totals can open)
        and this one isolate a site, else None; the sum is reserved either way."""
        query = request.query(label)
        earlier = [
            other
            for other_task, other in self.store.sums(label, query)
            if other_task != task and self._can_open(other_task)
        ]
        for other_task, other in self.pending.items():  # in flight: counted if it can open
            same = other_task != task and other.sums.get(label, (b"", ()))[0] == query
            if same and self._can_open(other_task):
                earlier.append(other.sums[label][1])
        reservation.sums[label] = (query, targets)
        if isolated([*earlier, targets]):
            return (
                f"this secure sum over data source {label!r} and the same query's earlier "
                "secure sums over other sites, which this site answered, would give one "
                "site's own answer by subtraction (differencing across rounds)"
            )
        return None


def isolated(target_sets: Sequence[Sequence[str]]) -> bool:
    """Whether some site's own answer is a linear combination of the totals over
    ``target_sets`` (a unit vector in the span of their indicator vectors), by exact
    rational elimination."""
    sites = sorted({s for group in target_sets for s in group})
    rows = [[Fraction(int(s in set(group))) for s in sites] for group in target_sets]
    basis: list[tuple[int, list[Fraction]]] = []  # (pivot column, row), reduced
    for row in rows:
        row = _reduce(row, basis)
        pivot = next((i for i, v in enumerate(row) if v), None)
        if pivot is not None:
            row = [v / row[pivot] for v in row]
            basis = [(p, [a - b[pivot] * c for a, c in zip(b, row, strict=True)])
                     for p, b in basis] + [(pivot, row)]  # fmt: skip
    for j in range(len(sites)):
        unit = [Fraction(int(i == j)) for i in range(len(sites))]
        if not any(_reduce(unit, basis)):
            return True
    return False


def _reduce(row: list[Any], basis: Sequence[tuple[int, list[Any]]]) -> list[Any]:
    for pivot, b in basis:
        if row[pivot]:
            factor = row[pivot]
            row = [a - factor * c for a, c in zip(row, b, strict=True)]
    return row
