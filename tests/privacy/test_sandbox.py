"""Disclosure control inside the real sandbox: the policy's resolution reaches the image.

The ``coxph-pooled`` image is built from this tree under a private, per-session tag (never
the shared ``127.0.0.1:5000/ptm/*`` tags other tests use) on the base ``ptm dev up`` made,
and removed afterwards. The researcher's every-day grid through ``SandboxRunner`` with
``time_resolution = 30`` rebuilds no one, and every answer equals local mode's bit for bit.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import docker
import pytest

from ptm_p2p.algorithms import datasets
from ptm_p2p.algorithms.rounds import SandboxRunner
from ptm_p2p.dev.images import build_image

from . import attacks

pytestmark = [pytest.mark.docker, pytest.mark.slow]
BASE = "ptm-base-python:bookworm"
ALGORITHMS = Path(__file__).resolve().parents[2] / "algorithms"


@pytest.fixture(scope="module")
def image():
    try:
        client = docker.from_env()
        client.images.get(BASE)
    except docker.errors.DockerException as exc:
        pytest.fail(f"no Docker engine or no {BASE} ({exc}); run `ptm dev up`", pytrace=False)
    tag = f"ptm-privacy-test/coxph-pooled:{uuid.uuid4().hex[:12]}"
    build_image(client, ALGORITHMS / "coxph-pooled", tag, BASE, log=lambda _: None)
    yield client, tag
    client.images.remove(tag, force=True)


def test_grid_attack_through_the_sandbox_rebuilds_no_one(image, tmp_path):
    client, tag = image
    frame = datasets.split(datasets.load_gbsg2(), datasets.SIZES)[0]
    csv = tmp_path / "a.csv"
    frame.to_csv(csv, index=False)
    csv.chmod(0o644)  # the task runs as an unprivileged user
    tmp_path.chmod(0o755)
    runner = SandboxRunner(
        client, {"coxph-pooled": tag}, {"a": {"gbsg2": csv}}, min_group_size=5,
        time_resolution=30.0,
    )  # fmt: skip
    covariates = list(datasets.COVARIATES)
    claims, answer = attacks.cox_grid_attack(runner, "a", covariates)
    assert "refused" not in answer, answer
    assert attacks.rebuilt(claims, frame, covariates) == 0
    local = attacks.runner_for({"a": frame}, 5, 30.0)
    request = {"duration": "time", "event": "cens", "covariates": covariates,
               "ties": "breslow", "step": "describe"}  # fmt: skip
    ours = runner("coxph-pooled", {"a": request})["a"]
    theirs = local("coxph-pooled", {"a": request})["a"]
    assert json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True)
    assert all(t % 30 == 0 for t in ours["event_times"])
