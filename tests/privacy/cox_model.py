"""What the secure Cox tests (stratified and pooled) share: the model they fit (GBSG2's six
covariates, k = 5 on a 30-day lattice), the tolerances they hold it to, and the check that a
site refusing the first round is left out before any β reaches it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from ptm_p2p.algorithms import coxph
from ptm_p2p.algorithms.rounds import LocalRunner, tables_from_frames

K = 5
RESOLUTION = 30.0
COVARIATES = ["horTh", "age", "tsize", "pnodes", "progrec", "estrec"]
FIXED_POINT_REL = 1e-9  # the stated bound (docs/privacy.md, "Fixed-point error")
COEF_TOL = 1e-6  # against lifelines on the data as the sites coarsen it
SE_TOL = 1e-5


def relative(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """The largest relative difference of two fits' values over the covariates."""
    return max(abs(a[c] - b[c]) / max(abs(b[c]), 1e-300) for c in COVARIATES)


def assert_a_refusing_site_is_dropped(
    sites: Mapping[str, pd.DataFrame],
    stratify_sites: bool = False,
    grid: Sequence[float] | None = None,
) -> None:
    """A fourth site of 4 patients (< k) refuses the describe round: the secure fit leaves
    it out and equals the plain fit over the other three."""
    frames = {**sites, "clinic-e": sites["hospital-c"].iloc[:4]}  # 4 patients < k = 5
    runner = LocalRunner(tables_from_frames(frames), K, RESOLUTION)
    secure = coxph.fit(runner, list(frames), "time", "cens", COVARIATES,
                       stratify_sites=stratify_sites, secure=True, grid=grid)  # fmt: skip
    assert set(secure.dropped) == {"clinic-e"} and "fewer than" in secure.dropped["clinic-e"]
    assert tuple(secure.site_counts) == ("hospital-a", "hospital-b", "hospital-c")
    alone = coxph.fit_local(sites, "time", "cens", COVARIATES, stratify_sites=stratify_sites,
                            min_group_size=K, time_resolution=RESOLUTION)  # fmt: skip
    assert relative(secure.params, alone.params) < FIXED_POINT_REL
