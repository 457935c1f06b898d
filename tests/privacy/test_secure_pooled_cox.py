"""The pooled Cox model under secure aggregation, in local mode: the real site code
(``survival_site.compute("coxph-pooled", …)`` with ``secure_sum``), the real masking a site
daemon applies (``secagg.mask_output``) and the researcher's sum (``unmask_by_sum``).

The describe round counts each site's events on the researcher's grid (only the global
event times and counts open), every evaluate round's risk-set sums are masked: the fit must
equal the plain pooled fit within the fixed-point error (below 1e-9 relative), lifelines on
the data as the sites coarsen it (1e-6 coefficients, 1e-5 standard errors), and no single
site's sums — nor any pair's — can be read from what the researcher receives.
"""

from __future__ import annotations

import math

import pytest

from ptm_p2p.algorithms import coxph
from ptm_p2p.algorithms import survival_site as site
from ptm_p2p.algorithms.rounds import tables_from_frames
from ptm_p2p.errors import StudyError
from ptm_p2p.executor.policy import SitePolicy
from ptm_p2p.ledger import crypto
from ptm_p2p.site import masking as site_secagg

from . import cox_model
from .cox_model import COEF_TOL, COVARIATES, FIXED_POINT_REL, RESOLUTION, SE_TOL, K, relative
from .masking import assert_only_the_total_opens, masked, plain_and_secure_task

LATTICE = [RESOLUTION * i for i in range(1, 101)]  # every 30 days to 3000
DAYS = [float(t) for t in range(1, 2701)]  # every day: GBSG2's times are whole days


@pytest.mark.parametrize(
    "k, resolution, grid, ties",
    [(K, RESOLUTION, LATTICE, "efron"), (K, RESOLUTION, LATTICE, "breslow"),
     (1, None, DAYS, "efron")],
    ids=["control-efron", "control-breslow", "exact-efron"],
)  # fmt: skip
def test_secure_pooled_fit_equals_the_plain_one(sites, k, resolution, grid, ties) -> None:
    options = dict(min_group_size=k, time_resolution=resolution)
    plain = coxph.fit_local(sites, "time", "cens", COVARIATES, ties, **options)
    secure = coxph.fit_local(sites, "time", "cens", COVARIATES, ties, secure=True, grid=grid,
                             **options)  # fmt: skip
    assert secure.secure and secure.converged and not secure.dropped and not secure.stratified
    assert secure.rounds == plain.rounds
    assert (secure.n, secure.n_events) == (plain.n, plain.n_events) == (686, 299)
    assert relative(secure.params, plain.params) < FIXED_POINT_REL
    assert relative(secure.standard_errors, plain.standard_errors) < FIXED_POINT_REL
    assert math.isclose(secure.log_likelihood, plain.log_likelihood, rel_tol=FIXED_POINT_REL)
    assert math.isclose(secure.log_likelihood_initial, plain.log_likelihood_initial,
                        rel_tol=FIXED_POINT_REL)  # fmt: skip
    assert all(counts == {} for counts in secure.site_counts.values())  # nothing per site


def test_secure_pooled_fit_equals_lifelines_on_coarsened_data(sites) -> None:
    from lifelines import CoxPHFitter

    coarse = coxph.coarsened_data(
        sites, "time", "cens", COVARIATES, min_group_size=K, time_resolution=RESOLUTION
    )
    central = CoxPHFitter().fit(
        coarse[[*COVARIATES, "time", "cens"]], "time", "cens",
        fit_options=dict(precision=1e-12),
    )  # fmt: skip
    secure = coxph.fit_local(sites, "time", "cens", COVARIATES, secure=True, grid=LATTICE,
                             min_group_size=K, time_resolution=RESOLUTION)  # fmt: skip
    coef = max(abs(secure.params[c] - float(central.params_[c])) for c in COVARIATES)
    se = max(
        abs(secure.standard_errors[c] - float(central.standard_errors_[c])) for c in COVARIATES
    )
    assert coef < COEF_TOL and se < SE_TOL, (coef, se)


@pytest.mark.parametrize("step", ["describe", "evaluate"])
def test_the_researcher_reads_no_site_sums_or_event_times(sites, step) -> None:
    """Three masked answers: every single answer and every pair, read as if unmasked,
    gives back none of the sites' event counts, Σx, risk-set sums or numbers at risk."""
    tables = tables_from_frames(sites)
    base = {"duration": "time", "event": "cens", "covariates": COVARIATES}
    if step == "describe":
        request = {**base, "step": "describe", "secure_sum": {"grid": LATTICE}}
    else:
        beta = [-0.3, 0.001, 0.007, 0.05, -0.002, 0.0001]
        request = {**base, "step": "evaluate", "secure_sum": True, "times": LATTICE[2:60],
                   "tied": [0, 5, 9], "betas": [beta], "at_risk": True}  # fmt: skip
    outputs = {s: site.compute("coxph-pooled", t, request, K, RESOLUTION)
               for s, t in tables.items()}  # fmt: skip
    truth = {s: o["secure_sum"] for s, o in outputs.items()}
    if step == "evaluate":  # what the plain answer at the same β shows, site by site
        plain_request = {k: v for k, v in request.items() if k != "secure_sum"}
        for s, t in tables.items():
            plain = site.compute("coxph-pooled", t, plain_request, K, RESOLUTION)
            sums = site.unpack(plain["points"][0]["sums"]).reshape(-1).tolist()
            assert truth[s]["sums"] == sums and truth[s]["at_risk"] == plain["at_risk"]
    received = masked(outputs, b"\x22" * 32)
    public = {"version": site.VERSION, "covariates": COVARIATES, "ties": "efron"}
    assert_only_the_total_opens(received, truth, public)


def test_a_grid_missing_event_times_stops_the_fit(sites) -> None:
    coarse = [60.0 * i for i in range(1, 51)]  # every other lattice point
    with pytest.raises(StudyError, match="fall on no point of the grid"):
        coxph.fit_local(sites, "time", "cens", COVARIATES, secure=True, grid=coarse,
                        min_group_size=K, time_resolution=RESOLUTION)  # fmt: skip


def test_a_refusing_site_is_dropped_before_any_beta_leaves(sites) -> None:
    cox_model.assert_a_refusing_site_is_dropped(sites, grid=LATTICE)


@pytest.mark.parametrize("image", ["coxph-pooled", "summary"])
def test_a_site_requiring_secure_aggregation_refuses_plain_pooled_cox_and_summary(image) -> None:
    policy = SitePolicy.from_table({"require_secure_aggregation": True})
    a, b = (crypto.Signer.generate() for _ in range(2))
    ref = f"127.0.0.1:5000/ptm/{image}@sha256:" + "c" * 64
    inputs = {a.public_key: b'{"step": "describe"}', b.public_key: b'{"step": "describe"}'}
    plain, secure = plain_and_secure_task(ref, inputs)
    assert site_secagg.refusal(policy, plain) == site_secagg.REQUIRED
    assert site_secagg.refusal(policy, secure) is None
