"""Format 2 on live daemons (issue 14, breaks 1-3): inputs bound to their task, nothing
guessable in public, and one bad site never hides the honest answers.

Real processes, Docker engine and registry, as in ``test_workflow.py``. The malicious site
is hospital-c's own key signing results by hand while its daemon is stopped: exactly what a
site operator who modified the code could sign, and the hub sequences it (it is well formed).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ptm_p2p.client import Client
from ptm_p2p.errors import NetworkError, PtmError, StudyError
from ptm_p2p.ledger import crypto
from ptm_p2p.ledger.entry import (
    INPUT_BOUND_ELSEWHERE,
    INPUT_NOT_OURS,
    RESULT,
    TASK,
    Entry,
    TaskPayloadV2,
    digest_of_image,
    result_payload_v2,
    sealed_output,
    task_payload,
    task_payload_v2,
)
from ptm_p2p.network.hub_requests import fetch_log, submit
from ptm_p2p.site.worker import FORMAT_1_REFUSED

from .conftest import RESEARCHER, RESEARCHER_ORG, SITES, Study

pytestmark = [pytest.mark.docker, pytest.mark.network]

SUMMARY_PARAMS = {"data": "gbsg2", "columns": ["age", "time"], "categorical": ["horTh"]}
LIMITS = {"timeout_s": 120, "memory_mb": 256, "cpu_millis": 500}


def entry_at(client: Client, index: int) -> Entry:
    (raw,) = client.follower.store.raw_range(index, index + 1)
    return Entry.from_bytes(raw)


def ran(study: Study, site: str, index: int) -> bool:
    return f"task at entry {index}: running" in study.cluster.logs(site)


@pytest.fixture(scope="module")
def copier(study: Study) -> Iterator[Client]:
    """A second researcher of the same organisation (so every site's policy allows it)."""
    study.cluster.admit("researcher-2", "researcher", org=RESEARCHER_ORG, same_org=True)
    client = Client(study.cluster.root / "researcher-2", study.cluster.invitation_path)
    try:
        yield client
    finally:
        client.close()


def publish_with_input(
    client: Client, image: str, site: bytes, boxed: bytes, data: list[str]
) -> tuple[str, int]:
    """Sign and submit a format-2 task of ``client`` whose input for ``site`` is ``boxed``
    (bytes taken from another task); returns (task id, index)."""
    signer = client.home.signer
    made: list[Entry] = []

    def entries(chain: Any) -> list[Entry]:
        payload = task_payload_v2(
            signer, chain.seq + 1, image, {site: b"placeholder"}, LIMITS, data=data
        )
        payload["inputs"] = {site: boxed}
        made.append(chain.append(TASK, payload, int(time.time() * 1000)))
        return made[-1:]

    answer = submit(signer, client.invitation, entries, client.home.path)
    return made[0].hash.hex(), int(answer["indexes"][0])


# --- break 1: a sealed input is tied to its task and publisher ---------------------------------


def test_a_copied_input_is_refused_without_running_by_anyone_else_or_in_another_task(
    study: Study, copier: Client
) -> None:
    client, cluster = study.client, study.cluster
    summary = study.images["summary"]
    secret = {**SUMMARY_PARAMS, "secret": "s3cret-input"}
    original = client.publish(
        summary, to=["hospital-a"], input=json.dumps(secret).encode(), data=["gbsg2"]
    )
    assert client.wait(original.id, timeout=120).progress == {"hospital-a": "ok"}
    site_a = cluster.home("hospital-a").public_key
    boxed = entry_at(client, original.index).payload["inputs"][site_a]

    # Another researcher copies the unchanged bytes into a task of its own, same site, same
    # image and data label: the site refuses, runs nothing, and says nothing of the input.
    copy_id, copy_index = publish_with_input(copier, summary, site_a, boxed, ["gbsg2"])
    copier.sync()
    assert copier.wait(copy_id, timeout=120).progress == {"hospital-a": "refused"}
    answer = copier.results(copy_id)["hospital-a"]
    assert answer.reason == INPUT_NOT_OURS
    assert answer.output == b"" and b"s3cret" not in answer.output
    assert not study.containers_of(copy_id) and not ran(study, "hospital-a", copy_index)

    # The same publisher reusing its own box in a second task: bound to the first one.
    reuse_id, reuse_index = publish_with_input(client, summary, site_a, boxed, ["gbsg2"])
    assert client.wait(reuse_id, timeout=120).progress == {"hospital-a": "refused"}
    assert client.results(reuse_id)["hospital-a"].reason == INPUT_BOUND_ELSEWHERE
    assert not study.containers_of(reuse_id) and not ran(study, "hospital-a", reuse_index)
    # The original ran once, and only it.
    assert ran(study, "hospital-a", original.index)


# --- break 2: nothing in public confirms a guessed output -------------------------------------


def test_no_public_field_confirms_a_guess_of_the_output(study: Study) -> None:
    client = study.client
    task = study.summary_answered_by("hospital-b", SUMMARY_PARAMS)
    answer = client.results(task.id)["hospital-b"]
    plaintext = answer.output
    assert answer.json()["rows"] == len(study.shares["hospital-b"])
    result = entry_at(client, answer.index)
    task_entry = entry_at(client, task.index)
    # The guess an outsider would check: the plain SHA-256 of the true output (and of the
    # input). Neither appears anywhere in the log's bytes for this task.
    guesses = [crypto.sha256(plaintext), crypto.sha256(json.dumps(SUMMARY_PARAMS).encode())]
    for raw in (result.raw, task_entry.raw):
        for guess in guesses:
            assert guess not in raw
        assert plaintext not in raw
    payload = result.payload
    assert payload["format"] == 2
    assert "output_digest" not in payload and "log_digest" not in payload
    assert set(payload["output"]) == {"key", "commit", "size", "blob", "inline"}
    # The commitment opens only with the nonce the researcher holds.
    assert crypto.commit(answer.nonce, plaintext) == payload["output"]["commit"]
    assert crypto.commit(bytes(32), plaintext) != payload["output"]["commit"]
    # The site kept its container log and the log nonce: with them the researcher (who
    # holds the same nonce) checks the signed log commitment.
    journal = study.cluster.root / "hospital-b" / "tasks.db"
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        log, nonce, commit = db.execute(
            "SELECT log, log_nonce, log_commit FROM runs WHERE task = ?", (bytes.fromhex(task.id),)
        ).fetchone()
    assert nonce == answer.log_nonce and commit == payload["log_commit"]
    assert crypto.log_commit(answer.log_nonce, log) == payload["log_commit"]
    assert crypto.sha256(log) not in result.raw


def test_a_format_1_task_is_refused_without_running(study: Study) -> None:
    """Format-1 inputs are anonymous sealed boxes, copyable into anyone's task: the site
    no longer acts on them (an old log still replays and audits)."""
    client, cluster = study.client, study.cluster
    researcher = cluster.home(RESEARCHER)
    site_a = cluster.home("hospital-a").public_key
    payload = task_payload(
        study.images["summary"],
        {site_a: json.dumps(SUMMARY_PARAMS).encode()},
        LIMITS,
        data=["gbsg2"],
    )
    made: list[Entry] = []

    def entries(chain: Any) -> list[Entry]:
        made.append(chain.append(TASK, payload, int(time.time() * 1000)))
        return made

    index = int(
        submit(researcher.signer, cluster.invitation, entries, researcher.path)["indexes"][0]
    )
    task_id = made[0].hash.hex()
    assert client.wait(task_id, timeout=120).progress == {"hospital-a": "refused"}
    answer = client.results(task_id)["hospital-a"]
    assert answer.reason == FORMAT_1_REFUSED and answer.format == 2
    assert not study.containers_of(task_id) and not ran(study, "hospital-a", index)


# --- break 3: one bad site never blocks the others ---------------------------------------------


def evil_result(
    site: crypto.Signer, task: Entry, how: str, plaintext: bytes = b'{"rows": 1}'
) -> dict[str, Any]:
    """A well-formed, signed-able format-2 result that does not open as signed."""
    assert isinstance(task.typed_payload, TaskPayloadV2)
    if how == "other key":  # sealed to someone else than the publisher
        sealed = sealed_output(site, crypto.Signer.generate().public_key, plaintext, b"")
        output = sealed.output_map(inline=True)
    else:  # "wrong commitment": a commitment to another output
        sealed = sealed_output(site, task.author, plaintext, b"")
        output = sealed.output_map(inline=True)
        output["commit"] = crypto.commit(crypto.random_key(), b'{"rows": 2}')
    return result_payload_v2(
        task, "ok", output, sealed.log_commit, digest_of_image(task.typed_payload.image)
    )


def sign_as(study: Study, site: str, task: Entry, how: str) -> None:
    home = study.cluster.home(site)

    def entries(chain: Any) -> list[Entry]:
        return [chain.append(RESULT, evil_result(home.signer, task, how), int(time.time() * 1000))]

    # A one-shot client: on a loaded machine its first dial can fail; the forger tries
    # again (a failed head request submitted nothing, so a retry signs nothing twice).
    for attempt in range(5):
        try:
            submit(home.signer, study.cluster.invitation, entries, home.path)
            return
        except NetworkError:
            if attempt == 4:
                raise
            time.sleep(1.0)


class EvilSite:
    """Answers every new task that targets ``site`` with ``how``, from a thread, while the
    site's own daemon is stopped (so ``run_round`` can run in the test's thread)."""

    def __init__(self, study: Study, site: str, how: str, after: int) -> None:
        self.study, self.site, self.how, self.after = study, site, how, after
        self.answered: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        home = self.study.cluster.home(self.site)
        key = home.public_key
        while not self.stop.is_set():
            try:
                entries = fetch_log(home.signer, self.study.cluster.invitation)
            except PtmError:  # a connection that failed on a loaded machine: try again
                time.sleep(0.5)
                continue
            answered = {e.payload["task"] for e in entries if e.kind == RESULT and e.author == key}
            for index, entry in enumerate(entries):
                if (
                    index >= self.after
                    and entry.kind == TASK
                    and key in entry.payload["targets"]
                    and entry.hash not in answered
                ):
                    sign_as(self.study, self.site, entry, self.how)
                    self.answered.append(entry.hash.hex())
            time.sleep(0.5)


@pytest.fixture
def hospital_c_stopped(study: Study) -> Iterator[Callable[[str], EvilSite]]:
    cluster = study.cluster
    assert cluster.stop("hospital-c") == 0
    evils: list[EvilSite] = []

    def evil(how: str) -> EvilSite:
        site = EvilSite(study, "hospital-c", how, study.client.sync())
        site.thread.start()
        evils.append(site)
        return site

    try:
        yield evil
    finally:
        for site in evils:
            site.stop.set()
            site.thread.join(timeout=30)
        cluster.start_site("hospital-c")


def ptm(study: Study, *args: str) -> subprocess.CompletedProcess[str]:
    home = str(study.cluster.root / RESEARCHER)
    invite = str(study.cluster.invitation_path)
    return subprocess.run(
        [sys.executable, "-m", "ptm_p2p.cli", *args, "--home", home, "--invitation", invite],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_site_sealing_to_another_key_is_named_faulty_and_the_others_answer(
    study: Study, hospital_c_stopped: Callable[[str], EvilSite], tmp_path: Path
) -> None:
    client = study.client
    evil = hospital_c_stopped("other key")
    task = client.publish(
        study.images["summary"],
        to="all",
        input=json.dumps(SUMMARY_PARAMS).encode(),
        data=["gbsg2"],
    )
    view = client.wait(task.id, timeout=120)
    assert view.progress == {"hospital-a": "ok", "hospital-b": "ok", "hospital-c": "ok"}
    assert evil.answered == [task.id]
    answers = client.results(task.id)
    for site in ("hospital-a", "hospital-b"):
        assert answers[site].status == "ok"
        assert answers[site].json()["rows"] == len(study.shares[site])
    bad = answers["hospital-c"]
    assert (bad.status, bad.fault, bad.signed_status) == ("faulty", "key box", "ok")
    assert bad.output == b"" and "does not open" in (bad.reason or "")

    # `ptm results`: one row per site, the faulty one named, exit 0 for the task ...
    shown = ptm(study, "results", task.id)
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if "hospital-c" in line)
    assert "faulty" in row and "key box" in row
    assert any("hospital-a" in line and " ok " in line for line in shown.stdout.splitlines())
    # ... and 1 when the user asked for that site.
    assert ptm(study, "results", task.id, "--site", "hospital-c").returncode == 1
    assert ptm(study, "results", task.id, "--site", "hospital-a").returncode == 0

    # The honest answers can be proven to an auditor; the proof fails if altered.
    proof = tmp_path / "proof"
    proved = ptm(study, "results", task.id, "--prove", str(proof))
    assert proved.returncode == 0, proved.stderr
    assert sorted(p.name for p in proof.iterdir() if p.is_dir()) == ["hospital-a", "hospital-b"]
    ledger = str(study.cluster.root / RESEARCHER)
    check = [sys.executable, "-m", "ptm_p2p.cli", "ledger", "check-proof", str(proof)]
    checked = subprocess.run([*check, "--ledger", ledger], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(": ok:") == 2
    output = proof / "hospital-a" / "output"
    output.write_bytes(output.read_bytes().replace(b"rows", b"ROWS"))
    tampered = subprocess.run(check, capture_output=True, text=True)
    assert tampered.returncode == 1 and "hospital-a: FAILED" in tampered.stdout


def test_run_round_names_only_the_site_with_a_wrong_commitment_and_keeps_the_honest_answers(
    study: Study, hospital_c_stopped: Callable[[str], EvilSite]
) -> None:
    hospital_c_stopped("wrong commitment")
    with pytest.raises(StudyError) as caught:
        study.client.run_round(
            study.images["summary"],
            {s: SUMMARY_PARAMS for s in SITES},
            data=["gbsg2"],
            timeout=120,
        )
    error = caught.value
    assert set(error.sites) == {"hospital-c"}
    assert "faulty" in error.sites["hospital-c"] and "commitment" in error.sites["hospital-c"]
    assert "hospital-a" not in str(error) and "hospital-b" not in str(error)
    assert set(error.answers) == {"hospital-a", "hospital-b"}
    for site, answer in error.answers.items():
        assert answer.json()["rows"] == len(study.shares[site])
