"""The survival images in the real sandbox (Docker engine, images from ``ptm dev up``).

The image carries another NumPy than this machine (the base has Debian's), yet its answer
must be the in-process site function's answer bit for bit: that is what makes a federated
fit equal to local mode exactly.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ptm_p2p.algorithms import coxph, km
from ptm_p2p.algorithms import survival_site as site
from ptm_p2p.algorithms.rounds import SandboxRunner
from ptm_p2p.dev.stack import Stack
from ptm_p2p.errors import StudyError

from .conftest import COVARIATES

pytestmark = [pytest.mark.docker, pytest.mark.slow]
LABEL = "ptm_p2p.test"
SESSION = uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def csv_files(sites: dict[str, pd.DataFrame], tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sites")
    paths = {}
    for name, frame in sites.items():
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        path.chmod(0o644)  # the task runs as an unprivileged user
        paths[name] = path
    return paths


@pytest.fixture
def no_leftovers(stack: Stack):
    yield
    left = stack.client.containers.list(all=True, filters={"label": f"{LABEL}={SESSION}"})
    assert left == [], f"containers left behind: {[c.short_id for c in left]}"


def _run_local(image: str, csv: Path, request: dict[str, Any], tmp: Path, k: int = 5):
    """``ptm run-local`` as a subprocess: (result record, output or None)."""
    (tmp / "input.json").write_text(json.dumps(request))
    out = tmp / "out"
    done = subprocess.run(
        ["ptm", "run-local", f"127.0.0.1:5000/ptm/{image}:latest", "--data", f"gbsg2={csv}",
         "--input", str(tmp / "input.json"), "--out", str(out), "--min-group-size", str(k),
         "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    record = json.loads(done.stdout)
    output = out / "output.json"
    return record, (json.loads(output.read_text()) if output.exists() else None)


def _in_process(image: str, csv: Path, request: dict[str, Any], k: int = 5) -> Any:
    table = site.load_csv(csv, site.needed_columns(image, request))
    return json.loads(json.dumps(site.compute(image, table, request, k)))


def test_run_local_answers_equal_the_in_process_site_function(
    stack: Stack, csv_files: dict[str, Path], tmp_path: Path
) -> None:
    csv = csv_files["hospital-c"]
    base = {"data": "gbsg2", "duration": "time", "event": "cens", "covariates": COVARIATES,
            "ties": "efron"}  # fmt: skip
    described = _in_process("coxph-pooled", csv, {**base, "step": "describe"})
    times = sorted({*described["event_times"], 100.0, 1000.5, 9999.0})
    requests = [
        ("coxph-pooled", {**base, "step": "describe"}),
        ("coxph-pooled", {**base, "step": "evaluate", "times": times, "tied": [0, 3],
                          "betas": [described["start"]["beta"], [0.01] * 9], "at_risk": True}),
        ("coxph-stratified", {**base, "ties": "breslow", "step": "describe"}),
        ("coxph-stratified", {**base, "step": "evaluate", "betas": [[0.001] * 9]}),
        ("km", {"data": "gbsg2", "duration": "time", "event": "cens", "group": "tgrade_III"}),
    ]  # fmt: skip
    for i, (image, request) in enumerate(requests):
        (tmp_path / str(i)).mkdir()
        record, output = _run_local(image, csv, request, tmp_path / str(i))
        assert record["status"] == "ok", record
        assert output == _in_process(image, csv, request), image


def test_a_refusing_image_is_a_refused_run(
    stack: Stack, csv_files: dict[str, Path], tmp_path: Path
) -> None:
    request = {"data": "gbsg2", "duration": "time", "event": "cens", "covariates": ["age"],
               "step": "describe"}  # fmt: skip
    record, output = _run_local("coxph-stratified", csv_files["hospital-c"], request, tmp_path,
                                k=200)  # fmt: skip
    assert record["status"] == "refused" and record["exit_code"] == 3
    assert output == {"refused": "fewer than 200 patients with complete data (this site's "
                      "minimum group size)"}  # fmt: skip


def test_a_federated_fit_through_docker_equals_local_mode_exactly(
    stack: Stack,
    csv_files: dict[str, Path],
    sites: dict[str, pd.DataFrame],
    no_leftovers: None,
) -> None:
    runner = SandboxRunner(
        stack.client,
        {name: stack.images[name] for name in ("coxph-pooled", "coxph-stratified", "km")},
        {name: {"gbsg2": path} for name, path in csv_files.items()},
        labels={LABEL: SESSION},
    )
    federated = coxph.fit(runner, list(sites), "time", "cens", COVARIATES, data="gbsg2")
    local = coxph.fit_local(sites, "time", "cens", COVARIATES)
    assert federated.params == local.params  # the same bits, not merely close
    assert federated.standard_errors == local.standard_errors
    assert federated.log_likelihood == local.log_likelihood
    assert federated.rounds == local.rounds <= 6
    curves = km.fit(runner, list(sites), "time", "cens", data="gbsg2").curves
    assert curves == km.fit_local(sites, "time", "cens").curves
    with pytest.raises(StudyError, match="hospital-c: refused"):
        coxph.fit(
            SandboxRunner(stack.client, runner.images, runner.site_data, min_group_size=150,
                          labels={LABEL: SESSION}),
            list(sites), "time", "cens", COVARIATES, data="gbsg2",
        )  # fmt: skip
