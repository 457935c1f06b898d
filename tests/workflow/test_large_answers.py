"""Answers of any size (issue 14, break 4): outputs over 64 KiB travel as encrypted blobs.

Before, an output over the 1 MiB entry limit was lost and answered ``failed`` with the false
reason "interrupted: the site daemon stopped while the task ran"; a real pooled Cox round
(9 covariates over a 3,001-day grid) failed the same way. Now the site seals the output,
uploads the ciphertext to the hub's blob store before it signs, and the result entry holds
only the key box, the commitment, the size and the blob's SHA-256. The researcher fetches
the blob from the hub (resumable, hash-checked), and opens it as any other answer.

One live collaboration: a hub and one site daemon (GBSG2, 360 rows, no disclosure control so
the Cox round is the researcher's exact grid), real Docker and registry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptm_p2p.algorithms import datasets
from ptm_p2p.client import Client
from ptm_p2p.dev.cluster import LocalCluster
from ptm_p2p.dev.stack import Stack
from ptm_p2p.ledger.entry import INLINE_MAX, Entry

pytestmark = [pytest.mark.docker, pytest.mark.network]

ORIGIN = "ptm.example/large-answers-test"
SITE = "hospital-a"
RESEARCHER_ORG = "uni"


@pytest.fixture(scope="module")
def collab(
    tmp_path_factory: pytest.TempPathFactory, stack: Stack
) -> Iterator[tuple[Client, Stack, LocalCluster]]:
    root: Path = tmp_path_factory.mktemp("large")
    (frame, *_) = datasets.split(datasets.load_gbsg2(), datasets.SIZES)
    with LocalCluster(root / "cluster") as cluster:
        cluster.create(ORIGIN, "consortium")
        cluster.start_hub()
        cluster.home(SITE)
        path = cluster.path(SITE) / "gbsg2.csv"
        frame.to_csv(path, index=False)
        cluster.configure_site(
            SITE,
            images=[stack.images[n].split("@", 1)[0] for n in ("coxph-pooled", "testing/probe")],
            publishers=[RESEARCHER_ORG],
            data={"gbsg2": path},
        )
        cluster.start_site(SITE)
        cluster.admit(SITE, "site")
        cluster.admit("researcher", "researcher", org=RESEARCHER_ORG)
        with Client(cluster.root / "researcher", cluster.invitation_path) as client:
            yield client, stack, cluster


def the_result_entry(client: Client, task_id: str) -> Entry:
    (result,) = client.state.tasks[bytes.fromhex(task_id)].results.values()
    (raw,) = client.follower.store.raw_range(result.index, result.index + 1)
    return Entry.from_bytes(raw)


def test_a_100_mb_answer_reaches_the_researcher_intact(
    collab: tuple[Client, Stack, LocalCluster],
) -> None:
    client, stack, cluster = collab
    started = time.monotonic()
    task = client.publish(
        stack.images["testing/probe"],
        to=SITE,
        input=json.dumps({"action": "big-answer", "mb": 100}).encode(),
        memory_mb=1024,
        timeout_s=300,
    )
    view = client.wait(task.id, timeout=300)
    assert view.progress == {SITE: "ok"}, view.progress
    (answer,) = client.results(task.id).values()
    took = time.monotonic() - started
    assert answer.status == "ok", (answer.status, answer.reason)
    pattern = json.loads(answer.output)["pattern"]
    size = 100 * 1024 * 1024
    unit = "".join(f"{i:07d}|" for i in range(1024))
    assert len(pattern) == size
    assert pattern == (unit * (size // len(unit) + 1))[:size]
    # The entry carries no ciphertext, only where to fetch it; the hub holds it.
    output = the_result_entry(client, task.id).payload["output"]
    assert "inline" not in output and output["size"] > size
    blob = output["blob"].hex()
    assert (cluster.path("hub") / "blobs" / blob[:2] / blob[2:]).stat().st_size == output["size"]
    print(f"100 MB answer end to end: {took:.1f} s")


def test_a_pooled_cox_round_with_9_covariates_over_a_3001_day_grid(
    collab: tuple[Client, Stack, LocalCluster],
) -> None:
    client, stack, _ = collab
    request = {
        "step": "evaluate",
        "data": "gbsg2",
        "duration": "time",
        "event": "cens",
        "covariates": list(datasets.COVARIATES),
        "ties": "efron",
        "times": list(range(3001)),
        "tied": [],
        "betas": [[0.0] * len(datasets.COVARIATES)],
    }
    outputs = client.run_round(
        stack.images["coxph-pooled"], {SITE: request}, data=["gbsg2"], timeout=300
    )
    (point,) = outputs[SITE]["points"]
    assert "sums" in point
    task = client.tasks(mine=True)[-1]
    output = the_result_entry(client, task.id).payload["output"]
    # Over the old 1 MiB entry limit, so it travelled as a blob.
    assert "inline" not in output and output["size"] > 1024 * 1024 > INLINE_MAX
