"""The checkpoint book: notes by size, cosignature merging, and its own durable flush."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import trio
import trio.testing
from ledgers import HubLog

from ptm_p2p.errors import CheckpointError
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.entry import membership_payload
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.network.checkpoint_book import FLUSH_DELAY, CheckpointBook


def _stored(path: Path, size: int) -> str:
    store = SqliteStore(path, read_only=True)
    try:
        return dict(store.checkpoints())[size]
    finally:
        store.close()


def test_notes_by_size(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 1)
    book = log.server.book
    first = log.signed
    log.append([])  # an empty batch still signs (same size): the latest note of that size
    seq = log.sequencer()
    sizes = [first.checkpoint.size]
    for _ in range(2):
        log.log.append_local([])
        sizes.append(seq.sign_head().checkpoint.size)
    assert book.latest_size == log.log.size
    assert book.note_at_least(0) == book.note_of(sizes[0])
    assert book.note_at_least(10**6) == book.latest  # none that large: the latest
    # Stored before served: a restart holds the same notes.
    again = CheckpointBook(log.log.store)
    again.load(log.log.size)
    assert again.notes == book.notes


def test_record_stores_before_serving(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 1)
    store = log.log.store
    store.close()  # every write now fails
    book = CheckpointBook(store)
    with pytest.raises(Exception):  # noqa: B017 - whatever the closed store raises
        book.record(log.signed)
    assert book.latest is None


def _cosigned(log: HubLog, name: str = "site") -> cp.SignedCheckpoint:
    return cp.cosign(log.signed, log.site, name, 1_700_000_000)


def test_merging_cosignatures(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 1)
    book, witnesses = log.server.book, log.log.witness_verifiers()
    mine = _cosigned(log)
    assert book.merge_cosignatures(mine, witnesses) == 1
    assert book.merge_cosignatures(mine, witnesses) == 0  # merged once
    assert book.cosigners(None, witnesses) == ["site"]
    # An unknown signer is dropped (C2SP signed-note), not an error.
    stranger = cp.cosign(log.signed, Signer.generate(), "nobody", 1)
    assert book.merge_cosignatures(stranger, witnesses) == 0
    # A known witness's forged cosignature is an error.
    sig = mine.signatures[-1]
    bad = dataclasses.replace(sig, signature=bytes(len(sig.signature)))
    forged = cp.SignedCheckpoint(mine.checkpoint, (*mine.signatures[:-1], bad))
    with pytest.raises(CheckpointError):
        book.merge_cosignatures(forged, witnesses)
    # Another tree of that size is not ours to merge into (the verified log judges it).
    other = cp.sign_checkpoint(
        cp.Checkpoint(log.signed.checkpoint.origin, log.signed.checkpoint.size, bytes(32)),
        log.hub,
    )
    assert book.merge_cosignatures(cp.cosign(other, log.site, "site", 1), witnesses) == 0


def test_merged_cosignatures_reach_the_store_by_themselves(tmp_path: Path) -> None:
    """Durability does not wait for anyone to write a status file or call ``flush``."""
    log = HubLog(tmp_path, 1)
    book, size = log.server.book, log.signed.checkpoint.size

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(book.keep_flushed)
            book.merge_cosignatures(_cosigned(log), log.log.witness_verifiers())
            assert book.unstored == 1
            await trio.sleep(FLUSH_DELAY / 2)
            assert book.unstored == 1  # debounced: a burst costs one write
            await trio.sleep(FLUSH_DELAY)
            assert book.unstored == 0
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert "— site " in _stored(tmp_path / "hub.db", size)


def test_waiting_for_a_newer_checkpoint(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 1)
    book, size = log.server.book, log.log.size
    admission = membership_payload("admit", Signer.generate().public_key, "lab", "researcher")

    async def main() -> None:
        with trio.move_on_after(5) as timed_out:
            await book.wait_newer(size - 1, 10)  # we hold one already: at once
        assert not timed_out.cancelled_caught
        async with trio.open_nursery() as nursery:

            async def sign_later() -> None:
                await trio.sleep(1)
                log.append([log.chain.append("membership", admission, int(time.time() * 1000))])

            nursery.start_soon(sign_later)
            before = trio.current_time()
            await book.wait_newer(size, 10)
            assert trio.current_time() - before == pytest.approx(1)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
