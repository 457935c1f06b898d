"""Federated Cox regression in local mode against centralized fits of the pooled data.

References: lifelines' CoxPHFitter (Efron; fitted with precision 1e-12, since its default
stops about 4e-6 short of the optimum) and statsmodels' PHReg (Breslow), each on all 686
GBSG2 patients in one place; for the site-stratified model the same with a site stratum.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptm_p2p.algorithms import coxph
from ptm_p2p.algorithms.rounds import LocalRunner, tables_from_frames
from ptm_p2p.errors import PtmError, StudyError

from .conftest import COVARIATES, split

COEF_TOL = 1e-6
SE_TOL = 1e-5
MAX_ROUNDS = 6


def _lifelines(frame: pd.DataFrame, strata: list[str] | None = None) -> Any:
    from lifelines import CoxPHFitter

    columns = [*COVARIATES, "time", "cens", *(strata or [])]
    return CoxPHFitter().fit(
        frame[columns], "time", "cens", strata=strata, fit_options=dict(precision=1e-12)
    )


def _statsmodels(frame: pd.DataFrame, strata: np.ndarray | None = None) -> Any:
    from statsmodels.duration.hazard_regression import PHReg

    kw = {} if strata is None else {"strata": strata}
    model = PHReg(
        frame["time"].to_numpy(float),
        frame[COVARIATES].to_numpy(float),
        status=frame["cens"].to_numpy(float),
        ties="breslow",
        **kw,
    )
    return model, model.fit()


def _assert_matches(result: coxph.CoxResult, params: Any, ses: Any, loglik: float) -> None:
    ours = np.array([result.params[c] for c in COVARIATES])
    our_se = np.array([result.standard_errors[c] for c in COVARIATES])
    np.testing.assert_allclose(ours, np.asarray(params, dtype=float), rtol=0, atol=COEF_TOL)
    np.testing.assert_allclose(our_se, np.asarray(ses, dtype=float), rtol=0, atol=SE_TOL)
    assert result.log_likelihood == pytest.approx(loglik, abs=1e-8)
    assert result.converged
    assert result.rounds <= MAX_ROUNDS


class Counting:
    """A runner that counts rounds (and remembers the images asked for)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.images: list[str] = []

    def __call__(self, image: str, requests: Any) -> Any:
        self.images.append(image)
        return self.inner(image, requests)


@pytest.fixture(scope="module")
def efron(sites: dict[str, pd.DataFrame]) -> coxph.CoxResult:
    return coxph.fit_local(sites, "time", "cens", COVARIATES)


def test_pooled_efron_equals_lifelines(efron: coxph.CoxResult, gbsg2: pd.DataFrame) -> None:
    ref = _lifelines(gbsg2)
    _assert_matches(efron, ref.params_[COVARIATES], ref.standard_errors_[COVARIATES],
                    ref.log_likelihood_)  # fmt: skip
    lr = ref.log_likelihood_ratio_test()
    stat, df, p = efron.likelihood_ratio_test
    assert stat == pytest.approx(lr.test_statistic, abs=1e-6) and df == 9
    assert p == pytest.approx(lr.p_value, rel=1e-6)
    np.testing.assert_allclose(
        [efron.p_values[c] for c in COVARIATES], ref.summary.loc[COVARIATES, "p"], rtol=1e-5
    )
    np.testing.assert_allclose(
        [efron.ci_lower[c] for c in COVARIATES],
        ref.confidence_intervals_.loc[COVARIATES].iloc[:, 0],
        atol=1e-5,
    )
    assert (efron.n, efron.n_events) == (686, 299)
    assert efron.iterations + 1 == efron.rounds  # describe, then one round per iteration


def test_pooled_breslow_equals_statsmodels(
    sites: dict[str, pd.DataFrame], gbsg2: pd.DataFrame
) -> None:
    result = coxph.fit_local(sites, "time", "cens", COVARIATES, ties="breslow")
    model, ref = _statsmodels(gbsg2)
    _assert_matches(result, ref.params, ref.bse, ref.llf)
    assert result.log_likelihood_initial == pytest.approx(model.loglike(np.zeros(9)), abs=1e-8)


def test_stratified_efron_equals_lifelines_with_site_strata(
    sites: dict[str, pd.DataFrame], pooled_with_site: pd.DataFrame
) -> None:
    result = coxph.fit_local(sites, "time", "cens", COVARIATES, stratify_sites=True)
    ref = _lifelines(pooled_with_site, strata=["site"])
    _assert_matches(result, ref.params_[COVARIATES], ref.standard_errors_[COVARIATES],
                    ref.log_likelihood_)  # fmt: skip
    assert result.stratified and "site-stratified" in result.summary()


def test_stratified_breslow_equals_statsmodels_with_site_strata(
    sites: dict[str, pd.DataFrame], pooled_with_site: pd.DataFrame
) -> None:
    result = coxph.fit_local(sites, "time", "cens", COVARIATES, "breslow", stratify_sites=True)
    model, ref = _statsmodels(pooled_with_site, strata=pooled_with_site["site"].to_numpy())
    _assert_matches(result, ref.params, ref.bse, ref.llf)
    assert result.log_likelihood_initial == pytest.approx(model.loglike(np.zeros(9)), abs=1e-8)


def test_each_model_uses_its_own_image_and_few_rounds(sites: dict[str, pd.DataFrame]) -> None:
    for stratified in (False, True):
        runner = Counting(LocalRunner(tables_from_frames(sites)))
        result = coxph.fit(runner, list(sites), "time", "cens", COVARIATES,
                           stratify_sites=stratified)  # fmt: skip
        image = "coxph-stratified" if stratified else "coxph-pooled"
        assert set(runner.images) == {image}
        assert len(runner.images) == result.rounds <= MAX_ROUNDS
        assert [r.label for r in result.round_log][0] == "describe"


def test_result_summary_and_json(efron: coxph.CoxResult) -> None:
    text = efron.summary()
    for word in (
        "coef",
        "exp(coef)",
        "se(coef)",
        "lower .95",
        "Likelihood ratio test",
        *COVARIATES,
    ):
        assert word in text
    assert "n = 686, number of events = 299" in text
    data = json.loads(json.dumps(efron.to_dict()))
    assert data["coefficients"]["pnodes"]["coef"] == efron.params["pnodes"]
    assert data["rounds"] == efron.rounds and len(data["round_log"]) == efron.rounds
    assert data["sites"]["hospital-c"]["n"] == 112
    frame = efron.summary_frame()
    assert list(frame.index) == COVARIATES
    assert frame.loc["age", "exp(coef)"] == pytest.approx(np.exp(efron.params["age"]))
    assert efron.hazard_ratios["pnodes"] == pytest.approx(np.exp(efron.params["pnodes"]))


def test_list_of_frames_names_sites_in_order(sites: dict[str, pd.DataFrame]) -> None:
    result = coxph.fit_local(list(sites.values()), "time", "cens", COVARIATES)
    assert list(result.site_counts) == ["site-1", "site-2", "site-3"]


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cuts=st.lists(st.integers(min_value=60, max_value=626), min_size=0, max_size=3, unique=True),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_any_split_over_sites_gives_the_pooled_fit(
    cuts: list[int], seed: int, gbsg2: pd.DataFrame, efron: coxph.CoxResult
) -> None:
    """The pooled model does not depend on which hospital holds which patient."""
    bounds = [0, *sorted(cuts), len(gbsg2)]
    sizes = tuple(b - a for a, b in zip(bounds, bounds[1:], strict=False))
    if min(sizes) < 40:  # every site keeps enough events to pass its minimum group size
        return
    result = coxph.fit_local(split(gbsg2, sizes, seed), "time", "cens", COVARIATES)
    for c in COVARIATES:
        assert result.params[c] == pytest.approx(efron.params[c], abs=1e-9)
        # the covariance is that of the last evaluated β, up to a step of tol = 1e-8 away
        assert result.standard_errors[c] == pytest.approx(efron.standard_errors[c], abs=1e-7)
    assert result.rounds <= MAX_ROUNDS


# --- bad input: a clear error in round 1, before any β leaves the researcher ---------------


def _fails_in_round_one(frames: Any, covariates: list[str], match: str, **kw: Any) -> StudyError:
    runner = Counting(LocalRunner(tables_from_frames(frames)))
    names = list(frames) if isinstance(frames, dict) else None
    with pytest.raises(StudyError, match=match) as caught:
        coxph.fit(runner, names or [], "time", "cens", covariates, **kw)
    assert len(runner.images) <= 1
    return caught.value


def test_a_missing_column_is_named_with_its_site(sites: dict[str, pd.DataFrame]) -> None:
    frames = dict(sites)
    frames["hospital-b"] = frames["hospital-b"].rename(columns={"estrec": "ER"})
    error = _fails_in_round_one(frames, COVARIATES, "no column 'estrec'")
    assert set(error.sites) == {"hospital-b"}
    assert "hospital-b" in str(error)


def test_a_non_numeric_covariate_is_refused(gbsg2: pd.DataFrame) -> None:
    from lifelines.datasets import load_gbsg2

    raw = load_gbsg2()
    frames = dict(zip("abc", split(gbsg2.assign(tgrade=raw.tgrade), (300, 200, 186)), strict=True))
    error = _fails_in_round_one(frames, ["age", "tgrade"], "column 'tgrade' is not numeric")
    assert set(error.sites) == {"a", "b", "c"}


def test_a_constant_covariate_is_refused(sites: dict[str, pd.DataFrame]) -> None:
    frames = {name: f.assign(one=1.0) for name, f in sites.items()}
    _fails_in_round_one(frames, ["age", "one"], "'one' is the same .* every site")
    # A covariate that is constant within each site is fine pooled, not stratified.
    frames = {name: f.assign(big=float(i)) for i, (name, f) in enumerate(sites.items())}
    _fails_in_round_one(frames, ["age", "big"], "does not vary within any site",
                        stratify_sites=True)  # fmt: skip
    result = coxph.fit_local(frames, "time", "cens", ["age", "big"])
    assert result.converged


def test_collinear_covariates_are_refused_before_any_beta_round(
    sites: dict[str, pd.DataFrame],
) -> None:
    frames = {name: f.assign(age_again=f["age"] * 2.0) for name, f in sites.items()}
    _fails_in_round_one(frames, ["age", "pnodes", "age_again"], "collinear")


def test_no_events_is_an_error(sites: dict[str, pd.DataFrame]) -> None:
    frames = {name: f.assign(cens=0) for name, f in sites.items()}
    error = _fails_in_round_one(frames, COVARIATES, "no events")
    assert len(error.sites) == 3


def test_negative_durations_and_bad_event_codes_are_named(
    sites: dict[str, pd.DataFrame],
) -> None:
    frames = dict(sites)
    bad = frames["hospital-c"].copy()
    bad.loc[3, "time"] = -5
    frames["hospital-c"] = bad
    recoded = frames["hospital-a"].copy()
    recoded["cens"] = recoded["cens"] + 1  # 1 = censored, 2 = event: another site's coding
    frames["hospital-a"] = recoded
    error = _fails_in_round_one(frames, COVARIATES, "negative durations")
    assert "0 (censored) or 1 (event)" in error.sites["hospital-a"]
    assert "negative durations in 'time'" in error.sites["hospital-c"]


def test_bad_arguments_fail_before_any_round(sites: dict[str, pd.DataFrame]) -> None:
    for covariates, kw in (
        ([], {}),
        (["age", "age"], {}),
        (["time"], {}),
        (["age"], {"ties": "exact"}),
    ):
        _fails_in_round_one(sites, covariates, "cannot start", **kw)


# --- privacy: refusal below the minimum group size ------------------------------------------


def test_a_small_site_refuses_and_the_study_names_it(sites: dict[str, pd.DataFrame]) -> None:
    runner = LocalRunner(tables_from_frames(sites), {"hospital-c": 120})  # others: default 5
    with pytest.raises(StudyError, match="hospital-c: refused: fewer than 120 patients") as e:
        coxph.fit(runner, list(sites), "time", "cens", COVARIATES)
    assert set(e.value.sites) == {"hospital-c"}
    assert isinstance(e.value, PtmError)
    with pytest.raises(StudyError, match="3 of 3 site"):
        coxph.fit_local(sites, "time", "cens", COVARIATES, min_group_size=1000)


def test_too_few_events_is_a_refusal(sites: dict[str, pd.DataFrame]) -> None:
    events = {name: int(f["cens"].sum()) for name, f in sites.items()}
    k = sorted(events.values())[1]  # the two smallest sites have fewer events than this + 1
    runner = LocalRunner(tables_from_frames(sites), {"hospital-a": 1, "hospital-b": k + 1,
                                                     "hospital-c": k + 1})  # fmt: skip
    with pytest.raises(StudyError) as caught:
        coxph.fit(runner, list(sites), "time", "cens", COVARIATES)
    refused = {s for s, why in caught.value.sites.items() if "events" in why}
    assert refused == {s for s in ("hospital-b", "hospital-c") if events[s] < k + 1}
    assert all(why.startswith("refused: fewer than") for why in caught.value.sites.values())


def test_incomplete_rows_are_dropped_and_counted(sites: dict[str, pd.DataFrame]) -> None:
    frames = dict(sites)
    holey = frames["hospital-a"].astype({"age": float})
    holey.loc[[0, 5, 9], "age"] = np.nan
    frames["hospital-a"] = holey
    result = coxph.fit_local(frames, "time", "cens", COVARIATES)
    assert result.site_counts["hospital-a"]["incomplete"] == 3
    assert result.n == 683
    ref = _lifelines(pd.concat(frames.values()).dropna())
    for c in COVARIATES:
        assert result.params[c] == pytest.approx(ref.params_[c], abs=COEF_TOL)


def test_a_pooled_answer_too_big_for_a_result_is_refused_before_round_two(
    sites: dict[str, pd.DataFrame],
) -> None:
    runner = Counting(LocalRunner(tables_from_frames(sites)))
    with pytest.raises(StudyError, match="site-stratified model"):
        coxph.fit(runner, list(sites), "time", "cens", COVARIATES, max_answer_bytes=100_000)
    assert runner.images == ["coxph-pooled"]
    result = coxph.fit_local(sites, "time", "cens", COVARIATES)
    assert max(max(r.answer_bytes.values()) for r in result.round_log) < 200_000
