"""Secure aggregation through the real network: hub, site daemons, Docker, registry.

The ``km`` image answers a secure-sum request with its counts on the researcher's grid;
each site daemon masks them with its own key before sealing (the container has no key);
the researcher opens every answer and only their sum means anything. Sites:

* hospital-a/b/c: GBSG2 split 360/214/112;
* hospital-d: 150 other GBSG2 rows, ``require_secure_aggregation = true``;
* clinic-e: 4 patients, under the minimum group size of 5: it refuses, so a round that
  names it is published again without it (fresh masks).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ptm_p2p.algorithms import km
from ptm_p2p.algorithms import survival_site as site
from ptm_p2p.algorithms.rounds import tables_from_frames
from ptm_p2p.algorithms.runner import NetworkRunner
from ptm_p2p.client import Client
from ptm_p2p.dev.cluster import LocalCluster
from ptm_p2p.dev.stack import Stack
from ptm_p2p.errors import StudyError
from ptm_p2p.ledger import secagg
from ptm_p2p.site.masking import REQUIRED

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data_sites as live  # noqa: E402
from data_sites import FULL, LABEL, OTHER, RESEARCHER_ORG, SMALL  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.network]

ORIGIN = "ptm.example/secure-aggregation-test"
STRICT = OTHER
GRID = [float(t) for t in np.arange(30, 3000 + 30, 30)]


class Secure(live.LiveSites):
    def runner(self) -> NetworkRunner:
        return NetworkRunner(self.client, self.images, LABEL, timeout=120)


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[Secure]:
    root: Path = tmp_path_factory.mktemp("secagg")
    images = {"km": stack.images["km"]}
    frames = live.five_gbsg2_sites()
    with LocalCluster(root / "cluster") as cluster:
        cluster.create(ORIGIN, "consortium")
        cluster.start_hub()
        live.start_data_sites(
            cluster,
            frames,
            LABEL,
            RESEARCHER_ORG,
            lambda _: [images["km"]],
            require_secure_aggregation=lambda name: name == STRICT,
        )
        cluster.admit("researcher", "researcher", org=RESEARCHER_ORG)
        with Client(cluster.root / "researcher", cluster.invitation_path) as client:
            yield Secure(cluster, client, images, frames)


def _truth(frames: dict[str, pd.DataFrame], names: tuple[str, ...]) -> dict[str, dict]:
    """Each site's own (unmasked) answer, computed by the site code on its own frame with
    the cluster's policy (k = 5, control off): what the researcher must not learn."""
    request = {"duration": "time", "event": "cens", "data": LABEL, "secure_sum": {"grid": GRID}}
    tables = tables_from_frames({n: frames[n] for n in names})
    return {n: site.compute("km", tables[n], request, 5, None)["secure_sum"] for n in names}


def _recovered(
    received: dict[str, dict], truth: dict[str, dict], complete: tuple[set[str], ...] = ()
) -> int:
    """How many sites' vectors the researcher gets back by reading any one answer, or any
    subset of answers summed, as if it were unmasked (it tries every subset but the
    ``complete`` answer sets of a task, whose sum is the total it is meant to learn)."""
    from itertools import combinations

    names = list(received)
    hits = 0
    for size in range(1, len(names) + 1):
        for group in combinations(names, size):
            if set(group) in complete or (not complete and size == len(names)):
                continue
            fields = secagg.add([secagg.read_masked(received[s])[0] for s in group])
            guess = {f: secagg.decode(v) for f, v in fields.items()}
            for target in truth:  # any site's own vector, or the group's true sum
                hits += guess == truth[target]
            true_sum = {f: np.sum([truth[s][f] for s in group], axis=0).tolist() for f in guess}
            hits += guess == true_sum
    return hits


def test_secure_km_through_daemons_equals_local_and_reveals_no_site(secure: Secure) -> None:
    sites = (*FULL, STRICT)
    runner = secure.runner()
    fit = km.fit(runner, sites, "time", "cens", data=LABEL, secure=True, grid=GRID)
    frames = {s: secure.frames[s] for s in sites}
    local = km.fit_local(frames, "time", "cens", secure=True, grid=GRID)
    plain = km.fit_local(frames, "time", "cens", time_unit=30.0)
    assert fit.curves == local.curves and fit.n == local.n == plain.n
    assert fit.sites == sites and not fit.dropped and fit.rounds == 1
    p, s = plain.curve(), fit.curve()
    assert np.max(np.abs(s.loc[p.index, "survival"].values - p["survival"].values)) == 0.0
    # what the researcher received: four masked answers, none readable, their sum exact
    task = secure.client.tasks(mine=True)[-1]
    answers = secure.client.results(task.id)
    received = {a.site: a.json() for a in answers.values()}
    assert set(received) == set(sites)
    assert all(set(r) == {"secure_sum", "public"} for r in received.values())
    assert _recovered(received, _truth(secure.frames, sites)) == 0
    # the masked answer costs bytes: 24 per value, base64
    assert all(a.status == "ok" for a in answers.values())
    info = runner.rounds[-1]
    assert info.label.endswith("(secure sum)") and min(info.answer_bytes.values()) > 201 * 24


def test_a_site_requiring_secure_aggregation_refuses_a_plain_round(secure: Secure) -> None:
    runner = secure.runner()
    with pytest.raises(StudyError) as caught:
        km.fit(runner, ("hospital-a", STRICT), "time", "cens", data=LABEL)
    assert STRICT in str(caught.value) and "requires secure aggregation" in str(caught.value)
    task = secure.client.tasks(mine=True)[-1]
    reasons = {a.site: a.reason for a in secure.client.results(task.id).values()}
    assert reasons[STRICT] == REQUIRED


def test_a_dropped_site_reruns_without_it_with_fresh_masks(secure: Secure) -> None:
    sites = (*FULL, SMALL)
    before = len(secure.client.tasks(mine=True))
    fit = km.fit(secure.runner(), sites, "time", "cens", data=LABEL, secure=True, grid=GRID)
    assert set(fit.dropped) == {SMALL} and fit.sites == FULL and fit.rounds == 2
    local = km.fit_local(
        {s: secure.frames[s] for s in FULL}, "time", "cens", secure=True, grid=GRID
    )
    assert fit.curves == local.curves
    first, second = secure.client.tasks(mine=True)[before:]
    assert first.progress[SMALL] != "ok" and SMALL not in second.progress
    # the first round's three masked answers, and the second's: nothing recovered from
    # either, nor from the two together (the masks of each task are its own)
    truth = _truth(secure.frames, FULL)
    rounds = []
    for task in (first, second):
        answers = secure.client.results(task.id)
        rounds.append({a.site: a.json() for a in answers.values() if a.status == "ok"})
    assert set(rounds[0]) == set(rounds[1]) == set(FULL)
    assert _recovered(rounds[0], truth) == 0
    total = {f: np.sum([truth[s][f] for s in FULL], axis=0).tolist() for f in truth[FULL[0]]}
    assert secagg.unmask_by_sum(rounds[0])[0] != total  # the dropped site's masks remain
    assert secagg.unmask_by_sum(rounds[1])[0] == total  # the rerun sums to the total
    mixed = {f"{s}@{i}": rounds[i][s] for i in (0, 1) for s in FULL}
    mixed_truth = {f"{s}@{i}": truth[s] for i in (0, 1) for s in FULL}
    assert _recovered(mixed, mixed_truth, complete=({f"{s}@1" for s in FULL},)) == 0
