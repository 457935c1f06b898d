"""Signing the researcher's entries: tasks (inputs sealed to each site) and cancellations.

Entries are signed with the home's key under a lock in the home (``author.lock``), so two
processes of one researcher never sign two different entries with one sequence number
(which the hub would record as equivocation, locking the key out). Tasks are published in
format 2 (``docs/ledger.md``, "Format 2"): each input is boxed from this researcher to its
site and bound to the very task entry being signed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ptm_p2p.client.connection import Connection
from ptm_p2p.client.image_digests import resolve_image
from ptm_p2p.client.task_book import TaskBook
from ptm_p2p.client.views import TaskView
from ptm_p2p.errors import TaskLookupError
from ptm_p2p.home import author_lock
from ptm_p2p.ledger.entry import CANCEL, TASK, AuthorChain, Entry, cancel_payload, task_payload_v2

DEFAULT_LIMITS = {"timeout_s": 600, "memory_mb": 512, "cpu_millis": 1000}

PayloadSource = Mapping[str, Any] | Callable[[int], Mapping[str, Any]]
"""A payload, or a function of the seq the entry will be signed with that makes it (a
format-2 task binds its inputs to that seq)."""


@dataclass(frozen=True)
class TaskSpec:
    """What a task asks of every target besides its input: the data, limits and names."""

    data: Sequence[str] = ()
    timeout_s: int = DEFAULT_LIMITS["timeout_s"]
    memory_mb: int = DEFAULT_LIMITS["memory_mb"]
    cpu_millis: int = DEFAULT_LIMITS["cpu_millis"]
    algorithm: str | None = None
    description: str | None = None
    aggregate: str | None = None


class Publisher:
    """Signs and submits the researcher's tasks and cancellations."""

    def __init__(self, connection: Connection, book: TaskBook) -> None:
        self.connection = connection
        self.book = book

    def submit(self, kind: str, payload: PayloadSource) -> tuple[Entry, int]:
        """Sign ``payload`` as our next entry and submit it; the entry and its log index.

        The entry is signed once, after asking the hub for our chain's head. If the submit
        fails on the way (the hub restarting), the session's reconnect sends the *same*
        signed bytes again: the hub answers a resubmission with the index it gave the first
        time, so a submit that did reach the hub is neither published twice nor followed by a
        second, different entry with the same sequence number (equivocation).

        ``payload`` may be a function of the entry's seq (known only once the hub has told
        us our head, under the author lock): a format-2 task binds its inputs to it.
        """
        home = self.connection.home
        with author_lock(home.path):
            head = self.connection.head()
            chain = AuthorChain(home.signer, head.seq, head.hash)
            made = payload(head.seq + 1) if callable(payload) else payload
            entry = chain.append(kind, made, int(time.time() * 1000))
            return entry, self.connection.submit(entry)

    def publish(
        self,
        image: str,
        to: str | Sequence[str],
        input: bytes,
        inputs: Mapping[str, bytes] | None,
        spec: TaskSpec,
    ) -> TaskView:
        """Sign and publish a task (``Client.publish`` says what each argument means)."""
        pinned = resolve_image(image)
        plain = self._plain_inputs(to, input, inputs)
        limits = {
            "timeout_s": spec.timeout_s,
            "memory_mb": spec.memory_mb,
            "cpu_millis": spec.cpu_millis,
        }
        signer = self.connection.home.signer

        def payload(seq: int) -> dict[str, Any]:
            return task_payload_v2(
                signer,
                seq,
                pinned,
                plain,
                limits,
                algorithm=spec.algorithm,
                description=spec.description,
                data=spec.data,
                aggregate=spec.aggregate,
            )

        entry, index = self.submit(TASK, payload)
        return self.book.view_of_entry(entry, index, pinned)

    def _plain_inputs(
        self, to: str | Sequence[str], input: bytes, inputs: Mapping[str, bytes] | None
    ) -> dict[bytes, bytes]:
        """Each target's key -> its input in the clear (sealed to it while signing)."""
        if inputs is None:
            return {key: input for key in self.book.site_keys_synced(to)}
        keys = self.book.site_keys_synced(list(inputs))
        if len(keys) != len(inputs):
            raise TaskLookupError(
                f"inputs name one site twice (by organisation and by key): {list(inputs)}"
            )
        return dict(zip(keys, inputs.values(), strict=True))

    def cancel(self, task_id: str, reason: str | None = None) -> TaskView:
        """Withdraw a task of ours: sites that have not answered answer ``cancelled``."""
        self.connection.sync()
        task = self.book.task(task_id)
        if task.publisher != self.connection.home.public_key:
            raise TaskLookupError("only the task's publisher may cancel it")
        self.submit(CANCEL, cancel_payload(task.hash, reason))
        self.connection.sync()
        return self.book.view(self.book.task(task_id))
