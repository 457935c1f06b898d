"""The rules the disclosure record (``disclosure.py``) checks per data source before a task
runs, against what the site answered (``disclosure_store``) and what tasks in flight have
reserved (docs/privacy.md, "The disclosure record"):

1. **β probes**: the coefficient vectors answered over a data source, by all researchers
   together, stay within ``[policy] max_beta_probes``;
2. **near-identical data labels**: two populations answered (two labels, or two versions of
   one file) never differ by 1 … k − 1 rows;
3. **groupings**: a new grouping crossed with an earlier one never makes a cell of
   1 … k − 1 patients.

Each rule returns a public reason that names it (never a count of patients) or None, and
adds what the request would newly reveal to its ``Reservation``. The differencing rule
across secure sums is in ``disclosure_differencing``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from ptm_p2p.site.disclosure_data import DataTables, Table, unpack_digests
from ptm_p2p.site.disclosure_request import Request
from ptm_p2p.site.disclosure_store import DisclosureStore, Population, Reservation


def asked_groupings(request: Request, table: Table) -> list[tuple[str, ...]]:
    """The column sets the request splits ``table`` by: its grouping columns the data has,
    and its covariates that are categorical at this site."""
    columns = [c for c in request.grouping_columns() if c in table.header]
    columns += [c for c in request.covariates() if table.categorical(c)]
    return [(c,) for c in dict.fromkeys(columns)]


class LabelRules:
    """Rules 1–3 for one data source of a request, with ``k`` the site's minimum group
    size; ``pending`` is the record's reservations of tasks in flight (shared, read only)."""

    def __init__(
        self,
        store: DisclosureStore,
        tables: DataTables,
        pending: Mapping[bytes, Reservation],
        k: int,
        max_beta_probes: int,
    ) -> None:
        self.store = store
        self.tables = tables
        self.pending = pending
        self.k = k
        self.max_beta_probes = max_beta_probes

    def check(self, label: str, request: Request, reservation: Reservation) -> str | None:
        reason = self._check_probes(label, request, reservation)
        if reason is not None:
            return reason
        table = self.tables.get(label)
        if table is None:
            return None  # not a CSV the record can read: the image decides (privacy.md)
        reservation.populations[label] = table
        reason = self._check_population(label, table)
        if reason is not None:
            return reason
        return self._check_groupings(label, table, request, reservation)

    # --- (1) β probes ----------------------------------------------------------------------

    def _check_probes(self, label: str, request: Request, reservation: Reservation) -> str | None:
        """Everyone's probes together, with what tasks in flight have reserved."""
        probes = request.probes()
        if not probes:
            return None
        used = self.store.probes(label)
        for other in self.pending.values():
            used.update(other.probes.get(label, []))
        new = [p for p in probes if p not in used]
        if new and len(used) + len(new) > self.max_beta_probes:
            return (
                f"the β-probe budget of data source {label!r} is spent ({len(used)} of "
                f"{self.max_beta_probes} coefficient vectors answered, by all researchers "
                "together; [policy] max_beta_probes)"
            )
        reservation.probes[label] = new
        return None

    # --- (2) near-identical data labels ------------------------------------------------------

    def _check_population(self, label: str, table: Table) -> str | None:
        """The label's patients against every population answered before."""
        if self.store.has_population(label, table.content):
            return None  # answered over exactly these rows before
        known = self.store.populations()
        for other in self.pending.values():  # in flight: compare as if answered
            for other_label, other_table in other.populations.items():
                if other_table.content != table.content:
                    known.append(
                        Population(
                            other_label,
                            other_table.content,
                            other_table.header,
                            len(other_table.rows),
                            other_table.packed_digests(),
                        )
                    )
        for population in known:
            if population.content == table.content:
                continue  # the same file under another label: the same patients
            if self._differs_by_few(table, population):
                return self._label_reason(label, population.label)
        return None

    def _differs_by_few(self, table: Table, other: Population) -> bool:
        """Whether ``table`` and an answered population differ by 1 … k − 1 rows (on the
        columns they share)."""
        common = [c for c in table.header if c in other.header]
        if not common:
            return False  # nothing in common to difference
        if other.header == table.header:
            mine, theirs = table.digests(), unpack_digests(other.rows)
        else:
            current = self.tables.get(other.label)
            if current is None or current.content != other.content:
                # that version is gone and its columns differ: only its size is left
                return abs(len(table.rows) - other.n) < self.k
            mine, theirs = table.digests(common), current.digests(common)
        only_mine = sum((mine - theirs).values())
        only_theirs = sum((theirs - mine).values())
        return 0 < only_mine < self.k or 0 < only_theirs < self.k

    def _label_reason(self, label: str, other: str) -> str:
        what = (
            f"this version of data source {label!r} and the earlier one"
            if other == label
            else f"data source {label!r} and data source {other!r}"
        )
        return (
            f"{what}, which this site has answered, differ by fewer than {self.k} patients "
            "(min_group_size): answering both would single them out"
        )

    # --- (3) groupings -------------------------------------------------------------------------

    def _check_groupings(
        self, label: str, table: Table, request: Request, reservation: Reservation
    ) -> str | None:
        """Groupings crossed with the earlier ones of this data source."""
        new = asked_groupings(request, table)
        earlier = self.store.groupings(label)
        for other in self.pending.values():
            earlier.extend(other.groupings.get(label, []))
        earlier = [e for e in dict.fromkeys(earlier) if all(c in table.header for c in e)]
        added: list[tuple[str, ...]] = [g for g in new if g not in earlier]
        for i, grouping in enumerate(added):
            for before in [*earlier, *added[:i]]:
                if set(grouping) <= set(before) or set(before) <= set(grouping):
                    continue  # one refines the other: no new cell
                if self._small_cell(table, grouping, before):
                    return (
                        f"grouping data source {label!r} by {', '.join(grouping)} crossed "
                        f"with the grouping by {', '.join(before)} that this site has "
                        f"answered makes a group of fewer than {self.k} patients "
                        "(min_group_size)"
                    )
        reservation.groupings[label] = added
        return None

    def _small_cell(self, table: Table, a: Sequence[str], b: Sequence[str]) -> bool:
        columns = list(dict.fromkeys([*a, *b]))
        counts = Counter(table.cells(columns))
        return any(0 < n < self.k for n in counts.values())
