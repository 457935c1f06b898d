"""Secure aggregation in local mode: the real site code, the real masking and summing.

``LocalRunner.secure_sum`` runs each site's ``survival_site.compute`` (as the image does),
masks the answer with the site's own key exactly as the site daemon does
(``secagg.mask_output``) and sums as the researcher's client does (``unmask_by_sum``).
The federated Kaplan–Meier curve with secure aggregation must equal the one without it
(counts are whole numbers: exactly), with and without disclosure control; a site that
refuses is dropped and the round runs again without it; the researcher can rebuild no
site's own counts from what it receives.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ptm_p2p.algorithms import datasets, km
from ptm_p2p.algorithms import survival_site as site
from ptm_p2p.algorithms.rounds import LocalRunner, tables_from_frames
from ptm_p2p.errors import StudyError
from ptm_p2p.executor.policy import SitePolicy
from ptm_p2p.ledger import crypto, secagg
from ptm_p2p.site import masking as site_secagg

from .masking import masked, plain_and_secure_task

GRID = [float(t) for t in np.arange(30, 3000 + 30, 30)]  # 100 points past GBSG2's 2659 days


@pytest.fixture(scope="module")
def sites() -> dict[str, pd.DataFrame]:
    frames = datasets.split(datasets.load_gbsg2(), datasets.SIZES)
    return dict(zip(("hospital-a", "hospital-b", "hospital-c"), frames, strict=True))


def _same_curve(plain: km.KMResult, secure: km.KMResult) -> float:
    """Largest difference of the secure pooled curve from the plain one at the plain
    curve's times (the secure curve has a row per grid point, unchanged in between)."""
    p, s = plain.curve(), secure.curve()
    worst = 0.0
    for column in ("survival", "at_risk", "events", "censored", "ci_lower", "ci_upper"):
        worst = max(worst, float(np.max(np.abs(s.loc[p.index, column].values - p[column].values))))
    # and nothing happens at the extra grid points
    extra = s.drop(index=p.index)
    assert (extra["events"] == 0).all() and (extra["censored"] == 0).all()
    return worst


@pytest.mark.parametrize(
    "k, resolution, unit", [(5, 30.0, None), (1, None, 30.0)], ids=["control", "exact"]
)
def test_secure_sum_equals_the_plain_federated_curve(sites, k, resolution, unit) -> None:
    plain = km.fit_local(
        sites, "time", "cens", min_group_size=k, time_resolution=resolution, time_unit=unit
    )
    secure = km.fit_local(
        sites,
        "time",
        "cens",
        min_group_size=k,
        time_resolution=resolution,
        time_unit=unit,
        secure=True,
        grid=GRID,
    )
    assert secure.secure and secure.n == plain.n and not secure.dropped
    assert list(secure.curves) == ["pooled"]  # no per-site curve under secure aggregation
    assert _same_curve(plain, secure) == 0.0


def test_a_refusing_site_is_dropped_and_the_round_runs_again(sites) -> None:
    frames = {**sites, "clinic-e": sites["hospital-c"].iloc[:4]}  # 4 patients < k = 5
    runner = LocalRunner(tables_from_frames(frames), 5, 30.0)
    secure = km.fit(runner, list(frames), "time", "cens", secure=True, grid=GRID)
    assert set(secure.dropped) == {"clinic-e"} and "fewer than" in secure.dropped["clinic-e"]
    assert secure.sites == ("hospital-a", "hospital-b", "hospital-c")
    assert secure.rounds == 2  # the first round's masks do not cancel: published again
    alone = km.fit_local(sites, "time", "cens", min_group_size=5, time_resolution=30.0)
    assert _same_curve(alone, secure) == 0.0


def test_the_researcher_recovers_no_site_counts(sites) -> None:
    """What the researcher receives: three masked answers. It tries every site's answer and
    every pair of answers as if unmasked; none is that site's (or pair's) true counts."""
    tables = tables_from_frames(sites)
    request = {"duration": "time", "event": "cens", "secure_sum": {"grid": GRID}}
    truth = {s: site.compute("km", t, request, 5, 30.0)["secure_sum"] for s, t in tables.items()}
    received = masked({s: {"secure_sum": truth[s]} for s in sites}, b"\x07" * 32)
    recovered = 0
    names = list(sites)
    for subset in ([a] for a in names), ([a, b] for a in names for b in names if a < b):
        for group in subset:
            fields = secagg.add([secagg.read_masked(received[s])[0] for s in group])
            guess = {name: secagg.decode(v) for name, v in fields.items()}
            true = {
                f: np.sum([truth[s][f] for s in group], axis=0).tolist() for f in truth[names[0]]
            }
            recovered += guess == true
            # not even one count: every decoded value is far from any plausible count
            assert all(abs(v) > 1e6 for values in guess.values() for v in values)
    assert recovered == 0
    total, _ = secagg.unmask_by_sum(received)
    assert total["n"] == [float(sum(truth[s]["n"][0] for s in names))]


def test_group_curves_need_their_levels_under_secure_aggregation(sites) -> None:
    # the grouped secure round itself: test_secure_km_groups.py
    with pytest.raises(StudyError, match=r"levels=\[\.\.\.\]"):
        km.fit_local(sites, "time", "cens", "horTh", secure=True, grid=GRID)


def test_a_site_requiring_secure_aggregation_refuses_plain_tasks() -> None:
    policy = SitePolicy.from_table({"require_secure_aggregation": True})
    a, b = (crypto.Signer.generate() for _ in range(2))
    image = "127.0.0.1:5000/ptm/km@sha256:" + "b" * 64
    plain, secure = plain_and_secure_task(image, {a.public_key: b"{}", b.public_key: b"{}"})
    assert site_secagg.refusal(policy, plain) == site_secagg.REQUIRED
    assert site_secagg.refusal(policy, secure) is None
    assert site_secagg.refusal(SitePolicy.from_table({}), plain) is None
    # after the run: an answer outside the convention is not sent, and says nothing of it
    status, output, reason = site_secagg.masked(a, secure, "ok", b'{"counts": [3]}', "")
    assert (status, output, reason) == ("failed", b"", site_secagg.NOT_MASKABLE)
    status, output, _ = site_secagg.masked(a, secure, "ok", b'{"secure_sum": {"n": [3]}}', "")
    assert status == "ok" and b'"n":[3]' not in output and secagg.SCHEME.encode() in output
    # a plain task's answer passes untouched
    assert site_secagg.masked(a, plain, "ok", b'{"counts": [3]}', "")[1] == b'{"counts": [3]}'
