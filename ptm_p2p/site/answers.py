"""Answering a task: seal the output to the publisher (format 2), place it (inline or as a
blob at the hub, ``outputs.py``), sign a result on this site's author chain, and journal its
bytes before anything hands it to the hub (``resubmit.py`` brings it to the log).

The state is read again before sealing and right before signing (``decide.before_sealing``,
``decide.before_signing``): no output is ever sealed to a key this site knows to be revoked,
a revoked site signs nothing, and a task is answered at most once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from ptm_p2p.errors import BlobRefused
from ptm_p2p.ledger.crypto import sha256
from ptm_p2p.ledger.entry import RESULT, AuthorChain, result_payload_v2, sealed_output
from ptm_p2p.site.decide import before_sealing, before_signing
from ptm_p2p.site.journal import LogProof
from ptm_p2p.site.outputs import place_output

if TYPE_CHECKING:
    from collections.abc import Callable

    from ptm_p2p.ledger.entry import Entry, SealedOutput
    from ptm_p2p.ledger.replay import LoggedTask, State
    from ptm_p2p.site.journal import Run
    from ptm_p2p.site.journal_guard import GuardedJournal
    from ptm_p2p.site.worker_site import WorkerSite

log = logging.getLogger(__name__)


@dataclass
class Draft:
    """A result being prepared: what it will say and its sealed output."""

    status: str
    reason: str | None
    timings: dict[str, int] | None
    container_log: bytes
    sealed: SealedOutput
    output_map: dict[str, Any]


def chain_head(state: State, me: bytes, pending: Run | None) -> tuple[int, bytes]:
    """Where this site's next entry continues its author chain: after its last entry in the
    log, or after a result it signed that the log does not hold yet (``pending``)."""
    seq, prev = state.heads.get(me, (0, bytes(32)))
    if pending is not None and pending.seq is not None and pending.seq > seq:
        seq, prev = pending.seq, sha256(pending.result or b"")
    return seq, prev


class Answerer:
    """Signs this site's results, one at a time (``sign_lock``: one author chain)."""

    def __init__(
        self,
        site: WorkerSite,
        journal: GuardedJournal,
        why_halted: Callable[[], str | None],
        signed: Callable[[], None],
    ) -> None:
        self.site = site
        self.journal = journal
        self.why_halted = why_halted
        self.signed = signed  # called after each result is journalled (resubmit it now)
        self.sign_lock = trio.Lock()
        self.answered = 0

    async def answer(
        self,
        task_entry: Entry,
        status: str,
        output: bytes,
        *,
        image_digest: str | None = None,
        container_log: bytes = b"",
        reason: str | None = None,
        timings: dict[str, int] | None = None,
    ) -> None:
        """Seal the output (format 2), sign a result, journal its bytes, hand it over."""
        me = self.site.home.public_key
        first = before_sealing(self.site.state, task_entry.hash, me, status, reason)
        if first is None:
            return
        if first.drop_output:  # never seal an output to a revoked key
            output, container_log, timings = b"", b"", None
        draft = await self._seal(
            task_entry, first.status, first.reason, output, container_log, timings
        )
        async with self.sign_lock:
            state = self.site.state
            task = state.tasks[task_entry.hash]
            final = before_signing(
                state, task.hash, me, self.site.hub_says_revoked, draft.status, draft.reason
            )
            if final is None:
                if me not in task.results:  # this site's key is revoked
                    log.warning("task at entry %d: not answered: %s", task.index, self.why_halted())
                return
            if final.drop_output:  # revoked while we sealed: the output is never published
                self._empty(draft, task_entry.author, final.status, final.reason)
            await self._sign(task_entry, task, draft, image_digest)
        self.answered += 1
        log.info(
            "task at entry %d: answered %s%s",
            task.index,
            draft.status,
            f" ({draft.reason})" if draft.reason else "",
        )
        self.signed()

    async def _seal(
        self,
        task_entry: Entry,
        status: str,
        reason: str | None,
        output: bytes,
        container_log: bytes,
        timings: dict[str, int] | None,
    ) -> Draft:
        """Seal the output to the publisher and place it; a blob the hub's store refuses
        turns the answer into ``failed`` with the true reason, and nothing of the output."""
        signer, publisher = self.site.home.signer, task_entry.author
        sealed = await trio.to_thread.run_sync(
            sealed_output, signer, publisher, output, container_log
        )
        draft = Draft(status, reason, timings, container_log, sealed, {})
        try:
            draft.output_map = await place_output(sealed, self.site.hub)
        except BlobRefused as exc:  # it was never stored anywhere
            self._empty(
                draft, publisher, "failed", f"the hub's blob store refused the output: {exc}"
            )
        return draft

    def _empty(self, draft: Draft, publisher: bytes, status: str, reason: str | None) -> None:
        """Replace the draft's output and container log by nothing, with a new status."""
        draft.status, draft.reason, draft.timings, draft.container_log = status, reason, None, b""
        draft.sealed = sealed_output(self.site.home.signer, publisher, b"", b"")
        draft.output_map = draft.sealed.output_map(inline=True)

    async def _sign(
        self, task_entry: Entry, task: LoggedTask, draft: Draft, image_digest: str | None
    ) -> None:
        """Sign the result on this site's chain and journal its bytes (under ``sign_lock``)."""
        journal = self.journal.journal
        state = self.site.state
        pending = await self.journal.io("read", journal.last_signed)
        chain = AuthorChain(
            self.site.home.signer, *chain_head(state, self.site.home.public_key, pending)
        )
        payload = result_payload_v2(
            task_entry,
            draft.status,
            draft.output_map,
            draft.sealed.log_commit,
            image_digest or task.image_digest,
            draft.reason,
            draft.timings,
        )
        # Timestamps never go back within a chain (replay rule 3), even if the clock does.
        entry = chain.append(RESULT, payload, int(time.time() * 1000))
        proof = LogProof(draft.container_log, draft.sealed.log_nonce, draft.sealed.log_commit)
        await self.journal.io(
            "write",
            lambda: journal.signed(
                task.hash, task.index, entry.seq, entry.raw, draft.status, proof
            ),
        )
