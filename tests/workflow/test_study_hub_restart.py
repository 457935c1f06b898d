"""A study over live daemons survives the hub being SIGKILLed between rounds.

A real hub process, two real site daemons running the Cox image in Docker, and ``ptm study
coxph`` as its own process. The hub is SIGKILLed as soon as the study reports round 2, then:

* restarted on the same port a few seconds later: the study reconnects within the round's
  deadline and completes with the fit of local mode (which equals an uninterrupted network
  run bit for bit, see test_survival_network.py), and the log holds exactly one task per
  round (nothing published twice);
* left down past the round's deadline: ``ptm study`` exits 5 naming the last completed
  round; with the hub back, ``--resume`` reads the completed rounds back from the log and
  finishes the fit, again with exactly one task per round.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from ptm_p2p.algorithms import coxph, datasets
from ptm_p2p.client import Client
from ptm_p2p.dev.cluster import LocalCluster
from ptm_p2p.dev.stack import Stack
from ptm_p2p.errors import EXIT_UNREACHABLE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_sites import start_data_sites  # noqa: E402
from study_process import run_acting_at_round_2  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.network]

ORIGIN = "ptm.example/study-hub-restart-test"
ORG = "uni"
LABEL = "gbsg2"
SITES = ("hospital-a", "hospital-b")
COVARIATES = ["horTh", "age", "tsize", "pnodes", "progrec"]


@dataclass
class Live:
    cluster: LocalCluster
    frames: dict[str, pd.DataFrame]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[Live]:
    root: Path = tmp_path_factory.mktemp("restart")
    image = stack.images["coxph-pooled"]
    a, b, _ = datasets.split(datasets.load_gbsg2(), datasets.SIZES)
    frames = dict(zip(SITES, (a, b), strict=True))
    with LocalCluster(root / "cluster") as cluster:
        cluster.create(ORIGIN, "consortium")
        cluster.start_hub()
        start_data_sites(cluster, frames, LABEL, ORG, lambda _: [image])
        for researcher in ("first", "second"):
            cluster.admit(researcher, "researcher", org=ORG, same_org=True)
        yield Live(cluster, frames)


def study_argv(live: Live, researcher: str, timeout: float, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "ptm_p2p.cli", "study", "coxph", "--to", ",".join(SITES),
        "--data", LABEL, "--duration", "time", "--event", "cens",
        "--covariates", ",".join(COVARIATES), "--timeout", str(timeout), "--json",
        "--home", str(live.cluster.path(researcher)),
        "--invitation", str(live.cluster.invitation_path), *extra,
    ]  # fmt: skip


def run_killing_the_hub(
    live: Live, argv: list[str], restart_after: float | None
) -> tuple[int, str, str]:
    """Run ``argv``; SIGKILL the hub when it reports round 2, restart it ``restart_after``
    seconds later (None: leave it down). Returns exit code, stdout, stderr."""

    def restart() -> None:
        time.sleep(restart_after or 0)
        live.cluster.start_hub()

    return run_acting_at_round_2(
        argv,
        act=lambda _study: live.cluster.stop("hub", signal.SIGKILL),
        then=restart if restart_after is not None else None,
        cwd=live.cluster.root,
        timeout=300,
    )


def tasks_of(live: Live, researcher: str) -> int:
    with Client(live.cluster.path(researcher), live.cluster.invitation_path) as client:
        return len(client.tasks(mine=True))


def assert_local_fit(live: Live, out: str) -> coxph.CoxResult:
    fit = json.loads(out)
    local = coxph.fit_local(live.frames, "time", "cens", COVARIATES)
    assert {c: v["coef"] for c, v in fit["coefficients"].items()} == local.params
    assert {c: v["se"] for c, v in fit["coefficients"].items()} == local.standard_errors
    assert fit["log_likelihood"] == local.log_likelihood and fit["rounds"] == local.rounds
    assert local.rounds >= 4  # the hub went down after round 2 of a study with more rounds
    return local


def test_a_study_rides_out_a_hub_restart(live: Live) -> None:
    code, out, err = run_killing_the_hub(live, study_argv(live, "first", 60), restart_after=4)
    assert code == 0, err[-3000:]
    local = assert_local_fit(live, out)
    # every round once: the round in flight when the hub died was not published again
    assert tasks_of(live, "first") == local.rounds, err[-3000:]
    assert "SwarmException" not in err


def test_hub_down_past_the_deadline_exits_5_and_resume_completes(live: Live) -> None:
    argv = study_argv(live, "second", 15)
    started = time.monotonic()
    code, out, err = run_killing_the_hub(live, argv, restart_after=None)
    assert code == EXIT_UNREACHABLE, err[-3000:]
    assert time.monotonic() - started < 120
    assert "last completed round: round 2" in err and "--resume" in err, err[-3000:]
    assert "SwarmException" not in err and out == ""

    live.cluster.start_hub()
    done = subprocess.run(
        [*argv, "--resume"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    local = assert_local_fit(live, done.stdout)
    assert "resuming study" in done.stderr
    for number in (1, 2):
        assert f"round {number} (coxph-pooled" in done.stderr
    assert done.stderr.count("completed by an earlier run") == 2, done.stderr[-3000:]
    # rounds 1 and 2 were read back, not published again; no round twice
    assert tasks_of(live, "second") == local.rounds, done.stderr[-3000:]
