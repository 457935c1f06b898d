"""Kaplan–Meier per group as a secure sum, in local mode: the real site code, masking and sum.

The researcher names the group's levels up front; every site answers, per level and grid
point, its (coarsened) events and censorings in one fixed shape, masked as its daemon masks
them. The curves must be the plain grouped ones (the same suppression rules apply inside
the sum: a level a site hides is zeros there), only the totals may open, a grouped secure
request without levels is a clear error, and the disclosure record's grouping rule judges
it as it judges a plain grouped request.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ptm_p2p.algorithm import AlgorithmError
from ptm_p2p.algorithms import km
from ptm_p2p.algorithms import survival_site as site
from ptm_p2p.algorithms.rounds import tables_from_frames
from ptm_p2p.errors import StudyError
from ptm_p2p.executor.policy import SitePolicy
from ptm_p2p.ledger import crypto
from ptm_p2p.site import masking as site_secagg
from ptm_p2p.site.disclosure import DISCLOSURE_FILE, REFUSED, DisclosureRecord, parse_request

from .masking import assert_only_the_total_opens, masked, plain_and_secure_task

K = 5
GRID = [float(t) for t in np.arange(0, 3000 + 30, 30)]  # past GBSG2's 2659 days
GRADES = ["I", "II", "III", "IV"]
KM = "127.0.0.1:5000/ptm/km@sha256:" + "1" * 64


@pytest.fixture(scope="module")
def graded(sites: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The sites with a ``grade`` column; hospital-c has a grade IV of three patients (under
    k = 5: hidden there, and the smallest other grade with it)."""
    frames = {}
    for name, frame in sites.items():
        grade = np.where(frame["tgrade_III"] == 1, "III", np.where(frame["tgrade_II"] == 1,
                         "II", "I"))  # fmt: skip
        frames[name] = frame.assign(grade=grade).reset_index(drop=True)
    frames["hospital-c"].loc[:2, "grade"] = "IV"
    return frames


def _largest_difference(plain: km.KMResult, secure: km.KMResult, name: str) -> float:
    """How far the secure curve ``name`` is from the plain one at the plain curve's times;
    the secure curve's other grid points must hold no event or censoring."""
    p, s = plain.curve(name), secure.curve(name)
    extra = s.drop(index=p.index)
    assert (extra["events"] == 0).all() and (extra["censored"] == 0).all()
    return float(np.max(np.abs(s.loc[p.index, p.columns].to_numpy() - p.to_numpy())))


@pytest.mark.parametrize(
    "k, resolution, unit", [(K, 30.0, None), (1, None, 30.0)], ids=["control", "exact"]
)
def test_secure_group_curves_equal_the_plain_ones(graded, k, resolution, unit) -> None:
    options = {"min_group_size": k, "time_resolution": resolution, "time_unit": unit}
    plain = km.fit_local(graded, "time", "cens", "grade", **options)
    secure = km.fit_local(
        graded, "time", "cens", "grade", secure=True, grid=GRID, levels=GRADES, **options
    )
    assert secure.secure and secure.n == plain.n and secure.group_col == "grade"
    assert sorted(secure.curves) == sorted(c for c in plain.curves if not c.startswith("site:"))
    for name in secure.curves:
        assert _largest_difference(plain, secure, name) < 1e-9, name
    if k == K:  # hospital-c hides IV (3 patients) and its smallest other grade, as plain
        assert plain.suppressed_groups["hospital-c"] == ["I", "IV"]
        assert "group:IV" not in secure.curves  # no site showed it
        assert secure.level_sites == {"I": 2, "II": 3, "III": 3, "IV": 0}
    else:
        assert secure.level_sites == {"I": 3, "II": 3, "III": 3, "IV": 1}


def test_values_outside_the_levels_enter_the_pooled_curve_only(graded) -> None:
    """Levels II and III only: grades I and IV are hidden at every site like small groups
    (no level, no refusal that would say a site holds them); the pooled curve keeps them."""
    options = {"min_group_size": K, "time_resolution": 30.0}
    plain = km.fit_local(graded, "time", "cens", "grade", **options)
    secure = km.fit_local(
        graded, "time", "cens", "grade", secure=True, grid=GRID, levels=["II", "III"], **options
    )
    assert sorted(secure.curves) == ["group:II", "group:III", "pooled"]
    assert secure.level_sites == {"II": 3, "III": 3}
    for name in secure.curves:
        assert _largest_difference(plain, secure, name) < 1e-9, name


def test_only_the_totals_open(graded) -> None:
    tables = tables_from_frames(graded)
    request = {
        "duration": "time",
        "event": "cens",
        "group": "grade",
        "secure_sum": {"grid": GRID, "levels": GRADES},
    }
    answers = {s: site.compute("km", t, request, K, 30.0) for s, t in tables.items()}
    truth = {s: a["secure_sum"] for s, a in answers.items()}
    assert all(len(t["group_events"]) == len(GRADES) * len(GRID) for t in truth.values())
    assert truth["hospital-c"]["group_sites"][GRADES.index("IV")] == 0.0  # hidden: zeros
    public = {"version": site.VERSION, "min_group_size": K}
    received = masked({s: {"secure_sum": truth[s], "public": public} for s in graded}, b"\x09" * 32)
    assert_only_the_total_opens(received, truth, public)


def test_levels_are_required_and_checked(graded) -> None:
    with pytest.raises(StudyError, match=r"levels=\[\.\.\.\]"):
        km.fit_local(graded, "time", "cens", "grade", secure=True, grid=GRID)
    with pytest.raises(StudyError, match="distinct"):
        km.fit_local(graded, "time", "cens", "grade", secure=True, grid=GRID, levels=["I", "I"])
    with pytest.raises(StudyError, match="add secure=True"):
        km.fit_local(graded, "time", "cens", "grade", levels=GRADES)
    many = [f"L{i}" for i in range(8)]  # 2 × 9 × 4096 counts: over a secure sum's bound
    with pytest.raises(StudyError, match="coarser grid"):
        km.fit_local(graded, "time", "cens", "grade", secure=True, grid=range(1, 4097), levels=many)
    # the site checks for itself: a grouped secure request names its levels
    table = tables_from_frames(graded)["hospital-a"]
    request = {"duration": "time", "event": "cens", "group": "grade", "secure_sum": {"grid": GRID}}
    with pytest.raises(AlgorithmError, match="levels"):
        site.compute("km", table, request, K, 30.0)


def test_a_site_requiring_secure_aggregation_takes_the_grouped_round() -> None:
    policy = SitePolicy.from_table({"require_secure_aggregation": True})
    a, b = (crypto.Signer.generate() for _ in range(2))
    grouped = {"duration": "time", "event": "cens", "group": "horTh"}
    secure = {**grouped, "secure_sum": {"grid": GRID, "levels": ["0", "1"]}}
    image = "127.0.0.1:5000/ptm/km@sha256:" + "b" * 64
    plain, _ = plain_and_secure_task(image, {a.public_key: json.dumps(grouped).encode()} | {
        b.public_key: json.dumps(grouped).encode()})  # fmt: skip
    _, masked_task = plain_and_secure_task(
        image, {key.public_key: json.dumps(secure).encode() for key in (a, b)}
    )
    assert site_secagg.refusal(policy, plain) == site_secagg.REQUIRED
    assert site_secagg.refusal(policy, masked_task) is None


def test_the_grouping_rule_judges_the_secure_round_too(tmp_path, sites) -> None:
    """Hospital-a has 2 postmenopausal patients under 44: after a grouping by menostat, a
    secure grouped round by 'young' would cross it into a cell of 2 — refused, as plain."""
    frame = sites["hospital-a"].reset_index(drop=True)
    frame["young"] = (frame["age"] < 44).astype(int)
    assert 0 < frame.groupby(["young", "menostat"]).size().min() < K
    frame.to_csv(tmp_path / "a.csv", index=False)
    record = DisclosureRecord(tmp_path / DISCLOSURE_FILE, {"gbsg2": tmp_path / "a.csv"}, K, 50)
    head = {"data": "gbsg2", "duration": "time", "event": "cens"}
    asked = [
        {**head, "group": "menostat"},
        {**head, "group": "young", "secure_sum": {"grid": GRID, "levels": ["0", "1"]}},
    ]
    refusals = []
    for n, params in enumerate(asked, start=1):
        task = n.to_bytes(32, "big")
        request = parse_request(KM, ["gbsg2"], json.dumps(params).encode())
        refusals.append(record.check(task, n, request, "a" * 64, "uni"))
        if refusals[-1] is None:
            record.settle(task, ok=True)
    record.close()
    assert refusals[0] is None
    assert refusals[1] is not None and refusals[1].startswith(REFUSED)
    assert "by young crossed with the grouping by menostat" in refusals[1]
