"""Federated Kaplan–Meier in local mode against lifelines' KaplanMeierFitter, and the
coarsening that keeps every published count a multiple of the site's minimum group size."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptm_p2p.algorithms import km
from ptm_p2p.algorithms.survival_site import km_counts
from ptm_p2p.errors import StudyError


def _lifelines(frame: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    from lifelines import KaplanMeierFitter

    fitted = KaplanMeierFitter().fit(frame["time"], frame["cens"])
    return fitted.survival_function_.iloc[:, 0], fitted.confidence_interval_


def _assert_equals_lifelines(curve: pd.DataFrame, frame: pd.DataFrame) -> None:
    survival, band = _lifelines(frame)
    np.testing.assert_array_equal(curve.index.to_numpy(), survival.index.to_numpy(float))
    np.testing.assert_allclose(curve["survival"], survival, rtol=0, atol=1e-12)
    np.testing.assert_allclose(curve["ci_lower"], band.iloc[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(curve["ci_upper"], band.iloc[:, 1], rtol=0, atol=1e-12)


@pytest.fixture(scope="module")
def exact(sites: dict[str, pd.DataFrame]) -> km.KMResult:
    """With a minimum group size of 1 nothing is coarsened."""
    return km.fit_local(sites, "time", "cens", group_col="horTh", min_group_size=1)


def test_pooled_curve_equals_lifelines(exact: km.KMResult, gbsg2: pd.DataFrame) -> None:
    _assert_equals_lifelines(exact.curve("pooled"), gbsg2)
    assert exact.n == 686 and exact.rounds == 1


def test_site_and_group_curves_equal_lifelines(
    exact: km.KMResult, sites: dict[str, pd.DataFrame], gbsg2: pd.DataFrame
) -> None:
    for name, frame in sites.items():
        _assert_equals_lifelines(exact.curve(f"site:{name}"), frame)
    for value in (0, 1):
        _assert_equals_lifelines(exact.curve(f"group:{value}"), gbsg2[gbsg2.horTh == value])


def test_the_table_is_long_and_json_ready(exact: km.KMResult) -> None:
    table = exact.table
    assert set(table["curve"]) == {
        "pooled", "site:hospital-a", "site:hospital-b", "site:hospital-c", "group:0", "group:1",
    }  # fmt: skip
    assert list(table.columns) == ["curve", *km.COLUMNS]
    data = json.loads(json.dumps(exact.to_dict()))
    assert data["curves"]["pooled"]["survival"][0] == 1.0


def test_coarsened_counts_are_multiples_of_the_minimum(
    sites: dict[str, pd.DataFrame], gbsg2: pd.DataFrame
) -> None:
    k = 5
    result = km.fit_local(sites, "time", "cens", group_col="horTh", min_group_size=k)
    for name in sites:
        curve = result.curve(f"site:{name}")
        for column in ("at_risk", "events", "censored"):
            assert np.all(curve[column].to_numpy() % k == 0), (name, column)
        assert np.all(curve["events"] <= curve["at_risk"])
    pooled = result.curve("pooled")
    exact, _ = _lifelines(gbsg2)
    times = exact.index.to_numpy(float)
    # Each site moves fewer than k events (and exits) earlier: while many are at risk the
    # curve stays close; in the last few patients' tail the coarsening shows, as it must.
    at = np.searchsorted(pooled.index.to_numpy(), times, side="right") - 1
    gap = pooled["survival"].to_numpy()[at] - exact.to_numpy()
    at_risk = np.array([(gbsg2["time"] >= t).sum() for t in times])
    assert np.max(np.abs(gap[at_risk >= 50])) < 0.03
    assert len(pooled) < len(exact) / 3


def test_small_groups_are_suppressed_with_a_complement(
    sites: dict[str, pd.DataFrame],
) -> None:
    frames = {}
    for name, frame in sites.items():
        grade = np.where(frame["tgrade_III"] == 1, "III", np.where(frame["tgrade_II"] == 1,
                         "II", "I"))  # fmt: skip
        frames[name] = frame.assign(grade=grade)
    frames["hospital-c"].loc[:2, "grade"] = "IV"  # three patients in a group of their own
    result = km.fit_local(frames, "time", "cens", group_col="grade", min_group_size=5)
    hidden = result.suppressed_groups["hospital-c"]
    assert "IV" in hidden and len(hidden) >= 2  # IV and the smallest other group
    assert result.suppressed_groups["hospital-a"] == []
    assert "group:IV" not in result.curves


def test_a_site_below_the_minimum_refuses(sites: dict[str, pd.DataFrame]) -> None:
    with pytest.raises(StudyError, match="refused: fewer than 300 patients") as caught:
        km.fit_local(sites, "time", "cens", min_group_size=300)
    assert set(caught.value.sites) == {"hospital-b", "hospital-c"}


def test_time_unit_coarsens_times(sites: dict[str, pd.DataFrame]) -> None:
    result = km.fit_local(sites, "time", "cens", time_unit=30, min_group_size=1)
    times = result.curve("pooled").index.to_numpy()
    assert np.all(times % 30 == 0)


def test_plot_writes_a_png(exact: km.KMResult, tmp_path) -> None:
    path = km.plot(exact, tmp_path / "km.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(StudyError, match="no curve"):
        km.plot(exact, tmp_path / "x.png", curves=["site:nowhere"])


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(min_value=0, max_value=30), st.booleans()), min_size=1, max_size=60
    ),
    k=st.integers(min_value=1, max_value=12),
)
def test_km_counts_reveal_only_multiples_of_k(rows: list[tuple[int, bool]], k: int) -> None:
    time = np.array([r[0] for r in rows], dtype=float)
    event = np.array([r[1] for r in rows])
    counts = km_counts(time, event, k)
    events = np.array(counts["events"])
    censored = np.array(counts["censored"])
    assert all(v % k == 0 for v in [*events, *censored, counts["n"]])
    assert counts["n"] >= len(rows) and counts["n"] - len(rows) < 2 * k
    assert events.sum() >= event.sum() and events.sum() - event.sum() < k
    at_risk = counts["n"] - np.concatenate([[0], np.cumsum(events + censored)[:-1]])
    assert np.all(events <= at_risk) and np.all(at_risk > 0)
    assert counts["times"] == sorted(set(counts["times"]))
    if k == 1:  # exact: every distinct time, its events and censorings
        assert counts["times"] == sorted(set(time.tolist()))
        assert counts["n"] == len(rows)
