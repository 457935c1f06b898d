"""The hub's sequencer: accept entries, check them with the replay rules, append, sign.

Submissions queue up while a batch is being written; the sequencer takes everything queued
at once, so under load one append transaction and one signed checkpoint cover many entries
(the batch grows with the load instead of the hub falling behind). When idle, a single
entry is sequenced and signed at once, which keeps submit-to-replicated latency low.

An entry whose (author, seq) is already in the log with other bytes is equivocation: both
entries are kept as evidence and the author's further submissions are refused.

Answers are truthful when the disk is not: a batch the store refused (full, locked) is
answered "nothing appended, send it again"; entries that reached the store are answered with
their indexes even if signing the checkpoint over them then failed (the signature is retried
until it is stored; sites see the entries once it is). After any failure the answer is taken
from what the store holds, not from what the sequencer meant to do.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import trio

from ptm_p2p.backoff import Backoff
from ptm_p2p.errors import EquivocationError, LedgerError, ProtocolError, RuleError, StoreError
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger.crypto import Signer, short
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.ledger.store import is_local_fault
from ptm_p2p.network import protocol
from ptm_p2p.network.checkpoint_book import CheckpointBook
from ptm_p2p.network.sync_server import Answer
from ptm_p2p.network.trust import EQUIVOCATION, Party, TrustRegistry
from ptm_p2p.network.verified_log import VerifiedLog

log = logging.getLogger(__name__)

MAX_BATCH = 5_000
# Bytes per signed checkpoint: sites verify a range against one signed root before storing
# it, so the distance between two checkpoints is what a site must hold in memory.
MAX_BATCH_BYTES = 32 * 1024 * 1024
# Entries waiting for the sequencer; beyond this, submissions are refused as "unavailable"
# (each queued submission also holds a stream open, and its bytes in memory).
MAX_QUEUED = 50_000
# Pauses between attempts to store the checkpoint over entries already appended.
SIGN_RETRY_PAUSE = 0.5
SIGN_RETRY_MAX_PAUSE = 10.0
# A batch whose append the store refused (busy, locked, full) is tried again this many times,
# after jittered pauses of about 0.25, 0.5 and 1 s (``backoff.py``): some 1.75 s in all.
APPEND_RETRIES = 3
APPEND_RETRY_FIRST, APPEND_RETRY_MAX = 0.25, 1.0
# Submissions this large are signature-checked on a worker thread, off the trio loop.
THREAD_DECODE = 64


@dataclass
class Submission:
    entries: list[Entry]
    done: trio.Event = field(default_factory=trio.Event)
    indexes: list[int] = field(default_factory=list)
    error: str | None = None


class Sequencer:
    """Owns the hub's write path: only the sequencer task appends to the hub's store."""

    def __init__(
        self,
        log: VerifiedLog,
        book: CheckpointBook,
        trust: TrustRegistry,
        signer: Signer,
        pardoned: Iterable[bytes] = (),
    ) -> None:
        if log.hub_key is not None and log.hub_key != signer.public_key:
            raise RuleError(
                f"this home's key {short(signer.public_key)} is not the hub key "
                f"{short(log.hub_key)} named by the genesis entry; start the hub with "
                "the home whose key the admin put in `ptm collab create --hub-key`"
            )
        self.log = log
        self.book = book
        self.trust = trust
        self.signer = signer
        self.queue: list[Submission] = []
        self._wakeup = trio.Event()
        # (author, seq) -> entry hash and hash -> index: duplicate and equivocation checks
        # without a store query per submitted entry.
        self.by_author_seq: dict[tuple[bytes, int], bytes] = {}
        self.index_of: dict[bytes, int] = {}
        self.equivocators: set[bytes] = set()
        self.pardoned = frozenset(pardoned)
        self.sequenced = 0
        # The log holds entries no stored checkpoint covers yet (its signing failed).
        self.unsigned = False
        self._sign_retry = Backoff(SIGN_RETRY_PAUSE, SIGN_RETRY_MAX_PAUSE)
        self._sign_pause = 0.0
        self._index_store()

    def _index_store(self) -> None:
        for begin, raws in self.log.store.read_batches(0, self.log.size):
            for index, raw in enumerate(raws, begin):
                entry = Entry.from_bytes(raw)
                self.by_author_seq[(entry.author, entry.seq)] = entry.hash
                self.index_of[entry.hash] = index
        for item in self.log.store.evidence():
            if item.kind == EQUIVOCATION:
                with contextlib.suppress(LedgerError):
                    self.equivocators.add(Entry.from_bytes(bytes(item.first)).author)
        # The evidence stays in the store for auditors; a pardon only lets the author go on
        # from the entry that was sequenced (its twin never entered the log).
        self.equivocators -= self.pardoned

    def sign_head(self) -> cp.SignedCheckpoint:
        checkpoint = cp.Checkpoint(
            self.log.log_verifier().name, self.log.size, self.log.frontier.root()
        )
        signed = cp.sign_checkpoint(checkpoint, self.signer)
        self.book.record(signed)
        return signed

    async def submit(self, raws: list[Any]) -> Answer:
        """Handle a ``submit`` request: decode, queue, wait for the sequencer's verdict."""
        for i, raw in enumerate(raws):
            if not isinstance(raw, bytes):
                raise ProtocolError(f"submit: entry {i} is not bytes")
        if not raws:
            return protocol.SubmitReply(indexes=[], size=self.log.size)
        queued = sum(len(sub.entries) for sub in self.queue)
        if queued + len(raws) > MAX_QUEUED:
            return protocol.error(
                protocol.UNAVAILABLE,
                f"the hub has {queued} entries waiting to be sequenced; retry in a moment",
            )
        # DecodeError/SignatureError: refused. A few thousand Ed25519 checks take long
        # enough to stall every other peer, so big submissions are checked off the loop.
        if len(raws) >= THREAD_DECODE:
            entries = await trio.to_thread.run_sync(_decode_all, raws)
        else:
            entries = _decode_all(raws)
        submission = Submission(entries)
        self.queue.append(submission)
        self._wakeup.set()
        await submission.done.wait()
        if submission.error is not None:
            return protocol.error(protocol.REFUSED, submission.error) | {
                "indexes": submission.indexes
            }
        return protocol.SubmitReply(indexes=submission.indexes, size=self.log.size)

    async def run(self) -> None:
        """The sequencer task: drain the queue in batches until cancelled."""
        while True:
            if not self.queue:
                self._wakeup = trio.Event()
                if self.unsigned:
                    with trio.move_on_after(self._sign_pause):
                        await self._wakeup.wait()
                else:
                    await self._wakeup.wait()
            if self.unsigned:
                self._sign_pending()
            batch: list[Submission] = []
            count = size = 0
            while self.queue and count < MAX_BATCH and size < MAX_BATCH_BYTES:
                sub = self.queue.pop(0)
                batch.append(sub)
                count += len(sub.entries)
                size += sum(len(e.raw) for e in sub.entries)
            if batch:
                await self._sequence_with_retries(batch)
                for sub in batch:
                    sub.done.set()
            # Let the handlers answer and new submissions arrive before the next batch.
            await trio.sleep(0)

    async def _sequence_with_retries(self, batch: list[Submission]) -> None:
        """Sequence ``batch``; a store that is busy or full a moment is tried again a few
        times (nothing of a failed append is in the log, so trying again repeats nothing)
        before the submitters are told to send their entries again."""
        pause = Backoff(APPEND_RETRY_FIRST, APPEND_RETRY_MAX)
        for attempt in range(APPEND_RETRIES + 1):
            try:
                self._sequence(batch)
                return
            except Exception as exc:  # a full disk or a bug: answer from the store
                self._recover()
                if attempt < APPEND_RETRIES and is_local_fault(exc):
                    log.warning("the hub's ledger refused a write (%s); trying again", exc)
                    for sub in batch:
                        sub.indexes, sub.error = [], None
                    await trio.sleep(pause.next())
                    continue
                if isinstance(exc, StoreError):
                    log.error("sequencing a batch failed: %s", exc)
                else:
                    log.exception("sequencing a batch failed; rebuilding state from the store")
                self._answer_from_store(batch, exc)
                return

    def _answer_from_store(self, batch: list[Submission], exc: Exception) -> None:
        """After a failure, tell each submitter exactly which of its entries the log holds."""
        for sub in batch:
            held = [self.index_of.get(e.hash) for e in sub.entries]
            sub.indexes = [i for i in held if i is not None]
            missing = len(sub.entries) - len(sub.indexes)
            # All of it in the log is a success, whatever failed after the append.
            if sub.error is None and missing:
                sub.error = (
                    f"the hub could not store {missing} of the {len(sub.entries)} entries "
                    f"({exc}); they are not in the log (the {len(sub.indexes)} that are have "
                    "their indexes in this answer): send them again in a moment"
                )

    def _sign_pending(self) -> None:
        """Store the checkpoint over entries appended earlier; on failure, pause longer."""
        try:
            self.sign_head()
        except StoreError as exc:
            self._sign_pause = self._sign_retry.next()
            log.debug("checkpoint still not stored (next try in %.1f s): %s", self._sign_pause, exc)
            return
        log.info("checkpoint of size %d stored; sites can follow again", self.log.size)
        self.unsigned = False
        self._sign_retry.reset()
        self._sign_pause = 0.0

    def _recover(self) -> None:
        self.log.rebuild()
        self.by_author_seq.clear()
        self.index_of.clear()
        self._index_store()

    def _sequence(self, batch: list[Submission]) -> None:
        state = self.log.state
        accepted: list[Entry] = []
        start = self.log.size
        for sub in batch:
            for entry in sub.entries:
                existing = self.by_author_seq.get((entry.author, entry.seq))
                if existing == entry.hash:
                    sub.indexes.append(self.index_of[entry.hash])  # resubmission: idempotent
                    continue
                # Before the twin check: a known equivocator sending ever new twins must not
                # add a row of evidence per request.
                if entry.author in self.equivocators:
                    sub.error = (
                        f"author {short(entry.author)} equivocated earlier; its entries "
                        "are refused until the admin revokes it or, after checking with its "
                        "owner that it was an honest collision and not a stolen key, the hub "
                        f"operator pardons it (`ptm hub --pardon {entry.author.hex()}`)"
                    )
                    break
                if existing is not None:
                    sub.error = self._equivocation(entry, existing, start, accepted)
                    break
                index = start + len(accepted)
                try:
                    state.apply(entry, index)  # unchanged on error, so no rollback needed
                except LedgerError as exc:
                    sub.error = str(exc)
                    break
                accepted.append(entry)
                self.by_author_seq[(entry.author, entry.seq)] = entry.hash
                self.index_of[entry.hash] = index
                sub.indexes.append(index)
        if accepted:
            t0 = time.perf_counter()
            # One transaction: on failure nothing of ``accepted`` is in the log (``run``
            # rebuilds the state from the store and answers each submitter from it).
            self.log.append_local(accepted)
            self.sequenced += len(accepted)
            try:
                self.sign_head()
            except StoreError as exc:
                # The entries are in the log: their submitters are told so. Sites see them
                # once a checkpoint over them is stored; ``run`` retries until it is.
                if not self.unsigned:
                    log.error(
                        "entries %d..%d are appended but the checkpoint over them could not "
                        "be stored (%s); retrying until it is",
                        start,
                        self.log.size - 1,
                        exc,
                    )
                self.unsigned = True
                self._sign_retry.reset()
                self._sign_pause = self._sign_retry.next()
            log.debug(
                "sequenced %d entries (size %d) in %.1f ms",
                len(accepted),
                self.log.size,
                (time.perf_counter() - t0) * 1000,
            )

    def _equivocation(
        self, entry: Entry, existing_hash: bytes, start: int, accepted: list[Entry]
    ) -> str:
        index = self.index_of[existing_hash]
        # The first twin may be in this very batch, not yet in the store.
        first = accepted[index - start].raw if index >= start else self.log.store.raw(index)
        detail = (
            f"equivocation: author {self.log.member_name(entry.author)} signed two "
            f"entries with seq {entry.seq} (the first is log entry {index})"
        )
        self.trust.record_evidence(EQUIVOCATION, first, entry.raw, detail)
        self.equivocators.add(entry.author)
        self.trust.distrust(Party.author(entry.author), detail)
        return str(EquivocationError(detail + "; both are kept as evidence", first, entry.raw))


def _decode_all(raws: list[bytes]) -> list[Entry]:
    return [Entry.from_bytes(raw) for raw in raws]
