"""``ptm study coxph|km --secure`` through the real CLI, on a live hub and site daemons.

Two hospitals under disclosure control (k = 5, a 30-day lattice) run the Cox and
Kaplan–Meier images in Docker; ``ptm study`` runs as its own process, every round a
secure sum on the grid ``--grid-step 30 --horizon 3000`` builds (Kaplan–Meier also per
``--group --levels``). Each fit must equal the
same site code and coordinator run in process (``fit_local``: the sites' own coarsening,
masking and summing). Then: a grid that stops before the last event is refused naming the
flags (exit 1), and a secure study whose process is killed after round 2 goes on with
``--resume``, the completed secure rounds read back from the log, not published again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from ptm_p2p.algorithms import coxph, datasets, km
from ptm_p2p.client import Client
from ptm_p2p.dev.cluster import LocalCluster
from ptm_p2p.dev.stack import Stack
from ptm_p2p.errors import EXIT_DOMAIN

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_sites import start_data_sites  # noqa: E402
from study_process import run_acting_at_round_2  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.network]

ORIGIN = "ptm.example/cli-secure-study-test"
ORG = "uni"
LABEL = "gbsg2"
SITES = ("hospital-a", "hospital-b")
COVARIATES = ["horTh", "age", "tsize", "pnodes"]
K, RESOLUTION = 5, 30
GRID_FLAGS = ("--secure", "--grid-step", "30", "--horizon", "3000")
GRID = [30.0 * i for i in range(101)]  # what those flags build: 0, 30, …, 3000


@dataclass
class Live:
    cluster: LocalCluster
    frames: dict[str, pd.DataFrame]

    def argv(self, command: str, researcher: str, *extra: str) -> list[str]:
        own = ["--covariates", ",".join(COVARIATES)] if command == "coxph" else []
        return [
            sys.executable, "-m", "ptm_p2p.cli", "study", command, "--to", ",".join(SITES),
            "--data", LABEL, "--duration", "time", "--event", "cens", *own, "--json",
            "--timeout", "120", "--home", str(self.cluster.path(researcher)),
            "--invitation", str(self.cluster.invitation_path), *extra,
        ]  # fmt: skip

    def tasks_of(self, researcher: str) -> int:
        with Client(self.cluster.path(researcher), self.cluster.invitation_path) as client:
            return len(client.tasks(mine=True))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[Live]:
    root: Path = tmp_path_factory.mktemp("cli-secure")
    images = [stack.images[name] for name in ("coxph-pooled", "km")]
    a, b, _ = datasets.split(datasets.load_gbsg2(), datasets.SIZES)
    frames = dict(zip(SITES, (a, b), strict=True))
    with LocalCluster(root / "cluster") as cluster:
        cluster.create(ORIGIN, "consortium")
        cluster.start_hub()
        start_data_sites(
            cluster, frames, LABEL, ORG, lambda _: images,
            disclosure_control=lambda _: True,
            policy=lambda _: {"min_group_size": K, "time_resolution": RESOLUTION},
        )  # fmt: skip
        for researcher in ("first", "second", "third"):
            cluster.admit(researcher, "researcher", org=ORG, same_org=True)
        yield Live(cluster, frames)


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


def local_cox() -> coxph.CoxResult:
    a, b, _ = datasets.split(datasets.load_gbsg2(), datasets.SIZES)
    frames = dict(zip(SITES, (a, b), strict=True))
    return coxph.fit_local(
        frames, "time", "cens", COVARIATES, min_group_size=K, time_resolution=RESOLUTION,
        secure=True, grid=GRID,
    )  # fmt: skip


def assert_local_cox(out: str) -> coxph.CoxResult:
    fit = json.loads(out)
    local = local_cox()
    assert fit["secure"] is True
    for name in COVARIATES:
        assert fit["coefficients"][name]["coef"] == pytest.approx(local.params[name], abs=1e-9)
        assert fit["coefficients"][name]["se"] == pytest.approx(
            local.standard_errors[name], abs=1e-9
        )
    assert fit["rounds"] == local.rounds
    return local


def test_secure_km_opens_only_the_sums_and_equals_the_sites_code(live: Live) -> None:
    done = run(live.argv("km", "first", *GRID_FLAGS))
    assert done.returncode == 0, done.stderr[-3000:]
    curves = json.loads(done.stdout)
    assert curves["secure"] is True and curves["dropped"] == {}
    # the pooled curve only: no site's own curve opened
    assert list(curves["curves"]) == ["pooled"]
    local = km.fit_local(
        live.frames, "time", "cens", min_group_size=K, time_resolution=RESOLUTION,
        secure=True, grid=GRID,
    )  # fmt: skip
    assert curves["curves"]["pooled"] == local.curves["pooled"]  # counts: exact sums
    assert "secure sum" in done.stderr


def test_secure_km_per_group_equals_the_sites_code(live: Live) -> None:
    """--group --levels --secure: a curve per named level from the sums alone, the same as
    the site code and coordinator run in process."""
    done = run(live.argv("km", "first", "--group", "horTh", "--levels", "0,1", *GRID_FLAGS))
    assert done.returncode == 0, done.stderr[-3000:]
    curves = json.loads(done.stdout)
    assert curves["secure"] is True and curves["group"] == "horTh"
    assert list(curves["curves"]) == ["pooled", "group:0", "group:1"]
    assert curves["level_sites"] == {"0": 2, "1": 2}
    local = km.fit_local(
        live.frames, "time", "cens", "horTh", min_group_size=K, time_resolution=RESOLUTION,
        secure=True, grid=GRID, levels=["0", "1"],
    )  # fmt: skip
    assert curves["curves"] == local.curves


def test_secure_pooled_cox_equals_the_sites_code_run_in_process(live: Live) -> None:
    done = run(live.argv("coxph", "first", *GRID_FLAGS))
    assert done.returncode == 0, done.stderr[-3000:]
    assert_local_cox(done.stdout)
    assert "secure sum" in done.stderr


def test_a_grid_short_of_the_last_event_is_refused_naming_the_flags(live: Live) -> None:
    done = run(live.argv("coxph", "first", "--secure", "--grid-step", "30", "--horizon", "600"))
    assert done.returncode == EXIT_DOMAIN, done.stderr[-3000:]
    assert "fall on no point of the grid" in done.stderr
    assert "--grid-step" in done.stderr and "--horizon" in done.stderr
    assert done.stdout == ""


def test_a_killed_secure_study_resumes_without_publishing_its_rounds_again(live: Live) -> None:
    argv = live.argv("coxph", "second", *GRID_FLAGS)
    # the researcher's process dies mid-study
    run_acting_at_round_2(argv, act=lambda study: study.send_signal(signal.SIGKILL))
    before = live.tasks_of("second")

    resumed = run([*argv, "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    local = assert_local_cox(resumed.stdout)
    assert "resuming study" in resumed.stderr
    assert resumed.stderr.count("completed by an earlier run") >= 2, resumed.stderr[-3000:]
    # rounds 1 and 2 were read back from the log; only the rest were published
    assert live.tasks_of("second") - before <= local.rounds - 2, resumed.stderr[-3000:]


def test_resume_of_a_secure_study_needs_the_same_grid(live: Live) -> None:
    done = run(live.argv("km", "third", *GRID_FLAGS))
    assert done.returncode == 0, done.stderr[-3000:]
    other = run(
        [*live.argv("km", "third", "--secure", "--grid-step", "60", "--horizon", "3000"),
         "--resume"]
    )  # fmt: skip
    assert other.returncode == EXIT_DOMAIN and "nothing to resume" in other.stderr
    again = run([*live.argv("km", "third", *GRID_FLAGS), "--resume"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["curves"] == json.loads(done.stdout)["curves"]
    assert "completed by an earlier run" in again.stderr
