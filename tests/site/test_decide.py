"""Every rule of what a site does with a task (``ptm_p2p/site/decide.py``), without Docker,
the network or a daemon: real signed entries and real keys, the site seen through
``FakeSite`` (the ``SiteView`` interface the worker uses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from site_fakes import IMAGE, LIMITS, ME, OTHER_SITE, REPO, RESEARCHER, SITE, FakeSite, task_entry

from ptm_p2p.executor.policy import SitePolicy
from ptm_p2p.ledger import entry as E
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.ledger.replay import LoggedTask, Member, Result
from ptm_p2p.site import masking
from ptm_p2p.site.decide import (
    CANCELLED_BEFORE,
    FORMAT_1_REFUSED,
    INTERRUPTED,
    PUBLISHER_REVOKED,
    Action,
    Do,
    SiteView,
    decide,
    halted_reason,
    may_start,
    publisher_revoked,
    self_revoked,
)
from ptm_p2p.site.journal import RUNNING, SIGNED, Run

ALLOW_ALL = SitePolicy(repositories=frozenset({REPO}), publishers=frozenset({"*"}))


def site_view() -> SiteView:
    """The fake, typed as the interface: mypy checks it implements ``SiteView``."""
    return FakeSite()


@dataclass
class Case:
    """One task in a fake site's state, and what decide says about it."""

    entry: Entry = field(default_factory=task_entry)
    site: FakeSite = field(default_factory=FakeSite)
    policy: SitePolicy = ALLOW_ALL
    row: Run | None = None
    halted: str | None = None
    stored: bool = True  # False: the stored copy was altered (read_entry returns None)
    reads: int = 0

    def __post_init__(self) -> None:
        state = self.site.state
        state.members[RESEARCHER.public_key] = Member(RESEARCHER.public_key, "uni", "researcher", 1)
        state.members[ME] = Member(ME, "site-a", "site", 2)
        state.tasks[self.entry.hash] = LoggedTask(
            hash=self.entry.hash,
            publisher=RESEARCHER.public_key,
            image=IMAGE,
            targets=tuple(self.entry.payload["targets"]),
            limits=dict(LIMITS),
            index=5,
            algorithm=None,
        )

    @property
    def task(self) -> LoggedTask:
        return self.site.state.tasks[self.entry.hash]

    def read_entry(self, task: LoggedTask) -> Entry | None:
        self.reads += 1
        return self.entry if self.stored else None

    def decide(self) -> Action:
        return decide(
            self.site,
            self.entry.hash,
            ME,
            self.row,
            self.policy,
            SITE,
            self.halted,
            self.read_entry,
        )


def answered(action: Action, status: str, reason: str | None = None) -> None:
    assert action.do is Do.ANSWER and action.status == status, action
    assert action.entry is not None
    if reason is not None:
        assert action.reason == reason


def running_row(task: LoggedTask, state: str = RUNNING) -> Run:
    return Run(task.hash, task.index, state, None, None, None)


# --- rule 1: when a scan starts a task --------------------------------------------------------


def test_a_task_not_yet_vouched_for_waits() -> None:
    case = Case(site=FakeSite(witness_size=5))  # the task is entry 5: not under it
    assert may_start(case.site, case.task, None).do is Do.SKIP
    case.site.witness_size = 6
    assert may_start(case.site, case.task, None).do is Do.RUN


def test_a_signed_result_is_left_to_the_resubmit_loop_and_a_running_row_is_acted_on() -> None:
    case = Case()
    assert may_start(case.site, case.task, running_row(case.task, SIGNED)).do is Do.SKIP
    assert may_start(case.site, case.task, running_row(case.task, RUNNING)).do is Do.RUN


# --- rules 2-3: skipped --------------------------------------------------------------------


def test_a_task_gone_or_answered_is_skipped_without_reading_the_store() -> None:
    case = Case()
    case.task.results[ME] = Result(case.entry.hash, ME, "ok", "sha256:x", b"", 9, b"r" * 32)
    assert case.decide().do is Do.SKIP and case.reads == 0
    del case.site.state.tasks[case.entry.hash]
    assert case.decide().do is Do.SKIP and case.reads == 0


def test_a_halted_site_executes_nothing() -> None:
    case = Case(halted="the hub is distrusted (see evidence): executing nothing")
    action = case.decide()
    assert action.do is Do.SKIP and "distrusted" in action.why and case.reads == 0


def test_an_altered_stored_entry_is_skipped() -> None:
    case = Case(stored=False)
    assert case.decide().do is Do.SKIP and case.reads == 1


# --- rules 4-9: answered without running -----------------------------------------------------


def test_an_interrupted_run_is_answered_failed_never_run_twice() -> None:
    case = Case()
    case.row = running_row(case.task)
    answered(case.decide(), "failed", INTERRUPTED)


def test_a_task_cancelled_before_it_started_is_answered_cancelled() -> None:
    case = Case()
    case.task.cancelled_at = 7
    answered(case.decide(), "cancelled", CANCELLED_BEFORE)


def test_an_interrupted_run_outranks_a_cancel() -> None:
    case = Case()
    case.task.cancelled_at = 7
    case.row = running_row(case.task)
    answered(case.decide(), "failed", INTERRUPTED)


@pytest.mark.parametrize("how", ["revoked", "unknown"])
def test_a_revoked_or_unknown_publisher_is_refused(how: str) -> None:
    case = Case()
    members = case.site.state.members
    if how == "revoked":
        members[RESEARCHER.public_key] = Member(RESEARCHER.public_key, "uni", "researcher", 1, 8)
    else:
        del members[RESEARCHER.public_key]
    answered(case.decide(), "refused", PUBLISHER_REVOKED)
    assert publisher_revoked(case.site.state, case.task) == (8 if how == "revoked" else -1)


def test_a_format_1_task_is_refused() -> None:
    answered(Case(entry=task_entry(format_1=True)).decide(), "refused", FORMAT_1_REFUSED)


def test_an_input_not_boxed_for_this_site_is_refused_with_a_public_reason() -> None:
    entry = task_entry(inputs={OTHER_SITE.public_key: b"secret", ME: b"x"})
    # The box of another site, copied under this site's key: it does not open for us.
    boxed = dict(entry.payload["inputs"])
    boxed[ME] = boxed[OTHER_SITE.public_key]
    forged = Entry.create(
        RESEARCHER, E.TASK, 1, E.ZERO_HASH, 1_000, {**entry.payload, "inputs": boxed}
    )
    action = Case(entry=forged).decide()
    answered(action, "refused")
    assert action.reason and "secret" not in action.reason


def test_an_image_the_policy_does_not_allow_is_refused() -> None:
    policy = SitePolicy(
        repositories=frozenset({"127.0.0.1:5000/other"}), publishers=frozenset({"*"})
    )
    action = Case(policy=policy).decide()
    answered(action, "refused")
    assert action.reason and "is not allowed by this site's policy" in action.reason


def test_a_publisher_the_policy_does_not_allow_is_refused() -> None:
    policy = SitePolicy(repositories=frozenset({REPO}), publishers=frozenset({"another-uni"}))
    action = Case(policy=policy).decide()
    answered(action, "refused")
    assert action.reason and "publisher uni is not allowed" in action.reason


def test_data_the_site_does_not_offer_is_refused() -> None:
    action = Case(entry=task_entry(data=("gbsg2",))).decide()
    answered(action, "refused")
    assert action.reason and "'gbsg2' is not offered" in action.reason


def test_a_plain_task_is_refused_where_secure_aggregation_is_required() -> None:
    policy = SitePolicy(
        repositories=frozenset({REPO}),
        publishers=frozenset({"*"}),
        require_secure_aggregation=True,
    )
    answered(Case(policy=policy).decide(), "refused", masking.REQUIRED)


# --- rule 10: run ------------------------------------------------------------------------


def test_an_allowed_task_runs_on_its_opened_input(tmp_path: Path) -> None:
    data = tmp_path / "gbsg2.csv"
    data.write_text("time,status\n1,1\n")
    data.chmod(0o644)
    policy = SitePolicy(
        repositories=frozenset({REPO}), publishers=frozenset({"uni"}), data={"gbsg2": data}
    )
    case = Case(entry=task_entry(data=("gbsg2",)), policy=policy)
    action = case.decide()
    assert action.do is Do.RUN, action
    assert action.input == b"my input" and action.org == "uni" and action.entry is case.entry


# --- the site's own halt ---------------------------------------------------------------------


def test_this_sites_revocation_from_the_copy_or_from_the_hubs_refusal() -> None:
    state = Case().site.state
    assert self_revoked(state, ME, None) is None
    refusal = 12  # the hub's members-only refusal: revoked at log index 12
    assert self_revoked(state, ME, refusal) == 12
    state.members[ME] = Member(ME, "site-a", "site", 2, 9)
    assert self_revoked(state, ME, refusal) == 9  # our copy first
    assert self_revoked(state, OTHER_SITE.public_key, refusal) is None  # not a member


def test_why_a_site_halts_first_reason_first() -> None:
    assert halted_reason(False, True, None, None) is None
    assert halted_reason(False, True, None, "journal damaged") == "journal damaged"
    assert "revoked at entry 4" in (halted_reason(False, True, 4, "journal damaged") or "")
    assert "distrusted" in (halted_reason(False, False, 4, None) or "")
    assert "split view" in (halted_reason(True, False, 4, None) or "")


def test_the_fake_is_a_site_view() -> None:
    assert site_view().why_halted() is None
