"""``ptm node``, execution side: run the tasks this site's verified replica assigns to it.

A site acts on a task only when all of these hold, checked from its own replica (never from
what a peer or the researcher says):

1. the task entry lies under a hub-signed checkpoint this site verified *and cosigned* as a
   witness (its index is below the size the site vouched for), and the site still trusts the
   hub (no split view, no rule-breaking checkpoint);
2. replay accepted it: the publisher was an admitted, unrevoked researcher and every target
   an admitted site when it was sequenced; the publisher is still not revoked now;
3. this site is a target and the log holds no result of this site for the task;
4. the entry re-read from the store hashes to what replay recorded (a copy edited on disk
   since start halts execution: nothing more runs, and ``ptm status`` says why);
5. the site's own ``[policy]`` allows the image digest, the publisher and the data labels
   (checked by the executor before anything is pulled).

Then it opens its input, runs the image in the sandbox, seals the output to the publisher
and signs a result. Inputs and outputs are format 2 (``docs/ledger.md``, "Format 2"): the
input must be boxed by the task's publisher for this site and bound to this very task entry,
else the site answers ``refused`` with a public reason that says nothing of the input and
runs nothing. A format-1 task (an anonymous sealed box, which anyone can copy into a task of
their own) is refused the same way, without running. Every result is written in format 2:
the output under secretstream, its key boxed to the publisher, only commitments in public;
the container log's nonce and commitment stay in the journal so the site can prove its log.

A refusal or a failure is a signed result too, at once, with a reason the researcher can act
on. Tasks wait in a queue; ``[tasks] parallel`` run at once (default 1) in worker threads, so
a busy site keeps replicating and witnessing.

Exactly once (see ``journal.py``): a run is journalled before its container exists and the
signed result before it is submitted. After a crash a half-run task is answered ``failed``
(interrupted) once its leftover container is removed; a signed result is resubmitted byte for
byte until the log holds it.

Cancellation: a cancelled task not yet started is answered ``cancelled`` without running; a
running one has its container killed and is answered ``cancelled``.

Revocation reaches running work the same way: when the publisher's key is revoked while its
task runs, the container is killed and the task answered ``refused`` naming the revocation
entry; right before any result is signed the publisher is checked once more, so no output
is ever sealed to a key this site knows to be revoked. When this site's own key is revoked,
it kills its running containers and executes and signs nothing more (replay would refuse
anything it signed); ``ptm status`` says so.

Nothing decrypted outlives the daemon: inputs and outputs live in an in-memory task folder
(``executor/workdir.py``), and a start sweeps what a crash left there before anything else.
A write of ``tasks.db`` that fails is a local fault: the worker pauses with a bounded,
jittered back-off (one log line per step, ``faults.py``) and ``ptm status`` shows it.

Decide, then do. ``decide.py`` holds every rule above, decided without Docker or the
network; this module is the loop that applies them and hands each action to a part with one
job: ``task_run.py`` runs a task in its container (``containers.py``), ``answers.py`` seals,
places (``outputs.py``) and signs, ``resubmit.py`` brings signed results to the log,
``journal_guard.py`` keeps the journal's failure policy, ``disclosure_gate.py`` asks the
disclosure record and ``task_folders.py`` sweeps the in-memory folders. The worker sees its
site only through ``worker_site.WorkerSite`` (``decide.SiteView`` and what doing needs), so
its tests run on a fake site without containers (``tests/site/``).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import trio

from ptm_p2p.errors import PtmError, StoreError
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.ledger.store import is_local_fault
from ptm_p2p.site.answers import Answerer
from ptm_p2p.site.containers import Containers
from ptm_p2p.site.decide import FORMAT_1_REFUSED as FORMAT_1_REFUSED  # re-exported
from ptm_p2p.site.decide import INTERRUPTED as INTERRUPTED
from ptm_p2p.site.decide import (
    Active,
    Do,
    SiteView,
    decide,
    may_start,
    my_open_tasks,
    stops,
)
from ptm_p2p.site.decide import revoked_reason as revoked_reason
from ptm_p2p.site.disclosure_gate import DisclosureGate
from ptm_p2p.site.faults import LocalFaults
from ptm_p2p.site.journal import JOURNAL_FILE, RUNNING, Journal
from ptm_p2p.site.journal_guard import GuardedJournal
from ptm_p2p.site.resubmit import Resubmitter
from ptm_p2p.site.task_folders import sweep_task_folders as sweep_task_folders
from ptm_p2p.site.task_folders import task_folder_owner
from ptm_p2p.site.task_run import TaskRunner

if TYPE_CHECKING:
    from ptm_p2p.executor.policy import SitePolicy
    from ptm_p2p.ledger.replay import LoggedTask
    from ptm_p2p.site.containers import ContainerRunner
    from ptm_p2p.site.worker_site import WorkerSite

log = logging.getLogger(__name__)

SCAN_INTERVAL = 1.0  # also rescan this often without a new checkpoint (queue, cancels)


class TaskWorker:
    """Turns the tasks of a site's replica into signed results; one per site daemon.

    ``site`` is a ``WorkerSite`` (``worker_site.SiteAdapter`` over the daemon's
    ``replicator.Site``; a fake in tests); ``containers`` runs the images (Docker by default;
    a fake in tests)."""

    def __init__(
        self,
        site: WorkerSite,
        policy: SitePolicy,
        parallel: int = 1,
        containers: ContainerRunner | None = None,
    ) -> None:
        self.site = site
        self.view: SiteView = self.site  # what deciding sees of the site (decide.py)
        self.policy = policy
        self.parallel = parallel
        self.me = self.site.home.public_key
        self.faults = LocalFaults()  # tasks.db failing to write: back off, show it
        self.journal_guard = GuardedJournal(
            Journal(self.site.home.path / JOURNAL_FILE), self.faults
        )
        self.journal = self.journal_guard.journal
        # What this site has revealed per data source, across tasks and researchers: kept
        # (and checked before every run) only under disclosure control (docs/privacy.md).
        self.disclosure = DisclosureGate(self.site, policy, self.journal)
        self.containers = containers or Containers(policy, self.me.hex())
        self.resubmitter = Resubmitter(self.site, self.journal_guard)
        self.answerer = Answerer(
            self.site, self.journal_guard, self._why_halted, self._resubmit_now
        )
        self.runner = TaskRunner(
            self.site,
            self.containers,
            self.answerer,
            self.journal_guard,
            self._why_halted,
            task_folder_owner(self.me.hex()),
        )
        self.limiter = trio.CapacityLimiter(parallel)
        self.active: dict[bytes, Active] = {}
        self.halted: str | None = None  # the stored copy of a task entry was altered
        self._wake = trio.Event()

    @property
    def answered(self) -> int:
        return self.answerer.answered

    # --- the loop ------------------------------------------------------------------------

    async def run(self, host: Any = None, me: str = "") -> None:
        await self._recover()
        self.disclosure.catch_up()  # answers signed while the record was lost or off
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.resubmitter.run)
            while True:
                try:
                    self._scan(nursery)
                except StoreError as exc:
                    if not is_local_fault(exc):
                        raise
                    # The journal's reads, or the ledger's (cosigning): name the right file.
                    mine = str(self.journal.path) in str(exc)
                    file = JOURNAL_FILE if mine else self.site.home.ledger_path.name
                    await self.faults.pause(file, exc, "read")
                    continue
                self.faults.cleared(JOURNAL_FILE, "read")
                self.faults.cleared(self.site.home.ledger_path.name, "read")
                await self._wait_for_work()

    async def _wait_for_work(self) -> None:
        """Until a new checkpoint arrives, a run finishes, or SCAN_INTERVAL passes."""
        after = self.site.checkpoint_size  # now: one arriving before the waiter starts counts

        async def change(scope: trio.CancelScope) -> None:
            await self.site.wait_for_checkpoint(after, SCAN_INTERVAL)
            scope.cancel()

        async def woken(scope: trio.CancelScope) -> None:
            await self._wake.wait()
            self._wake = trio.Event()
            scope.cancel()

        with trio.move_on_after(SCAN_INTERVAL):
            async with trio.open_nursery() as waiters:
                waiters.start_soon(change, waiters.cancel_scope)
                waiters.start_soon(woken, waiters.cancel_scope)

    def _why_halted(self) -> str | None:
        """Why this site executes nothing: the site's reason (hub, own key) or the worker's
        own (a damaged journal or ledger copy), or None."""
        return self.view.why_halted() or self.halted or self.journal_guard.halted

    def _scan(self, nursery: trio.Nursery) -> None:
        state = self.view.state
        # Cancels and revocations reaching running tasks: stop their containers (rule 11).
        for task_hash in stops(
            state, self.active, self.me, self.site.hub_says_revoked, time.monotonic()
        ):
            nursery.start_soon(self.containers.kill, task_hash)
        if self._why_halted():
            return
        # Entries we verified but have not vouched for (e.g. a restart between storing and
        # cosigning): cosign now if consistent, rather than wait for the log to grow.
        self.site.cosign_pending()
        for task in my_open_tasks(state, self.me):
            if task.hash in self.active:
                continue
            if may_start(self.view, task, self.journal.get(task.hash)).do is not Do.RUN:
                continue
            self.active[task.hash] = Active(task)
            nursery.start_soon(self._act, task)

    # --- one task ------------------------------------------------------------------------

    async def _act(self, task: LoggedTask) -> None:
        try:
            async with self.limiter:
                await self._act_unqueued(task)
        except PtmError as exc:
            log.error("task at entry %d: %s", task.index, exc)
        except Exception:  # a bug must cost one task, not the daemon
            log.exception("task at entry %d failed unexpectedly", task.index)
        finally:
            self.active.pop(task.hash, None)
            self.disclosure.release(task.hash)  # not answered ok: nothing to keep
            self._wake.set()

    async def _act_unqueued(self, task: LoggedTask) -> None:
        """Decide (``decide.py``), then do: answer at once, or run the image."""
        # Decided on the current state: the run may have waited in the queue meanwhile.
        action = decide(
            self.view,
            task.hash,
            self.me,
            self.journal.get(task.hash),
            self.policy,
            self.site.home.signer,
            self._why_halted(),
            self._task_entry,
        )
        if action.do is Do.SKIP:
            return
        entry, task = action.entry, self.view.state.tasks[task.hash]
        assert entry is not None
        if action.do is Do.ANSWER:
            assert action.status is not None
            if action.status == "refused":
                log.warning("task at entry %d: refused: %s", task.index, action.reason)
            # The answerer checks the publisher's revocation again and words that refusal.
            await self.answerer.answer(entry, action.status, b"", reason=action.reason)
            return
        refusal = await self.disclosure.check(task, entry, action.input, action.org)
        if refusal is not None:
            await self.answerer.answer(entry, "refused", b"", reason=refusal)
            return
        await self.runner.run(self.active[task.hash], task, entry, action.input, action.org)
        self.disclosure.settle(task)

    def _task_entry(self, task: LoggedTask) -> Entry | None:
        """The task entry as stored, checked against what replay recorded; None halts."""
        ledger = self.site.home.ledger_path
        try:
            entry = Entry.from_bytes(self.site.stored_entry(task.index))
        except (PtmError, ValueError) as exc:
            self.halted = (
                f"the stored task entry {task.index} no longer decodes ({exc}): the ledger "
                f"copy {ledger} was altered on disk; executing nothing. "
                "Stop the daemon, move the file away and let it resync from the hub"
            )
            log.error("%s", self.halted)
            return None
        if entry.hash != task.hash:
            self.halted = (
                f"the stored task entry {task.index} differs from the one verified at "
                f"start: the ledger copy {ledger} was altered on disk; "
                "executing nothing. Stop the daemon, move the file away and let it resync"
            )
            log.error("%s", self.halted)
            return None
        return entry

    def _resubmit_now(self) -> None:
        self.resubmitter.now()
        self._wake.set()

    async def _recover(self) -> None:
        """After a crash: remove what is left of interrupted runs' containers.

        The scan then answers each interrupted task ``failed`` once (``INTERRUPTED``).
        """
        for row in self.journal.in_state(RUNNING):
            removed = await self.containers.remove(row.task)
            log.warning(
                "task at entry %d was interrupted by a restart (%d container(s) removed)",
                row.task_index,
                removed,
            )

    # --- status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        def item(a: Active) -> dict[str, Any]:
            return {"task": a.task.hash.hex(), "index": a.task.index, "state": a.state}

        try:
            journal: dict[str, Any] = dict(self.journal.counts())
        except StoreError as exc:
            journal = {"error": str(exc)}
        return {
            "parallel": self.parallel,
            "halted": self._why_halted(),
            "active": [item(a) for a in self.active.values()],
            "answered_this_run": self.answered,
            "journal": journal,
            "local_fault": self.faults.describe(),
        }

    def close(self) -> None:
        self.journal.close()
        self.disclosure.close()


def site_settings(home: Any) -> tuple[SitePolicy, int]:
    """The site's policy and how many tasks it runs at once, from ``HOME/config.toml``
    (validated: a bad key or value stops the daemon at start, naming the file and key)."""
    from ptm_p2p.config import load_config

    config = load_config(home.path)
    return config.policy, config.tasks_parallel
