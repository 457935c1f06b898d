"""Attacks on one site's answers, as an admitted researcher would run them.

Each attack sends requests of its own choosing straight to the real site code (a
``LocalRunner``: ``survival_site.compute`` in process, every request and answer through
JSON, as over the network), builds the patient records it believes it has found, and
``rebuilt`` checks them against the site's own data: a claim counts only when it names one
real patient's exact time, event and every covariate. Nothing here knows the site's data
except through its answers (and the checker, which plays the referee).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ptm_p2p.algorithms import survival_site as site
from ptm_p2p.algorithms.rounds import LocalRunner, tables_from_frames
from ptm_p2p.errors import StudyError

Claim = tuple[float, int | None, np.ndarray]  # exact time, event (None: unknown), covariates
DAYS = list(range(0, 3001))  # every day of eight years: the researcher's own "grid"


def runner_for(
    sites: Mapping[str, pd.DataFrame], k: int = 5, time_resolution: float | None = None
) -> LocalRunner:
    return LocalRunner(tables_from_frames(sites), k, time_resolution)


def ask(runner: LocalRunner, image: str, who: str, request: dict[str, Any]) -> dict[str, Any]:
    """One site's answer, or ``{"refused": reason}`` when it refuses (or fails)."""
    try:
        return runner(image, {who: request})[who]
    except StudyError as exc:
        return {"refused": str(exc)}


def rebuilt(claims: Sequence[Claim], frame: pd.DataFrame, covariates: Sequence[str]) -> int:
    """How many of the site's patients a list of claims names exactly (each counted once):
    the same time, the same event (when claimed) and every covariate within 1e-6."""
    x = frame[list(covariates)].to_numpy(float)
    times = frame["time"].to_numpy(float)
    events = frame["cens"].to_numpy(int)
    found: set[int] = set()
    for t, event, values in claims:
        match = (times == t) & np.all(np.abs(x - values[None, :]) < 1e-6, axis=1)
        if event is not None:
            match &= events == event
        if int(match.sum()) == 1:
            found.add(int(np.flatnonzero(match)[0]))
    return len(found)


def singled_out(claims: Sequence[Claim], frame: pd.DataFrame, covariates: Sequence[str]) -> int:
    """How many patients' whole covariate vectors the claims name (time ignored)."""
    x = frame[list(covariates)].to_numpy(float)
    found: set[int] = set()
    for _, _, values in claims:
        match = np.all(np.abs(x - values[None, :]) < 1e-6, axis=1)
        if int(match.sum()) == 1:
            found.add(int(np.flatnonzero(match)[0]))
    return len(found)


def cox_grid_attack(
    runner: LocalRunner, who: str, covariates: Sequence[str]
) -> tuple[list[Claim], dict[str, Any]]:
    """The issue's reconstruction: ``describe``, then ``evaluate`` at β = 0 on a grid of
    every day with the numbers at risk, then once more on only the days where someone
    leaves. Where exactly one patient leaves on a day, the drop in the risk-set sums is
    that patient's covariates; the event counts from ``describe`` say whether it was an
    event. Returns the claims and the last answer (a refusal stops the attack)."""
    base = {"duration": "time", "event": "cens", "covariates": list(covariates),
            "ties": "breslow"}  # fmt: skip
    described = ask(runner, "coxph-pooled", who, {**base, "step": "describe"})
    if "refused" in described:
        return [], described
    events = dict(zip(described["event_times"], described["event_counts"], strict=True))
    zero = [0.0] * len(covariates)
    evaluate = {**base, "step": "evaluate", "betas": [zero], "at_risk": True}
    first = ask(runner, "coxph-pooled", who, {**evaluate, "times": DAYS})
    if "refused" in first:
        return [], first
    at_risk = first["at_risk"] + [0]
    leaving = [d for d in DAYS if at_risk[d] - at_risk[d + 1] > 0]
    grid = sorted({*leaving, *(d + 1 for d in leaving)})
    second = ask(runner, "coxph-pooled", who, {**evaluate, "times": grid})
    if "refused" in second:
        return [], second
    sums = site.unpack(second["points"][0]["sums"])
    count = dict(zip(grid, second["at_risk"], strict=True))
    row = {t: sums[i] for i, t in enumerate(grid)}
    p = len(covariates)
    claims: list[Claim] = []
    for d in leaving:
        if count[d] - count[d + 1] == 1:
            x = row[d][1 : 1 + p] - row[d + 1][1 : 1 + p]
            claims.append((float(d), 1 if events.get(float(d)) == 1 else 0, x))
    return claims, second


def beta_probe_attack(
    runner: LocalRunner,
    who: str,
    covariates: Sequence[str],
    ranges: Sequence[float],
    spread: float,
    many_at_once: bool = False,
) -> tuple[list[Claim], list[str]]:
    """Repeated β probes: for each covariate and sign, a β that spreads the linear predictor
    by ``spread`` over the covariate's range, so one patient's weight dominates wherever it
    is the most extreme; the weighted mean Σw·x / Σw of each interval's leavers is then
    (nearly) that patient's covariates. ``many_at_once`` sends every probe in one request.
    Returns the claims and the refusals met."""
    base = {"duration": "time", "event": "cens", "covariates": list(covariates),
            "ties": "breslow", "step": "evaluate", "times": DAYS}  # fmt: skip
    p = len(covariates)
    probes = []
    for a in range(p):
        for sign in (1.0, -1.0):
            beta = [0.0] * p
            beta[a] = sign * spread / ranges[a]
            probes.append(beta)
    answers, refusals = [], []
    batches = [probes] if many_at_once else [[b] for b in probes]
    for batch in batches:
        answer = ask(runner, "coxph-pooled", who, {**base, "betas": batch})
        if "refused" in answer:
            refusals.append(answer["refused"])
            continue
        answers.extend(pt for pt in answer["points"] if "sums" in pt)
    claims: list[Claim] = []
    for point in answers:
        sums = site.unpack(point["sums"])
        diff = sums[:-1] - sums[1:]
        for d in np.flatnonzero(diff[:, 0] > 1e-300).tolist():
            claims.append((float(DAYS[d]), None, diff[d, 1 : 1 + p] / diff[d, 0]))
    return claims, refusals


def km_link_attack(
    runner: LocalRunner, who: str, groupings: Sequence[str]
) -> tuple[list[Claim], list[str]]:
    """Linking exact times across Kaplan–Meier groupings: for every published event time of
    the whole site, each grouping whose curves show an event there in exactly one group
    gives that value to "the patient at that time". Claims carry the inferred values of
    ``groupings`` (NaN where a grouping did not tell)."""
    request = {"duration": "time", "event": "cens"}
    overall = ask(runner, "km", who, request)
    if "refused" in overall:
        return [], [overall["refused"]]
    curves = {}
    for g in groupings:
        answer = ask(runner, "km", who, {**request, "group": g})
        curves[g] = answer.get("groups", {})
    claims: list[Claim] = []
    o = overall["overall"]
    for t, e in zip(o["times"], o["events"], strict=True):
        if e == 0:
            continue
        values = []
        for g in groupings:
            showing = [
                label
                for label, c in curves[g].items()
                if any(tt == t and ee > 0 for tt, ee in zip(c["times"], c["events"], strict=True))
            ]
            values.append(float(showing[0]) if len(showing) == 1 else np.nan)
        if sum(not np.isnan(v) for v in values) >= 2:
            claims.append((float(t), 1, np.array(values)))
    return claims, []


def linked(claims: Sequence[Claim], frame: pd.DataFrame, groupings: Sequence[str]) -> int:
    """Patients a linking claim names: the only one with that exact time and an event, whose
    every inferred attribute matches (attributes not inferred are skipped)."""
    found = set()
    for t, _, values in claims:
        at = frame[(frame["time"] == t) & (frame["cens"] == 1)]
        if len(at) != 1:
            continue
        row = at.iloc[0]
        if all(np.isnan(v) or float(row[g]) == v for g, v in zip(groupings, values, strict=True)):
            found.add(int(at.index[0]))
    return len(found)


def read_as_unmasked(received: Mapping[str, Any], truth: Mapping[str, Mapping[str, Any]]) -> int:
    """The researcher's try at masked answers (``secagg`` wire form, by site): read every
    single answer and every pair of answers, summed, as if unmasked. Returns how many
    fields come out as the true value (that site's, or the pair's sum): 0 when the masks
    hold. Every value so read must also be far from any plausible one (beyond ±1e6)."""
    from ptm_p2p.ledger import secagg

    names = list(received)
    recovered = 0
    groups = [[a] for a in names] + [[a, b] for a in names for b in names if a < b]
    for group in groups:
        fields = secagg.add([secagg.read_masked(received[s])[0] for s in group])
        guess = {name: secagg.decode(values) for name, values in fields.items()}
        for name in guess:
            true = np.sum([truth[s][name] for s in group], axis=0)
            recovered += bool(np.allclose(guess[name], true, rtol=1e-6, atol=1e-6))
        assert all(abs(v) > 1e6 for values in guess.values() for v in values)
    return recovered
