"""Cancel entries, task data labels and result timings: format and replay rules (rule 7)."""

from __future__ import annotations

import pytest

from ptm_p2p.errors import DecodeError, RuleError, UnknownTaskError
from ptm_p2p.ledger import entry as E
from ptm_p2p.ledger.crypto import Signer, sha256
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.ledger.replay import replay

from .test_replay import DIGEST, IMAGE, LIMITS, Collab, fails


def cancel(c: Collab, task: Entry, by: Signer | None = None, reason: str | None = None) -> Entry:
    return c.add(by or c.researcher, E.CANCEL, E.cancel_payload(task.hash, reason))


def test_a_publisher_cancels_its_task_and_sites_answer_cancelled() -> None:
    c = Collab().start()
    task = c.task(["site-a", "site-b"])
    c.result("site-a", task)
    cancelled = cancel(c, task, reason="wrong covariates")
    c.result("site-b", task, status="cancelled")
    state = replay(c.log)
    logged = state.tasks[task.hash]
    assert logged.cancelled_at == c.log.index(cancelled)
    assert {r.status for r in logged.results.values()} == {"ok", "cancelled"}
    assert logged.done
    assert state.kind_counts["cancel"] == 1
    assert Entry.from_bytes(cancelled.raw).payload == {
        "task": task.hash,
        "reason": "wrong covariates",
    }


def test_only_the_publisher_cancels() -> None:
    c = Collab().start()
    task = c.task(["site-a"])
    cancel(c, task, by=c.sites["site-a"])
    fails(c.log, len(c.log) - 1, "site-a", RuleError, "only its publisher may cancel")


def test_a_task_is_cancelled_once_and_only_while_open() -> None:
    c = Collab().start()
    task = c.task(["site-a"])
    cancel(c, task)
    cancel(c, task)
    fails(c.log, len(c.log) - 1, "university", RuleError, "already cancelled")

    c = Collab().start()
    task = c.task(["site-a"])
    c.result("site-a", task)
    cancel(c, task)
    fails(c.log, len(c.log) - 1, "university", RuleError, "every result already")


def test_cancelling_an_unknown_task_and_claiming_cancelled_without_a_cancel_fail() -> None:
    c = Collab().start()
    c.add(c.researcher, E.CANCEL, E.cancel_payload(b"\x01" * 32))
    fails(c.log, len(c.log) - 1, "university", UnknownTaskError, "not an earlier task")

    c = Collab().start()
    task = c.task(["site-a"])
    c.result("site-a", task, status="cancelled")
    fails(c.log, len(c.log) - 1, "site-a", RuleError, "was not cancelled")


def test_task_data_labels_and_result_timings_round_trip_and_are_checked() -> None:
    c = Collab().start()
    site = c.sites["site-a"].public_key
    payload = E.task_payload(IMAGE, {site: b"{}"}, LIMITS, data=["gbsg2", "labs.v2"])
    task = c.add(c.researcher, E.TASK, payload)
    assert Entry.from_bytes(task.raw).payload["data"] == ["gbsg2", "labs.v2"]
    timings = {"prepare_ms": 12, "run_ms": 340, "total_ms": 360}
    result = c.add(
        c.sites["site-a"],
        E.RESULT,
        E.result_payload(task, "ok", b"out", DIGEST, sha256(b"log"), timings=timings),
    )
    decoded = Entry.from_bytes(result.raw).payload
    assert decoded["timings"] == timings
    assert decoded["output_digest"] == sha256(b"out")
    assert c.researcher.open_sealed(decoded["output"]) == b"out"
    replay(c.log)

    for bad, why in [
        (["../etc"], "data label"),
        (["a", "a"], "twice"),
        ([], "1..16"),
        ("gbsg2", "1..16"),
    ]:
        with pytest.raises(DecodeError, match=why):
            Entry.create(c.researcher, E.TASK, 9, b"\0" * 32, 0, {**payload, "data": bad})
    for bad_timings, why in [({"wall_ms": 1}, "timings must be a map"), ({"run_ms": -1}, "whole")]:
        with pytest.raises(DecodeError, match=why):
            Entry.create(
                c.sites["site-a"],
                E.RESULT,
                9,
                b"\0" * 32,
                0,
                {**E.result_payload(task, "ok", b"", DIGEST, sha256(b"")), "timings": bad_timings},
            )


def test_an_image_tag_gets_a_short_message_that_says_what_to_do() -> None:
    c = Collab().start()
    site = c.sites["site-a"].public_key
    with pytest.raises(DecodeError) as info:
        E.Entry.create(
            c.researcher,
            E.TASK,
            1,
            E.ZERO_HASH,
            0,
            E.task_payload("127.0.0.1:5000/ptm/summary:latest", {site: b"{}"}, LIMITS),
        )
    message = str(info.value)
    assert "name the image by digest (REPO@sha256:…)" in message
    assert "ptm publish` resolves tags" in message
    assert len(message) < 200
