"""The researcher's client: publish tasks, follow them, open their results.

Everything it reports comes from the researcher's own verified copy of the log
(``LogFollower``): a result is shown or decrypted only once its entry is under a hub-signed
checkpoint and has passed the replay rules, exactly as a site checks tasks before running
them. Entries are signed with the home's key under a lock in the home (``author.lock``), so
two processes of one researcher never sign two different entries with one sequence number
(which the hub would record as equivocation, locking the key out).

    with Client("researcher-home", "invite.json") as client:
        task = client.publish("127.0.0.1:5000/ptm/summary:latest", to="all",
                              input=b'{"data": "gbsg2"}', data=["gbsg2"])
        client.wait(task.id, timeout=120)
        for site, answer in client.results(task.id).items():
            print(site, answer.status, answer.json())

``Client`` is the facade; each job is its own part:

- ``connection.py``: the home, the invitation, the verified copy and the session to the hub;
- ``task_book.py``: sites and tasks found by name, task views, following a task;
- ``publisher.py``: signing tasks (format 2: each input boxed to its site and bound to the
  task entry being signed) and cancellations;
- ``opener.py``: opening results site by site (a site whose output does not open as it
  signed it is ``faulty``, with the evidence; every other site's answer is still returned);
- ``round_trips.py``: one round over many sites, and the secure-aggregation round;
- ``views.py``: what is shown (``TaskView``, ``SiteAnswer``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Unpack

from ptm_p2p.client.connection import INVITATION_FILE, Connection, find_invitation
from ptm_p2p.client.opener import MAX_ANSWER_BYTES, ResultOpener
from ptm_p2p.client.publisher import DEFAULT_LIMITS, Publisher, TaskSpec
from ptm_p2p.client.round_trips import RoundLimits, RoundOptions, Rounds
from ptm_p2p.client.task_book import TaskBook
from ptm_p2p.client.views import FAULTY, FINAL, UNAVAILABLE, SiteAnswer, TaskView, why_not_ok
from ptm_p2p.errors import PtmError
from ptm_p2p.ledger.entry import Entry, OutputV2
from ptm_p2p.ledger.secagg import SecureSum


class Client:
    """A researcher's connection to a collaboration; keep one open across rounds."""

    def __init__(self, home: str | Path | None = None, invitation: str | Path | None = None):
        self.connection = Connection(home, invitation)
        self.home = self.connection.home
        self.invitation = self.connection.invitation
        self.follower = self.connection.follower
        self.session = self.connection.session
        self.book = TaskBook(self.connection)
        self.publisher = Publisher(self.connection, self.book)
        self.opener = ResultOpener(self.connection)
        self.rounds = Rounds(self.publisher, self.book, self.opener)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.connection.close()

    # --- the verified log ------------------------------------------------------------------

    def sync(self) -> int:
        """Catch the verified copy up with the hub; returns its size."""
        return self.connection.sync()

    @property
    def state(self) -> Any:
        return self.connection.state

    def sites(self) -> dict[str, bytes]:
        """Active sites of the collaboration: organisation -> key."""
        return self.book.sites()

    # --- tasks -----------------------------------------------------------------------------

    def publish(
        self,
        image: str,
        to: str | Sequence[str] = "all",
        input: bytes = b"",
        inputs: Mapping[str, bytes] | None = None,
        data: Sequence[str] = (),
        timeout_s: int = DEFAULT_LIMITS["timeout_s"],
        memory_mb: int = DEFAULT_LIMITS["memory_mb"],
        cpu_millis: int = DEFAULT_LIMITS["cpu_millis"],
        algorithm: str | None = None,
        description: str | None = None,
        aggregate: str | None = None,
    ) -> TaskView:
        """Sign and publish a task; returns it once the hub has durably sequenced it.

        ``image`` may be a tag: it is resolved to its digest now, and the digest is signed.
        ``to`` is "all" or site organisations (or keys); ``input`` goes to every target,
        sealed separately to each; ``inputs`` gives each site (by name) its own input.
        ``aggregate="secure-sum"`` asks every target to mask its answer so that only the
        sum over all targets opens (``sum_round`` does the rest).
        """
        spec = TaskSpec(data, timeout_s, memory_mb, cpu_millis, algorithm, description, aggregate)
        return self.publisher.publish(image, to, input, inputs, spec)

    def task(self, task_id: str) -> TaskView:
        """A task's state, from the verified copy brought up to date."""
        self.sync()
        return self.book.view(self.book.task(task_id))

    def tasks(self, mine: bool = False) -> list[TaskView]:
        """Every task of the collaboration (only ours with ``mine``), after a sync."""
        self.sync()
        return self.book.views(mine)

    def wait(
        self,
        task_id: str,
        timeout: float | None = None,
        on_progress: Callable[[TaskView], None] | None = None,
    ) -> TaskView:
        """Follow a task until every target answered or ``timeout`` seconds pass.

        Returns the last view either way (``view.done`` tells which); ``on_progress`` sees
        every view, for progress displays.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        return self.book.follow(task_id, deadline, on_progress)

    def silent_sites(self, view: TaskView) -> dict[str, str]:
        """Why each target still ``not seen`` has not received the task (``TaskBook``)."""
        return self.book.silent_sites(view)

    def results(self, task_id: str) -> dict[str, SiteAnswer]:
        """Each answered site's verified result, its output opened with our key.

        Sites are opened independently: a site whose output does not open as it signed it
        is returned with status ``faulty`` (and the evidence), never raised, so one bad
        site cannot hide the others' answers."""
        return self.opener.results(self.book.task(task_id))

    def result_entry(self, index: int, expected_hash: bytes) -> Entry:
        """The result entry at ``index`` of the verified copy, checked against replay."""
        return self.opener.result_entry(index, expected_hash)

    def ciphertext_of(self, site: bytes, output: OutputV2) -> bytes:
        """A format-2 output's ciphertext, inline or fetched from the hub (``ResultOpener``)."""
        return self.opener.ciphertext_of(site, output)

    def cancel(self, task_id: str, reason: str | None = None) -> TaskView:
        """Withdraw a task of ours: sites that have not answered answer ``cancelled``."""
        return self.publisher.cancel(task_id, reason)

    # --- rounds ----------------------------------------------------------------------------

    def run_round(
        self, image: str, inputs: Mapping[str, Any], **options: Unpack[RoundOptions]
    ) -> dict[str, Any]:
        """One round over many sites: publish (one JSON input per site), wait, open.

        Returns each site's output parsed as JSON, keyed by the names used in ``inputs``.
        Raises ``StudyError`` naming every site that failed, refused, timed out, is faulty
        (its output does not open as it signed it) or did not answer within ``timeout``
        seconds, and only those; the error's ``answers`` holds every other site's answer.
        ``options`` (``RoundOptions``): ``data``, ``timeout`` (600 s), ``algorithm``,
        ``on_progress``, ``memory_mb``, ``cpu_millis``.
        """
        return self.rounds.run(image, inputs, RoundLimits(**options))

    def sum_round(
        self,
        image: str,
        inputs: Mapping[str, Any],
        min_sites: int = 2,
        **options: Unpack[RoundOptions],
    ) -> SecureSum:
        """One secure-aggregation round: only the sum over the sites opens.

        Publishes the task with ``aggregate="secure-sum"`` (one JSON input per site and the
        same ``options`` as ``run_round``), waits, opens every answer and adds the masked
        vectors (``ledger/secagg.py``). A site that does not answer ``ok`` in time leaves
        masks in the others' vectors that cannot cancel: the round is published again
        without it (a new task, so fresh masks) until every remaining target answers, or
        fewer than ``min_sites`` remain (``StudyError``). Nothing is ever unmasked;
        ``dropped`` names each site left out and why, ``tasks`` every task published.
        """
        return self.rounds.sum(image, inputs, RoundLimits(**options), min_sites)


__all__ = [
    "DEFAULT_LIMITS",
    "FAULTY",
    "FINAL",
    "INVITATION_FILE",
    "MAX_ANSWER_BYTES",
    "UNAVAILABLE",
    "Client",
    "PtmError",
    "SiteAnswer",
    "TaskView",
    "find_invitation",
    "why_not_ok",
]
