"""Attacks by an admitted researcher on one site, before and after disclosure control.

Every attack runs against the real site code (``survival_site.compute`` through a
``LocalRunner``) on hospital-a's 360 GBSG2 patients, and counts the patients it rebuilt,
checked against the site's own rows (``attacks.rebuilt``). Without control (the default
``[policy]``, k = 5) the issue's figures are reproduced; with ``disclosure_control = true``
(``time_resolution = 30`` days) each attack rebuilds no one or meets a refusal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ptm_p2p.algorithms import datasets

from . import attacks

K = 5
RESOLUTION = 30.0
ALL = list(datasets.COVARIATES)  # 9 covariates, as in the issue
GROUPINGS = ["horTh", "menostat", "tgrade_II", "tgrade_III"]


@pytest.fixture(scope="module")
def hospital_a() -> pd.DataFrame:
    frame = datasets.split(datasets.load_gbsg2(), datasets.SIZES)[0]
    assert len(frame) == 360
    return frame


def _runner(frame: pd.DataFrame, controlled: bool) -> attacks.LocalRunner:
    return attacks.runner_for({"a": frame}, K, RESOLUTION if controlled else None)


def test_researcher_grid_rebuilds_286_patients_without_control(hospital_a):
    """The issue's attack on today's behaviour: every day as the grid, β = 0, at_risk."""
    claims, _ = attacks.cox_grid_attack(_runner(hospital_a, False), "a", ALL)
    assert attacks.rebuilt(claims, hospital_a, ALL) == 286


def test_researcher_grid_rebuilds_no_one_under_control(hospital_a):
    runner = _runner(hospital_a, True)
    claims, answer = attacks.cox_grid_attack(runner, "a", ALL)
    assert "refused" not in answer  # the site answers, from its own intervals
    assert attacks.rebuilt(claims, hospital_a, ALL) == 0
    assert attacks.singled_out(claims, hospital_a, ALL) == 0
    # whatever the grid, the risk set changes only at the site's own interval ends, each
    # a multiple of the resolution, and every drop is at least k patients
    at_risk = np.array(answer["at_risk"])
    drops = -np.diff(np.append(at_risk, 0))
    assert drops[drops > 0].min() >= K


@pytest.mark.parametrize("controlled", [False, True])
def test_repeated_beta_probes(hospital_a, controlled):
    """Extreme β (one per covariate and sign, in separate requests and all in one) single
    out the most extreme patient of each risk-set step; under control they are refused, and
    probes within the allowed spread single out no one."""
    covariates = ["horTh", "age", "tsize", "pnodes", "progrec", "estrec"]
    ranges = [float(hospital_a[c].max() - hospital_a[c].min()) for c in covariates]
    runner = _runner(hospital_a, controlled)
    one_by_one, refused_one = attacks.beta_probe_attack(runner, "a", covariates, ranges, 1000.0)
    at_once, refused_all = attacks.beta_probe_attack(
        runner, "a", covariates, ranges, 1000.0, many_at_once=True
    )
    within, refused_within = attacks.beta_probe_attack(runner, "a", covariates, ranges, 19.0)
    counts = [attacks.rebuilt(c, hospital_a, covariates) for c in (one_by_one, at_once, within)]
    if not controlled:
        assert counts == [296, 296, 304]
        assert not (refused_one or refused_all or refused_within)
        return
    assert counts == [0, 0, 0]
    assert len(refused_one) == 2 * len(covariates) and "linear predictor" in refused_one[0]
    assert len(refused_all) == 1 and "at most 1" in refused_all[0]
    assert not refused_within and within  # answered, yet no covariate vector singled out
    assert attacks.singled_out(within, hospital_a, covariates) == 0


def test_linking_exact_times_across_km_groupings(hospital_a):
    """The first event times followed through four groupings give those patients'
    hormone therapy, menopausal status and grade; under control no published time is a
    patient's and nothing links."""
    claims, _ = attacks.km_link_attack(_runner(hospital_a, False), "a", GROUPINGS)
    assert attacks.linked(claims, hospital_a, GROUPINGS) == 6
    runner = _runner(hospital_a, True)
    claims, _ = attacks.km_link_attack(runner, "a", GROUPINGS)
    assert attacks.linked(claims, hospital_a, GROUPINGS) == 0
    for g in [None, *GROUPINGS]:
        request = {"duration": "time", "event": "cens", **({"group": g} if g else {})}
        answer = attacks.ask(runner, "km", "a", request)
        for curve in [answer["overall"], *answer.get("groups", {}).values()]:
            assert all(t % RESOLUTION == 0 for t in curve["times"])
            assert all(e == 0 or e >= K for e in curve["events"])
            assert all(c == 0 or c >= K for c in curve["censored"])


@pytest.mark.parametrize("column", ["age", "progrec", "estrec"])
def test_duration_set_to_a_covariate(hospital_a, column):
    """KM with ``duration`` = a covariate publishes exact values held by fewer than k
    patients; under control only lattice points, each ending an interval of ≥ k patients."""
    values = hospital_a[column].to_numpy(float)

    def exposed(answer, resolution):
        times = answer["overall"]["times"]
        return sum(
            1
            for t in times
            if not (resolution and t % resolution == 0) and 0 < int((values == t).sum()) < K
        )

    request = {"duration": column, "event": "cens"}
    before = attacks.ask(_runner(hospital_a, False), "km", "a", request)
    after = attacks.ask(_runner(hospital_a, True), "km", "a", request)
    assert exposed(before, None) > 0
    assert exposed(after, RESOLUTION) == 0
    times = np.array(after["overall"]["times"])
    edges = np.concatenate([[-np.inf], times])
    held = [
        int(((values > lo) & (values <= hi)).sum())
        for lo, hi in zip(edges[:-1], times, strict=True)
    ]
    assert min(held) >= K


def test_group_column_with_small_values_is_suppressed(hospital_a):
    """A group column with fewer than k patients per value (exact progesterone levels)
    shows no curve for any such value, with or without control."""
    for controlled in (False, True):
        answer = attacks.ask(
            _runner(hospital_a, controlled), "km", "a",
            {"duration": "time", "event": "cens", "group": "progrec"},
        )  # fmt: skip
        sizes = hospital_a["progrec"].value_counts()
        for label in answer["groups"]:
            assert sizes[float(label)] >= K


def test_subsets_through_two_data_labels(hospital_a):
    """Two data sources at one site that differ by one patient (a cohort file and the
    registry): differencing the answers isolates that patient. Under control the exact
    time is gone (only the site's interval is left) — and the site refuses nothing here:
    what the two answers reveal *together* is the disclosure record's to stop (the next
    part of issue 15; see docs/privacy.md), so the covariates still come out."""
    victim = 17
    subset = hospital_a.drop(index=victim)
    found = {}
    for controlled in (False, True):
        runner = attacks.runner_for(
            {"full": hospital_a, "cohort": subset}, K, RESOLUTION if controlled else None
        )
        answers = {}
        for label in ("full", "cohort"):
            answers[label] = attacks.ask(runner, "coxph-pooled", label, {
                "duration": "time", "event": "cens", "covariates": ALL, "ties": "breslow",
                "step": "evaluate", "times": attacks.DAYS, "betas": [[0.0] * len(ALL)],
                "at_risk": True,
            })  # fmt: skip
        sums = [attacks.site.unpack(answers[s]["points"][0]["sums"]) for s in ("full", "cohort")]
        at_risk = np.array(answers["full"]["at_risk"]) - np.array(answers["cohort"]["at_risk"])
        last = int(np.flatnonzero(at_risk == 1).max())  # the last day the victim is at risk
        x = sums[0][0, 1 : 1 + len(ALL)] - sums[1][0, 1 : 1 + len(ALL)]
        claim = [(float(attacks.DAYS[last]), None, x)]
        found[controlled] = (
            attacks.rebuilt(claim, hospital_a, ALL),
            attacks.singled_out(claim, hospital_a, ALL),
        )
    assert found[False] == (1, 1)
    assert found[True] == (0, 1)  # residual: covariates without the time (see docstring)


def _cuts_seen(runner: attacks.LocalRunner, requests: list[tuple[str, dict]]) -> set[float]:
    """Every time at which some answer shows the site's population changing."""
    seen: set[float] = set()
    for image, request in requests:
        answer = attacks.ask(runner, image, "a", request)
        if "refused" in answer:
            continue
        if image == "km":
            for curve in [answer["overall"], *answer.get("groups", {}).values()]:
                seen.update(curve["times"])
        else:
            at_risk = [*answer["at_risk"], 0]
            seen.update(float(d) for d in attacks.DAYS if at_risk[d] > at_risk[d + 1])
    return seen


def test_no_set_of_queries_isolates_fewer_than_k(hospital_a):
    """The cross-query rule for the grid: every request on a data source's duration column
    sees the site's base partition or a coarsening of it. Cox requests with different
    covariates (so different categorical merging), with another column as the "event", and
    Kaplan–Meier curves overall, per group and per week: the union of every time at which
    any answer's population changes still leaves ≥ k patients between consecutive times.
    Without control the same requests pin down single patients."""

    def cox(event, covariates):
        return ("coxph-pooled", {
            "duration": "time", "event": event, "covariates": covariates, "ties": "breslow",
            "step": "evaluate", "times": attacks.DAYS, "betas": [[0.0] * len(covariates)],
            "at_risk": True,
        })  # fmt: skip

    km = {"duration": "time", "event": "cens"}
    requests = [
        cox("cens", ["horTh"]),
        cox("cens", ["menostat", "age"]),
        cox("cens", ["tgrade_II", "pnodes"]),
        cox("cens", ALL),
        cox("horTh", ["age"]),
        cox("menostat", ["pnodes"]),
        ("km", km),
        ("km", {**km, "time_unit": 7}),
        *(("km", {**km, "group": g}) for g in GROUPINGS),
        ("km", {"duration": "time", "event": "horTh", "group": "menostat"}),
    ]
    times = hospital_a["time"].to_numpy(float)
    smallest = {}
    for controlled in (False, True):
        cuts = sorted(_cuts_seen(_runner(hospital_a, controlled), requests))
        edges = [-np.inf, *cuts[:-1]]
        held = [
            int(((times > lo) & (times <= hi)).sum()) for lo, hi in zip(edges, cuts, strict=True)
        ]
        smallest[controlled] = min(n for n in held if n > 0)  # empty intervals hide no one
    assert smallest[False] == 1
    assert smallest[True] >= K


def test_the_same_query_again_reveals_nothing_new(hospital_a):
    """A second researcher (or the first, again) asking the same question gets the same
    bytes: the answers are deterministic functions of the site's coarse data, with no noise
    that repetition could average away."""
    runner = _runner(hospital_a, True)
    cox = {"duration": "time", "event": "cens", "covariates": ALL, "ties": "efron",
           "step": "evaluate", "times": attacks.DAYS, "betas": [[0.001] * len(ALL)],
           "tied": list(range(0, 3000, 7)), "at_risk": True}  # fmt: skip
    km = {"duration": "time", "event": "cens", "group": "horTh"}
    for image, request in (("coxph-pooled", cox), ("km", km)):
        first = attacks.ask(runner, image, "a", request)
        second = attacks.ask(_runner(hospital_a, True), image, "a", dict(request))
        assert "refused" not in first
        assert first == second
