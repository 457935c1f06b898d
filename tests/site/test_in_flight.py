"""The rules for a task in flight and its answer (``decide.stops``, ``after_run``,
``before_sealing``, ``before_signing``) and where a result continues the site's chain
(``answers.chain_head``): pure functions, checked on a hand-built replayed state."""

from __future__ import annotations

from site_fakes import ME, OTHER_SITE, RESEARCHER, task_entry

from ptm_p2p.ledger.crypto import sha256
from ptm_p2p.ledger.replay import LoggedTask, Member, Result, State
from ptm_p2p.site.answers import chain_head
from ptm_p2p.site.decide import (
    CANCELLED_WHILE_RUNNING,
    KILL_RETRY,
    Active,
    Answer,
    after_run,
    before_sealing,
    before_signing,
    my_open_tasks,
    revoked_reason,
    stops,
)
from ptm_p2p.site.journal import SIGNED, Run

ENTRY = task_entry()


def state_with_task(index: int = 5) -> tuple[State, LoggedTask]:
    state = State()
    state.members[RESEARCHER.public_key] = Member(RESEARCHER.public_key, "uni", "researcher", 1)
    state.members[ME] = Member(ME, "site-a", "site", 2)
    task = LoggedTask(
        hash=ENTRY.hash,
        publisher=RESEARCHER.public_key,
        image="img",
        targets=(ME,),
        limits={},
        index=index,
        algorithm=None,
    )
    state.tasks[task.hash] = task
    return state, task


def revoke(state: State, key: bytes, at: int) -> None:
    old = state.members[key]
    state.members[key] = Member(key, old.org, old.role, old.admitted_at, at)


def test_only_running_tasks_reached_by_a_cancel_or_revocation_are_killed_and_again_later() -> None:
    state, task = state_with_task()
    active = {task.hash: Active(task, state="running")}
    assert stops(state, active, ME, None, 100.0) == []  # nothing reached it
    task.cancelled_at = 9
    assert stops(state, active, ME, None, 100.0) == [task.hash]
    assert active[task.hash].cancel
    assert stops(state, active, ME, None, 100.0 + KILL_RETRY / 2) == []  # killed just now
    assert stops(state, active, ME, None, 100.0 + KILL_RETRY * 2) == [task.hash]  # again


def test_a_queued_task_reached_by_a_revocation_is_marked_not_killed() -> None:
    state, task = state_with_task()
    active = {task.hash: Active(task)}  # queued: no container yet
    revoke(state, RESEARCHER.public_key, 8)
    assert stops(state, active, ME, None, 100.0) == []
    assert active[task.hash].revoked_at == 8


def test_a_revoked_site_kills_all_its_running_tasks() -> None:
    state, task = state_with_task()
    active = {task.hash: Active(task, state="running")}
    assert stops(state, active, ME, 12, 100.0) == [task.hash]  # the hub's refusal says so


def test_after_the_run_a_cancel_wins_and_a_revoked_site_answers_nothing() -> None:
    state, task = state_with_task()
    assert after_run(state, task.hash, ME, None, False, "ok", "") == Answer("ok", None)
    cancelled = Answer("cancelled", CANCELLED_WHILE_RUNNING, drop_output=True)
    assert after_run(state, task.hash, ME, None, True, "ok", "") == cancelled  # seen in scan
    task.cancelled_at = 9
    assert after_run(state, task.hash, ME, None, False, "timeout", "t") == cancelled
    assert after_run(state, task.hash, ME, 12, False, "ok", "") is None


def test_nothing_is_sealed_to_a_revoked_publisher() -> None:
    state, task = state_with_task()
    assert before_sealing(state, task.hash, ME, "ok", None) == Answer("ok", None)
    revoke(state, RESEARCHER.public_key, 8)
    # Any answer, a refusal for another reason too, names the revocation.
    for status in ("ok", "refused"):
        answer = before_sealing(state, task.hash, ME, status, "other")
        assert answer == Answer("refused", revoked_reason(8), drop_output=True)
    del state.members[RESEARCHER.public_key]
    unknown = before_sealing(state, task.hash, ME, "ok", None)
    assert unknown is not None and "not a member" in (unknown.reason or "")


def test_right_before_signing_the_state_is_read_again() -> None:
    state, task = state_with_task()
    assert before_signing(state, task.hash, ME, None, "ok", None) == Answer("ok", None)
    revoke(state, RESEARCHER.public_key, 8)  # revoked while we sealed and uploaded
    assert before_signing(state, task.hash, ME, None, "ok", None) == Answer(
        "refused", revoked_reason(8), drop_output=True
    )
    # A refusal already decided keeps its own reason.
    assert before_signing(state, task.hash, ME, None, "refused", "policy") == Answer(
        "refused", "policy"
    )
    assert before_signing(state, task.hash, ME, 12, "ok", None) is None  # this site revoked
    revoke(state, ME, 13)
    assert before_signing(state, task.hash, ME, None, "ok", None) is None


def test_a_task_answered_already_is_not_answered_again() -> None:
    state, task = state_with_task()
    task.results[ME] = Result(task.hash, ME, "ok", "img", b"", 9, b"r" * 32)
    assert before_sealing(state, task.hash, ME, "ok", None) is None
    assert before_signing(state, task.hash, ME, None, "ok", None) is None
    assert my_open_tasks(state, ME) == []


def test_open_tasks_are_this_sites_unanswered_ones_in_log_order() -> None:
    state, task = state_with_task(index=7)
    other = LoggedTask(b"o" * 32, RESEARCHER.public_key, "img", (ME,), {}, 3, None)
    not_mine = LoggedTask(
        b"n" * 32, RESEARCHER.public_key, "img", (OTHER_SITE.public_key,), {}, 1, None
    )
    for t in (other, not_mine):
        state.tasks[t.hash] = t
    assert my_open_tasks(state, ME) == [other, task]


def test_a_result_continues_the_chain_after_one_signed_but_not_yet_in_the_log() -> None:
    state, _ = state_with_task()
    assert chain_head(state, ME, None) == (0, bytes(32))
    state.heads[ME] = (2, b"h" * 32)
    assert chain_head(state, ME, None) == (2, b"h" * 32)
    pending = Run(ENTRY.hash, 5, SIGNED, 3, b"raw result", "ok")
    assert chain_head(state, ME, pending) == (3, sha256(b"raw result"))
    older = Run(ENTRY.hash, 5, SIGNED, 2, b"in the log", "ok")
    assert chain_head(state, ME, older) == (2, b"h" * 32)
