"""Differencing across secure sums, end to end: a hub, four site daemons under disclosure
control, the real ``km`` image from the loopback registry, ``Client.sum_round``.

hospital-a/b/c hold GBSG2 (360/214/112); clinic-e holds 4 patients and refuses (under k).
The researcher gets the pooled KM counts over {a, b, c}, then asks the same query over
{a, b}: both sites' disclosure records refuse (its total minus the first would be
hospital-c's own counts). A different query over {a, b, e} loses clinic-e (a real drop) and
its rerun over {a, b} is answered: the first total never opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ptm_p2p.algorithms import datasets
from ptm_p2p.client import Client
from ptm_p2p.dev.cluster import LocalCluster
from ptm_p2p.dev.stack import Stack
from ptm_p2p.errors import StudyError

pytestmark = [pytest.mark.docker, pytest.mark.network]

ORIGIN = "ptm.example/differencing-test"
LABEL = "gbsg2"
FULL = ("hospital-a", "hospital-b", "hospital-c")
SMALL = "clinic-e"


def query(points: int) -> dict:
    grid = [30.0 * i for i in range(1, points + 1)]
    return {"duration": "time", "event": "cens", "data": LABEL, "secure_sum": {"grid": grid}}


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[tuple]:
    root: Path = tmp_path_factory.mktemp("differencing")
    a, b, c = datasets.split(datasets.load_gbsg2(), datasets.SIZES)
    frames = {"hospital-a": a, "hospital-b": b, "hospital-c": c, SMALL: c.iloc[:4]}
    with LocalCluster(root / "cluster") as cluster:
        cluster.create(ORIGIN, "consortium")
        cluster.start_hub()
        for name, frame in frames.items():
            cluster.home(name)
            path = cluster.path(name) / "gbsg2.csv"
            frame.to_csv(path, index=False)
            cluster.configure_site(
                name,
                images=[stack.images["km"].split("@", 1)[0]],
                publishers=["uni"],
                data={LABEL: path},
                disclosure_control=True,
            )
            cluster.start_site(name)
        for name in frames:
            cluster.admit(name, "site")
        cluster.admit("researcher", "researcher", org="uni")
        with Client(cluster.root / "researcher", cluster.invitation_path) as client:
            yield client, stack.images["km"]


def test_a_subset_rerun_is_refused_and_a_rerun_after_a_drop_is_answered(network) -> None:
    client, image = network

    def sum_round(sites: tuple[str, ...], request: dict):
        return client.sum_round(image, {s: request for s in sites}, data=[LABEL], timeout=120)

    full = sum_round(FULL, query(100))
    assert full.sites == FULL and sum(full.total["events"]) > 0
    with pytest.raises(StudyError) as caught:
        sum_round(FULL[:2], query(100))
    reasons = caught.value.sites
    assert set(reasons) == set(FULL[:2])
    assert all("disclosure record" in r and "subtraction" in r for r in reasons.values())
    # a real drop: clinic-e refuses (4 patients), the rerun without it is answered
    rerun = sum_round(("hospital-a", "hospital-b", SMALL), query(90))
    assert set(rerun.dropped) == {SMALL} and rerun.sites == FULL[:2]
    assert len(rerun.tasks) == 2
