"""Federated survival analysis through the real network: hub, site daemons, Docker, registry.

Each round is a signed task the site daemons find in their own verified replicas, check
against their policies and run in the sandbox; the researcher opens the sealed answers from
its verified copy. The fits must equal local mode (``fit_local`` on the same frames) exactly,
bit for bit: the same site code on the same numbers, summed in the same order.

One live collaboration for the module (set-up ~15 s), five site daemons:

* hospital-a/b/c: GBSG2 split 360/214/112, every survival image allowed;
* hospital-d: 150 other GBSG2 rows, allows ``coxph-stratified`` and ``km`` but not
  ``coxph-pooled`` (the pooled model reveals per-time risk sets; see docs/survival.md);
* clinic-e: 4 patients, under the default minimum group size of 5.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

from ptm_p2p.algorithms import coxph, datasets, km
from ptm_p2p.algorithms.rounds import RoundInfo
from ptm_p2p.algorithms.runner import SURVIVAL_IMAGES, NetworkRunner
from ptm_p2p.client import Client
from ptm_p2p.dev.cluster import LocalCluster
from ptm_p2p.dev.stack import Stack
from ptm_p2p.errors import StudyError

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data_sites as live  # noqa: E402
from data_sites import FULL, LABEL, OTHER, RESEARCHER_ORG, SMALL  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.network]

ORIGIN = "ptm.example/survival-network-test"
NO_POOLED = OTHER
COVARIATES = list(datasets.COVARIATES)
ANALYST = "analyst"  # a second researcher: the CLI runs as its own process and home


class Survival(live.LiveSites):
    def runner(self, seen: list[tuple[int, RoundInfo]] | None = None) -> NetworkRunner:
        def on_round(number: int, info: RoundInfo) -> None:
            if seen is not None:
                seen.append((number, info))

        return NetworkRunner(self.client, self.images, LABEL, on_round=on_round)

    def local(self, sites: tuple[str, ...]) -> dict[str, pd.DataFrame]:
        return {s: self.frames[s] for s in sites}


def _allowed(images: dict[str, str], site: str) -> list[str]:
    """Every survival image, but the pooled Cox model not at hospital-d."""
    return [
        image
        for name, image in images.items()
        if not (site == NO_POOLED and name == "coxph-pooled")
    ]


@pytest.fixture(scope="module")
def survival(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[Survival]:
    root: Path = tmp_path_factory.mktemp("survival")
    images = {name: stack.images[name] for name in SURVIVAL_IMAGES}
    frames = live.five_gbsg2_sites()
    with LocalCluster(root / "cluster") as cluster:
        cluster.create(ORIGIN, "consortium")
        cluster.start_hub()
        live.start_data_sites(cluster, frames, LABEL, RESEARCHER_ORG, partial(_allowed, images))
        cluster.admit("researcher", "researcher", org=RESEARCHER_ORG)
        cluster.admit(ANALYST, "researcher", org=RESEARCHER_ORG, same_org=True)  # `ptm study`
        with Client(cluster.root / "researcher", cluster.invitation_path) as client:
            yield Survival(cluster, client, images, frames)


def assert_same_fit(network: coxph.CoxResult, local: coxph.CoxResult) -> None:
    assert network.params == local.params
    assert network.standard_errors == local.standard_errors
    assert network.covariance == local.covariance
    assert network.log_likelihood == local.log_likelihood
    assert network.log_likelihood_initial == local.log_likelihood_initial
    assert (network.rounds, network.iterations) == (local.rounds, local.iterations)
    assert network.converged and network.rounds <= 6
    assert network.site_counts == local.site_counts


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_pooled_fit_through_site_daemons_equals_local_mode_exactly(
    survival: Survival, ties: str
) -> None:
    seen: list[tuple[int, RoundInfo]] = []
    runner = survival.runner(seen)
    fit = coxph.fit(runner, FULL, "time", "cens", COVARIATES, ties=ties, data=LABEL)
    local = coxph.fit_local(survival.local(FULL), "time", "cens", COVARIATES, ties=ties)
    assert_same_fit(fit, local)
    assert fit.n == 686 and fit.n_events == 299
    # what travelled: one RoundInfo per round, every site's JSON bytes both ways
    assert len(runner.rounds) == fit.rounds
    for info, logged in zip(runner.rounds, fit.round_log, strict=True):
        assert set(info.request_bytes) == set(info.answer_bytes) == set(FULL)
        assert info.request_bytes == logged.request_bytes
        assert info.answer_bytes == logged.answer_bytes
        assert info.seconds > 0
    # progress: the callback saw each round as it finished, numbered from 1
    assert seen == list(enumerate(runner.rounds, start=1))
    assert runner.rounds[0].label == "coxph-pooled describe"
    assert {i.label for i in runner.rounds[1:]} == {"coxph-pooled evaluate"}
    # pooled answers carry per-time sums: far more than the describe round's
    assert min(runner.rounds[1].answer_bytes.values()) > 50_000


def test_stratified_fit_at_a_site_that_refuses_the_pooled_model(survival: Survival) -> None:
    sites = (*FULL, NO_POOLED)
    with pytest.raises(StudyError) as caught:
        coxph.fit(survival.runner(), sites, "time", "cens", COVARIATES, data=LABEL)
    assert set(caught.value.sites) == {NO_POOLED}
    assert NO_POOLED in str(caught.value) and "refused" in caught.value.sites[NO_POOLED]
    assert "coxph-pooled" in str(caught.value)

    fit = coxph.fit(
        survival.runner(), sites, "time", "cens", COVARIATES, stratify_sites=True, data=LABEL
    )
    local = coxph.fit_local(survival.local(sites), "time", "cens", COVARIATES, stratify_sites=True)
    assert_same_fit(fit, local)
    assert fit.stratified and fit.n == 686 + 150


def test_kaplan_meier_through_site_daemons_equals_local_mode(survival: Survival) -> None:
    runner = survival.runner()
    curves = km.fit(runner, FULL, "time", "cens", group_col="horTh", data=LABEL)
    local = km.fit_local(survival.local(FULL), "time", "cens", group_col="horTh")
    assert curves.curves == local.curves
    assert curves.min_group_sizes == {s: 5 for s in FULL}
    assert curves.suppressed_groups == local.suppressed_groups
    assert curves.n == local.n and len(runner.rounds) == 1


def test_a_site_under_its_minimum_group_size_refuses(survival: Survival) -> None:
    with pytest.raises(StudyError) as caught:
        km.fit(survival.runner(), (SMALL,), "time", "cens", data=LABEL)
    reason = caught.value.sites[SMALL]
    assert reason.startswith("refused: ") and "fewer than 5 patients" in reason
    # the ledger records a signed `refused` result, with the public, fixed reason
    task = survival.client.tasks(mine=True)[-1]
    assert task.algorithm == "km" and task.progress == {SMALL: "refused"}
    (answer,) = survival.client.results(task.id).values()
    assert answer.status == "refused" and "minimum group size" in (answer.reason or "")
    assert "4" not in (answer.reason or "")  # the public reason never states the count


def ptm_study(survival: Survival, *args: str) -> subprocess.CompletedProcess[str]:
    home = survival.cluster.path(ANALYST)
    return subprocess.run(
        [sys.executable, "-m", "ptm_p2p.cli", "study", *args, "--home", str(home),
         "--invitation", str(survival.cluster.invitation_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_ptm_study_coxph_prints_the_same_fit(survival: Survival) -> None:
    covariates = "horTh,age,tsize,pnodes,progrec"
    done = ptm_study(
        survival, "coxph", "--to", ",".join(FULL), "--data", LABEL, "--duration", "time",
        "--event", "cens", "--covariates", covariates, "--ties", "breslow", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    fit = json.loads(done.stdout)
    local = coxph.fit_local(
        survival.local(FULL), "time", "cens", covariates.split(","), ties="breslow"
    )
    assert {c: v["coef"] for c, v in fit["coefficients"].items()} == local.params
    assert {c: v["se"] for c, v in fit["coefficients"].items()} == local.standard_errors
    assert fit["log_likelihood"] == local.log_likelihood and fit["rounds"] == local.rounds
    # progress on stderr: the image by digest, then one line per round
    assert "image coxph-pooled: 127.0.0.1:5000/ptm/coxph-pooled@sha256:" in done.stderr
    for number in range(1, local.rounds + 1):
        assert f"round {number} (coxph-pooled " in done.stderr
    assert f"round {local.rounds + 1} " not in done.stderr


def test_ptm_study_km_prints_curves_and_draws_them(survival: Survival, tmp_path: Path) -> None:
    plot = tmp_path / "km.png"
    done = ptm_study(
        survival, "km", "--to-all", "--data", LABEL, "--duration", "time", "--event", "cens",
        "--plot", str(plot),
    )  # fmt: skip
    # --to-all includes clinic-e, under its minimum: the round fails, naming it
    assert done.returncode == 1
    assert f"{SMALL}: refused: fewer than 5 patients" in done.stderr
    assert not plot.exists()
    done = ptm_study(
        survival, "km", "--to", ",".join(FULL), "--data", LABEL, "--duration", "time",
        "--event", "cens", "--group", "horTh", "--plot", str(plot),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    local = km.fit_local(survival.local(FULL), "time", "cens", group_col="horTh")
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line}
    for curve in ("pooled", "site:hospital-a", "group:0", "group:1"):
        values = local.curves[curve]
        assert rows[curve][1] == f"{values['at_risk'][0]:g}"
        assert rows[curve][2] == f"{sum(values['events']):g}"
    assert "round 1 (km): 3 site(s) answered" in done.stderr
