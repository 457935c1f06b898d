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
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptm_p2p.errors import StoreError
from ptm_p2p.executor.policy import DEFAULT_MAX_BETA_PROBES

log = logging.getLogger(__name__)

DISCLOSURE_FILE = "disclosure.db"
# A covariate with at most this many distinct values at the site is categorical (as in
# ``survival_site.CATEGORICAL_LEVELS``): the pooled model's sums reveal its counts per
# interval, so it splits the patients like a grouping does.
CATEGORICAL_LEVELS = 3
COX_KINDS = ("coxph-pooled", "coxph-stratified")
MISSING = {"", "na", "nan", "null", "none"}
REFUSED = "refused by this site's disclosure record: "
DIGEST_BYTES = 16
# The input fields that decide an answer of the site's images (survival_site, summary):
# two secure-sum requests with equal values here (same image, same data source) are the
# same query, whatever else their inputs say.
QUERY_FIELDS = (
    "step", "duration", "event", "covariates", "ties", "betas", "times", "tied",
    "at_risk", "secure_sum", "group", "groups", "strata", "time_unit", "columns",
    "categorical",
)  # fmt: skip

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    task BLOB PRIMARY KEY,          -- hash of the task entry answered ok
    task_index INTEGER NOT NULL,
    label TEXT NOT NULL,            -- the data source the answer was computed over
    kind TEXT NOT NULL,             -- the image's name (coxph-pooled, km, summary, ...)
    publisher TEXT NOT NULL,        -- hex key of the task's publisher
    org TEXT NOT NULL,              -- its organisation when the task was answered
    recorded REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS probes (
    label TEXT NOT NULL,
    probe BLOB NOT NULL,            -- SHA-256 of (model, duration, event, covariates, β)
    task BLOB NOT NULL,             -- the first task answered at it
    publisher TEXT NOT NULL,
    org TEXT NOT NULL,
    PRIMARY KEY (label, probe)
);
CREATE TABLE IF NOT EXISTS groupings (
    label TEXT NOT NULL,
    columns TEXT NOT NULL,          -- JSON list of column names, sorted
    task BLOB NOT NULL,             -- the first task answered with it
    PRIMARY KEY (label, columns)
);
CREATE TABLE IF NOT EXISTS sums (
    task BLOB NOT NULL,             -- a secure-sum task answered ok
    label TEXT NOT NULL,
    query BLOB NOT NULL,            -- SHA-256 of what decides the answer (Request.query)
    targets TEXT NOT NULL,          -- JSON list of the task's target keys (hex), sorted
    PRIMARY KEY (task, label)
);
CREATE TABLE IF NOT EXISTS populations (
    label TEXT NOT NULL,
    content BLOB NOT NULL,          -- SHA-256 of the data file as answered
    header TEXT NOT NULL,           -- JSON list of its columns
    n INTEGER NOT NULL,             -- its rows
    rows BLOB NOT NULL,             -- sorted 16-byte digests, one per row (all columns)
    task BLOB NOT NULL,             -- the first task answered over it
    PRIMARY KEY (label, content)
);
"""


# --- what a request selects ----------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What the daemon reads from a task's input: the fields that select patients."""

    kind: str  # the image's name, e.g. "coxph-pooled"
    labels: tuple[str, ...]  # the data source(s) its answer is computed over
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def betas(self) -> list[list[float]]:
        """The coefficient vectors asked (any request with ``betas``, whatever its image)."""
        value = self.params.get("betas")
        if not isinstance(value, list):
            return []
        out = []
        for beta in value:
            # Fail closed: anything the image might evaluate counts (a boolean as 0/1, which
            # the image refuses anyway); only what it cannot read at all is left out.
            if isinstance(beta, list) and all(isinstance(b, int | float) for b in beta):
                out.append([float(b) + 0.0 for b in beta])  # + 0.0: -0.0 is 0.0
        return out

    def probes(self) -> list[bytes]:
        """One key per distinct β: the same β for the same model is not a new probe."""
        head = {
            "kind": self.kind,
            "duration": self.params.get("duration"),
            "event": self.params.get("event"),
            "covariates": self.params.get("covariates"),
        }
        keys = []
        for beta in self.betas:
            text = json.dumps({**head, "beta": beta}, sort_keys=True, separators=(",", ":"))
            keys.append(hashlib.sha256(text.encode()).digest())
        return list(dict.fromkeys(keys))

    def grouping_columns(self) -> list[str]:
        """Columns that may split the patients into groups (a KM ``group`` or ``strata``,
        the Cox covariates: which of these are categorical is decided on the data)."""
        out: list[str] = []
        for key in ("group", "groups", "strata"):
            value = self.params.get(key)
            if isinstance(value, str) and value:
                out.append(value)
            elif isinstance(value, list):
                out.extend(v for v in value if isinstance(v, str) and v)
        return out

    def query(self, label: str) -> bytes:
        """What decides a site's answer to this request over ``label``: the image and the
        input's answer-deciding fields (``QUERY_FIELDS``); fields the images ignore are
        left out, so adding one does not make the same query look new."""
        fields = {k: self.params[k] for k in QUERY_FIELDS if k in self.params}
        text = json.dumps([self.kind, label, fields], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).digest()

    def covariates(self) -> list[str]:
        value = self.params.get("covariates")
        if not isinstance(value, list):
            return []
        return [v for v in value if isinstance(v, str) and v]


def parse_request(image: str, data: Sequence[str], raw_input: bytes) -> Request:
    """The request of a task: its image's name, the data labels its answer reads (the one
    named by ``data`` in the input when it is mounted, else every label mounted) and the
    input's JSON object (``{}`` when the input is not a JSON object: such a task selects
    nothing beyond its labels)."""
    kind = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    try:
        params = json.loads(raw_input) if raw_input.strip() else {}
    except ValueError:
        params = {}
    if not isinstance(params, dict):
        params = {}
    mounted = tuple(dict.fromkeys(str(d) for d in data))
    named = params.get("data")
    labels = (named,) if isinstance(named, str) and named in mounted else mounted
    return Request(kind, labels, params)


# --- the site's data, as the record reads it ---------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A data source's CSV as text cells: enough to compare patient sets and groupings."""

    content: bytes  # SHA-256 of the file
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    _full: Counter[bytes] = field(default_factory=Counter, compare=False, repr=False)

    def digests(self, columns: Sequence[str] | None = None) -> Counter[bytes]:
        """One digest per row over ``columns`` (all by default), as a multiset."""
        if columns is None:
            if not self._full:  # computed once per version of the file
                self._full.update(self.digests(self.header))
            return self._full
        cols = list(columns)
        at = [self.header.index(c) for c in cols]
        return Counter(_row_digest([row[i] for i in at]) for row in self.rows)

    def cells(self, columns: Sequence[str]) -> list[tuple[str, ...]]:
        at = [self.header.index(c) for c in columns]
        return [tuple(_cell(row[i]) for i in at) for row in self.rows]

    def categorical(self, name: str) -> bool:
        if name not in self.header:
            return False
        i = self.header.index(name)
        values = {_cell(row[i]) for row in self.rows} - {""}
        return 0 < len(values) <= CATEGORICAL_LEVELS


def _cell(text: str) -> str:
    value = text.strip()
    return "" if value.lower() in MISSING else value


def _row_digest(cells: Iterable[str]) -> bytes:
    text = json.dumps([_cell(c) for c in cells], separators=(",", ":"))
    return hashlib.sha256(text.encode()).digest()[:DIGEST_BYTES]


def data_file(path: Path) -> Path | None:
    """The CSV a data source's path stands for (a file, or a folder's only ``.csv``), as the
    algorithm images find it (``algorithm.data_file``); None when there is none."""
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(".csv"))
        return found[0] if len(found) == 1 else None
    return None


def read_table(path: Path) -> Table | None:
    """The data source at ``path`` as a ``Table``; None when it is not a readable CSV (the
    record then cannot compare it: docs/privacy.md names this)."""
    file = data_file(path)
    if file is None:
        return None
    try:
        raw = file.read_bytes()
        text = raw.decode("utf-8")
        reader = csv.reader(text.splitlines())
        header = tuple(h.strip() for h in next(reader, []))
        rows = tuple(
            tuple((row[i] if i < len(row) else "") for i in range(len(header)))
            for row in reader
            if row
        )
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return Table(hashlib.sha256(raw).digest(), header, rows)


# --- the record ---------------------------------------------------------------------------------


@dataclass
class _Reservation:
    request: Request
    publisher: str
    org: str
    task_index: int
    probes: dict[str, list[bytes]]  # label -> new probe keys
    groupings: dict[str, list[tuple[str, ...]]]  # label -> new column sets
    populations: dict[str, Table]  # label -> its data as checked
    sums: dict[str, tuple[bytes, tuple[str, ...]]] = field(default_factory=dict)
    # label -> (query, the targets) of a secure-sum answer


class DisclosureRecord:
    """The rows of ``HOME/disclosure.db`` and the rules checked against them.

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
        self.data = dict(data)
        self.k = max(1, int(k))
        self.max_beta_probes = int(max_beta_probes)
        self.lock = threading.Lock()
        self.pending: dict[bytes, _Reservation] = {}
        self._tables: dict[tuple[str, float, int], Table | None] = {}
        # the site's verified ledger (``LedgerView``), for the differencing rule: which
        # tasks are secure sums, over which targets, and whether their total can open.
        # The daemon gives it (``disclosure_gate``); without it that rule is not checked.
        self.ledger = ledger
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the site's disclosure record {self.path}: {exc}; check the disk "
                "and the file's permissions (move a damaged file away: it is rebuilt from the "
                "ledger at the next start)"
            ) from exc

    def close(self) -> None:
        self.db.close()

    # --- reading ---------------------------------------------------------------------------

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the disclosure record {self.path}: {exc}") from exc

    def answered(self, task: bytes) -> bool:
        return bool(self._rows("SELECT 1 FROM answers WHERE task = ?", (task,)))

    def probes_used(self, label: str) -> int:
        return int(self._rows("SELECT COUNT(*) FROM probes WHERE label = ?", (label,))[0][0])

    def table(self, label: str) -> Table | None:
        """The data source's current content (cached while the file is unchanged)."""
        path = self.data.get(label)
        if path is None:
            return None
        file = data_file(path)
        if file is None:
            return None
        try:
            st = file.stat()
        except OSError:
            return None
        key = (str(file), st.st_mtime, st.st_size)
        if key not in self._tables:
            self._tables = {key: read_table(file)} | {
                k: v for k, v in self._tables.items() if k[0] != str(file)
            }
        return self._tables[key]

    # --- the rules ---------------------------------------------------------------------------

    def check(
        self, task: bytes, task_index: int, request: Request, publisher: str, org: str
    ) -> str | None:
        """A public refusal reason, or None: then what the request adds is reserved for
        ``task`` until ``settle``/``release``. Reasons name the rule, never a count of
        patients."""
        targets = self.ledger.sum_targets(task) if self.ledger is not None else None
        with self.lock:
            reservation = _Reservation(request, publisher, org, task_index, {}, {}, {})
            for label in request.labels:
                reason = self._check_label(label, request, reservation)
                if reason is None and targets is not None:
                    reason = self._check_differencing(task, label, request, targets, reservation)
                if reason is not None:
                    return REFUSED + reason + "; nothing was run"
            self.pending[task] = reservation
            return None

    def _can_open(self, task: bytes) -> bool:
        return self.ledger is None or self.ledger.deliverable(task)

    def _check_differencing(
        self,
        task: bytes,
        label: str,
        request: Request,
        targets: tuple[str, ...],
        reservation: _Reservation,
    ) -> str | None:
        """(4) A secure sum whose total, with the totals of the same query over other
        target sets that this site answered (and whose totals can open), gives one site's
        own answer by subtraction is refused (docs/privacy.md, "Differencing")."""
        query = request.query(label)
        earlier = [
            tuple(json.loads(row[1]))
            for row in self._rows(
                "SELECT task, targets FROM sums WHERE label = ? AND query = ?", (label, query)
            )
            if bytes(row[0]) != task and self._can_open(bytes(row[0]))
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

    def _check_label(self, label: str, request: Request, reservation: _Reservation) -> str | None:
        # (1) β probes: everyone's together, with what tasks in flight have reserved
        probes = request.probes()
        if probes:
            used = {
                bytes(row[0])
                for row in self._rows("SELECT probe FROM probes WHERE label = ?", (label,))
            }
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
        table = self.table(label)
        if table is None:
            return None  # not a CSV the record can read: the image decides (privacy.md)
        reservation.populations[label] = table
        # (2) the label's patients against every population answered before
        reason = self._check_population(label, table)
        if reason is not None:
            return reason
        # (3) groupings crossed with the earlier ones of this data source
        return self._check_groupings(label, table, request, reservation)

    def _check_population(self, label: str, table: Table) -> str | None:
        k = self.k
        if self._rows(
            "SELECT 1 FROM populations WHERE label = ? AND content = ?", (label, table.content)
        ):
            return None  # answered over exactly these rows before
        known = self._rows("SELECT label, content, header, n, rows FROM populations")
        for other in self.pending.values():  # in flight: compare as if answered
            for other_label, other_table in other.populations.items():
                if other_table.content != table.content:
                    known.append(
                        (
                            other_label,
                            other_table.content,
                            json.dumps(list(other_table.header)),
                            len(other_table.rows),
                            b"".join(sorted(other_table.digests().elements())),
                        )
                    )
        mine_full = None
        for other_label, content, header_json, n, rows in known:
            if bytes(content) == table.content:
                continue  # the same file under another label: the same patients
            header = tuple(json.loads(header_json))
            common = [c for c in table.header if c in header]
            if not common:
                continue  # nothing in common to difference
            if header == table.header:
                mine_full = mine_full or table.digests()
                theirs = Counter(
                    bytes(rows[i : i + DIGEST_BYTES]) for i in range(0, len(rows), DIGEST_BYTES)
                )
                mine = mine_full
            else:
                current = self.table(other_label)
                if current is not None and current.content == bytes(content):
                    mine, theirs = table.digests(common), current.digests(common)
                else:
                    # that version is gone and its columns differ: only its size is left
                    if abs(len(table.rows) - int(n)) < k:
                        return self._label_reason(label, other_label)
                    continue
            only_mine = sum((mine - theirs).values())
            only_theirs = sum((theirs - mine).values())
            if 0 < only_mine < k or 0 < only_theirs < k:
                return self._label_reason(label, other_label)
        return None

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

    def _check_groupings(
        self, label: str, table: Table, request: Request, reservation: _Reservation
    ) -> str | None:
        wanted = [c for c in request.grouping_columns() if c in table.header]
        wanted += [c for c in request.covariates() if table.categorical(c)]
        new: list[tuple[str, ...]] = [(c,) for c in dict.fromkeys(wanted)]
        earlier = [
            tuple(json.loads(row[0]))
            for row in self._rows("SELECT columns FROM groupings WHERE label = ?", (label,))
        ]
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

    # --- recording -----------------------------------------------------------------------------

    def settle(self, task: bytes, ok: bool) -> None:
        """After the result is signed: an ``ok`` answer is recorded, anything else released."""
        with self.lock:
            reservation = self.pending.pop(task, None)
            if reservation is None or not ok:
                return
            self._record(task, reservation)

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
            reservation = _Reservation(request, publisher, org, task_index, {}, {}, {})
            for label in request.labels:
                reservation.probes[label] = request.probes()
                if targets is not None:
                    reservation.sums[label] = (request.query(label), targets)
                table = self.table(label)
                if table is None:
                    continue
                reservation.populations[label] = table
                columns = [c for c in request.grouping_columns() if c in table.header]
                columns += [c for c in request.covariates() if table.categorical(c)]
                reservation.groupings[label] = [(c,) for c in dict.fromkeys(columns)]
            self._record(task, reservation)

    def _record(self, task: bytes, r: _Reservation) -> None:
        try:
            with self.db:  # one transaction: an answer is recorded whole or not at all
                self.db.execute("BEGIN")
                self.db.execute(
                    "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        task,
                        r.task_index,
                        ",".join(r.request.labels),
                        r.request.kind,
                        r.publisher,
                        r.org,
                        time.time(),
                    ),
                )
                for label, probes in r.probes.items():
                    for probe in probes:
                        self.db.execute(
                            "INSERT OR IGNORE INTO probes VALUES (?, ?, ?, ?, ?)",
                            (label, probe, task, r.publisher, r.org),
                        )
                for label, (query, targets) in r.sums.items():
                    self.db.execute(
                        "INSERT OR IGNORE INTO sums VALUES (?, ?, ?, ?)",
                        (task, label, query, json.dumps(sorted(targets))),
                    )
                for label, groupings in r.groupings.items():
                    for grouping in groupings:
                        self.db.execute(
                            "INSERT OR IGNORE INTO groupings VALUES (?, ?, ?)",
                            (label, json.dumps(sorted(grouping)), task),
                        )
                for label, table in r.populations.items():
                    if self.db.execute(
                        "SELECT 1 FROM populations WHERE label = ? AND content = ?",
                        (label, table.content),
                    ).fetchone():
                        continue  # this version is recorded already
                    self.db.execute(
                        "INSERT OR IGNORE INTO populations VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            label,
                            table.content,
                            json.dumps(list(table.header)),
                            len(table.rows),
                            b"".join(sorted(table.digests().elements())),
                            task,
                        ),
                    )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the disclosure record {self.path}: {exc}") from exc


# --- rebuilding from the ledger and the journal --------------------------------------------------


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


# --- differencing across secure sums ------------------------------------------------------------


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
        except Exception as exc:  # unreadable: not a sum this rule can place
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


def isolated(target_sets: Sequence[Sequence[str]]) -> bool:
    """Whether some site's own answer is a linear combination of the totals over
    ``target_sets`` (a unit vector in the span of their indicator vectors), by exact
    rational elimination."""
    from fractions import Fraction

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
