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
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ptm_p2p.backoff import Backoff
from ptm_p2p.errors import (
    BlobError,
    BlobRefused,
    NetworkError,
    PtmError,
    StoreError,
)
from ptm_p2p.ledger.crypto import sha256
from ptm_p2p.ledger.entry import (
    INLINE_MAX,
    RESULT,
    AuthorChain,
    Entry,
    SealedOutput,
    digest_of_image,
    result_payload_v2,
    sealed_output,
)
from ptm_p2p.ledger.replay import Task as LoggedTask
from ptm_p2p.ledger.store import is_local_fault
from ptm_p2p.site import secagg
from ptm_p2p.site.decide import FORMAT_1_REFUSED as FORMAT_1_REFUSED  # re-exported
from ptm_p2p.site.decide import INTERRUPTED as INTERRUPTED
from ptm_p2p.site.decide import (
    Do,
    SiteView,
    decide,
    may_start,
    publisher_revoked,
    self_revoked,
)
from ptm_p2p.site.disclosure import DISCLOSURE_FILE, DisclosureRecord, catch_up, parse_request
from ptm_p2p.site.faults import LocalFaults
from ptm_p2p.site.journal import JOURNAL_FILE, RUNNING, SIGNED, Journal, LogProof

if TYPE_CHECKING:
    from collections.abc import Callable

    from ptm_p2p.executor.policy import SitePolicy
    from ptm_p2p.executor.result import RunResult
    from ptm_p2p.site.replicator import Site

log = logging.getLogger(__name__)
T = TypeVar("T")

RESUBMIT_INTERVAL = 1.0  # while signed results wait for the log to hold them
RESUBMIT_RETRY_MAX = 5.0  # after a failed hand-over: back off from RESUBMIT_INTERVAL to this
BLOB_RETRY_FIRST, BLOB_RETRY_MAX = 1.0, 60.0  # seconds between tries to store an output blob
SCAN_INTERVAL = 1.0  # also rescan this often without a new checkpoint (queue, cancels)
KILL_RETRY = 3.0  # seconds between kills of a cancelled task's container
SITE_LABEL = "ptm_p2p.site"  # container label: which site started it (engines may be shared)
TASK_LABEL = "ptm_p2p.task"


@dataclass
class Active:
    """A task this daemon is acting on right now."""

    task: LoggedTask
    state: str = "queued"  # queued | running | answering
    started: float = 0.0
    cancel: bool = False
    revoked_at: int | None = None  # the entry that revoked its publisher while it ran
    killed_at: float = float("-inf")  # monotonic time of the last kill sent to its container


class TaskWorker:
    """Turns the tasks of a site's replica into signed results; one per site daemon."""

    def __init__(self, site: Site, policy: SitePolicy, parallel: int = 1) -> None:
        self.site = site
        self.view: SiteView = site  # what deciding sees of the site (decide.py)
        self.policy = policy
        self.parallel = parallel
        self.me = site.home.public_key
        self.me_hex = self.me.hex()
        self.journal = Journal(site.home.path / JOURNAL_FILE)
        # What this site has revealed per data source, across tasks and researchers: kept
        # (and checked before every run) only under disclosure control (docs/privacy.md).
        self.disclosure = (
            DisclosureRecord(
                site.home.path / DISCLOSURE_FILE,
                policy.data,
                policy.min_group_size,
                policy.max_beta_probes,
            )
            if policy.time_resolution is not None
            else None
        )
        self.limiter = trio.CapacityLimiter(parallel)
        self.sign_lock = trio.Lock()
        self.active: dict[bytes, Active] = {}
        self.halted: str | None = None
        self.answered = 0
        self.faults = LocalFaults()  # tasks.db failing to write: back off, show it
        self.workdir_owner = task_folder_owner(self.me_hex)  # our in-memory task folders
        self._docker: Any = None
        self._executor: Any = None
        self._wake = trio.Event()
        self._submit_wanted = trio.Event()

    # --- the loop ------------------------------------------------------------------------

    async def run(self, host: Any, me: str) -> None:
        await self._recover()
        if self.disclosure is not None:  # answers signed while it was lost or off
            catch_up(self.disclosure, self.site, self.journal)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._resubmit_loop)
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
        book = self.site.book
        after = book.latest_size

        async def change(scope: trio.CancelScope) -> None:
            await book.wait_newer(after, SCAN_INTERVAL)
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
        return self.view.why_halted() or self.halted

    def _self_revoked(self) -> int | None:
        return self_revoked(self.view.state, self.me, self.site.hub_says_revoked)

    def _publisher_revoked(self, task: LoggedTask) -> int | None:
        return publisher_revoked(self.view.state, task)

    def _scan(self, nursery: trio.Nursery) -> None:
        state = self.view.state
        # Cancels and revocations reaching running tasks: stop their containers. Again every
        # few seconds while the run goes on: a container still being created is not there
        # to stop yet. Also while halted (a revoked site must stop its work at once).
        now = time.monotonic()
        self_revoked = self._self_revoked() is not None
        for task_hash, active in list(self.active.items()):
            task = state.tasks.get(task_hash)
            if task is None:
                continue
            revoked = self._publisher_revoked(task)
            if revoked is not None and active.revoked_at is None:
                active.revoked_at = revoked
            if task.cancelled_at is not None:
                active.cancel = True
            if not (active.cancel or active.revoked_at is not None or self_revoked):
                continue
            if active.state == "running" and now - active.killed_at > KILL_RETRY:
                active.killed_at = now
                nursery.start_soon(self._kill_container, task_hash)
        if self._why_halted():
            return
        if self.site.witness_size < self.site.log.size:
            # Entries we verified but have not vouched for (e.g. a restart between storing
            # and cosigning): cosign now if consistent, rather than wait for the log to grow.
            self.site.cosign()
        for task in self._my_open_tasks():
            if task.hash in self.active:
                continue
            if may_start(self.view, task, self.journal.get(task.hash)).do is not Do.RUN:
                continue
            self.active[task.hash] = Active(task)
            nursery.start_soon(self._act, task)

    def _my_open_tasks(self) -> list[LoggedTask]:
        state = self.view.state
        mine = [
            t for t in state.tasks.values() if self.me in t.targets and self.me not in t.results
        ]
        mine.sort(key=lambda t: t.index)
        return mine

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
            if self.disclosure is not None:
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
            # _answer checks the publisher's revocation again and words that refusal.
            await self._answer(entry, action.status, b"", reason=action.reason)
            return
        refusal = await self._disclosure_check(task, entry, action.input, action.org)
        if refusal is not None:
            await self._answer(entry, "refused", b"", reason=refusal)
            return
        await self._run(task, entry, action.input, action.org)

    async def _run(self, task: LoggedTask, entry: Entry, task_input: bytes, org: str) -> None:
        """Run the task's image in the sandbox (journalled first) and answer what it gave."""
        active = self.active[task.hash]
        limits = task.limits
        from ptm_p2p.executor.task import Task as RunTask  # docker: only where tasks run

        run_task = RunTask(
            image=task.image,
            input=task_input,
            data=list(entry.payload.get("data", [])),
            publisher_key=task.publisher.hex(),
            publisher_name=org,
            task_id=task.hash.hex(),
            timeout_s=float(limits["timeout_s"]),
            memory_bytes=int(limits["memory_mb"]) * 1024 * 1024,
            cpus=limits["cpu_millis"] / 1000,
            labels={SITE_LABEL: self.me_hex},
            owner=self.workdir_owner,
        )
        await self._journal_io("write", lambda: self.journal.start(task.hash, task.index))
        if self._why_halted() or self._publisher_revoked(task) is not None:
            # Revoked (or halted) while the journal write waited out a local fault: the
            # scan answers the task on its next pass (the row makes it "interrupted").
            return
        active.state, active.started = "running", time.time()
        log.info("task at entry %d: running %s", task.index, task.image)
        try:
            result: RunResult = await trio.to_thread.run_sync(self._run_blocking, run_task)
        except PtmError as exc:
            await self._answer(
                entry, "failed", b"", reason=f"the site could not run the task: {exc}"
            )
            return
        active.state = "answering"
        status, reason = result.status, result.reason
        if active.cancel or self._cancelled(task):
            status, reason = "cancelled", "cancelled while running; the container was stopped"
        if self._self_revoked() is not None:
            log.warning(
                "task at entry %d: stopped, not answered: %s", task.index, self._why_halted()
            )
            return
        ran = digest_of_image(result.digest) if result.digest else task.image_digest
        output = result.output if status != "cancelled" else b""
        # secure-sum tasks: masked here, before sealing (the container has no keys)
        status, output, reason = secagg.masked(self.site.home.signer, entry, status, output, reason)
        try:
            await self._answer(
                entry,
                status,
                output,
                image_digest=ran,
                container_log=result.logs,
                reason=reason or None,
                timings={
                    "prepare_ms": round(result.timings.prepare_s * 1000),
                    "run_ms": round(result.timings.run_s * 1000),
                    "total_ms": round(result.timings.total_s * 1000),
                },
            )
        except (StoreError, NetworkError):
            raise  # our own fault or the network: the journal keeps the run for a retry
        except PtmError as exc:
            # The answer could not be recorded (e.g. it breaks a ledger limit): say so
            # truly, rather than leave the run to be reported "interrupted" later.
            log.error("task at entry %d: its answer cannot be recorded: %s", task.index, exc)
            await self._answer(
                entry,
                "failed",
                b"",
                image_digest=ran,
                reason=f"the task ran, but its answer could not be recorded: {exc}",
            )
        self._disclosure_settle(task)

    async def _disclosure_check(
        self, task: LoggedTask, entry: Entry, task_input: bytes, org: str
    ) -> str | None:
        """Whether the disclosure record refuses the task (a public reason), else None,
        with what it would reveal reserved until ``_disclosure_settle``."""
        if self.disclosure is None:
            return None
        request = parse_request(task.image, list(entry.payload.get("data", [])), task_input)
        try:
            return await trio.to_thread.run_sync(
                self.disclosure.check, task.hash, task.index, request, task.publisher.hex(), org
            )
        except StoreError as exc:
            log.error("task at entry %d: %s", task.index, exc)
            return (
                "this site's disclosure record could not be read, so it cannot tell what "
                "answering would reveal; nothing was run"
            )

    def _disclosure_settle(self, task: LoggedTask) -> None:
        """Record the task's answer in the disclosure record if what was signed is ``ok``
        (a failure here is repaired from the ledger at the next start: ``catch_up``)."""
        if self.disclosure is None:
            return
        try:
            row = self.journal.get(task.hash)
            self.disclosure.settle(task.hash, row is not None and row.status == "ok")
        except StoreError as exc:
            log.error("task at entry %d: not recorded yet: %s", task.index, exc)

    def _cancelled(self, task: LoggedTask) -> bool:
        current = self.view.state.tasks.get(task.hash)
        return current is not None and current.cancelled_at is not None

    def _task_entry(self, task: LoggedTask) -> Entry | None:
        """The task entry as stored, checked against what replay recorded; None halts."""
        try:
            (raw,) = self.site.store.raw_range(task.index, task.index + 1)
            entry = Entry.from_bytes(raw)
        except (PtmError, ValueError) as exc:
            self.halted = (
                f"the stored task entry {task.index} no longer decodes ({exc}): the ledger "
                f"copy {self.site.home.ledger_path} was altered on disk; executing nothing. "
                "Stop the daemon, move the file away and let it resync from the hub"
            )
            log.error("%s", self.halted)
            return None
        if entry.hash != task.hash:
            self.halted = (
                f"the stored task entry {task.index} differs from the one verified at "
                f"start: the ledger copy {self.site.home.ledger_path} was altered on disk; "
                "executing nothing. Stop the daemon, move the file away and let it resync"
            )
            log.error("%s", self.halted)
            return None
        return entry

    def _run_blocking(self, run_task: Any) -> RunResult:
        from ptm_p2p.errors import ExecutorError
        from ptm_p2p.executor.task import Executor

        if self._executor is None:
            import docker

            try:
                self._docker = docker.from_env(timeout=120)
                self._docker.ping()
            except docker.errors.DockerException as exc:
                self._docker = None
                raise ExecutorError(
                    f"the site's Docker engine is not reachable ({exc}); start it "
                    "(`ptm dev up` on a test machine) and publish the task again"
                ) from exc
            self._executor = Executor(self._docker, self.policy)
        result: RunResult = self._executor.run(run_task)
        return result

    async def _kill_container(self, task_hash: bytes) -> None:
        await trio.to_thread.run_sync(self._remove_containers, task_hash.hex(), False)

    def _remove_containers(self, task_id: str, remove: bool) -> int:
        """Kill (and optionally remove) this site's containers for a task; how many."""
        import docker

        try:
            client = self._docker or docker.from_env(timeout=60)
            found = client.containers.list(
                all=True,
                filters={"label": [f"{TASK_LABEL}={task_id}", f"{SITE_LABEL}={self.me_hex}"]},
            )
            for container in found:
                with contextlib.suppress(docker.errors.APIError):
                    if remove:
                        container.remove(force=True)
                    else:
                        container.kill()
            return len(found)
        except docker.errors.DockerException as exc:
            log.warning("could not reach the Docker engine to stop task %s…: %s", task_id[:16], exc)
            return 0

    # --- answers -------------------------------------------------------------------------

    async def _answer(
        self,
        task_entry: Entry,
        status: str,
        output: bytes,
        *,
        image_digest: str | None = None,
        container_log: bytes = b"",
        reason: str | None = None,
        timings: dict[str, int] | None = None,
    ) -> None:
        """Seal the output (format 2), sign a result, journal its bytes, hand it to the hub."""
        publisher = task_entry.author
        if self.me in self.view.state.tasks[task_entry.hash].results:
            return
        revoked = self._publisher_revoked(self.view.state.tasks[task_entry.hash])
        if revoked is not None:  # never seal an output to a revoked key
            status, output, reason = "refused", b"", revoked_reason(revoked)
            container_log, timings = b"", None
        sealed = await trio.to_thread.run_sync(
            sealed_output, self.site.home.signer, publisher, output, container_log
        )
        try:
            output_map = await self._place_output(sealed)
        except BlobRefused as exc:
            # The true reason, and nothing of the output: it was never stored anywhere.
            status, reason, timings = (
                "failed",
                f"the hub's blob store refused the output: {exc}",
                None,
            )
            container_log = b""
            sealed = sealed_output(self.site.home.signer, publisher, b"", b"")
            output_map = sealed.output_map(inline=True)
        async with self.sign_lock:
            state = self.view.state
            task = state.tasks[task_entry.hash]
            if self.me in task.results:
                return
            # Checked again right before signing, whatever the status: no output is ever
            # sealed to a key this site knows to be revoked, and a revoked site signs nothing.
            if self._self_revoked() is not None:
                log.warning("task at entry %d: not answered: %s", task.index, self._why_halted())
                return
            revoked = self._publisher_revoked(task)
            if revoked is not None and status != "refused":
                # Revoked while we sealed: the sealed output is dropped, never published.
                status, reason, container_log, timings = (
                    "refused",
                    revoked_reason(revoked),
                    b"",
                    None,
                )
                sealed = sealed_output(self.site.home.signer, publisher, b"", b"")
                output_map = sealed.output_map(inline=True)
            seq, prev = state.heads.get(self.me, (0, bytes(32)))
            pending = await self._journal_io("read", self.journal.last_signed)
            if pending is not None and pending.seq is not None and pending.seq > seq:
                seq, prev = pending.seq, sha256(pending.result or b"")
            chain = AuthorChain(self.site.home.signer, seq, prev)
            # Timestamps never go back within a chain (replay rule 3), even if the clock does.
            payload = result_payload_v2(
                task_entry,
                status,
                output_map,
                sealed.log_commit,
                image_digest or task.image_digest,
                reason,
                timings,
            )
            entry = chain.append(RESULT, payload, int(time.time() * 1000))
            proof = LogProof(container_log, sealed.log_nonce, sealed.log_commit)
            await self._journal_io(
                "write",
                lambda: self.journal.signed(
                    task.hash, task.index, entry.seq, entry.raw, status, proof
                ),
            )
        self.answered += 1
        log.info(
            "task at entry %d: answered %s%s", task.index, status, f" ({reason})" if reason else ""
        )
        self._resubmit_now()

    async def _place_output(self, sealed: SealedOutput) -> dict[str, Any]:
        """Where an output's ciphertext leaves the site: returns the result's ``output`` map.

        A ciphertext of at most ``INLINE_MAX`` bytes goes into the entry. A larger one is
        uploaded to the hub's blob store *before* the result is signed, so a signed result
        never names a blob the hub does not hold (the researcher fetches it from there, also
        while this site is offline). An unreachable hub is waited for (resumable uploads,
        jittered back-off, one log line per pause); the store's refusal (quota, size, no
        room) raises ``BlobRefused`` so the task is answered ``failed`` with that reason."""
        if sealed.size <= INLINE_MAX:
            return sealed.output_map(inline=True)
        from ptm_p2p.network import blobs  # libp2p streams: only where outputs are large

        pause = Backoff(BLOB_RETRY_FIRST, BLOB_RETRY_MAX)
        while True:
            try:
                if self.site.host is None or self.site.hub_id is None:
                    raise NetworkError("the site is not connected to the hub yet")
                hub = self.site.client(self.site.host, str(self.site.hub_id))
                sent = await blobs.put(hub, sealed.blob, sealed.ciphertext)
                log.info(
                    "output blob %s… (%d bytes) stored at the hub (%d sent)",
                    sealed.blob.hex()[:16],
                    sealed.size,
                    sent.sent,
                )
                return sealed.output_map(inline=False)
            except BlobRefused:
                raise
            except (NetworkError, BlobError, trio.TooSlowError) as exc:
                wait = pause.next()
                log.warning(
                    "cannot store an output blob of %d bytes at the hub (%s); retrying in %.0f s",
                    sealed.size,
                    exc,
                    wait,
                )
                await trio.sleep(wait)

    def _resubmit_now(self) -> None:
        self._submit_wanted.set()
        self._wake.set()

    async def _resubmit_loop(self) -> None:
        """Bring every signed result to the log, in seq order, the same bytes every time:
        at once when a result is signed, and every RESUBMIT_INTERVAL until the log has it
        (backing off up to RESUBMIT_RETRY_MAX while handing them over fails)."""
        retry = Backoff(RESUBMIT_INTERVAL, RESUBMIT_RETRY_MAX)
        while True:
            self._submit_wanted = trio.Event()
            pause = RESUBMIT_INTERVAL
            try:
                await self._resubmit_once()
                retry.reset()
            except (NetworkError, trio.TooSlowError) as exc:
                log.debug("handing results to the hub failed: %s (retrying)", exc)
                pause = retry.next()
            except StoreError as exc:  # our journal, not the hub: back off and show it
                if not is_local_fault(exc):
                    self._journal_damaged(exc)
                    raise
                await self.faults.pause(JOURNAL_FILE, exc, "write")
                continue
            except PtmError as exc:
                log.warning("the hub refused our results: %s (retrying)", exc)
                pause = retry.next()
            except Exception:
                log.exception("resubmitting results failed unexpectedly")
                pause = retry.next()
            with trio.move_on_after(pause):
                await self._submit_wanted.wait()

    async def _resubmit_once(self) -> None:
        state = self.view.state
        waiting = []
        for row in sorted(self.journal.in_state(SIGNED), key=lambda r: r.seq or 0):
            raw = row.result or b""
            if sha256(raw) in state.results:
                self.journal.done(row.task)
                self.faults.cleared(JOURNAL_FILE)
                continue
            waiting.append(raw)
        if waiting:
            await self.view.submit(waiting)

    # --- recovery ------------------------------------------------------------------------

    async def _journal_io(self, doing: str, call: Callable[[], T]) -> T:
        """Run a journal call until it works, backing off while it fails (a local fault:
        ``faults.py``); a damaged journal halts execution instead."""
        while True:
            try:
                value = call()
            except StoreError as exc:
                if not is_local_fault(exc):
                    self._journal_damaged(exc)
                    raise
                await self.faults.pause(JOURNAL_FILE, exc, doing)
                continue
            # A write that works clears any fault; a read only a read fault.
            self.faults.cleared(JOURNAL_FILE, None if doing == "write" else doing)
            return value

    def _journal_damaged(self, exc: StoreError) -> None:
        self.halted = (
            f"the task journal {self.journal.path} is damaged ({exc}): executing nothing. "
            "Stop the daemon, move the file away (keep it: it records what ran) and start "
            "again; tasks it recorded as running are then answered once more"
        )
        log.error("%s", self.halted)

    async def _recover(self) -> None:
        """After a crash: remove what is left of interrupted runs' containers.

        The scan then answers each interrupted task ``failed`` once (``INTERRUPTED``).
        """
        for row in self.journal.in_state(RUNNING):
            removed = await trio.to_thread.run_sync(self._remove_containers, row.task.hex(), True)
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
        if self.disclosure is not None:
            self.disclosure.close()


def task_folder_owner(key_hex: str) -> str:
    """Whose in-memory task folders (``executor/workdir.py``) are this site's."""
    return f"site-{key_hex[:16]}"


def sweep_task_folders(key_hex: str, stopping: bool = False) -> None:
    """Unmount and remove what runs of this site left in memory.

    Called by ``_serve_node`` before the daemon starts anything else (what a crash left): a
    folder that cannot be removed then stops the daemon (``ExecutorError``, naming it), as it
    may hold a decrypted input. Called again as the daemon stops (``stopping``): a run still
    going is abandoned with its thread, so its folder is removed here, not left to the next
    start.
    """
    from ptm_p2p.executor import workdir

    removed = workdir.sweep(task_folder_owner(key_hex), remove_root=stopping)
    if removed:
        log.warning(
            "removed %d task folder(s) %s in memory (decrypted inputs and outputs of "
            "interrupted tasks): %s",
            len(removed),
            "of runs cut short by this stop" if stopping else "an earlier run of this site left",
            ", ".join(removed),
        )


def revoked_reason(revoked_at: int) -> str:
    """The public reason of a refusal because the publisher's key is revoked (or unknown)."""
    if revoked_at < 0:
        return "the publisher is not a member of this collaboration; nothing was run"
    return (
        f"the publisher's key was revoked at entry {revoked_at}; the task was not run or was "
        "stopped, and no output was kept"
    )


def site_settings(home: Any) -> tuple[SitePolicy, int]:
    """The site's policy and how many tasks it runs at once, from ``HOME/config.toml``
    (validated: a bad key or value stops the daemon at start, naming the file and key)."""
    from ptm_p2p.config import load_config

    config = load_config(home.path)
    return config.policy, config.tasks_parallel
