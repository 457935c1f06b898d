"""What a site does with a task, decided without Docker, the network or a clock.

The worker (``worker.py``) is split in two: this module *decides* (functions of the site's
replayed state, the task's journal row and the site's policy, with no effect outside what
they are given: ``stops`` marks the in-flight records it is handed) and the worker *does*
(opens the journal, runs the container, seals and signs). Every rule of "what a site does
with a task" lives here, so each is unit-tested without containers
(``tests/site/test_decide.py``, against ``FakeSite``).

The worker sees its site through ``SiteView``, a narrow interface: the replayed state, the
size this site vouched for (cosigned as a witness), why the site executes nothing, and a way
to hand signed results to the hub. ``replicator.Site`` implements it for the daemon; a test
passes a ``FakeSite`` (in the manner of Flower's ``state_factory``: one interface, a real and
a fake implementation, the same rules checked against both).

The rules, in the order they are applied (the first that holds decides):

1. a task not yet under a checkpoint this site verified and cosigned is left for later;
   one whose signed result the journal already holds is left to the resubmit loop;
2. a task gone from the state, or already answered by this site, is skipped;
3. a halted site (split view, distrusted hub, this site's key revoked, a damaged journal or
   ledger copy) executes nothing;
4. a task the journal says was running when the daemon stopped is answered ``failed``
   (interrupted), never run twice;
5. a task cancelled before it started is answered ``cancelled``;
6. a task whose publisher is revoked or unknown is answered ``refused``;
7. a format-1 task (an anonymous sealed box anyone can copy) is answered ``refused``;
8. an input that does not open, or is not bound to this very entry, is answered ``refused``
   with a public reason that says nothing of the input;
9. a task the site policy does not allow (image, publisher, data labels) or one that is not
   a secure sum where the policy requires it is answered ``refused``;
10. anything else runs (the disclosure record, a database, is asked by the worker next).

While a task is in flight and once it has run (``stops``, ``after_run``, ``before_sealing``,
``before_signing``):

11. a cancel or a revocation of its publisher (or of this site) reaching a running task
    kills its container, again every ``KILL_RETRY`` seconds while it runs;
12. a task cancelled while it ran is answered ``cancelled``, with no output;
13. a site whose own key was revoked meanwhile signs nothing;
14. an output is never sealed to a publisher this site knows to be revoked: such a task is
    answered ``refused`` naming the revocation entry, and whatever it gave is dropped;
15. a task this site answered already (its result is in the log) is not answered again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ptm_p2p.errors import InputRefused, PolicyError
from ptm_p2p.ledger.entry import TaskPayloadV2, open_input_v2
from ptm_p2p.site import masking
from ptm_p2p.site.journal import RUNNING

if TYPE_CHECKING:
    from collections.abc import Callable

    from ptm_p2p.executor.policy import SitePolicy
    from ptm_p2p.ledger.crypto import Signer
    from ptm_p2p.ledger.entry import Entry
    from ptm_p2p.ledger.replay import LoggedTask, State
    from ptm_p2p.site.journal import Run

INTERRUPTED = (
    "interrupted: the site daemon stopped while the task ran; its container was removed. "
    "Publish the task again to retry"
)
FORMAT_1_REFUSED = (
    "format-1 task: its input is an anonymous sealed box that anyone could have copied from "
    "another task, so this site does not act on it; publish it again with a current ptm "
    "(format 2); nothing was run"
)
CANCELLED_BEFORE = "cancelled before it started"
PUBLISHER_REVOKED = "the publisher's key was revoked"  # worded at sealing (revoked_reason)
CANCELLED_WHILE_RUNNING = "cancelled while running; the container was stopped"
KILL_RETRY = 3.0  # seconds between kills of a stopped task's container (it may be starting)


class SiteView(Protocol):
    """What the worker sees of its site (``replicator.Site`` in the daemon)."""

    @property
    def state(self) -> State:
        """The replayed state of the verified copy of the log."""
        ...

    @property
    def witness_size(self) -> int:
        """The log size this site verified and cosigned (vouched for) as a witness."""
        ...

    def why_halted(self) -> str | None:
        """Why the site executes nothing (hub distrusted, split view, own key revoked)."""
        ...

    async def submit(self, entries: list[bytes]) -> None:
        """Hand signed entries to the hub (quietly nothing while it is not reachable)."""
        ...


class Do(enum.Enum):
    SKIP = "skip"  # do nothing now (a later scan may act)
    ANSWER = "answer"  # sign a result with no output: ``status`` and ``reason``
    RUN = "run"  # run the image on ``input``


@dataclass(frozen=True)
class Action:
    """One decision about one task."""

    do: Do
    why: str = ""  # SKIP: why nothing is done (for logs and tests)
    status: str | None = None  # ANSWER: refused | failed | cancelled
    reason: str | None = None  # ANSWER: the public reason
    input: bytes = b""  # RUN: the opened input
    org: str = ""  # RUN: the publisher's organisation
    entry: Entry | None = None  # ANSWER, RUN: the task entry as stored (read_entry)

    @classmethod
    def skip(cls, why: str) -> Action:
        return cls(Do.SKIP, why=why)

    @classmethod
    def answer(cls, entry: Entry, status: str, reason: str) -> Action:
        return cls(Do.ANSWER, status=status, reason=reason, entry=entry)


def self_revoked(state: State, me: bytes, hub_says_revoked: int | None) -> int | None:
    """The entry that revoked this site's key, from our copy or, failing that, from the
    hub's refusal to serve us as a member any more.

    The hub serves a revoked key nothing after its revocation (members only), so the
    revocation entry itself may never reach our copy. A member in our copy whom the hub
    refuses as revoked stops at once: failing safe, a hub that lies about it can only
    stop this site's work, which it could do anyway by sequencing nothing.
    """
    member = state.members.get(me)
    if member is None:
        return None
    if member.revoked_at is not None:
        return member.revoked_at
    return hub_says_revoked


def publisher_revoked(state: State, task: LoggedTask) -> int | None:
    """The entry that revoked the task's publisher (-1: not a member at all), or None."""
    member = state.members.get(task.publisher)
    if member is None:
        return -1
    return member.revoked_at


def halted_reason(
    split_view: bool, hub_trusted: bool, revoked_at: int | None, own: str | None
) -> str | None:
    """Why a site executes nothing, first reason first, or None."""
    if split_view:
        return "split view evidence against the hub: executing nothing (see evidence)"
    if not hub_trusted:
        return "the hub is distrusted (see evidence): executing nothing"
    if revoked_at is not None:
        return (
            f"this site's key was revoked at entry {revoked_at}: its running tasks were "
            "stopped and it executes and signs nothing more (replay refuses what a revoked "
            "key signs). Ask the admin to admit a new key for this site"
        )
    return own


def may_start(view: SiteView, task: LoggedTask, row: Run | None) -> Action:
    """Rule 1: whether a scan hands the task to a worker thread now (RUN) or not yet."""
    if task.index >= view.witness_size:
        return Action.skip("not yet under a checkpoint this site verified and cosigned")
    if row is not None and row.state != RUNNING:
        return Action.skip("signed already: the resubmit loop brings it to the log")
    return Action(Do.RUN)


def decide(
    view: SiteView,
    task_hash: bytes,
    me: bytes,
    row: Run | None,
    policy: SitePolicy,
    signer: Signer,
    halted: str | None,
    read_entry: Callable[[LoggedTask], Entry | None],
) -> Action:
    """Rules 2-9: what to do with the task now (see the module docstring).

    ``halted`` is ``why_halted`` of site and worker together; ``read_entry`` returns the task
    entry as stored, or None when the copy was altered on disk (it halts the worker: the
    task is skipped). It is called only once a task is to be acted on.
    """
    state = view.state
    task = state.tasks.get(task_hash)
    if task is None:
        return Action.skip("not in the log")
    if me in task.results:
        return Action.skip("answered already")
    if halted:
        return Action.skip(halted)
    entry = read_entry(task)
    if entry is None:
        return Action.skip("the stored task entry was altered on disk")
    if row is not None and row.state == RUNNING:
        # Started before (a crash or a failure mid-run): answer once, never run twice.
        return Action.answer(entry, "failed", INTERRUPTED)
    if task.cancelled_at is not None:
        return Action.answer(entry, "cancelled", CANCELLED_BEFORE)
    publisher = state.members.get(task.publisher)
    if publisher is None or publisher.revoked_at is not None:
        return Action.answer(entry, "refused", PUBLISHER_REVOKED)
    if not isinstance(entry.typed_payload, TaskPayloadV2):
        return Action.answer(entry, "refused", FORMAT_1_REFUSED)
    try:
        # The public reason never depends on the input's content: only on whether the box
        # opens between this site and the publisher, and whether it is bound to this entry.
        task_input = open_input_v2(signer, entry)
    except InputRefused as exc:
        return Action.answer(entry, "refused", exc.public_reason)
    # The policy first (as the executor checks it, before anything is pulled): a publisher
    # or image this site does not allow learns nothing from the disclosure record's
    # refusals, which are one bit about the data each.
    refusal = policy_refusal(policy, task, entry, publisher.org) or masking.refusal(policy, entry)
    if refusal is not None:
        return Action.answer(entry, "refused", refusal)
    return Action(Do.RUN, input=task_input, org=publisher.org, entry=entry)


def policy_refusal(policy: SitePolicy, task: LoggedTask, entry: Entry, org: str) -> str | None:
    """The site policy's reason to refuse the task's image, publisher or data, or None."""
    try:
        policy.check_image(task.image)
        policy.check_publisher(task.publisher.hex(), org)
        policy.check_data(list(entry.payload.get("data", [])))
    except PolicyError as exc:
        return str(exc)
    return None


def revoked_reason(revoked_at: int) -> str:
    """The public reason of a refusal because the publisher's key is revoked (or unknown)."""
    if revoked_at < 0:
        return "the publisher is not a member of this collaboration; nothing was run"
    return (
        f"the publisher's key was revoked at entry {revoked_at}; the task was not run or was "
        "stopped, and no output was kept"
    )


# --- tasks in flight and their answers (rules 11-15) ---------------------------------------


@dataclass
class Active:
    """A task this daemon is acting on right now."""

    task: LoggedTask
    state: str = "queued"  # queued | running | answering
    started: float = 0.0
    cancel: bool = False
    revoked_at: int | None = None  # the entry that revoked its publisher while it ran
    killed_at: float = float("-inf")  # monotonic time of the last kill sent to its container


@dataclass(frozen=True)
class Answer:
    """What to sign for a task: ``status`` and public ``reason``; ``drop_output``: sign it
    with no output (the run's answer is not kept; its container log goes as for any run)."""

    status: str
    reason: str | None
    drop_output: bool = field(default=False)


def my_open_tasks(state: State, me: bytes) -> list[LoggedTask]:
    """The tasks that target this site and hold no result of it, in log order."""
    mine = [t for t in state.tasks.values() if me in t.targets and me not in t.results]
    mine.sort(key=lambda t: t.index)
    return mine


def stops(
    state: State, active: dict[bytes, Active], me: bytes, hub_says_revoked: int | None, now: float
) -> list[bytes]:
    """Rule 11: mark the tasks in flight that a cancel or a revocation reached, and return
    those whose container to kill now (running, and not killed in the last KILL_RETRY s:
    a container still being created is not there to stop yet). Applies also while the site
    is halted: a revoked site must stop its work at once."""
    site_revoked = self_revoked(state, me, hub_says_revoked) is not None
    kill = []
    for task_hash, flight in active.items():
        task = state.tasks.get(task_hash)
        if task is None:
            continue
        revoked = publisher_revoked(state, task)
        if revoked is not None and flight.revoked_at is None:
            flight.revoked_at = revoked
        if task.cancelled_at is not None:
            flight.cancel = True
        if not (flight.cancel or flight.revoked_at is not None or site_revoked):
            continue
        if flight.state == "running" and now - flight.killed_at > KILL_RETRY:
            flight.killed_at = now
            kill.append(task_hash)
    return kill


def after_run(
    state: State,
    task_hash: bytes,
    me: bytes,
    hub_says_revoked: int | None,
    cancel_seen: bool,
    status: str,
    reason: str,
) -> Answer | None:
    """Rules 12-13, once the container has finished: what to answer, or None (sign nothing)."""
    task = state.tasks.get(task_hash)
    cancelled = cancel_seen or (task is not None and task.cancelled_at is not None)
    if self_revoked(state, me, hub_says_revoked) is not None:
        return None
    if cancelled:
        return Answer("cancelled", CANCELLED_WHILE_RUNNING, drop_output=True)
    return Answer(status, reason or None)


def before_sealing(
    state: State, task_hash: bytes, me: bytes, status: str, reason: str | None
) -> Answer | None:
    """Rules 14-15 before an output is sealed: None if answered already; a revoked
    publisher turns any answer into a refusal naming the revocation."""
    task = state.tasks[task_hash]
    if me in task.results:
        return None
    revoked = publisher_revoked(state, task)
    if revoked is not None:
        return Answer("refused", revoked_reason(revoked), drop_output=True)
    return Answer(status, reason)


def before_signing(
    state: State,
    task_hash: bytes,
    me: bytes,
    hub_says_revoked: int | None,
    status: str,
    reason: str | None,
) -> Answer | None:
    """Rules 13-15 again right before signing (the state may have moved while the output
    was sealed and uploaded): None signs nothing; a publisher revoked meanwhile turns an
    answer that is not a refusal already into one, and its sealed output is dropped."""
    task = state.tasks[task_hash]
    if me in task.results or self_revoked(state, me, hub_says_revoked) is not None:
        return None
    revoked = publisher_revoked(state, task)
    if revoked is not None and status != "refused":
        return Answer("refused", revoked_reason(revoked), drop_output=True)
    return Answer(status, reason)
