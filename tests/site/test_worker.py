"""The worker carrying out what ``decide`` says (``ptm_p2p/site/worker.py`` and its parts),
without Docker or the network: the site is a ``FakeSite``, the engine ``FakeContainers``;
the keys, the signed entries and the journal (SQLite in ``tmp_path``) are real. Each test
runs the worker's own loop until it has handed a result to the (fake) hub, or has decided
to hand over nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio
from site_fakes import IMAGE, LIMITS, ME, REPO, RESEARCHER, FakeContainers, FakeSite, task_entry

from ptm_p2p.errors import ExecutorError
from ptm_p2p.executor.policy import SitePolicy
from ptm_p2p.executor.result import RunResult
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.ledger.replay import LoggedTask, Member, Result
from ptm_p2p.site.decide import CANCELLED_WHILE_RUNNING, FORMAT_1_REFUSED, INTERRUPTED
from ptm_p2p.site.journal import DONE, RUNNING, SIGNED
from ptm_p2p.site.worker import TaskWorker

ALLOW_ALL = SitePolicy(repositories=frozenset({REPO}), publishers=frozenset({"*"}))
OUTPUT = b'{"n_events": 42}'
INDEX = 5  # the task's place in the log


@dataclass
class Setup:
    site: FakeSite
    entry: Entry
    containers: FakeContainers
    worker: TaskWorker

    @property
    def task(self) -> LoggedTask:
        return self.site.state.tasks[self.entry.hash]

    def revoke_publisher(self, at: int = 8) -> None:
        key = RESEARCHER.public_key
        self.site.state.members[key] = Member(key, "uni", "researcher", 1, at)

    def result(self) -> Entry:
        """The one result the worker handed to the hub."""
        (raws,) = self.site.submitted
        (raw,) = raws
        return Entry.from_bytes(raw)

    def run_until(self, done: Callable[[], bool], limit: float = 10.0) -> None:
        """Run the worker's loop until ``done()`` holds (or ``limit`` s pass), then stop it."""

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.worker.run)
                with trio.move_on_after(limit):
                    while not done():
                        await trio.sleep(0.02)
                nursery.cancel_scope.cancel()

        trio.run(main)


def setup(
    tmp_path: Path,
    entry: Entry | None = None,
    result: RunResult | None = None,
    stored: Entry | None = None,
) -> Setup:
    entry = entry or task_entry()
    site = FakeSite(home_path=tmp_path)
    state = site.state
    state.members[RESEARCHER.public_key] = Member(RESEARCHER.public_key, "uni", "researcher", 1)
    state.members[ME] = Member(ME, "site-a", "site", 2)
    state.tasks[entry.hash] = LoggedTask(
        hash=entry.hash,
        publisher=RESEARCHER.public_key,
        image=IMAGE,
        targets=tuple(entry.payload["targets"]),
        limits=dict(LIMITS),
        index=INDEX,
        algorithm=None,
    )
    site.stored[INDEX] = (stored or entry).raw
    ok = RunResult("ok", "", IMAGE, files={"output.json": OUTPUT}, logs=b"container log")
    containers = FakeContainers(result=result or ok)
    worker = TaskWorker(site, ALLOW_ALL, 1, containers=containers)
    return Setup(site, entry, containers, worker)


def test_an_allowed_task_runs_once_and_its_sealed_result_is_submitted(tmp_path: Path) -> None:
    s = setup(tmp_path)
    s.run_until(lambda: bool(s.site.submitted))
    assert len(s.containers.ran) == 1
    run_task = s.containers.ran[0]
    assert run_task.input == b"my input" and run_task.image == IMAGE
    result = s.result()
    assert result.author == ME and result.payload["status"] == "ok"
    assert result.payload["task"] == s.entry.hash
    assert OUTPUT not in result.raw and b"container log" not in result.raw  # sealed
    row = s.worker.journal.get(s.entry.hash)
    assert row is not None and row.state == SIGNED and row.result == result.raw
    assert s.site.cosigned >= 1  # the scan vouches for verified entries before acting
    # The log takes the result: the journal marks it done, and the task is never run or
    # answered again.
    held = Result(s.entry.hash, ME, "ok", IMAGE, b"", INDEX + 1, result.hash)
    s.site.state.results[result.hash] = held
    s.task.results[ME] = held
    s.site.submitted.clear()
    s.run_until(lambda: s.worker.journal.get(s.entry.hash).state == DONE, limit=3)  # type: ignore[union-attr]
    assert len(s.containers.ran) == 1 and not s.site.submitted
    s.worker.close()


def test_a_format_1_task_is_refused_without_running(tmp_path: Path) -> None:
    s = setup(tmp_path, entry=task_entry(format_1=True))
    s.run_until(lambda: bool(s.site.submitted))
    assert not s.containers.ran
    result = s.result()
    assert result.payload["status"] == "refused" and result.payload["reason"] == FORMAT_1_REFUSED


def test_a_run_cut_short_by_a_restart_is_answered_failed_never_run_again(tmp_path: Path) -> None:
    s = setup(tmp_path)
    s.worker.journal.start(s.entry.hash, INDEX)  # the daemon stopped while it ran
    s.run_until(lambda: bool(s.site.submitted))
    assert s.containers.removed == [s.entry.hash]  # its leftover container goes first
    assert not s.containers.ran
    result = s.result()
    assert result.payload["status"] == "failed" and result.payload["reason"] == INTERRUPTED


def test_a_publisher_revoked_while_the_task_ran_is_refused_and_nothing_kept(
    tmp_path: Path,
) -> None:
    s = setup(tmp_path)
    s.containers.during_run = s.revoke_publisher
    s.run_until(lambda: bool(s.site.submitted))
    payload = s.result().payload
    assert payload["status"] == "refused"
    assert "revoked at entry 8" in payload["reason"] and "timings" not in payload


def test_a_task_cancelled_while_it_ran_is_answered_cancelled(tmp_path: Path) -> None:
    s = setup(tmp_path)

    def cancel() -> None:
        s.task.cancelled_at = 7

    s.containers.during_run = cancel
    s.run_until(lambda: bool(s.site.submitted))
    payload = s.result().payload
    assert payload["status"] == "cancelled" and payload["reason"] == CANCELLED_WHILE_RUNNING


def test_a_site_revoked_while_the_task_ran_signs_nothing(tmp_path: Path) -> None:
    s = setup(tmp_path)

    def revoked() -> None:
        s.site.hub_says_revoked = 12

    s.containers.during_run = revoked
    s.run_until(lambda: not s.worker.active and bool(s.containers.ran), limit=3)
    assert not s.site.submitted
    row = s.worker.journal.get(s.entry.hash)
    assert row is not None and row.state == RUNNING  # nothing signed


def test_an_engine_that_cannot_run_the_task_answers_failed(tmp_path: Path) -> None:
    s = setup(tmp_path)
    s.containers.error = ExecutorError("the site's Docker engine is not reachable")
    s.run_until(lambda: bool(s.site.submitted))
    payload = s.result().payload
    assert payload["status"] == "failed"
    assert payload["reason"].startswith("the site could not run the task: the site's Docker")


def test_a_task_entry_altered_on_disk_halts_the_worker(tmp_path: Path) -> None:
    s = setup(tmp_path, stored=task_entry(data=("other",)))
    s.run_until(lambda: s.worker.status()["halted"] is not None, limit=3)
    assert "was altered on disk" in (s.worker.status()["halted"] or "")
    assert not s.containers.ran and not s.site.submitted


def test_a_halted_site_runs_nothing_and_does_not_cosign(tmp_path: Path) -> None:
    s = setup(tmp_path)
    s.site.halted = "the hub is distrusted (see evidence): executing nothing"
    s.run_until(lambda: False, limit=0.3)
    assert not s.containers.ran and not s.site.submitted and s.site.cosigned == 0
