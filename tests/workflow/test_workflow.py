"""Tasks end to end: publish → site daemons verify and execute on their own → sealed,
signed results → the researcher combines. Real processes, Docker engine and registry."""

from __future__ import annotations

import json
import math
import signal
import time

import pandas as pd
import pytest

from ptm_p2p.algorithms.summary import combine
from ptm_p2p.dev.cluster import wait_for
from ptm_p2p.errors import LedgerError, PtmError, StudyError
from ptm_p2p.ledger.entry import TASK, Entry, open_input_v2, task_payload
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.network.hub_requests import submit_one

from .conftest import RESEARCHER, SITES, Study

pytestmark = [pytest.mark.docker, pytest.mark.network]

NUMERIC = ("age", "tsize", "pnodes", "time")
CATEGORICAL = ("horTh", "menostat", "tgrade")
SUMMARY_PARAMS = {
    "data": "gbsg2",
    "columns": [*NUMERIC, *CATEGORICAL],
    "categorical": list(CATEGORICAL),
}


def entry_at(study: Study, index: int) -> Entry:
    """An entry of the researcher's verified copy."""
    (raw,) = study.client.follower.store.raw_range(index, index + 1)
    return Entry.from_bytes(raw)


def running_at(study: Study, site: str, task_id: str) -> bool:
    status = study.cluster.status(site)
    active = (status.get("tasks") or {}).get("active") or []
    return any(a["task"] == task_id and a["state"] == "running" for a in active)


def test_three_sites_answer_ok_and_the_pooled_summary_equals_the_central_one(
    study: Study,
) -> None:
    client = study.client
    task = client.publish(
        study.images["summary"],
        to="all",
        input=json.dumps(SUMMARY_PARAMS).encode(),
        data=["gbsg2"],
        timeout_s=120,
    )
    view = client.wait(task.id, timeout=120)
    assert view.done and set(view.progress.values()) == {"ok"}, view.progress
    answers = client.results(task.id)
    assert sorted(answers) == sorted(SITES)
    digest = study.images["summary"].split("@")[1]
    for answer in answers.values():
        assert answer.status == "ok" and answer.image_digest == digest
        assert (
            answer.timings["run_ms"] > 0 and answer.timings["total_ms"] >= answer.timings["run_ms"]
        )
    pooled = combine([a.json() for a in answers.values()])
    central = pd.concat(study.shares.values())
    assert pooled["patients"] == len(central) == 686
    for column in NUMERIC:
        assert math.isclose(pooled[f"mean {column}"], central[column].mean(), rel_tol=1e-12)
        assert math.isclose(pooled[f"sd {column}"], central[column].std(ddof=1), rel_tol=1e-9)
    for column in CATEGORICAL:
        for category, count in central[column].value_counts().items():
            assert pooled[f"{column}={category}"] == count


def test_the_hub_and_a_non_target_site_cannot_open_inputs_or_outputs(study: Study) -> None:
    client = study.client
    task = client.publish(
        study.images["summary"],
        to=["hospital-a", "hospital-b"],
        input=json.dumps(SUMMARY_PARAMS).encode(),
        data=["gbsg2"],
    )
    assert client.wait(task.id, timeout=120).done
    answers = client.results(task.id)
    assert set(answers) == {"hospital-a", "hospital-b"}
    entry = entry_at(study, task.index)
    homes = {name: study.cluster.home(name) for name in ("hub", "hospital-a", "hospital-c")}
    researcher = study.cluster.home(RESEARCHER).public_key
    site_a = homes["hospital-a"].public_key
    # Format 2: the input is boxed from the researcher to hospital-a and bound to this task.
    assert json.loads(open_input_v2(homes["hospital-a"].signer, entry)) == SUMMARY_PARAMS
    boxed_input = entry.payload["inputs"][site_a]
    result = entry_at(study, answers["hospital-a"].index)
    key_box = result.payload["output"]["key"]
    for outsider in ("hub", "hospital-c"):
        with pytest.raises(LedgerError):
            homes[outsider].signer.box_open(researcher, boxed_input)
        with pytest.raises(LedgerError):
            homes[outsider].signer.box_open(site_a, key_box)
        with pytest.raises(LedgerError):
            homes[outsider].signer.open_sealed(boxed_input)


def test_an_image_outside_a_sites_policy_is_refused_with_the_reason(study: Study) -> None:
    client = study.client
    task = client.publish(
        study.images["testing/probe"], to="all", input=b'{"action": "echo"}', timeout_s=60
    )
    view = client.wait(task.id, timeout=120)
    assert view.progress == {"hospital-a": "ok", "hospital-b": "ok", "hospital-c": "refused"}
    refused = client.results(task.id)["hospital-c"]
    assert "not allowed" in (refused.reason or "") or "policy" in (refused.reason or "")
    assert not study.containers_of(task.id)
    with pytest.raises(StudyError, match="hospital-c: refused"):
        client.run_round(study.images["testing/probe"], {s: {"action": "echo"} for s in SITES})


def test_overstaying_the_timeout_is_answered_timeout(study: Study) -> None:
    client = study.client
    task = study.sleeper("hospital-a", 60, timeout_s=2)
    view = client.wait(task.id, timeout=60)
    assert view.progress == {"hospital-a": "timeout"}
    assert "wall-clock limit of 2 s" in (client.results(task.id)["hospital-a"].reason or "")
    assert not study.containers_of(task.id)


def test_a_running_task_is_stopped_by_a_cancel(study: Study) -> None:
    client = study.client
    task = study.sleeper("hospital-b", 120, timeout_s=300)
    wait_for("the task to run", lambda: running_at(study, "hospital-b", task.id), timeout=60)
    started = time.monotonic()
    client.cancel(task.id, reason="wrong parameters")
    view = client.wait(task.id, timeout=60)
    assert view.progress == {"hospital-b": "cancelled"} and view.cancelled
    assert time.monotonic() - started < 30  # not the 120 s the container would have slept
    answer = client.results(task.id)["hospital-b"]
    assert "stopped" in (answer.reason or "")
    wait_for("the container to go", lambda: not study.containers_of(task.id), timeout=30)


def test_a_site_that_was_down_runs_a_task_when_it_returns_and_skips_a_cancelled_one(
    study: Study,
) -> None:
    client, cluster = study.client, study.cluster
    assert cluster.stop("hospital-c") == 0
    try:
        later = client.publish(
            study.images["summary"],
            to=["hospital-c"],
            input=json.dumps(SUMMARY_PARAMS).encode(),
            data=["gbsg2"],
        )
        withdrawn = client.publish(
            study.images["summary"],
            to=["hospital-c"],
            input=json.dumps(SUMMARY_PARAMS).encode(),
            data=["gbsg2"],
        )
        client.cancel(withdrawn.id)
        time.sleep(1)
        assert client.task(later.id).progress == {"hospital-c": "not seen"}
    finally:
        cluster.start_site("hospital-c")
    assert client.wait(later.id, timeout=120).progress == {"hospital-c": "ok"}
    assert client.wait(withdrawn.id, timeout=120).progress == {"hospital-c": "cancelled"}
    assert client.results(withdrawn.id)["hospital-c"].reason == "cancelled before it started"
    log = cluster.logs("hospital-c")
    assert f"task at entry {withdrawn.index}: running" not in log


def test_a_site_killed_mid_run_answers_exactly_once_after_restart(study: Study) -> None:
    client, cluster = study.client, study.cluster
    task = study.sleeper("hospital-a", 300, timeout_s=600)
    wait_for("the task to run", lambda: running_at(study, "hospital-a", task.id), timeout=60)
    wait_for("its container", lambda: study.containers_of(task.id), timeout=30)
    cluster.stop("hospital-a", signal.SIGKILL)
    assert study.containers_of(task.id), "the killed daemon's container is still there"
    cluster.start_site("hospital-a")
    view = client.wait(task.id, timeout=120)
    assert view.progress == {"hospital-a": "failed"}
    assert "interrupted" in (client.results(task.id)["hospital-a"].reason or "")
    wait_for("no container left", lambda: not study.containers_of(task.id), timeout=30)
    # Exactly one result for the task in the log, also after more rounds of syncing.
    time.sleep(2)
    client.sync()
    results = [
        e
        for e in (entry_at(study, i) for i in range(task.index + 1, client.follower.replica.size))
        if e.kind == "result" and e.payload["task"] == bytes.fromhex(task.id)
    ]
    assert len(results) == 1


def test_a_publisher_that_is_not_an_admitted_researcher_never_gets_a_task_run(
    study: Study,
) -> None:
    client, cluster = study.client, study.cluster
    site_keys = [cluster.home(s).public_key for s in SITES]
    stranger = cluster.home("stranger")  # a key nobody admitted
    payload = task_payload(
        study.images["summary"],
        {k: b"{}" for k in site_keys},
        {"timeout_s": 60, "memory_mb": 256, "cpu_millis": 500},
    )
    with pytest.raises(PtmError, match="not a member"):
        submit_one(stranger.signer, cluster.invitation, TASK, payload)
    # Handed to a site directly, bypassing the hub: a site accepts entries only under a
    # hub-signed checkpoint, so it has nothing to take them with.
    site_addr = (cluster.root / "hospital-a" / "listen.addr").read_text().strip()
    from ptm_p2p.network.invitation import Invitation

    site_key = cluster.home("hospital-a").public_key
    direct = Invitation(site_addr, site_key, cluster.invitation.origin)
    with pytest.raises(PtmError):
        submit_one(stranger.signer, direct, TASK, payload)

    # A revoked researcher: admitted, revoked, then refused by the hub.
    cluster.admit("researcher-2", "researcher", org="uni-2")
    study.revoke("researcher-2")
    with pytest.raises(PtmError, match="revoked"):
        submit_one(cluster.home("researcher-2").signer, cluster.invitation, TASK, payload)
    before = client.sync()
    assert all(
        t.publisher == cluster.home(RESEARCHER).public_key for t in client.state.tasks.values()
    )
    assert before == client.follower.replica.size


def test_a_task_entry_not_under_a_verified_checkpoint_is_never_executed(study: Study) -> None:
    """A valid, signed task appended to a site's ledger file behind its back (no hub
    checkpoint covers it): the site refuses to start on that copy, so nothing runs."""
    import shutil

    from ptm_p2p.ledger.entry import AuthorChain

    client, cluster = study.client, study.cluster
    cluster.wait_replicated(["hospital-c"], client.sync())
    assert cluster.stop("hospital-c") == 0
    home = cluster.root / "hospital-c"
    backup = home.parent / "hospital-c-ledger.backup"
    shutil.copy(home / "ledger.db", backup)
    try:
        store = SqliteStore(home / "ledger.db")
        researcher = cluster.home(RESEARCHER)
        seq, prev = client.state.heads[researcher.public_key]
        chain = AuthorChain(researcher.signer, seq, prev)
        payload = task_payload(
            study.images["summary"],
            {cluster.home("hospital-c").public_key: json.dumps(SUMMARY_PARAMS).encode()},
            {"timeout_s": 60, "memory_mb": 256, "cpu_millis": 500},
            data=["gbsg2"],
        )
        sneaked = chain.append(TASK, payload, int(time.time() * 1000))
        assert store.size() == client.follower.replica.size
        store.append([sneaked])  # a well-formed entry the hub never signed a root over
        store.close()
        cluster.start_site("hospital-c", wait=False)
        wait_for("hospital-c to refuse", lambda: not cluster.alive("hospital-c"), timeout=30)
        error = cluster.status("hospital-c").get("error") or ""
        assert "never verified against the hub" in error, error
        assert not study.containers_of(sneaked.hash.hex())
    finally:
        shutil.move(backup, home / "ledger.db")
        for suffix in ("-wal", "-shm"):
            (home / f"ledger.db{suffix}").unlink(missing_ok=True)
        cluster.start_site("hospital-c")


def test_a_tampered_ledger_copy_executes_nothing_and_says_why(study: Study) -> None:
    client, cluster = study.client, study.cluster
    first = study.summary_answered_by("hospital-b", SUMMARY_PARAMS)
    assert cluster.stop("hospital-b") == 0
    path = cluster.root / "hospital-b" / "ledger.db"
    task_index = first.index  # edit the stored task entry
    store = SqliteStore(path)
    raw = bytearray(store.raw_range(task_index, task_index + 1)[0])
    store.close()
    raw[len(raw) // 2] ^= 0x01
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("UPDATE entries SET raw = ? WHERE idx = ?", (bytes(raw), task_index))
    cluster.start_site("hospital-b", wait=False)
    wait_for("hospital-b to stop", lambda: not cluster.alive("hospital-b"), timeout=30)
    status = cluster.status("hospital-b")
    assert f"entry {task_index}" in (status.get("error") or ""), status
    task = client.publish(
        study.images["summary"],
        to=["hospital-b"],
        input=json.dumps(SUMMARY_PARAMS).encode(),
        data=["gbsg2"],
    )
    time.sleep(3)
    assert client.task(task.id).progress == {"hospital-b": "not seen"}
    assert not study.containers_of(task.id)


def test_the_researchers_cli_publishes_waits_and_opens_results(study: Study) -> None:
    import subprocess
    import sys

    home = str(study.cluster.root / RESEARCHER)
    invite = str(study.cluster.invitation_path)
    base = [sys.executable, "-m", "ptm_p2p.cli"]
    summary_tag = study.repo("summary") + ":latest"
    published = subprocess.run(
        [
            *base,
            "publish",
            summary_tag,
            "--to",
            "hospital-a,hospital-c",
            "--data",
            "gbsg2",
            "--param",
            "data=gbsg2",
            "--param",
            'categorical=["horTh"]',
            "--home",
            home,
            "--invitation",
            invite,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert published.returncode == 0, published.stderr
    task_id = published.stdout.strip()
    assert len(task_id) == 64
    waited = subprocess.run(
        [*base, "wait", task_id[:12], "--timeout", "120", "--home", home, "--invitation", invite],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert waited.returncode == 0, waited.stderr
    assert "hospital-a: ok" in waited.stdout and "hospital-c: ok" in waited.stdout
    shown = subprocess.run(
        [*base, "results", task_id, "--json", "--home", home, "--invitation", invite],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    # The tag was resolved at publish time: the digest signed is the one the registry served.
    assert data["image"] == study.images["summary"]
    assert data["results"]["hospital-a"]["output"]["rows"] == len(study.shares["hospital-a"])
    listed = subprocess.run(
        [*base, "tasks", "--mine", "--json", "--home", home, "--invitation", invite],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert task_id in listed.stdout
    missing = subprocess.run(
        [*base, "results", "ffff0000", "--home", home, "--invitation", invite],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "no task with id" in missing.stderr
