"""A live collaboration for the workflow tests: hub, three site daemons, a researcher.

Everything is real: each peer is its own ``ptm`` process on 127.0.0.1, sites run tasks in
the real Docker engine from the real loopback registry, data is GBSG2 (lifelines) split over
the sites. The cluster is shared by the module's tests (set-up costs ~10 s); each test
publishes its own tasks, so they do not depend on one another's order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from ptm_p2p.client import Client, TaskView
from ptm_p2p.dev.cluster import LocalCluster
from ptm_p2p.dev.stack import Stack, ensure_stack

SITES = ("hospital-a", "hospital-b", "hospital-c")
RESEARCHER = "researcher"
RESEARCHER_ORG = "uni"
ORIGIN = "ptm.example/workflow-test"


@pytest.fixture(scope="session")
def stack() -> Stack:
    return ensure_stack()


@dataclass
class Study:
    cluster: LocalCluster
    client: Client
    images: dict[str, str]  # algorithm name -> repo@sha256:…
    shares: dict[str, Any]  # site -> its DataFrame
    docker: docker.DockerClient

    def repo(self, name: str) -> str:
        return self.images[name].split("@", 1)[0]

    def containers_of(self, task_id: str) -> list[Any]:
        return self.docker.containers.list(all=True, filters={"label": f"ptm_p2p.task={task_id}"})

    def revoke(self, name: str) -> None:
        """``ptm collab revoke`` of ``name``'s key, run by the admin as its own process."""
        self.cluster._ptm(
            "collab",
            "revoke",
            "--home",
            str(self.cluster.root / "admin"),
            "--invitation",
            str(self.cluster.invitation_path),
            self.cluster.home(name).public_key.hex(),
        )

    def sleeper(
        self, site: str, seconds: int, timeout_s: int, client: Client | None = None
    ) -> TaskView:
        """The probe image published (by ``client``, default the study's) to ``site`` alone,
        to sleep ``seconds`` under a wall-clock limit of ``timeout_s``."""
        return (client or self.client).publish(
            self.images["testing/probe"],
            to=[site],
            input=json.dumps({"action": "sleep", "seconds": seconds}).encode(),
            timeout_s=timeout_s,
        )

    def summary_answered_by(self, site: str, params: dict[str, Any]) -> TaskView:
        """The summary algorithm published to ``site`` alone on the ``gbsg2`` data, once
        ``site`` has answered it ok."""
        task = self.client.publish(
            self.images["summary"], to=[site], input=json.dumps(params).encode(), data=["gbsg2"]
        )
        assert self.client.wait(task.id, timeout=120).progress == {site: "ok"}
        return task


def start_study(root: Path, stack: Stack) -> Iterator[Study]:
    from lifelines.datasets import load_gbsg2

    pooled = load_gbsg2()
    cluster = LocalCluster(root)
    try:
        cluster.create(ORIGIN, "consortium")
        cluster.start_hub()
        shares = {}
        for i, site in enumerate(SITES):
            share = pooled.iloc[
                [j for j in range(len(pooled)) if j % 5 in ((0, 1), (2, 3), (4,))[i]]
            ]
            shares[site] = share
            cluster.home(site)
            path = root / site / "gbsg2.csv"
            share.to_csv(path, index=False)
            # hospital-c allows only the summary image: the probe is refused there.
            images = [stack.images["summary"].split("@")[0]]
            if site != "hospital-c":
                images.append(stack.images["testing/probe"].split("@")[0])
            cluster.configure_site(
                site, images=images, publishers=[RESEARCHER_ORG], data={"gbsg2": path}
            )
            cluster.start_site(site)
        for site in SITES:
            cluster.admit(site, "site")
        cluster.admit(RESEARCHER, "researcher", org=RESEARCHER_ORG)
        client = Client(root / RESEARCHER, cluster.invitation_path)
        try:
            yield Study(cluster, client, stack.images, shares, stack.client)
        finally:
            client.close()
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[Study]:
    yield from start_study(tmp_path_factory.mktemp("workflow"), stack)
