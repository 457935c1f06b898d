"""Disclosure control keeps the exactness contract: the federated fit equals a central fit on
the data *as the sites coarsen it*, and the policy reaches the site code.

References: lifelines' CoxPHFitter (Efron, precision 1e-12) on ``coxph.coarsened_data``, the
rows every site answers from (built by the very function the sites use).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ptm_p2p import algorithm
from ptm_p2p.algorithms import coxph, datasets, km
from ptm_p2p.algorithms import survival_site as site
from ptm_p2p.errors import PolicyError, StudyError
from ptm_p2p.executor.policy import SitePolicy
from ptm_p2p.executor.sandbox import SandboxRun, environment

K = 5
RESOLUTION = 30.0
# hormone therapy plus the continuous covariates: every site can cut its data so that each
# interval holds ≥ 5 or no patients of each therapy arm among its events and censorings
COVARIATES = ["horTh", "age", "tsize", "pnodes", "progrec", "estrec"]
COEF_TOL = 1e-6
SE_TOL = 1e-5


@pytest.fixture(scope="module")
def coarse(sites) -> pd.DataFrame:
    return coxph.coarsened_data(
        sites, "time", "cens", COVARIATES, min_group_size=K, time_resolution=RESOLUTION
    )


def _lifelines(frame: pd.DataFrame, strata=None):
    from lifelines import CoxPHFitter

    columns = [*COVARIATES, "time", "cens", *(strata or [])]
    return CoxPHFitter().fit(
        frame[columns], "time", "cens", strata=strata, fit_options=dict(precision=1e-12)
    )


def _differences(result: coxph.CoxResult, reference) -> tuple[float, float]:
    ours = np.array([result.params[c] for c in COVARIATES])
    se = np.array([result.standard_errors[c] for c in COVARIATES])
    return (
        float(np.max(np.abs(ours - reference.params_.loc[COVARIATES].to_numpy()))),
        float(np.max(np.abs(se - reference.standard_errors_.loc[COVARIATES].to_numpy()))),
    )


def test_coarsened_data_is_reproducible_and_coarse(sites, coarse):
    again = coxph.coarsened_data(
        sites, "time", "cens", COVARIATES, min_group_size=K, time_resolution=RESOLUTION
    )
    pd.testing.assert_frame_equal(coarse, again)
    assert len(coarse) == 686
    for name, part in coarse.groupby("site"):
        assert np.all(part["time"] % RESOLUTION == 0)
        assert np.all(part["time"].to_numpy() >= sites[name]["time"].to_numpy())
        for _, cell in part.groupby("time"):
            for status in (0, 1):
                n = int((cell["cens"] == status).sum())
                assert n == 0 or n >= K


def test_pooled_fit_under_control_equals_lifelines_on_coarsened_data(sites, coarse):
    result = coxph.fit_local(
        sites, "time", "cens", COVARIATES, min_group_size=K, time_resolution=RESOLUTION
    )
    coef, se = _differences(result, _lifelines(coarse))
    assert coef < COEF_TOL and se < SE_TOL, (coef, se)
    assert result.converged and result.rounds <= 6
    # and it is a different (coarser) model from the raw data's, by design
    raw = coxph.fit_local(sites, "time", "cens", COVARIATES, min_group_size=K)
    assert max(abs(raw.params[c] - result.params[c]) for c in COVARIATES) > 1e-4


def test_stratified_fit_under_control_equals_lifelines_on_coarsened_data(sites, coarse):
    result = coxph.fit_local(
        sites, "time", "cens", COVARIATES, stratify_sites=True,
        min_group_size=K, time_resolution=RESOLUTION,
    )  # fmt: skip
    coef, se = _differences(result, _lifelines(coarse, strata=["site"]))
    assert coef < COEF_TOL and se < SE_TOL, (coef, se)


def test_rare_category_at_a_small_site_is_refused(sites):
    """Grade I among hospital-c's recurrences is 3 patients: the pooled model's sums would
    show it (events − grade II − grade III), so under control the site refuses, with a
    reason that names no count."""
    with pytest.raises(StudyError) as caught:
        coxph.fit_local(
            sites, "time", "cens", list(datasets.COVARIATES),
            min_group_size=K, time_resolution=RESOLUTION,
        )  # fmt: skip
    assert "hospital-c" in caught.value.sites
    assert "categorical" in caught.value.sites["hospital-c"]
    assert "3" not in caught.value.sites["hospital-c"]


def test_without_control_nothing_changes(sites):
    """No control (the default) is today's exact behaviour, bit for bit."""
    plain = coxph.fit_local(sites, "time", "cens", COVARIATES)
    explicit = coxph.fit_local(sites, "time", "cens", COVARIATES, time_resolution=None)
    assert plain.params == explicit.params and plain.covariance == explicit.covariance
    table = site.column(range(10))
    assert site.compute("km", {"t": table, "e": site.column([1] * 10)},
                        {"duration": "t", "event": "e"}, 1)["overall"]["times"] == list(
        map(float, range(10)))  # fmt: skip


def test_km_under_control_publishes_only_site_intervals(sites):
    curves = km.fit_local(
        sites, "time", "cens", group_col="horTh", min_group_size=K, time_resolution=RESOLUTION
    )
    for name, curve in curves.curves.items():
        assert all(t % RESOLUTION == 0 for t in curve["time"]), name
    # coarse but close: 5-year survival within a few points of the exact curve
    exact = km.fit_local(sites, "time", "cens", min_group_size=1).curve()
    ours = curves.curve()
    five = 5 * 365.25
    s_exact = float(exact.loc[exact.index <= five, "survival"].iloc[-1])
    s_ours = float(ours.loc[ours.index <= five, "survival"].iloc[-1])
    assert abs(s_exact - s_ours) < 0.05


def test_policy_turns_control_on_and_reaches_the_task(monkeypatch):
    on = SitePolicy.from_table({})  # the default: on, 30 (days)
    assert on.time_resolution == 30.0
    assert SitePolicy.from_table({"disclosure_control": False}).time_resolution is None
    assert SitePolicy.from_table({"disclosure_control": True, "time_resolution": 7})\
        .time_resolution == 7.0  # fmt: skip
    assert SitePolicy.from_table({"time_resolution": 7}).time_resolution == 7.0
    off = {"disclosure_control": False, "time_resolution": 7}
    assert SitePolicy.from_table(off).time_resolution is None
    for bad in ({"disclosure_control": "yes"}, {"time_resolution": 0},
                {"time_resolution": "30"}):  # fmt: skip
        with pytest.raises(PolicyError):
            SitePolicy.from_table(bad)
    env = environment(SandboxRun(image="x", time_resolution=on.time_resolution))
    assert env["PTM_TIME_RESOLUTION"] == "30.0"
    assert environment(SandboxRun(image="x"))["PTM_TIME_RESOLUTION"] == "0"
    monkeypatch.setenv("PTM_TIME_RESOLUTION", env["PTM_TIME_RESOLUTION"])
    assert algorithm.time_resolution() == 30.0
    monkeypatch.setenv("PTM_TIME_RESOLUTION", "0")
    assert algorithm.time_resolution() is None


def test_pooled_breslow_under_control_equals_statsmodels_on_coarsened_data(sites, coarse):
    from statsmodels.duration.hazard_regression import PHReg

    result = coxph.fit_local(
        sites, "time", "cens", COVARIATES, ties="breslow",
        min_group_size=K, time_resolution=RESOLUTION,
    )  # fmt: skip
    model = PHReg(
        coarse["time"].to_numpy(float),
        coarse[COVARIATES].to_numpy(float),
        status=coarse["cens"].to_numpy(float),
        ties="breslow",
    )
    reference = model.fit()
    ours = np.array([result.params[c] for c in COVARIATES])
    se = np.array([result.standard_errors[c] for c in COVARIATES])
    coef_diff = float(np.max(np.abs(ours - reference.params)))
    se_diff = float(np.max(np.abs(se - reference.bse)))
    print(f"breslow: coef {coef_diff:.2e}, se {se_diff:.2e}")
    assert coef_diff < COEF_TOL and se_diff < SE_TOL, (coef_diff, se_diff)
