"""The site-stratified Cox model under secure aggregation, in local mode: the real site code
(``survival_site.compute`` with ``"secure_sum": true``), the real masking a site daemon
applies (``secagg.mask_output``) and the researcher's sum (``unmask_by_sum``).

Every round's ℓ, U and I (and the describe round's counts and start terms) are summed over
the sites; the fit must equal the plain stratified fit within the fixed-point error
(docs/privacy.md: below 1e-9 relative), equal lifelines on the data as the sites coarsen it
(1e-6 coefficients, 1e-5 standard errors), and no single site's ℓ, U or I — nor any pair's —
can be read from what the researcher receives.
"""

from __future__ import annotations

import math

import pytest

from ptm_p2p.algorithms import coxph
from ptm_p2p.algorithms import survival_site as site
from ptm_p2p.algorithms.rounds import tables_from_frames
from ptm_p2p.errors import StudyError

from . import cox_model
from .cox_model import COEF_TOL, COVARIATES, FIXED_POINT_REL, RESOLUTION, SE_TOL, K, relative
from .masking import assert_only_the_total_opens, masked


@pytest.mark.parametrize("k, resolution", [(K, RESOLUTION), (1, None)], ids=["control", "exact"])
@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_secure_stratified_fit_equals_the_plain_one(sites, k, resolution, ties) -> None:
    options = dict(stratify_sites=True, min_group_size=k, time_resolution=resolution)
    plain = coxph.fit_local(sites, "time", "cens", COVARIATES, ties, **options)
    secure = coxph.fit_local(sites, "time", "cens", COVARIATES, ties, secure=True, **options)
    assert secure.secure and secure.converged and not secure.dropped
    assert secure.rounds == plain.rounds
    assert (secure.n, secure.n_events) == (plain.n, plain.n_events) == (686, 299)
    assert relative(secure.params, plain.params) < FIXED_POINT_REL
    assert relative(secure.standard_errors, plain.standard_errors) < FIXED_POINT_REL
    assert abs(secure.log_likelihood - plain.log_likelihood) < FIXED_POINT_REL * abs(
        plain.log_likelihood
    )
    assert math.isclose(secure.log_likelihood_initial, plain.log_likelihood_initial,
                        rel_tol=FIXED_POINT_REL)  # fmt: skip
    # nothing per site: the result holds no site's counts
    assert all(counts == {} for counts in secure.site_counts.values())


def test_secure_stratified_fit_equals_lifelines_on_coarsened_data(sites) -> None:
    from lifelines import CoxPHFitter

    coarse = coxph.coarsened_data(
        sites, "time", "cens", COVARIATES, min_group_size=K, time_resolution=RESOLUTION
    )
    central = CoxPHFitter().fit(
        coarse[[*COVARIATES, "time", "cens", "site"]], "time", "cens", strata=["site"],
        fit_options=dict(precision=1e-12),
    )  # fmt: skip
    secure = coxph.fit_local(
        sites, "time", "cens", COVARIATES, stratify_sites=True, secure=True,
        min_group_size=K, time_resolution=RESOLUTION,
    )  # fmt: skip
    coef = max(abs(secure.params[c] - float(central.params_[c])) for c in COVARIATES)
    se = max(
        abs(secure.standard_errors[c] - float(central.standard_errors_[c])) for c in COVARIATES
    )
    assert coef < COEF_TOL and se < SE_TOL, (coef, se)


def _answers(tables, step: dict) -> dict[str, dict[str, list[float]]]:
    request = {"duration": "time", "event": "cens", "covariates": COVARIATES, **step,
               "secure_sum": True}  # fmt: skip
    return {
        s: site.compute("coxph-stratified", t, request, K, RESOLUTION) for s, t in tables.items()
    }


@pytest.mark.parametrize("step", ["describe", "evaluate"])
def test_the_researcher_reads_no_site_loglik_score_or_information(sites, step) -> None:
    """What the researcher receives: three masked answers. It reads every single answer
    and every pair of answers summed as if unmasked; none is that site's (or pair's) ℓ, U,
    I, counts or start terms, and no decoded value is anywhere near a plausible one."""
    tables = tables_from_frames(sites)
    beta = [-0.3, 0.001, 0.007, 0.05, -0.002, 0.0001]
    extra = {"step": "evaluate", "betas": [beta]} if step == "evaluate" else {"step": step}
    outputs = _answers(tables, extra)
    truth = {s: o["secure_sum"] for s, o in outputs.items()}
    # the plain answer at the same β is what secure aggregation hides, site by site
    if step == "evaluate":
        for s, t in tables.items():
            request = {**extra, "duration": "time", "event": "cens", "covariates": COVARIATES}
            plain = site.compute("coxph-stratified", t, request, K, RESOLUTION)
            assert truth[s]["loglik"] == [plain["points"][0]["loglik"]]
            assert truth[s]["score"] == plain["points"][0]["score"]
    received = masked(outputs, b"\x11" * 32)
    # only the sum of all three opens, and it is the sum of the sites' values
    public = {"version": site.VERSION, "covariates": COVARIATES, "ties": "efron"}
    assert_only_the_total_opens(received, truth, public)


def test_a_refusing_site_is_dropped_before_any_beta_leaves(sites) -> None:
    cox_model.assert_a_refusing_site_is_dropped(sites, stratify_sites=True)


def test_secure_pooled_model_needs_a_grid(sites) -> None:
    with pytest.raises(StudyError, match="needs grid="):
        coxph.fit_local(sites, "time", "cens", COVARIATES, secure=True)
