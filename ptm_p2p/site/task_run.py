"""Running one task the worker decided to run: journal the start (before its container
exists: exactly once, ``journal.py``), run the image in the sandbox on the opened input, apply
what happened meanwhile (``decide.after_run``: cancelled, this site revoked), mask a secure
sum's output (``masking.py``) and answer (``answers.py``)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import trio

from ptm_p2p.errors import NetworkError, PtmError, StoreError
from ptm_p2p.ledger.entry import digest_of_image
from ptm_p2p.site import masking
from ptm_p2p.site.containers import SITE_LABEL
from ptm_p2p.site.decide import after_run, publisher_revoked

if TYPE_CHECKING:
    from collections.abc import Callable

    from ptm_p2p.executor.result import RunResult
    from ptm_p2p.executor.task import ContainerTask
    from ptm_p2p.ledger.entry import Entry
    from ptm_p2p.ledger.replay import LoggedTask
    from ptm_p2p.site.answers import Answerer
    from ptm_p2p.site.containers import ContainerRunner
    from ptm_p2p.site.decide import Active
    from ptm_p2p.site.journal_guard import GuardedJournal
    from ptm_p2p.site.worker_site import WorkerSite

log = logging.getLogger(__name__)


class TaskRunner:
    """Runs tasks in containers and answers what they gave."""

    def __init__(
        self,
        site: WorkerSite,
        containers: ContainerRunner,
        answerer: Answerer,
        journal: GuardedJournal,
        why_halted: Callable[[], str | None],
        folder_owner: str,
    ) -> None:
        self.site = site
        self.containers = containers
        self.answerer = answerer
        self.journal = journal
        self.why_halted = why_halted
        self.folder_owner = folder_owner  # whose in-memory task folders (task_folders.py)

    def run_task(
        self, task: LoggedTask, entry: Entry, task_input: bytes, org: str
    ) -> ContainerTask:
        """What the executor runs: the image, the input, the site's data, the limits."""
        from ptm_p2p.executor.task import ContainerTask  # docker: only where tasks run

        limits = task.limits
        return ContainerTask(
            image=task.image,
            input=task_input,
            data=list(entry.payload.get("data", [])),
            publisher_key=task.publisher.hex(),
            publisher_name=org,
            task_id=task.hash.hex(),
            timeout_s=float(limits["timeout_s"]),
            memory_bytes=int(limits["memory_mb"]) * 1024 * 1024,
            cpus=limits["cpu_millis"] / 1000,
            labels={SITE_LABEL: self.site.home.public_key.hex()},
            owner=self.folder_owner,
        )

    async def run(
        self, flight: Active, task: LoggedTask, entry: Entry, task_input: bytes, org: str
    ) -> None:
        """Run the task's image (journalled first) and answer what it gave."""
        run_task = self.run_task(task, entry, task_input, org)
        journal = self.journal.journal
        await self.journal.io("write", lambda: journal.start(task.hash, task.index))
        if self.why_halted() or publisher_revoked(self.site.state, task) is not None:
            # Revoked (or halted) while the journal write waited out a local fault: the
            # scan answers the task on its next pass (the row makes it "interrupted").
            return
        flight.state, flight.started = "running", time.time()
        log.info("task at entry %d: running %s", task.index, task.image)
        try:
            result: RunResult = await trio.to_thread.run_sync(self.containers.run, run_task)
        except PtmError as exc:
            reason = f"the site could not run the task: {exc}"
            await self.answerer.answer(entry, "failed", b"", reason=reason)
            return
        flight.state = "answering"
        await self._answer_run(flight, task, entry, result)

    async def _answer_run(
        self, flight: Active, task: LoggedTask, entry: Entry, result: RunResult
    ) -> None:
        site = self.site
        answer = after_run(
            site.state,
            task.hash,
            site.home.public_key,
            site.hub_says_revoked,
            flight.cancel,
            result.status,
            result.reason,
        )
        if answer is None:
            log.warning(
                "task at entry %d: stopped, not answered: %s", task.index, self.why_halted()
            )
            return
        ran = digest_of_image(result.digest) if result.digest else task.image_digest
        output = b"" if answer.drop_output else result.output
        # secure-sum tasks: masked here, before sealing (the container has no keys)
        status, output, reason = masking.masked(
            site.home.signer, entry, answer.status, output, answer.reason or ""
        )
        timings = {
            "prepare_ms": round(result.timings.prepare_s * 1000),
            "run_ms": round(result.timings.run_s * 1000),
            "total_ms": round(result.timings.total_s * 1000),
        }
        try:
            await self.answerer.answer(
                entry,
                status,
                output,
                image_digest=ran,
                container_log=result.logs,
                reason=reason or None,
                timings=timings,
            )
        except (StoreError, NetworkError):
            raise  # our own fault or the network: the journal keeps the run for a retry
        except PtmError as exc:
            # The answer could not be recorded (e.g. it breaks a ledger limit): say so
            # truly, rather than leave the run to be reported "interrupted" later.
            log.error("task at entry %d: its answer cannot be recorded: %s", task.index, exc)
            await self.answerer.answer(
                entry,
                "failed",
                b"",
                image_digest=ran,
                reason=f"the task ran, but its answer could not be recorded: {exc}",
            )
