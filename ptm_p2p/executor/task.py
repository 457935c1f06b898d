"""The site-side executor: policy first, then the pinned image, then the sandbox.

Order matters: the policy (image, publisher, data labels) is checked *before* anything is
pulled, so a refused task never makes the site contact a registry it did not choose.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import docker

from ptm_p2p.errors import PolicyError
from ptm_p2p.executor.imageref import ImageRef
from ptm_p2p.executor.limits import Limits
from ptm_p2p.executor.policy import SitePolicy
from ptm_p2p.executor.pull import Puller
from ptm_p2p.executor.result import RunResult, Timings
from ptm_p2p.executor.sandbox import SandboxRun, run_in_sandbox


@dataclass(frozen=True)
class ContainerTask:
    """What a site is asked to run (decoded from a task entry, input already decrypted)."""

    image: str  # REPOSITORY@sha256:…
    input: bytes = b""
    data: Sequence[str] = ()  # data labels
    publisher_key: str | None = None  # hex Ed25519 public key of the publisher
    publisher_name: str | None = None  # its organisation name
    task_id: str = ""
    # The task may ask for less than the site's maximum (the ledger's signed limits:
    # timeout_s, memory_mb * 2**20, cpu_millis / 1000), never for more.
    timeout_s: float | None = None
    memory_bytes: int | None = None
    cpus: float | None = None
    labels: dict[str, str] = field(default_factory=dict)
    owner: str = "local"  # whose in-memory task folder (workdir.py); a site uses its key


class Executor:
    """Runs tasks under one site's policy on one Docker engine."""

    def __init__(self, client: docker.DockerClient, policy: SitePolicy) -> None:
        self.client = client
        self.policy = policy
        self.puller = Puller(client)

    def check(self, task: ContainerTask) -> tuple[ImageRef, dict[str, Path], Limits]:
        """Everything the policy says about ``task``; PolicyError on the first refusal."""
        ref = self.policy.check_image(task.image)
        self.policy.check_publisher(task.publisher_key, task.publisher_name)
        data = self.policy.check_data(task.data)
        limits = self.policy.limits.narrowed(task.timeout_s, task.memory_bytes, task.cpus)
        return ref, data, limits

    def run(self, task: ContainerTask) -> RunResult:
        """Run ``task``: a result with status ok/failed/timeout/refused.

        Policy refusals and unobtainable images come back as ``refused`` results (the site
        records them on the ledger); engine failures raise ExecutorError.
        """
        t0 = time.monotonic()
        try:
            ref, data, limits = self.check(task)
            # A digest allowed on its own says nothing about where to fetch it from: only a
            # registry the policy names is ever contacted (else the publisher picks the host).
            image_id = self.puller.obtain(ref, may_pull=self.policy.may_pull(ref))
        except PolicyError as exc:
            return RunResult.refused(task.image, str(exc), Timings(total_s=time.monotonic() - t0))
        t_ready = time.monotonic()
        result = run_in_sandbox(
            self.client,
            SandboxRun(
                image=image_id,
                input=task.input,
                data=data,
                limits=limits,
                task_id=task.task_id,
                min_group_size=self.policy.min_group_size,
                time_resolution=self.policy.time_resolution,
                labels={**task.labels, "ptm_p2p.task": task.task_id},
                owner=task.owner,
            ),
        )
        t = result.timings
        return replace(
            result,
            image=task.image,
            digest=ref.by_digest,
            image_id=image_id,
            timings=Timings(
                prepare_s=(t_ready - t0) + t.prepare_s,
                create_s=t.create_s,
                run_s=t.run_s,
                collect_s=t.collect_s,
                total_s=time.monotonic() - t0,
            ),
        )
