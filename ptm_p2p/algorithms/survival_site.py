"""Site side of federated survival analysis: only aggregates of one site's patients leave.

NumPy and the standard library only: this file is copied into the ``coxph-pooled``,
``coxph-stratified`` and ``km`` images (as ``/opt/ptm/ptm_p2p/algorithms/survival_site.py``,
next to ``ptm_p2p/algorithm.py``), whose base has nothing else. The researcher's coordinators
(``ptm_p2p.algorithms.coxph`` / ``km``) import the same file, and local mode calls
``compute`` in process, so local and federated runs execute the very same code.

**Reproducible to the last bit.** An image may carry another NumPy than the researcher's
machine (the test base has 1.24, the host 2.x), and the federated fit must equal the local
one exactly. So no sum here goes through BLAS or NumPy's pairwise/SIMD reductions:
linear predictors are built column by column with elementwise operations, sums are running
sums (``np.cumsum``, strictly sequential), ``exp``/``log`` come from ``math`` (the C
library), and scalars are summed with ``math.fsum`` (exactly rounded). Elementwise IEEE
arithmetic is the same everywhere.

Requests (JSON, from the coordinator) and answers, per image:

``coxph-pooled`` (the Newton step over the *global* risk sets, after WebDISCO, Lu et al. 2015)
  * ``{"step": "describe", ...}`` → counts, the site's distinct event times and their event
    counts, Σx over its events, which covariates are constant here, and the site's own
    (stratified) log-likelihood, score and information at β = 0, used for the start;
  * ``{"step": "evaluate", "times": [...], "tied": [...], "betas": [[...]], "at_risk": b}``
    → per β and per global event time the risk-set sums Σw, Σw·x, Σw·xxᵀ (w = exp(xβ)),
    and at the globally tied times (Efron) the same sums over this site's events there;
    optionally the number at risk at each time.

``coxph-stratified`` (each site its own baseline hazard)
  * ``describe`` → counts, constant covariates, log-likelihood/score/information at β = 0;
  * ``evaluate`` with ``"betas"`` → the same at each β. Nothing per time leaves the site.
  * with ``"secure_sum": true`` (a secure-aggregation task) both steps answer
    ``{"secure_sum": {…}, "public": {…}}``: every number summed over the sites, masked by
    the site daemon, so the researcher sees only totals (``_stratified_secure``).

``km`` → per published time the (coarsened) numbers of events and censorings, overall and
per group; see ``km_counts`` for the rounding that keeps every count a multiple of the
site's minimum group size. With ``"secure_sum": {"grid": [t1 < t2 < …]}`` (a task that asks
for secure aggregation, ``ledger/secagg.py``) the same overall counts are binned on the
researcher's grid — each published time into the first grid point at or after it; exits
after the last point count only in n — and answered as ``{"secure_sum": {"n", "n_incomplete",
"events", "censored"}, "public": {"version", "min_group_size"}}``: the site daemon masks
the ``secure_sum`` part, so the researcher sees only the sums over the sites. Binning only
merges the site's own (coarsened) intervals, so no grid shows more than the plain answer.
With a ``group``, the request names its values up front (``"secure_sum": {"grid": …,
"levels": […]}``) and every site answers each level's counts on the grid in one fixed shape
(``_km_secure``): a level the site lacks or hides (the plain answer's suppression rules)
is zeros, and a value outside the levels is hidden like a small group (in the overall
counts only), so what the shown levels leave out is still ≥ k patients or none.

Every image refuses (``AlgorithmRefusal``, exit 3) when the site has fewer complete rows,
or (Cox) fewer events, than its minimum group size ``PTM_MIN_GROUP_SIZE``.

**Disclosure control** (``[policy] disclosure_control = true``, docs/privacy.md): the site
answers from its data *as it coarsens it itself*, whatever the request asks. Times are
rounded up to its lattice (``time_resolution``) and consecutive lattice cells are merged
until every interval holds 0 or ≥ k events and 0 or ≥ k censorings, and, for Cox, every
value and pair of values of the categorical covariates (≤ 3 levels) 0 or ≥ k times among
them (``site_cuts``); each time becomes its interval's end. A researcher's grid then
exposes nothing finer than these intervals. Cox takes one β per request, within a bounded
linear-predictor range; Kaplan–Meier merges each group's intervals the same way; counts
under k are rounded up. Off (``disclosure_control = false``, unsafe), answers are exact.
"""

from __future__ import annotations

import base64
import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptm_p2p import algorithm
from ptm_p2p.algorithm import AlgorithmError, AlgorithmRefusal

Table = dict[str, np.ndarray]

VERSION = 1
KINDS = ("coxph-pooled", "coxph-stratified", "km")
TIES = ("efron", "breslow")
MISSING = {"", "na", "nan", "null", "none"}
BOOLEAN = {"true": 1.0, "false": 0.0}
MISSING_GROUP = "(missing)"
# exp(709.78) is the largest finite double: a β pushing a linear predictor past this is
# reported as an overflow (the coordinator halves its step), not a crash.
MAX_LINEAR_PREDICTOR = 700.0
# The site's own fit only seeds the coordinator's start: modest precision is plenty.
LOCAL_TOL = 1e-8
LOCAL_MAX_ITERATIONS = 30
LOCAL_MAX_HALVINGS = 10


# --- reading data ---------------------------------------------------------------------------


def _cell_number(value: Any) -> float | None:
    """A cell as a float; NaN when missing; None when it is not a finite number."""
    if value is None or _is_na(value):
        return math.nan
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        number = float(value)
        return number if math.isfinite(number) or math.isnan(number) else None
    text = str(value).strip()
    low = text.lower()
    if low in MISSING:
        return math.nan
    if low in BOOLEAN:
        return BOOLEAN[low]
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def column(values: Iterable[Any]) -> np.ndarray:
    """One column as the site sees it: float64 (NaN = missing) when every cell is a number,
    a missing marker or true/false; otherwise an object array of stripped strings."""
    cells = list(values)
    numbers = [_cell_number(v) for v in cells]
    if all(n is not None for n in numbers):
        return np.array(numbers, dtype=np.float64)
    text = [_cell_text(v) for v in cells]
    return np.array(text, dtype=object)


def _is_na(value: Any) -> bool:
    """pandas' missing markers (``pd.NA``, ``pd.NaT``), recognised without importing it."""
    return type(value).__name__ in ("NAType", "NaTType")


def _cell_text(value: Any) -> str:
    if value is None or _is_na(value) or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def load_csv(path: Any, columns: Iterable[str] | None = None, require: bool = False) -> Table:
    """Read a CSV file (header row first) into columns; requested columns that the file
    lacks are simply absent (the compute functions name them), unless ``require``: then
    each is named with the *file's* columns (and the closest one). A task's run requires
    them: the table holds only the columns asked for, so a later message could list only
    those, and a researcher who misspelt ``treatment`` would conclude the site has none."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise AlgorithmError(f"cannot read the data file as CSV: {exc}") from exc
    wanted = list(dict.fromkeys(columns)) if columns is not None else header
    missing = [name for name in wanted if name not in header]
    if require and missing:
        import difflib

        problems = []
        for name in missing:
            close = difflib.get_close_matches(name, header, n=1, cutoff=0.6)
            problems.append(
                f"no column {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            )
        raise AlgorithmError(
            f"{'; '.join(problems)} — the data file's columns: {', '.join(sorted(header))}"
        )
    table: Table = {}
    for name in wanted:
        if name in header:
            i = header.index(name)
            table[name] = column(row[i] if i < len(row) else "" for row in rows)
    return table


# --- packing float arrays into JSON ----------------------------------------------------------


def pack(array: np.ndarray) -> dict[str, Any]:
    """A float64 array as JSON: little-endian bytes in base64 (exact, ~2.5× smaller than
    decimal text, which matters for the pooled model's per-time matrices)."""
    data = np.ascontiguousarray(array, dtype="<f8")
    return {"f8": base64.b64encode(data.tobytes()).decode("ascii"), "shape": list(data.shape)}


def unpack(value: Mapping[str, Any]) -> np.ndarray:
    """The inverse of ``pack``; malformed input is an ``AlgorithmError``."""
    try:
        shape = tuple(int(s) for s in value["shape"])
        raw = base64.b64decode(value["f8"], validate=True)
        return np.frombuffer(raw, dtype="<f8").reshape(shape).astype(np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise AlgorithmError(f"malformed packed array: {exc}") from exc


# --- parameters and data preparation ----------------------------------------------------------


def _text_param(params: Mapping[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise AlgorithmError(f"the input needs {key!r}: a column name")
    return value


def _covariates_param(params: Mapping[str, Any]) -> list[str]:
    value = params.get("covariates")
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(c, str) and c for c in value)
        or len(set(value)) != len(value)
    ):
        raise AlgorithmError("the input needs 'covariates': a list of distinct column names")
    return value


def _ties_param(params: Mapping[str, Any]) -> str:
    ties = params.get("ties", "efron")
    if ties not in TIES:
        raise AlgorithmError(f"'ties' must be one of {TIES}, not {ties!r}")
    return str(ties)


def _vectors_param(params: Mapping[str, Any], key: str, p: int) -> list[np.ndarray]:
    value = params.get(key)
    if not isinstance(value, list) or not value:
        raise AlgorithmError(f"the input needs {key!r}: a list of coefficient vectors")
    out = []
    for beta in value:
        if (
            not isinstance(beta, list)
            or len(beta) != p
            or not all(
                isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b)
                for b in beta
            )
        ):
            # Booleans are refused, not read as 0/1: the site's disclosure record counts
            # β probes as numbers, and what it counts must be exactly what is evaluated.
            raise AlgorithmError(f"each of {key!r} must be a list of {p} finite numbers")
        out.append(np.array(beta, dtype=np.float64))
    return out


def needed_columns(kind: str, params: Mapping[str, Any]) -> list[str]:
    """The columns a request reads (the loader reads nothing else)."""
    names = [params.get("duration"), params.get("event")]
    if kind == "km":
        names.append(params.get("group"))
    else:
        names.extend(params.get("covariates") or [])
    return [n for n in names if isinstance(n, str) and n]


def _prepared(
    table: Mapping[str, np.ndarray], duration: str, event: str, numeric: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Check the columns; return (time, event, covariates n×p, kept-row mask, dropped).

    Every problem is collected and raised at once, so one answer names them all.
    """
    problems = []
    names = list(dict.fromkeys([duration, event, *numeric]))
    for name in names:
        if name not in table:
            problems.append(f"no column {name!r} (columns: {', '.join(sorted(table))})")
        elif table[name].dtype != np.float64:
            problems.append(f"column {name!r} is not numeric")
    if problems:
        raise AlgorithmError("; ".join(problems))
    n_rows = len(table[duration])
    if any(len(table[name]) != n_rows for name in names):
        raise AlgorithmError("the columns have different lengths")
    keep = np.ones(n_rows, dtype=bool)
    for name in names:
        keep &= ~np.isnan(table[name])
    time = table[duration][keep]
    status = table[event][keep]
    if time.size == 0:
        problems.append("no row has all of the columns filled in")
    if np.any(time < 0):
        problems.append(f"negative durations in {duration!r}")
    if not np.all((status == 0) | (status == 1)):
        problems.append(f"{event!r} must be 0 (censored) or 1 (event) in every row")
    if problems:
        raise AlgorithmError("; ".join(problems))
    x = np.empty((time.size, len(numeric)), dtype=np.float64)
    for a, name in enumerate(numeric):
        x[:, a] = table[name][keep]
    return time, status == 1, x, keep, int(n_rows - keep.sum())


def _guard(n: int, events: int | None, k: int) -> None:
    """Refuse below the site's minimum group size; the reason states no exact count."""
    if n < k:
        raise AlgorithmRefusal(
            f"fewer than {k} patients with complete data (this site's minimum group size)"
        )
    if events is not None and events < k:
        raise AlgorithmRefusal(f"fewer than {k} events (this site's minimum group size)")


# --- disclosure control ---------------------------------------------------------------------

# A covariate with at most this many distinct values at a site is categorical: Σx and Σx²
# over a group (which the pooled model's sums publish) determine how many have each value.
CATEGORICAL_LEVELS = 3
# Cox under control: one β per request (the coordinator never sends more), and a β may not
# spread the linear predictor over more than this range at the site (weights within a
# factor e^20): an extreme β makes one patient's weight swamp an interval's sums.
MAX_BETAS_PER_REQUEST = 1
MAX_LINEAR_PREDICTOR_RANGE = 20.0


@dataclass(frozen=True)
class Controls:
    """How a site limits what it reveals: ``k`` its minimum group size; ``resolution`` its
    time lattice, or None for *no* disclosure control (exact answers: unsafe, see
    docs/privacy.md)."""

    k: int
    resolution: float | None = None

    @property
    def on(self) -> bool:
        return self.resolution is not None


def lattice(time: np.ndarray, resolution: float) -> np.ndarray:
    """Every time rounded up to a multiple of ``resolution`` (the end of its lattice cell)."""
    return np.ceil(time / resolution) * resolution


def _cell_ok(mask: np.ndarray, event: np.ndarray, k: int, labels: Sequence[np.ndarray]) -> bool:
    for part in (mask & event, mask & ~event):
        count = int(part.sum())
        if count == 0:
            continue
        if count < k:
            return False
        for label in labels:
            _, counts = np.unique(label[part], return_counts=True)
            if int(counts.min()) < k:
                return False
    return True


def site_cuts(
    cells: np.ndarray, event: np.ndarray, k: int, labels: Sequence[np.ndarray] = ()
) -> np.ndarray | None:
    """The site's own time intervals over already-lattice times ``cells``: their ends.

    Consecutive distinct values are merged, earliest first, until the interval holds 0 or
    ≥ k events and 0 or ≥ k censorings, and each label array takes every value it has there
    0 or ≥ k times among the events and among the censorings; a failing tail is merged
    backwards. None when even the whole data fails (then the site refuses).
    """
    values = np.unique(cells)
    index = np.searchsorted(values, cells)
    groups: list[tuple[int, int]] = []
    start = 0
    for j in range(values.size):
        if _cell_ok((index >= start) & (index <= j), event, k, labels):
            groups.append((start, j))
            start = j + 1
    if start < values.size:
        tail = (start, values.size - 1)
        while not _cell_ok((index >= tail[0]) & (index <= tail[1]), event, k, labels):
            if not groups:
                return None
            tail = (groups.pop()[0], tail[1])
        groups.append(tail)
    return np.array([values[end] for _, end in groups], dtype=np.float64)


def coarsen(cells: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Each time replaced by the end of the site interval that holds it."""
    return cuts[np.searchsorted(cuts, cells, side="left")]


def _categorical_labels(x: np.ndarray) -> list[np.ndarray]:
    """Codes of each categorical covariate and of each pair of them (see ``site_cuts``)."""
    codes = []
    for a in range(x.shape[1]):
        values, code = np.unique(x[:, a], return_inverse=True)
        if values.size <= CATEGORICAL_LEVELS:
            codes.append(code.astype(np.int64))
    pairs = [
        codes[a] * (CATEGORICAL_LEVELS + 1) + codes[b]
        for a in range(len(codes))
        for b in range(a + 1, len(codes))
    ]
    return codes + pairs


def _round_count(count: int, controls: Controls) -> int:
    """A count as published: under control, 0 stays 0 and others round up to k's multiples."""
    if not controls.on or count == 0:
        return count
    return int(math.ceil(count / controls.k) * controls.k)


def base_time(
    table: Mapping[str, np.ndarray], duration: str, keep: np.ndarray, controls: Controls
) -> np.ndarray:
    """The kept rows' times in the site's *base partition* of this duration column: lattice
    cells merged until each holds ≥ k of its patients (all rows with a duration).

    It depends on the data source, the duration column, k and the resolution only — not
    on the event column, the covariates or the groups a request names — so every request
    sees this partition or a coarsening of it, and no combination of answers (by anyone)
    can show fewer than k patients leaving between two times. For the same reason the
    population is fixed: a request whose columns are missing for some of the patients with
    a duration is refused (differencing two populations would expose the difference).
    """
    assert controls.resolution is not None
    column = table[duration]
    present = ~np.isnan(column)
    if int(keep.sum()) != int(present.sum()):
        raise AlgorithmRefusal(
            f"under disclosure control this site answers only over all its patients with a "
            f"{duration!r}, and some of them lack the event or a requested column; ask "
            "without that column"
        )
    cells = lattice(column[present], controls.resolution)
    cuts = site_cuts(cells, np.ones(cells.size, dtype=bool), controls.k)
    if cuts is None:
        raise AlgorithmRefusal(
            f"fewer than {controls.k} patients with a {duration!r} (this site's minimum group size)"
        )
    return coarsen(cells, cuts)


def coarsened_cox_time(
    base: np.ndarray, event: np.ndarray, x: np.ndarray, controls: Controls
) -> np.ndarray:
    """The times a Cox request is answered from: the base partition (``base_time``) merged
    further until events, censorings and categorical values are each 0 or ≥ k per interval.
    """
    cuts = site_cuts(base, event, controls.k, _categorical_labels(x))
    if cuts is None:
        raise AlgorithmRefusal(
            f"this site cannot cut its data into time intervals that each hold 0 or at least "
            f"{controls.k} events and 0 or at least {controls.k} censorings with every value "
            "(and pair of values) of the categorical covariates held 0 or at least "
            f"{controls.k} times: a rare category or too few censorings; drop or merge a "
            "rare categorical covariate"
        )
    return coarsen(base, cuts)


# --- Cox: aggregates ------------------------------------------------------------------------


def n_terms(p: int) -> int:
    """Columns of a sums row: Σw, Σw·x (p), Σw·x_a·x_b for a ≤ b (p(p+1)/2)."""
    return 1 + p + p * (p + 1) // 2


def _linear_predictor(x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    eta = np.zeros(x.shape[0], dtype=np.float64)
    for a in range(x.shape[1]):
        eta = eta + x[:, a] * beta[a]  # elementwise, column by column: no BLAS
    return eta


def _weighted_terms(x: np.ndarray, beta: np.ndarray) -> np.ndarray | None:
    """Per row [w, w·x_a…, w·x_a·x_b (a ≤ b)…], w = exp(xβ); None if exp would overflow."""
    eta = _linear_predictor(x, beta)
    if eta.size and float(eta.max()) > MAX_LINEAR_PREDICTOR:
        return None
    n, p = x.shape
    w = np.array([math.exp(v) for v in eta.tolist()], dtype=np.float64)
    out = np.empty((n, n_terms(p)), dtype=np.float64)
    out[:, 0] = w
    wx = w[:, None] * x
    out[:, 1 : 1 + p] = wx
    col = 1 + p
    for a in range(p):
        for b in range(a, p):
            out[:, col] = wx[:, a] * x[:, b]
            col += 1
    return out


def _running_total(rows: np.ndarray) -> np.ndarray:
    """The column sums of ``rows``, added strictly in row order."""
    if rows.shape[0] == 0:
        return np.zeros(rows.shape[1], dtype=np.float64)
    total: np.ndarray = np.cumsum(rows, axis=0)[-1]
    return total


def risk_set_sums(time: np.ndarray, terms: np.ndarray, at: np.ndarray) -> np.ndarray:
    """For each time in ``at``: the sums of ``terms`` over rows with ``time >= t``."""
    order = np.argsort(-time, kind="stable")  # latest first: the risk sets grow row by row
    running = np.cumsum(terms[order], axis=0)
    ascending = time[order][::-1]
    size = time.size - np.searchsorted(ascending, at, side="left")
    out = np.zeros((len(at), terms.shape[1]), dtype=np.float64)
    filled = size > 0
    out[filled] = running[size[filled] - 1]
    return out


def event_sums(
    time: np.ndarray, event: np.ndarray, terms: np.ndarray, at: np.ndarray
) -> np.ndarray:
    """For each time in ``at``: the sums of ``terms`` over the events at exactly that time."""
    out = np.zeros((len(at), terms.shape[1]), dtype=np.float64)
    for j, t in enumerate(np.asarray(at).tolist()):
        out[j] = _running_total(terms[event & (time == t)])
    return out


def _sym(row: np.ndarray, p: int) -> np.ndarray:
    """The p×p symmetric matrix from its upper triangle stored row by row."""
    m = np.zeros((p, p), dtype=np.float64)
    col = 0
    for a in range(p):
        for b in range(a, p):
            m[a, b] = m[b, a] = row[col]
            col += 1
    return m


def cox_terms(
    beta: np.ndarray,
    event_total: np.ndarray,
    counts: Sequence[int],
    sums: np.ndarray,
    tied: Sequence[int],
    tied_sums: np.ndarray,
    ties: str,
) -> tuple[float, np.ndarray, np.ndarray]:
    """Partial log-likelihood, score and information of a Cox model from aggregates.

    ``counts[j]`` events happen at the j-th event time, whose risk-set sums are
    ``sums[j]`` (columns as in ``n_terms``); for Efron, ``tied_sums[i]`` are the sums over
    the events at time ``tied[i]`` (only times with more than one event need them);
    ``event_total`` is Σx over all events. Breslow: ℓ = Σ_j [Σ_{D_j} xβ − d_j log S0_j];
    Efron replaces d_j log S0_j by Σ_{l<d_j} log(S0_j − l/d_j · T0_j), and likewise in the
    derivatives. Run in a fixed order, so a site and the coordinator get the same bits.
    """
    p = beta.size
    tied_row = {int(j): i for i, j in enumerate(tied)}
    loglik = [math.fsum((beta * event_total).tolist())]
    score = event_total.copy()
    info = np.zeros((p, p), dtype=np.float64)
    for j, d in enumerate(counts):
        d = int(d)
        s = sums[j]
        s0, s1, s2 = float(s[0]), s[1 : 1 + p], _sym(s[1 + p :], p)
        if ties == "efron" and d > 1 and j in tied_row:
            t = tied_sums[tied_row[j]]
            t0, t1, t2 = float(t[0]), t[1 : 1 + p], _sym(t[1 + p :], p)
            for ell in range(d):
                f = ell / d
                a0 = s0 - f * t0
                a1 = (s1 - f * t1) / a0
                loglik.append(-math.log(a0))
                score = score - a1
                info = info + ((s2 - f * t2) / a0 - a1[:, None] * a1[None, :])
        else:
            a1 = s1 / s0
            loglik.append(-d * math.log(s0))
            score = score - d * a1
            info = info + d * (s2 / s0 - a1[:, None] * a1[None, :])
    return math.fsum(loglik), score, info


def _event_table(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, list[int]]:
    times, counts = np.unique(time[event], return_counts=True)
    return times, [int(c) for c in counts]


def _local_cox(
    time: np.ndarray, event: np.ndarray, x: np.ndarray, beta: np.ndarray, ties: str
) -> dict[str, Any] | None:
    """This site's own (stratum's) log-likelihood, score and information at β."""
    terms = _weighted_terms(x, beta)
    if terms is None:
        return None
    times, counts = _event_table(time, event)
    tied = [j for j, d in enumerate(counts) if d > 1] if ties == "efron" else []
    sums = risk_set_sums(time, terms, times)
    tied_sums = event_sums(time, event, terms, times[tied])
    total = _running_total(x[event])
    loglik, score, info = cox_terms(beta, total, counts, sums, tied, tied_sums, ties)
    return {"loglik": loglik, "score": score.tolist(), "information": info.tolist()}


def solve(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    """x with a·x = b by Gauss–Jordan elimination with partial pivoting; None if singular.

    Row operations only (elementwise IEEE arithmetic), not LAPACK: the images' NumPy links
    another LAPACK than the researcher's, and the site's answer must be the same bits.
    """
    n = b.size
    m = np.concatenate([np.array(a, dtype=np.float64), np.array(b, dtype=np.float64)[:, None]],
                       axis=1)  # fmt: skip
    scale = float(np.max(np.abs(m[:, :n]))) if n else 0.0
    if not scale or not math.isfinite(scale):
        return None
    for k in range(n):
        pivot = k + int(np.argmax(np.abs(m[k:, k])))
        if abs(float(m[pivot, k])) <= 1e-13 * scale:
            return None
        if pivot != k:
            m[[k, pivot]] = m[[pivot, k]]
        m[k] = m[k] / m[k, k]
        for i in range(n):
            if i != k and m[i, k] != 0.0:
                m[i] = m[i] - m[i, k] * m[k]
    return m[:, n].copy()


def _local_fit(
    time: np.ndarray, event: np.ndarray, x: np.ndarray, ties: str
) -> tuple[dict[str, Any], float]:
    """This site's own Cox fit (Newton–Raphson with step halving), for the coordinator's
    start: (its β with the log-likelihood, score and information there; ℓ at β = 0).

    When the local fit does not converge (too few events for this many covariates,
    separation, a covariate constant here) the point returned is β = 0 itself.
    """
    zero = np.zeros(x.shape[1])
    at_zero = _local_cox(time, event, x, zero, ties)
    assert at_zero is not None  # exp(0) never overflows
    beta, current = zero, at_zero
    for _ in range(LOCAL_MAX_ITERATIONS):
        step = solve(np.array(current["information"]), np.array(current["score"]))
        if step is None:
            break
        candidate = beta + step
        for _ in range(LOCAL_MAX_HALVINGS):
            trial = _local_cox(time, event, x, candidate, ties)
            if trial is not None and trial["loglik"] >= current["loglik"] - 1e-12 * (
                1 + abs(current["loglik"])
            ):
                break
            candidate = (beta + candidate) / 2.0
        else:
            break
        beta, current = candidate, trial
        if float(np.max(np.abs(step))) < LOCAL_TOL:
            return {"beta": beta.tolist(), **current}, at_zero["loglik"]
    return {"beta": zero.tolist(), **at_zero}, at_zero["loglik"]


def _constants(x: np.ndarray) -> list[float | None]:
    """Per covariate: its value if it is the same in every row here, else None."""
    out: list[float | None] = []
    for a in range(x.shape[1]):
        col = x[:, a]
        out.append(float(col[0]) if col.size and bool(np.all(col == col[0])) else None)
    return out


@dataclass(frozen=True)
class _CoxRows:
    """A Cox request's rows at this site, prepared: the times (coarsened under disclosure
    control), events and covariate matrix, the ties method, the counts every answer
    carries, and the head (version, covariates, ties) every answer starts with."""

    time: np.ndarray
    event: np.ndarray
    x: np.ndarray
    ties: str
    counts: dict[str, int]
    head: dict[str, Any]


def _cox_setup(
    table: Mapping[str, np.ndarray], params: Mapping[str, Any], controls: Controls
) -> _CoxRows:
    duration = _text_param(params, "duration")
    event_col = _text_param(params, "event")
    covariates = _covariates_param(params)
    ties = _ties_param(params)
    overlap = {duration, event_col} & set(covariates)
    if overlap or duration == event_col:
        raise AlgorithmError("the duration, the event and the covariates must be different columns")
    time, event, x, keep, dropped = _prepared(table, duration, event_col, covariates)
    events = int(event.sum())
    if events == 0:
        raise AlgorithmError(f"no events: {event_col!r} is 0 in every complete row")
    _guard(int(time.size), events, controls.k)
    if controls.on:
        # the site answers from its own coarse intervals, whatever times the request
        # names: no grid, and no set of requests, isolates fewer than k of its patients
        time = coarsened_cox_time(base_time(table, duration, keep, controls), event, x, controls)
    counts = {"n": int(time.size), "events": events, "incomplete": _round_count(dropped, controls)}
    head = {"version": VERSION, "covariates": covariates, "ties": ties}
    return _CoxRows(time, event, x, ties, counts, head)


def _controlled_betas(
    params: Mapping[str, Any], x: np.ndarray, controls: Controls
) -> list[np.ndarray]:
    """The request's β, checked against the site's limits when control is on."""
    betas = _vectors_param(params, "betas", x.shape[1])
    if not controls.on:
        return betas
    if len(betas) > MAX_BETAS_PER_REQUEST:
        raise AlgorithmRefusal(
            f"{len(betas)} coefficient vectors in one request: this site answers at most "
            f"{MAX_BETAS_PER_REQUEST} per request under disclosure control"
        )
    for beta in betas:
        eta = _linear_predictor(x, beta)
        if eta.size and float(eta.max() - eta.min()) > MAX_LINEAR_PREDICTOR_RANGE:
            raise AlgorithmRefusal(
                "this β spreads the linear predictor over more than "
                f"{MAX_LINEAR_PREDICTOR_RANGE:g} at this site (one patient's weight would "
                "swamp an interval's sums); a Cox fit never needs such a β: check the "
                "covariates' scale"
            )
    return betas


def coxph_pooled(
    table: Mapping[str, np.ndarray], params: Mapping[str, Any], controls: Controls
) -> dict[str, Any]:
    """The site's part of one round of the pooled Cox model (see the module docstring)."""
    rows = _cox_setup(table, params, controls)
    if params.get("secure_sum") is not None:
        return _pooled_secure(rows, params, controls)
    time, event, x, ties, head = rows.time, rows.event, rows.x, rows.ties, rows.head
    step = params.get("step")
    if step == "describe":
        times, event_counts = _event_table(time, event)
        start, loglik_zero = _local_fit(time, event, x, ties)
        return {
            **head,
            **rows.counts,
            "event_times": times.tolist(),
            "event_counts": event_counts,
            "event_total": _running_total(x[event]).tolist(),
            "constant": _constants(x),
            "start": start,
            "loglik_at_zero": loglik_zero,
        }
    if step == "evaluate":
        at, tied = _evaluate_times(params)
        points: list[dict[str, Any]] = []
        for beta in _controlled_betas(params, x, controls):
            terms = _weighted_terms(x, beta)
            if terms is None:
                points.append({"overflow": True})
                continue
            point = {"sums": pack(risk_set_sums(time, terms, at))}
            if ties == "efron":
                point["tied_sums"] = pack(event_sums(time, event, terms, at[tied]))
            points.append(point)
        out: dict[str, Any] = {**head, "points": points}
        if params.get("at_risk"):
            ones = np.ones((time.size, 1), dtype=np.float64)
            out["at_risk"] = [int(v) for v in risk_set_sums(time, ones, at)[:, 0].tolist()]
        return out
    raise AlgorithmError(f"unknown step {step!r}: 'describe' or 'evaluate'")


def _evaluate_times(params: Mapping[str, Any]) -> tuple[np.ndarray, list[int]]:
    """An evaluate request's global event times and the indices of the tied ones."""
    at = _times_param(params)
    tied = params.get("tied", [])
    if not isinstance(tied, list) or not all(
        isinstance(j, int) and not isinstance(j, bool) and 0 <= j < at.size for j in tied
    ):
        raise AlgorithmError("'tied' must be a list of indices into 'times'")
    return at, tied


def _pooled_secure(rows: _CoxRows, params: Mapping[str, Any], controls: Controls) -> dict[str, Any]:
    """The pooled model's round as a secure-sum answer: every number is a sum over the
    sites, of one shape at each, so only the totals open (docs/privacy.md).

    * ``describe`` (``"secure_sum": {"grid": [...]}``, the researcher's time points) → n,
      events, incomplete; this site's events counted at each grid point (their sum gives
      the global event times and counts without showing any site's own); ``off_grid``,
      the events that fall on no grid point (a total above 0 means the grid is too coarse
      for an exact fit, and the coordinator stops); Σx over the events; a 0/1 per
      covariate constant here; and the meta-analytic start terms, as the stratified
      model's secure describe.
    * ``evaluate`` (``"secure_sum": true``, one β, the global ``times`` and ``tied``) →
      the risk-set sums at every time, flattened (and Efron's sums over the tied events),
      ``overflow`` 1 when β overflows here (the sums then 0), and with ``at_risk`` the
      numbers at risk (for ℓ(0)).
    """
    time, event, x, ties, counts = rows.time, rows.event, rows.x, rows.ties, rows.counts
    step = params.get("step")
    q = n_terms(x.shape[1])
    if step == "describe":
        grid = _secure_grid(params)
        if grid is None:
            raise AlgorithmError('a secure-sum describe round needs {"grid": [...]}')
        where = np.searchsorted(grid, time[event], side="left")
        on_grid = (where < grid.size) & (grid[np.minimum(where, grid.size - 1)] == time[event])
        at_grid = np.bincount(where[on_grid], minlength=grid.size).astype(np.float64)
        summed = {
            "n": [counts["n"]],
            "events": [counts["events"]],
            "incomplete": [counts["incomplete"]],
            "event_counts": at_grid.tolist(),
            "off_grid": [int(np.count_nonzero(~on_grid))],
            "event_total": _running_total(x[event]).tolist(),
            "constant": [0.0 if c is None else 1.0 for c in _constants(x)],
            **_start_terms(time, event, x, ties),
        }
        return {"secure_sum": summed, "public": dict(rows.head)}
    if step != "evaluate":
        raise AlgorithmError(f"unknown step {step!r}: 'describe' or 'evaluate'")
    if params.get("secure_sum") is not True:
        raise AlgorithmError('a secure-sum evaluate round says "secure_sum": true')
    at, tied = _evaluate_times(params)
    betas = _controlled_betas(params, x, controls)
    if len(betas) != 1:
        raise AlgorithmError("a secure-sum evaluate round takes exactly one β")
    terms = _weighted_terms(x, betas[0])
    sums = np.zeros((at.size, q)) if terms is None else risk_set_sums(time, terms, at)
    tied_sums = np.zeros((len(tied), q))
    if terms is not None and ties == "efron":
        tied_sums = event_sums(time, event, terms, at[tied])
    summed = {
        "sums": sums.reshape(-1).tolist(),
        "overflow": [1.0 if terms is None else 0.0],
    }
    if tied_sums.size:  # a secure-sum field is never empty (no tied times: none sent)
        summed["tied_sums"] = tied_sums.reshape(-1).tolist()
    if params.get("at_risk"):
        ones = np.ones((time.size, 1), dtype=np.float64)
        summed["at_risk"] = risk_set_sums(time, ones, at)[:, 0].tolist()
    return {"secure_sum": summed, "public": dict(rows.head)}


def _start_terms(
    time: np.ndarray, event: np.ndarray, x: np.ndarray, ties: str
) -> dict[str, list[float]]:
    """The two summed terms of the meta-analytic start (``coxph._start``): I_s at the
    site's own fit b_s and U_s + I_s·b_s, and this site's ℓ(0)."""
    start, loglik_zero = _local_fit(time, event, x, ties)
    info = np.array(start["information"], dtype=np.float64)
    rhs = np.array(start["score"], dtype=np.float64) + _matvec(
        info, np.array(start["beta"], dtype=np.float64)
    )
    return {
        "loglik_at_zero": [loglik_zero],
        "start_information": info.reshape(-1).tolist(),
        "start_rhs": rhs.tolist(),
    }


def _times_param(params: Mapping[str, Any]) -> np.ndarray:
    value = params.get("times")
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(t, int | float) and math.isfinite(t) for t in value)
    ):
        raise AlgorithmError("the input needs 'times': the global event times")
    at = np.array(value, dtype=np.float64)
    if np.any(np.diff(at) <= 0):
        raise AlgorithmError("'times' must be strictly increasing")
    return at


def coxph_stratified(
    table: Mapping[str, np.ndarray], params: Mapping[str, Any], controls: Controls
) -> dict[str, Any]:
    """The site's part of one round of the site-stratified Cox model."""
    rows = _cox_setup(table, params, controls)
    secure = params.get("secure_sum")
    if secure is not None and secure is not True:
        raise AlgorithmError("'secure_sum' must be true (a secure-aggregation round) or absent")
    if secure:
        return _stratified_secure(rows, params, controls)
    time, event, x, ties, head = rows.time, rows.event, rows.x, rows.ties, rows.head
    step = params.get("step")
    if step == "describe":
        start, loglik_zero = _local_fit(time, event, x, ties)
        return {
            **head,
            **rows.counts,
            "constant": [c is not None for c in _constants(x)],
            "start": start,
            "loglik_at_zero": loglik_zero,
        }
    if step == "evaluate":
        betas = _controlled_betas(params, x, controls)
        points = [_local_cox(time, event, x, beta, ties) or {"overflow": True}
                  for beta in betas]  # fmt: skip
        return {**head, "points": points}
    raise AlgorithmError(f"unknown step {step!r}: 'describe' or 'evaluate'")


def _stratified_secure(
    rows: _CoxRows, params: Mapping[str, Any], controls: Controls
) -> dict[str, Any]:
    """The stratified model's round as a secure-sum answer: every number the coordinator
    needs is a sum over the sites, of the same shape at each, so the site daemon masks them
    all (``ledger/secagg.py``) and the researcher sees only the totals. ``public`` holds
    what the coordinator checks the format with (version, covariates, ties), nothing of
    the data.

    * ``describe`` → n, events, incomplete (as the plain answer: n and events exact ≥ k,
      incomplete rounded), ℓ(0), a 0/1 per covariate that is constant here (their sum is
      the number of sites where it is), and the two terms of the meta-analytic start:
      the information I_s at the site's own fit b_s and U_s + I_s·b_s (their sums give
      the start β = (Σ I_s)⁻¹ Σ (U_s + I_s b_s), as ``coxph._start`` computes it).
    * ``evaluate`` (one β) → ℓ, U, I at β, and ``overflow`` 1 when β overflows here (ℓ,
      U, I then 0): a total overflow > 0 makes the coordinator halve its step.
    """
    time, event, x, ties, counts = rows.time, rows.event, rows.x, rows.ties, rows.counts
    step = params.get("step")
    p = x.shape[1]
    if step == "describe":
        summed = {
            "n": [counts["n"]],
            "events": [counts["events"]],
            "incomplete": [counts["incomplete"]],
            "constant": [0.0 if c is None else 1.0 for c in _constants(x)],
            **_start_terms(time, event, x, ties),
        }
    elif step == "evaluate":
        betas = _controlled_betas(params, x, controls)
        if len(betas) != 1:
            raise AlgorithmError("a secure-sum evaluate round takes exactly one β")
        point = _local_cox(time, event, x, betas[0], ties)
        if point is None:
            summed = {
                "loglik": [0.0],
                "score": [0.0] * p,
                "information": [0.0] * (p * p),
                "overflow": [1.0],
            }
        else:
            summed = {
                "loglik": [point["loglik"]],
                "score": point["score"],
                "information": np.array(point["information"]).reshape(-1).tolist(),
                "overflow": [0.0],
            }
    else:
        raise AlgorithmError(f"unknown step {step!r}: 'describe' or 'evaluate'")
    return {"secure_sum": summed, "public": dict(rows.head)}


def _matvec(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a·b with running sums (no BLAS: the same bits in every image, see the docstring)."""
    return np.array([math.fsum(float(v) for v in a[i] * b) for i in range(a.shape[0])])


# --- Kaplan–Meier ---------------------------------------------------------------------------


def _round_up(values: np.ndarray, k: int) -> np.ndarray:
    return (np.ceil(values / k) * k).astype(np.int64)


def km_counts(time: np.ndarray, event: np.ndarray, k: int) -> dict[str, Any]:
    """One curve's counts, coarsened so that every published number is a multiple of ``k``.

    At the site's distinct times the cumulative numbers of events and of censorings are
    each rounded *up* to a multiple of k (OpenSAFELY's ``kaplan-meier-function`` rounds
    cumulative counts the same way, to the midpoint). Published: the times where either
    rounded cumulative count changes, the changes there (multiples of k), and
    n = rounded events + rounded censorings at the end. The number at risk at a time is n
    minus everything published before it, so it is a multiple of k too, never below the
    events at that time. With k = 1 nothing changes: the exact Kaplan–Meier counts.
    """
    times, index = np.unique(time, return_inverse=True)
    events = np.bincount(index, weights=event.astype(np.float64), minlength=times.size)
    exits = np.bincount(index, minlength=times.size).astype(np.float64)
    cum_events = _round_up(np.cumsum(events), k)
    cum_censored = _round_up(np.cumsum(exits - events), k)
    d_events = np.diff(cum_events, prepend=0)
    d_censored = np.diff(cum_censored, prepend=0)
    shown = (d_events > 0) | (d_censored > 0)
    return {
        "times": times[shown].tolist(),
        "events": [int(v) for v in d_events[shown]],
        "censored": [int(v) for v in d_censored[shown]],
        "n": int(cum_events[-1] + cum_censored[-1]) if times.size else 0,
    }


def _group_label(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return MISSING_GROUP
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value) if str(value) else MISSING_GROUP


def _suppress(sizes: Mapping[str, int], k: int, forced: Iterable[str] = ()) -> list[str]:
    """Groups to hide: those under k (and ``forced``), plus the smallest others while the
    hidden ones add up to fewer than k (the overall curve minus the shown groups would
    reveal them)."""
    order = sorted(sizes, key=lambda g: (sizes[g], g))
    forced = set(forced)
    hidden = [g for g in order if sizes[g] < k or g in forced]
    shown = [g for g in order if g not in hidden]
    while hidden and sum(sizes[g] for g in hidden) < k and shown:
        hidden.append(shown.pop(0))
    return sorted(hidden)


def kaplan_meier(
    table: Mapping[str, np.ndarray], params: Mapping[str, Any], controls: Controls
) -> dict[str, Any]:
    """The site's Kaplan–Meier counts, overall and per group (one round)."""
    duration = _text_param(params, "duration")
    event_col = _text_param(params, "event")
    group = params.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        raise AlgorithmError("'group' must be a column name")
    if group in (duration, event_col):
        raise AlgorithmError("the group column must differ from the duration and event")
    unit = params.get("time_unit")
    if unit is not None and not (isinstance(unit, int | float) and unit > 0):
        raise AlgorithmError("'time_unit' must be a positive number")
    if group is not None and group not in table:
        raise AlgorithmError(f"no column {group!r} (columns: {', '.join(sorted(table))})")
    grid, levels = _secure_request(params, group)
    time, event, _, keep, dropped = _prepared(table, duration, event_col, [])
    k = controls.k
    _guard(int(time.size), None, k)
    if controls.on:
        # the site's own intervals (its base partition, merged until each holds ≥ k
        # events or none and ≥ k censorings or none): no published time is a patient's,
        # whatever column 'duration' names; 'time_unit' only merges them further
        cells = base_time(table, duration, keep, controls)
        if unit is not None:
            # merge the intervals that end in the same unit, each named by its last end
            # (a base interval end): a new name would read as a finer boundary
            keys, inverse = np.unique(np.ceil(cells / float(unit)), return_inverse=True)
            last = np.full(keys.size, -np.inf)
            np.maximum.at(last, inverse, cells)
            cells = last[inverse]
        cuts = site_cuts(cells, event, k)
        if cuts is None:
            raise AlgorithmRefusal(
                f"fewer than {k} events or censorings (this site's minimum group size)"
            )
        time = coarsen(cells, cuts)
    elif unit is not None:
        # coarser times reveal less: every time becomes the end of its interval
        time = np.ceil(time / float(unit)) * float(unit)
    out: dict[str, Any] = {
        "version": VERSION,
        "min_group_size": k,
        "n_incomplete": _round_count(dropped, controls),
        "overall": km_counts(time, event, k),
    }
    if group is not None:
        labels = np.array([_group_label(v) for v in table[group][keep].tolist()], dtype=object)
        out["groups"], out["suppressed_groups"] = _km_groups(labels, time, event, controls, levels)
    if grid is not None:
        return _km_secure(out, grid, levels)
    return out


def _km_groups(
    labels: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    controls: Controls,
    levels: Sequence[str] | None,
) -> tuple[dict[str, Any], list[str]]:
    """Each group's counts (``km_counts``) and the groups hidden. Under control a group's
    curve merges the site's intervals further until each of its own holds 0 or ≥ k events
    and 0 or ≥ k censorings; a group that cannot is hidden, as are (``_suppress``) groups
    under k and the smallest others while the hidden add up to fewer than k. With
    ``levels`` (a secure-sum request), a value outside them is hidden the same way: it is
    in no level's curve, and what the shown levels leave out stays ≥ k patients or none."""
    k = controls.k
    sizes: dict[str, int] = {}
    for label in labels.tolist():
        sizes[label] = sizes.get(label, 0) + 1
    group_time: dict[str, np.ndarray] = {}
    unfit = [g for g in sizes if levels is not None and g not in levels]
    for g in sorted(sizes):
        inside = labels == g
        if not controls.on:
            group_time[g] = time[inside]
            continue
        cuts = site_cuts(time[inside], event[inside], k)
        if cuts is None:
            unfit.append(g)
        else:
            group_time[g] = coarsen(time[inside], cuts)
    hidden = _suppress(sizes, k, unfit)
    groups = {
        g: km_counts(group_time[g], event[labels == g], k) for g in sorted(sizes) if g not in hidden
    }
    return groups, hidden


MAX_GRID = 4096
MAX_LEVELS = 64


def _secure_grid(params: Mapping[str, Any]) -> np.ndarray | None:
    """The grid of a secure-sum request (None: a plain request)."""
    secure = params.get("secure_sum")
    if secure is None:
        return None
    grid = secure.get("grid") if isinstance(secure, dict) else None
    if (
        not isinstance(grid, list)
        or not 1 <= len(grid) <= MAX_GRID
        or not all(isinstance(t, int | float) and not isinstance(t, bool) for t in grid)
    ):
        raise AlgorithmError(f"'secure_sum' must be {{\"grid\": [1..{MAX_GRID} numbers]}}")
    values = np.array(grid, dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.any(np.diff(values) <= 0):
        raise AlgorithmError("the secure-sum grid must be finite and strictly increasing")
    return values


def _secure_request(
    params: Mapping[str, Any], group: str | None
) -> tuple[np.ndarray | None, list[str] | None]:
    """The grid and group levels of a Kaplan–Meier secure-sum request ((None, None): a
    plain request). Grouped, the request names the group's ``levels`` up front, so every
    site answers in the same shape whatever values it holds (a secure sum adds vectors
    position by position)."""
    values = _secure_grid(params)
    if values is None:
        return None, None
    secure = params["secure_sum"]
    levels = secure.get("levels")
    if group is None:
        if levels is not None:
            raise AlgorithmError("'levels' name the values of 'group': give the group column")
        return values, None
    if (
        not isinstance(levels, list)
        or not 1 <= len(levels) <= MAX_LEVELS
        or not all(isinstance(v, str) and v for v in levels)
        or len(set(levels)) != len(levels)
    ):
        raise AlgorithmError(
            "a secure-sum request with a 'group' names its values up front: 'secure_sum' "
            f'needs "levels": [1..{MAX_LEVELS} distinct labels]'
        )
    return values, list(levels)


def _km_secure(
    out: Mapping[str, Any], grid: np.ndarray, levels: Sequence[str] | None
) -> dict[str, Any]:
    """The counts binned on ``grid``, split into what is summed and what is public.

    Overall: ``n``, ``n_incomplete``, ``events`` and ``censored`` per grid point. With
    ``levels``, per level (level-major, a row of the grid per level) the same in
    ``group_n``, ``group_events``, ``group_censored``, and ``group_sites``: 1 where this
    site's curve of the level is in the sum, 0 where it lacks or hides the level (its
    counts are zeros then)."""
    overall = out["overall"]
    events, censored = _binned(overall, grid)
    summed: dict[str, list[float]] = {
        "n": [overall["n"]],
        "n_incomplete": [out["n_incomplete"]],
        "events": events.tolist(),
        "censored": censored.tolist(),
    }
    if levels is not None:
        shown = out["groups"]
        empty = {"times": [], "events": [], "censored": [], "n": 0}
        binned = [_binned(shown.get(level, empty), grid) for level in levels]
        summed["group_n"] = [float(shown[v]["n"]) if v in shown else 0.0 for v in levels]
        summed["group_events"] = np.concatenate([e for e, _ in binned]).tolist()
        summed["group_censored"] = np.concatenate([c for _, c in binned]).tolist()
        summed["group_sites"] = [1.0 if v in shown else 0.0 for v in levels]
    return {
        "secure_sum": summed,
        "public": {"version": out["version"], "min_group_size": out["min_group_size"]},
    }


def _binned(counts: Mapping[str, Any], grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One curve's events and censorings binned on ``grid``: each published time into the
    first grid point at or after it; exits after the last point count only in n."""
    times = np.array(counts["times"], dtype=np.float64)
    where = np.searchsorted(grid, times, side="left")
    inside = where < grid.size
    events = np.zeros(grid.size)
    censored = np.zeros(grid.size)
    np.add.at(events, where[inside], np.array(counts["events"], dtype=np.float64)[inside])
    np.add.at(censored, where[inside], np.array(counts["censored"], dtype=np.float64)[inside])
    return events, censored


# --- entry points ---------------------------------------------------------------------------

COMPUTE = {
    "coxph-pooled": coxph_pooled,
    "coxph-stratified": coxph_stratified,
    "km": kaplan_meier,
}


def compute(
    kind: str,
    table: Mapping[str, np.ndarray],
    params: Any,
    k: int,
    time_resolution: float | None = None,
) -> dict[str, Any]:
    """One site's answer to one request of image ``kind``, over its data ``table``, with
    minimum group size ``k`` and disclosure control on when ``time_resolution`` is a number
    (its time lattice). Local mode calls this; the images call it via ``run_task``."""
    if kind not in COMPUTE:
        raise AlgorithmError(f"unknown survival algorithm {kind!r} (one of {KINDS})")
    if not isinstance(params, dict):
        raise AlgorithmError("the input must be a JSON object")
    if time_resolution is not None and not time_resolution > 0:
        raise AlgorithmError(f"the time resolution must be positive, not {time_resolution!r}")
    return COMPUTE[kind](table, params, Controls(max(1, int(k)), time_resolution))


def coarsened_table(
    kind: str,
    table: Mapping[str, np.ndarray],
    params: Mapping[str, Any],
    k: int,
    time_resolution: float,
) -> Table:
    """This site's complete rows of a Cox request's columns, with the duration as the site
    coarsens it under control: the data a central fit must reproduce (docs/privacy.md)."""
    if kind not in ("coxph-pooled", "coxph-stratified"):
        raise AlgorithmError(f"coarsened data is defined for the Cox models, not {kind!r}")
    controls = Controls(max(1, int(k)), time_resolution)
    duration = _text_param(params, "duration")
    event_col = _text_param(params, "event")
    covariates = _covariates_param(params)
    time, event, x, keep, _ = _prepared(table, duration, event_col, covariates)
    _guard(int(time.size), int(event.sum()), controls.k)
    base = base_time(table, duration, keep, controls)
    out: Table = {duration: coarsened_cox_time(base, event, x, controls)}
    out[event_col] = event.astype(np.float64)
    for a, name in enumerate(covariates):
        out[name] = x[:, a].copy()
    return out


def run_task(kind: str, params: Any) -> dict[str, Any]:
    """What an image's ``main.py`` runs: load the task's CSV data source, then ``compute``."""
    if not isinstance(params, dict):
        raise AlgorithmError("the input must be a JSON object")
    labels = algorithm.data_labels()
    label = params.get("data") or (labels[0] if len(labels) == 1 else None)
    if not isinstance(label, str) or not label:
        raise AlgorithmError(f"name the data source with 'data' (available: {labels})")
    path = algorithm.data_file(label, suffix=".csv")
    table = load_csv(path, needed_columns(kind, params), require=True)
    return compute(kind, table, params, algorithm.min_group_size(), algorithm.time_resolution())
