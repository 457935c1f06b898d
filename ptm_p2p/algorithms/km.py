"""Federated Kaplan–Meier curves: pooled, per site and per group, in one round.

Each site sends, per published time, its numbers of events and censorings, coarsened so
every number is a multiple of its minimum group size (``survival_site.km_counts``); with a
minimum of 1 they are exact. Here the counts are pooled — the number at risk at a time is
every site's n minus what it published before that time — and turned into the product-limit
estimate with Greenwood's variance and the log(−log) ("exponential Greenwood") confidence
band, the one lifelines' ``KaplanMeierFitter`` draws by default.

With ``secure=True`` (secure aggregation, ``ledger/secagg.py``) the researcher names a time
``grid``; every site bins its (coarsened) counts on it and its daemon masks them, so only
the pooled counts open: the pooled curve, and no curve per site. Per group, the researcher
names the group's ``levels`` up front (a sum adds the sites' vectors position by position):
each site answers every level's counts on the grid, zeros for a level it lacks or hides by
the plain answer's suppression rules, and the researcher gets a curve per level over the
sites that showed it (``KMResult.level_sites``: how many). A site that does not answer is
dropped and the round runs again without it (``KMResult.dropped``). On a grid
that holds every time the sites publish (their lattice, or multiples of ``time_unit``),
the pooled curve is the one without secure aggregation, to the fixed-point error
(docs/privacy.md: counts are whole numbers, so exactly).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptm_p2p import algorithm
from ptm_p2p.algorithms.rounds import LocalRunner, RoundInfo, RoundRunner, tables_from_frames
from ptm_p2p.algorithms.survival_site import VERSION
from ptm_p2p.errors import StudyError
from ptm_p2p.ledger import secagg

IMAGE = "km"
COLUMNS = ("time", "at_risk", "events", "censored", "survival", "ci_lower", "ci_upper")


@dataclass(frozen=True)
class KMResult:
    """The curves as one long table: a row per (curve, time), ``curve`` named ``pooled``,
    ``site:<name>`` or ``group:<label>`` (groups pooled over the sites that showed them)."""

    curves: dict[str, dict[str, list[float]]]  # curve → column → values (COLUMNS)
    sites: tuple[str, ...]
    group_col: str | None
    alpha: float
    min_group_sizes: dict[str, int]
    suppressed_groups: dict[str, list[str]]
    n: int
    rounds: int = 1
    round_log: tuple[RoundInfo, ...] = field(default=(), repr=False)
    secure: bool = False
    dropped: dict[str, str] = field(default_factory=dict)  # secure: sites left out, why
    level_sites: dict[str, int] = field(default_factory=dict)  # secure: sites per level

    @property
    def table(self) -> Any:
        """A pandas DataFrame: curve, time, at_risk, events, censored, survival, CI."""
        import pandas as pd

        frames = [
            pd.DataFrame({"curve": name, **{c: values[c] for c in COLUMNS}})
            for name, values in self.curves.items()
        ]
        return pd.concat(frames, ignore_index=True)

    def curve(self, name: str = "pooled") -> Any:
        """One curve as a DataFrame indexed by time."""
        import pandas as pd

        if name not in self.curves:
            raise StudyError(f"no curve {name!r} (curves: {', '.join(self.curves)})")
        values = self.curves[name]
        return pd.DataFrame({c: values[c] for c in COLUMNS[1:]}, index=values["time"]).rename_axis(
            "time"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "curves": self.curves,
            "sites": list(self.sites),
            "group": self.group_col,
            "alpha": self.alpha,
            "min_group_sizes": self.min_group_sizes,
            "suppressed_groups": self.suppressed_groups,
            "n": self.n,
            "rounds": self.rounds,
            "round_log": [r.to_dict() for r in self.round_log],
            "secure": self.secure,
            "dropped": self.dropped,
            "level_sites": self.level_sites,
        }


def median_survival(curve: Mapping[str, list[float]]) -> tuple[float | None, ...]:
    """A curve's median survival and its confidence interval: the first time the survival
    (and the band's lower and upper bound) is at or below one half; None where it never is
    within the follow-up."""
    return tuple(
        _first_time_at_or_below(curve["time"], curve[column], 0.5)
        for column in ("survival", "ci_lower", "ci_upper")
    )


def _first_time_at_or_below(
    times: Sequence[float], values: Sequence[float], level: float
) -> float | None:
    for t, v in zip(times, values, strict=True):
        if v <= level:
            return t
    return None


def pooled_curve(parts: Sequence[Mapping[str, Any]], alpha: float = 0.05) -> dict[str, list[float]]:
    """The Kaplan–Meier estimate over several sites' count tables (``km_counts`` answers)."""
    if not parts:
        raise StudyError("no counts to pool")
    times = sorted({0.0, *(float(t) for part in parts for t in part["times"])})
    grid = np.array(times, dtype=np.float64)
    at_risk = np.zeros(grid.size)
    events = np.zeros(grid.size)
    censored = np.zeros(grid.size)
    for part in parts:
        t = np.array(part["times"], dtype=np.float64)
        e = np.array(part["events"], dtype=np.float64)
        c = np.array(part["censored"], dtype=np.float64)
        if not (t.size == e.size == c.size):
            raise StudyError("a site's Kaplan–Meier counts have mismatched lengths")
        exits_before = np.concatenate([[0.0], np.cumsum(e + c)])[
            np.searchsorted(t, grid, side="left")
        ]
        at_risk += float(part["n"]) - exits_before
        where = np.searchsorted(grid, t)
        np.add.at(events, where, e)
        np.add.at(censored, where, c)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(at_risk > 0, 1.0 - events / at_risk, 1.0)
        survival = np.cumprod(factor)
        terms = events / (at_risk * (at_risk - events))
        terms[~np.isfinite(terms)] = 0.0  # d = n: lifelines counts no variance there
        greenwood = np.cumsum(terms)
        z = statistics.NormalDist().inv_cdf(1 - alpha / 2)
        v = np.log(survival)
        lower = np.exp(-np.exp(np.log(-v) - z * np.sqrt(greenwood) / v))
        upper = np.exp(-np.exp(np.log(-v) + z * np.sqrt(greenwood) / v))
    lower[np.isnan(lower)] = 1.0  # where S = 1 the band is the point (lifelines: fillna(1))
    upper[np.isnan(upper)] = 1.0
    return {
        "time": grid.tolist(),
        "at_risk": at_risk.tolist(),
        "events": events.tolist(),
        "censored": censored.tolist(),
        "survival": survival.tolist(),
        "ci_lower": lower.tolist(),
        "ci_upper": upper.tolist(),
    }


def fit(
    runner: RoundRunner,
    sites: Sequence[str],
    duration_col: str,
    event_col: str,
    group_col: str | None = None,
    *,
    data: str | None = None,
    time_unit: float | None = None,
    alpha: float = 0.05,
    progress: Callable[[str], None] | None = None,
    secure: bool = False,
    grid: Sequence[float] | None = None,
    levels: Sequence[str] | None = None,
) -> KMResult:
    """Kaplan–Meier curves over the sites' data in one round (see the module docstring).

    ``time_unit`` makes every site round its times up to multiples of it before counting
    (coarser times reveal less); ``group_col`` adds a curve per group. ``secure`` sums the
    counts on ``grid`` under secure aggregation: the pooled curve, and with ``group_col``
    a curve per value named in ``levels`` (required then: every site answers the same
    shape), no curve per site.
    """
    sites = list(sites)
    if not sites or len(set(sites)) != len(sites):
        raise StudyError("give one or more distinct sites")
    if not 0 < alpha < 1:
        raise StudyError(f"alpha must be between 0 and 1, not {alpha}")
    request: dict[str, Any] = {"duration": duration_col, "event": event_col}
    if group_col is not None:
        request["group"] = group_col
    if data is not None:
        request["data"] = data
    if time_unit is not None:
        request["time_unit"] = time_unit
    if secure:
        return _fit_secure(
            runner, sites, request, alpha, progress, grid, _levels(group_col, levels, grid)
        )
    if levels is not None:
        raise StudyError("levels name a group's values for a secure sum: add secure=True")
    t0 = time.monotonic()
    answers = runner(IMAGE, {s: dict(request) for s in sites})
    seconds = time.monotonic() - t0
    for s in sites:
        if not isinstance(answers.get(s), dict) or answers[s].get("version") != VERSION:
            raise StudyError(f"{IMAGE}: {s} gave no answer in this format", {s: "bad answer"})
    size = len(json.dumps(request, sort_keys=True, separators=(",", ":")))
    info = RoundInfo(
        "counts",
        seconds,
        {s: size for s in sites},
        {s: len(json.dumps(answers[s], sort_keys=True, separators=(",", ":"))) for s in sites},
    )
    if progress:
        progress(f"round 1 (counts): {len(sites)} site(s) answered in {seconds:.2f} s")
    curves = {"pooled": pooled_curve([answers[s]["overall"] for s in sites], alpha)}
    for s in sites:
        curves[f"site:{s}"] = pooled_curve([answers[s]["overall"]], alpha)
    if group_col is not None:
        labels = sorted({g for s in sites for g in answers[s].get("groups", {})})
        for g in labels:
            parts = [answers[s]["groups"][g] for s in sites if g in answers[s].get("groups", {})]
            curves[f"group:{g}"] = pooled_curve(parts, alpha)
    return KMResult(
        curves=curves,
        sites=tuple(sites),
        group_col=group_col,
        alpha=alpha,
        min_group_sizes={s: int(answers[s]["min_group_size"]) for s in sites},
        suppressed_groups={s: list(answers[s].get("suppressed_groups", [])) for s in sites},
        n=int(sum(int(answers[s]["overall"]["n"]) for s in sites)),
        rounds=1,
        round_log=(info,),
    )


def _fit_secure(
    runner: RoundRunner,
    sites: list[str],
    request: dict[str, Any],
    alpha: float,
    progress: Callable[[str], None] | None,
    grid: Sequence[float] | None,
    levels: list[str] | None,
) -> KMResult:
    secure_sum = getattr(runner, "secure_sum", None)
    if secure_sum is None:
        raise StudyError(f"{type(runner).__name__} cannot run secure-aggregation rounds")
    if grid is None or len(grid) == 0:
        raise StudyError(
            "secure aggregation needs a time grid shared by the sites: pass grid=[...] (e.g. "
            "multiples of the sites' time_resolution up to beyond the longest follow-up)"
        )
    points = [float(t) for t in grid]
    shape: dict[str, Any] = {"grid": points} | ({"levels": levels} if levels else {})
    request = {**request, "secure_sum": shape}
    t0 = time.monotonic()
    summed = secure_sum(IMAGE, {s: dict(request) for s in sites})
    seconds = time.monotonic() - t0
    for s, public in summed.public.items():
        if not isinstance(public, dict) or public.get("version") != VERSION:
            raise StudyError(f"{IMAGE}: {s} gave no answer in this format", {s: "bad answer"})
    # counts are whole numbers: the fixed-point sum rounds back to them exactly
    total = {name: np.rint(values) for name, values in summed.total.items()}
    size = len(json.dumps(request, sort_keys=True, separators=(",", ":")))
    info = RoundInfo(
        "counts (secure sum)",
        seconds,
        {s: size for s in summed.sites},
        dict(summed.answer_bytes),
    )
    if progress:
        progress(
            f"round 1 (counts, secure sum): {len(summed.sites)} site(s) summed in "
            f"{seconds:.2f} s"
            + (f"; dropped {', '.join(summed.dropped)}" if summed.dropped else "")
        )
    curves, level_sites = _secure_curves(total, points, levels, alpha)
    return KMResult(
        curves=curves,
        sites=summed.sites,
        group_col=request.get("group"),
        alpha=alpha,
        min_group_sizes={s: int(summed.public[s]["min_group_size"]) for s in summed.sites},
        suppressed_groups={},
        n=int(total["n"][0]),
        rounds=len(summed.tasks),
        round_log=(info,),
        secure=True,
        dropped=dict(summed.dropped),
        level_sites=level_sites,
    )


def _secure_curves(
    total: Mapping[str, np.ndarray], points: list[float], levels: list[str] | None, alpha: float
) -> tuple[dict[str, dict[str, list[float]]], dict[str, int]]:
    """The pooled curve and, per level, the curve over the sites that showed it (a level
    no site showed has none), from the summed counts; and how many sites showed each."""
    part = {
        "times": points,
        "events": total["events"].tolist(),
        "censored": total["censored"].tolist(),
        "n": float(total["n"][0]),
    }
    curves = {"pooled": pooled_curve([part], alpha)}
    level_sites: dict[str, int] = {}
    g = len(points)
    for i, level in enumerate(levels or []):
        level_sites[level] = int(total["group_sites"][i])
        if level_sites[level] == 0:
            continue
        rows = slice(i * g, (i + 1) * g)
        part = {
            "times": points,
            "events": total["group_events"][rows].tolist(),
            "censored": total["group_censored"][rows].tolist(),
            "n": float(total["group_n"][i]),
        }
        curves[f"group:{level}"] = pooled_curve([part], alpha)
    return curves, level_sites


def _levels(
    group_col: str | None, levels: Sequence[str] | None, grid: Sequence[float] | None
) -> list[str] | None:
    """The levels of a secure grouped round, checked (None: an ungrouped round)."""
    if group_col is None:
        if levels is not None:
            raise StudyError("levels name the values of a group: pass group_col as well")
        return None
    if not levels:
        raise StudyError(
            f"Kaplan–Meier per group under secure aggregation needs {group_col!r}'s values "
            "named up front, so every site answers in the same shape: pass levels=[...] "
            "(a value a site holds outside them enters the pooled curve only)"
        )
    names = list(levels)
    if not all(isinstance(v, str) and v for v in names) or len(set(names)) != len(names):
        raise StudyError(f"levels must be distinct non-empty strings, not {names!r}")
    values = 2 * (len(names) + 1) * len(grid or []) + 2 * len(names) + 2
    if values > secagg.MAX_VALUES:
        raise StudyError(
            f"{len(names)} levels on a grid of {len(grid or [])} points make {values} summed "
            f"values, over the {secagg.MAX_VALUES} a secure sum takes: use a coarser grid"
        )
    return names


def fit_local(
    site_frames: Any,
    duration_col: str,
    event_col: str,
    group_col: str | None = None,
    *,
    min_group_size: int = algorithm.DEFAULT_MIN_GROUP_SIZE,
    time_resolution: float | None = None,
    **options: Any,
) -> KMResult:
    """``fit`` over in-process sites (a list of DataFrames or a mapping name → DataFrame)."""
    tables = tables_from_frames(site_frames)
    runner = LocalRunner(tables, min_group_size, time_resolution)
    return fit(runner, list(tables), duration_col, event_col, group_col, **options)


def plot(result: KMResult, path: Any, curves: Sequence[str] | None = None) -> Any:
    """Draw curves (default: pooled plus the groups, or plus the sites) as a PNG at ``path``.

    Steps with their confidence bands; matplotlib's Agg backend, so no display is needed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if curves is None:
        prefix = "group:" if result.group_col else "site:"
        curves = ["pooled", *(c for c in result.curves if c.startswith(prefix))]
    missing = [c for c in curves if c not in result.curves]
    if missing:
        raise StudyError(f"no curve(s) {missing} (curves: {', '.join(result.curves)})")
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    try:
        for name in curves:
            values = result.curves[name]
            (line,) = ax.step(values["time"], values["survival"], where="post", label=name)
            ax.fill_between(
                values["time"],
                values["ci_lower"],
                values["ci_upper"],
                step="post",
                alpha=0.2,
                color=line.get_color(),
                linewidth=0,
            )
        level = f"{1 - result.alpha:.0%}"
        approx = "≈" if max(result.min_group_sizes.values()) > 1 else "="  # rounded counts
        ax.set(
            xlabel="time",
            ylabel="survival probability",
            ylim=(0, 1.02),
            title=f"Kaplan–Meier, {len(result.sites)} sites, n {approx} {result.n} ({level} band)",
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize="small")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
