"""``ptm study --secure``: the secure-aggregation options and the event-time grid they need.

Under secure aggregation (``--secure``) every site masks its answer and the researcher opens
only the sums over the sites. Pooled Cox and Kaplan–Meier then count the sites' events on
time points the researcher names, the same at every site (a site's own event times never
open): ``--grid-step STEP --horizon T`` (0, STEP, 2·STEP, … up to the first multiple at or
past T: the sites' lattice, e.g. 30 days) or ``--grid FILE`` (any increasing points). The
site-stratified Cox model sends no times at all and needs no grid. Kaplan–Meier per
``--group`` also needs the group's values named up front, ``--levels a,b``: a secure sum adds
the sites' answers position by position, so each answers every level, in the same shape.
What is wrong with the flags is a usage error naming them, before anything connects.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ptm_p2p.cli.common import file_option, positive_number_option

# docs/survival.md: a grid point every STEP days of the sites' lattice, e.g.
EXAMPLE = "--secure --grid-step 30 --horizon 3000"

secure_option = click.option(
    "--secure",
    is_flag=True,
    help="Secure aggregation: each site masks its answer, so you (and the hub) see only "
    "the sums over the sites, never one site's numbers; a site that does not answer is "
    "left out and the round runs again without it. Pooled Cox and Kaplan–Meier need a time "
    f"grid with it ({EXAMPLE}, or --grid FILE); --stratify-sites needs none.",
)
grid_step_option = positive_number_option(
    "--grid-step",
    metavar="STEP",
    help="With --secure: a grid point every STEP time units of --duration, from 0 to "
    "--horizon. Use the sites' time resolution (their [policy] time_resolution, e.g. 30 "
    "days): every event time then lies on the grid. A coarser step merges Kaplan–Meier "
    "intervals; for Cox, events off the grid are an error.",
)
horizon_option = positive_number_option(
    "--horizon",
    metavar="T",
    help="With --grid-step: the last grid point, at or past the longest follow-up (e.g. "
    "3650 for ten years in days). Kaplan–Meier exits after it count only in the number at "
    "risk; Cox events after it are off the grid, an error.",
)
grid_file_option = file_option(
    "--grid",
    "grid_file",
    exists=True,
    as_path=True,
    metavar="FILE",
    help="With --secure, instead of --grid-step/--horizon: the grid's time points from FILE, "
    "increasing, separated by commas, spaces or new lines (# starts a comment).",
)

SECURE_OPTIONS: tuple[Callable[[Any], Any], ...] = (
    secure_option,
    grid_step_option,
    horizon_option,
    grid_file_option,
)


def secure_grid(
    secure: bool,
    step: float | None,
    horizon: float | None,
    path: Path | None,
    needed: bool,
    what: str,
) -> list[float] | None:
    """The grid the flags give (None: none given), checked against ``needed``: whether the
    study (``what``) runs secure-sum rounds that count events on a grid."""
    given = step is not None or horizon is not None or path is not None
    if given and not secure:
        raise click.UsageError(
            "--grid-step, --horizon and --grid shape secure-sum rounds: add --secure"
        )
    if not secure:
        return None
    if path is not None and (step is not None or horizon is not None):
        raise click.UsageError("give either --grid FILE or --grid-step with --horizon, not both")
    if (step is None) != (horizon is None):
        raise click.UsageError(
            f"--grid-step and --horizon go together: a point every STEP up to T ({EXAMPLE})"
        )
    if not needed:
        if given:
            raise click.UsageError(f"{what} sends no times: it needs no --grid-step or --grid")
        return None
    if not given:
        raise click.UsageError(
            f"{what} under --secure counts the sites' events on a time grid shared by them: "
            f"give {EXAMPLE} (a point every 30 days, the sites' usual time resolution, up to "
            "past the longest follow-up) or --grid FILE"
        )
    grid = _read(path) if path is not None else _stepped(step or 0.0, horizon or 0.0)
    _check(grid, "--grid" if path is not None else "--grid-step/--horizon")
    return grid


def _stepped(step: float, horizon: float) -> list[float]:
    """0, step, 2·step, … up to the first multiple at or past ``horizon``."""
    count = max(1, math.ceil(horizon / step - 1e-9)) + 1
    if count > _max_points():  # not built: a tiny step would fill the memory
        raise click.BadParameter(
            f"{count} points; the sites take at most {_max_points()} (a larger --grid-step or "
            "a shorter --horizon)",
            param_hint="--grid-step/--horizon",
        )
    return [step * i for i in range(count)]


def _read(path: Path) -> list[float]:
    text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
    values = []
    for word in re.split(r"[\s,]+", text.strip()):
        if not word:
            continue
        try:
            values.append(float(word))
        except ValueError:
            raise click.BadParameter(
                f"{path}: {word!r} is not a number", param_hint="--grid"
            ) from None
    return values


def _max_points() -> int:
    from ptm_p2p.algorithms.survival_site import MAX_GRID  # NumPy: only with a grid

    return MAX_GRID


def _check(grid: list[float], hint: str) -> None:
    if not 1 <= len(grid) <= _max_points():
        raise click.BadParameter(
            f"{len(grid)} points; the sites take 1 to {_max_points()}",
            param_hint=hint,
        )
    if not all(math.isfinite(t) for t in grid) or any(
        b <= a for a, b in zip(grid, grid[1:], strict=False)
    ):
        raise click.BadParameter("the grid's points must be finite and increasing", param_hint=hint)


levels_option = click.option(
    "--levels",
    "levels_text",
    metavar="A,B,…",
    default=None,
    help="With --secure and --group: the group's values, comma-separated (e.g. no,yes), one "
    "curve each. Every site answers each of them (zeros for one it lacks or hides); a value "
    "a site holds outside them enters the pooled curve only.",
)


def group_levels(secure: bool, group: str | None, text: str | None) -> list[str] | None:
    """The levels ``--levels`` names (None: none), or a usage error naming the flags."""
    if text is not None and (group is None or not secure):
        raise click.UsageError(
            "--levels names the values of --group for a secure sum: give --group COL "
            "--levels A,B with --secure"
        )
    if not secure or group is None:
        return None
    if text is None:
        raise click.UsageError(
            f"--group under --secure needs the group's values named up front, the same for "
            f"every site: --group {group} --levels A,B (a value outside them enters the "
            "pooled curve only)"
        )
    levels = [word.strip() for word in text.split(",")]
    if not all(levels) or len(set(levels)) != len(levels):
        raise click.BadParameter("give distinct, non-empty values: A,B,…", param_hint="--levels")
    return levels
