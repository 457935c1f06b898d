"""A site under stress from its own side: revocations mid-task, a SIGKILL, a failing journal.

Issue 14, breaks 5-7, each on the live collaboration of ``conftest.start_study`` (its own
cluster, so that revoking members and breaking files leaves other modules alone):

* a publisher revoked while its task runs: the container is stopped, the answer is
  ``refused`` naming the revocation entry, and nothing it computed is sealed to it;
* a site revoked while it runs a task: the container is stopped, the site signs nothing
  more and ``ptm status`` says why;
* a site SIGKILLed mid-task: its decrypted input lived in memory only, and the restarted
  daemon removed the task folder and its output mount before anything else;
* ``HOME/tasks.db`` refusing writes: the site backs off (a handful of log lines, not
  thousands), ``ptm status`` shows the local fault, and the task runs once writes work.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ptm_p2p.client import Client
from ptm_p2p.dev.cluster import wait_for
from ptm_p2p.dev.stack import Stack
from ptm_p2p.errors import NotAMember
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.network.home_status import render

from .conftest import RESEARCHER_ORG, Study, start_study

pytestmark = [pytest.mark.docker, pytest.mark.network]

SUMMARY_PARAMS = {"data": "gbsg2", "columns": ["age", "time"], "categorical": []}


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> Iterator[Study]:
    yield from start_study(tmp_path_factory.mktemp("robust"), stack)


def running_at(study: Study, site: str, task_id: str) -> bool:
    status = study.cluster.status(site)
    active = (status.get("tasks") or {}).get("active") or []
    return any(a["task"] == task_id and a["state"] == "running" for a in active)


def sleeper(study: Study, client: Client, site: str, seconds: int) -> Any:
    """A probe task that sleeps ``seconds`` at ``site``, once its container runs."""
    task = study.sleeper(site, seconds, timeout_s=seconds * 2, client=client)
    wait_for("the task to run", lambda: running_at(study, site, task.id), timeout=60)
    wait_for("its container", lambda: study.containers_of(task.id), timeout=30)
    return task


def revoke(study: Study, name: str) -> int:
    """``ptm collab revoke`` of ``name``'s key; the index of the revocation entry."""
    key = study.cluster.home(name).public_key
    study.revoke(name)
    study.client.sync()
    revoked_at = study.client.state.members[key].revoked_at
    assert revoked_at is not None
    return revoked_at


def mounts_at_or_under(folder: Path) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split(" ")[4].replace("\\040", " ")
        if point == str(folder) or point.startswith(f"{folder}/"):
            points.append(point)
    return points


def filesystem_of(path: Path) -> str:
    best = (-1, "?")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        point = Path(fields[4].replace("\\040", " "))
        if (point == path or point in path.parents) and len(point.parts) >= best[0]:
            best = (len(point.parts), fields[fields.index("-") + 1])
    return best[1]


# --- break 5: revocation reaches running work ------------------------------------------------


def test_a_publisher_revoked_while_its_task_runs_is_stopped_and_refused(study: Study) -> None:
    """Before: the container went on, and the site signed ``ok`` sealed to the revoked key."""
    cluster = study.cluster
    cluster.admit("researcher-r", "researcher", org=RESEARCHER_ORG, same_org=True)
    client = Client(cluster.root / "researcher-r", cluster.invitation_path)
    try:
        task = sleeper(study, client, "hospital-a", 90)
        started = time.monotonic()
        revoked_at = revoke(study, "researcher-r")
        view = study.client.wait(task.id, timeout=45)
        assert view.progress == {"hospital-a": "refused"}, view.progress
        assert time.monotonic() - started < 45  # not the 90 s the container would sleep
        wait_for("the container to go", lambda: not study.containers_of(task.id), timeout=30)
        # The revoked key reads nothing more (members only); the public answer, read by a
        # member, is a refusal naming the revocation, with an empty output.
        with pytest.raises(NotAMember, match=f"revoked at log index {revoked_at}"):
            client.sync()
        result = study.client.state.tasks[bytes.fromhex(task.id)].results
        (answer,) = result.values()
        assert answer.status == "refused"
        (raw,) = study.client.follower.store.raw_range(answer.index, answer.index + 1)
        payload = Entry.from_bytes(raw).payload
        assert f"revoked at entry {revoked_at}" in payload.get("reason", ""), payload
    finally:
        client.close()


def test_a_site_revoked_while_it_runs_a_task_stops_it_and_signs_nothing(study: Study) -> None:
    """Before: the container ran to its end and the site tried to sign a result."""
    cluster = study.cluster
    site = "hospital-d"
    cluster.home(site)
    cluster.configure_site(site, images=[study.repo("testing/probe")], publishers=[RESEARCHER_ORG])
    cluster.start_site(site)
    cluster.admit(site, "site")
    try:
        task = sleeper(study, study.client, site, 90)
        revoked_at = revoke(study, site)
        wait_for("the container to go", lambda: not study.containers_of(task.id), timeout=30)

        def halted() -> str:
            return str((cluster.status(site).get("tasks") or {}).get("halted") or "")

        # status.json is rewritten every second or so: wait for the write after the kill.
        expected = f"this site's key was revoked at entry {revoked_at}"
        wait_for("the halt in ptm status", lambda: expected in halted(), timeout=15)
        status = cluster.status(site)
        assert "EXECUTION   HALTED: this site's key was revoked" in render(status)
        time.sleep(3)  # time to answer, were it (wrongly) going to
        study.client.sync()
        logged = study.client.state.tasks[bytes.fromhex(task.id)]
        assert cluster.home(site).public_key not in logged.results  # it signed nothing
        assert "not answered" in cluster.logs(site)
    finally:
        cluster.stop(site)


# --- break 6: nothing decrypted survives a crash ------------------------------------------


def test_a_sigkilled_site_leaves_no_decrypted_input_behind(study: Study) -> None:
    """Before: the input was written to /tmp (a disk) and, with the output tmpfs, stayed
    there after a SIGKILL and a restart."""
    client, cluster = study.client, study.cluster
    task = sleeper(study, client, "hospital-b", 300)
    (container,) = study.containers_of(task.id)
    mounts = {m["Destination"]: Path(m["Source"]) for m in container.attrs["Mounts"]}
    input_file, output = mounts["/ptm/input"], mounts["/ptm/output"]
    folder = input_file.parent
    assert output.parent == folder
    assert json.loads(input_file.read_bytes()) == {"action": "sleep", "seconds": 300}
    assert filesystem_of(input_file) in ("tmpfs", "ramfs"), (input_file, filesystem_of(input_file))
    assert filesystem_of(output) in ("tmpfs", "ramfs")

    cluster.stop("hospital-b", signal.SIGKILL)
    assert folder.exists(), "the killed daemon cleaned nothing (it cannot)"
    before = len(cluster.logs("hospital-b"))
    cluster.start_site("hospital-b")
    assert not folder.exists(), f"{folder} (a decrypted input) survived the restart"
    assert not mounts_at_or_under(folder)
    log = cluster.logs("hospital-b")[before:]
    swept = log.find(f"interrupted tasks): {folder.name}")
    assert swept >= 0, log
    assert swept < log.find("listening on"), "the sweep came after the daemon started"
    view = client.wait(task.id, timeout=120)
    assert view.progress == {"hospital-b": "failed"}
    assert "interrupted" in (client.results(task.id)["hospital-b"].reason or "")
    wait_for("no container left", lambda: not study.containers_of(task.id), timeout=30)


# --- break 7: a failing tasks.db backs off and shows ---------------------------------------


def _arm_journal_fault(path: Path) -> None:
    """Make every later write of the site's task journal fail (as a read-only file does)."""
    with sqlite3.connect(path, timeout=10) as db:
        for op in ("INSERT", "UPDATE"):
            db.execute(
                f"CREATE TRIGGER injected_{op.lower()}_fault BEFORE {op} ON runs BEGIN "
                "SELECT RAISE(ABORT, 'attempt to write a readonly database (injected by the "
                "test)'); END"
            )


def _disarm_journal_fault(path: Path) -> None:
    with sqlite3.connect(path, timeout=10) as db:
        for op in ("insert", "update"):
            db.execute(f"DROP TRIGGER IF EXISTS injected_{op}_fault")


def test_an_unwritable_task_journal_backs_off_and_shows_in_status(study: Study) -> None:
    """Before: ~2,400 identical ERROR lines a second and `ptm status` showed "1 queued"."""
    client, cluster = study.client, study.cluster
    site = "hospital-c"
    journal = cluster.root / site / "tasks.db"
    _arm_journal_fault(journal)
    try:
        before = len(cluster.logs(site))
        task = client.publish(
            study.images["summary"],
            to=[site],
            input=json.dumps(SUMMARY_PARAMS).encode(),
            data=["gbsg2"],
        )
        time.sleep(8)  # the site sees the task within 1-2 s, then fails to journal its run
        lines = [line for line in cluster.logs(site)[before:].splitlines() if "tasks.db" in line]
        # Pauses of 0.5, 1, 2, 4… s (± 25 %): a handful of steps, one line each.
        assert 1 <= len(lines) <= 8, (len(lines), lines[:3])
        status = cluster.status(site)
        assert "readonly" in (status.get("local_fault") or ""), status
        assert "LOCAL FAULT cannot write tasks.db" in render(status)
        assert client.task(task.id).progress[site] != "ok"
    finally:
        _disarm_journal_fault(journal)
    assert client.wait(task.id, timeout=60).progress == {site: "ok"}
    wait_for("the fault to clear", lambda: not cluster.status(site).get("local_fault"), timeout=30)
    assert "tasks.db works again" in cluster.logs(site)
    assert "Traceback" not in cluster.logs(site)
