"""Fixtures for the executor tests: the real Docker engine, registry and images.

The session fixture brings the whole development stack up itself (``ptm_p2p.dev``), so a
bare ``pytest`` works on a fresh machine. A Docker test never skips: if the stack cannot be
brought up, the fixture fails and says how to set it up by hand.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import docker
import pytest

from ptm_p2p.dev.stack import Stack
from ptm_p2p.executor import ContainerTask, Executor, Limits, SitePolicy, run_local

# One label per test session: the leak check below only looks at our own containers, so
# other engineers' containers on the same engine cannot make it flaky.
SESSION_LABEL = "ptm_p2p.test"
SESSION_ID = uuid.uuid4().hex[:12]


@pytest.fixture(scope="session")
def client(stack: Stack) -> docker.DockerClient:
    return stack.client


@pytest.fixture(scope="session")
def probe_ref(stack: Stack) -> str:
    return stack.images["testing/probe"]


@pytest.fixture(scope="session")
def summary_ref(stack: Stack) -> str:
    return stack.images["summary"]


@pytest.fixture(autouse=True)
def no_leftover_containers(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every Docker test: none of this session's task containers may remain."""
    yield
    if "client" not in request.fixturenames:
        return
    client = request.getfixturevalue("client")
    left = client.containers.list(all=True, filters={"label": f"{SESSION_LABEL}={SESSION_ID}"})
    assert left == [], f"task containers left behind: {[c.short_id for c in left]}"
    # Belt and braces: nothing carrying the generic label may be one of ours either.
    ours = [
        c
        for c in client.containers.list(all=True, filters={"label": "ptm_p2p"})
        if c.labels.get(SESSION_LABEL) == SESSION_ID
    ]
    assert ours == []


@pytest.fixture
def task_labels() -> dict[str, str]:
    """Labels that mark a container as this test session's (see the leak check)."""
    return {SESSION_LABEL: SESSION_ID}


@pytest.fixture
def probe(client: docker.DockerClient, probe_ref: str, task_labels: dict[str, str]):
    """``probe(params, data=None, **limits)``: run the hostile probe image in the sandbox."""

    def run(params: dict[str, Any], data: dict[str, Any] | None = None, **limits: Any):
        return run_local(
            client,
            probe_ref,
            data or {},
            json.dumps(params).encode(),
            replace(Limits(timeout_s=30), **limits),
            labels=task_labels,
        )

    return run


@pytest.fixture
def make_executor(client: docker.DockerClient):
    """``make_executor(policy_table)``: an Executor for a site with that ``[policy]``."""

    def make(policy: dict[str, Any]) -> Executor:
        return Executor(client, SitePolicy.from_config({"name": "site-a", "policy": policy}))

    return make


@pytest.fixture
def task(task_labels: dict[str, str]):
    """``task(image, params, data_labels, **fields)``: a ContainerTask from publisher
    uni-research."""

    def make(image: str, params: dict[str, Any] | None = None, data=(), **kw: Any) -> ContainerTask:
        return ContainerTask(
            image=image,
            input=json.dumps(params or {}).encode(),
            data=tuple(data),
            publisher_name="uni-research",
            task_id=uuid.uuid4().hex,
            labels=task_labels,
            **kw,
        )

    return make
