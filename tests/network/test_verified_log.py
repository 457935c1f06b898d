"""The verified log on its own: verify, commit, rebuild, split views and our own faults.

Real SQLite stores in a tmp dir and real keys; no network (``ledgers.HubLog``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
from ledgers import ORIGIN, HubLog

from ptm_p2p.errors import BadRange, DamagedLedger, ReplayError, SplitViewError, StoreError
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.entry import AuthorChain, membership_payload
from ptm_p2p.ledger.store import SqliteStore, is_local_fault
from ptm_p2p.network.sync_server import SyncServer
from ptm_p2p.network.trust import HUB


def test_a_forged_entry_in_a_large_batch_names_the_peer_and_stores_nothing(
    tmp_path: Path,
) -> None:
    # >= 256 entries take the two-thread path; its error must still be a plain BadRange
    # (an ExceptionGroup would escape every `except BadRange` and leave the peer trusted).
    log = HubLog(tmp_path, 400)
    raws = log.raws()
    bad = bytearray(raws[300])
    bad[-1] ^= 1
    raws[300] = bytes(bad)
    site = log.fresh_site().log

    async def main() -> None:
        with pytest.raises(BadRange, match="peer-x served entry 300"):
            await site.verify_batch_async(0, raws, log.signed, "peer-x")

    trio.run(main)
    assert site.size == 0 and site.store.size() == 0


def test_a_verified_large_batch_commits_and_its_checkpoint_is_served(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 300)
    server = log.fresh_site()
    site = server.log

    async def main() -> None:
        entries, frontier = await site.verify_batch_async(0, log.raws(), log.signed, "hub")
        site.commit(entries, frontier, log.signed, "hub")

    trio.run(main)
    assert site.size == log.log.size
    assert site.frontier.root() == log.signed.checkpoint.root
    assert server.book.latest == log.signed.text
    assert site.store.checkpoints()[-1] == (site.size, log.signed.text)


def test_split_view_distrust_survives_a_restart(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 2)
    site = log.fresh_site().log
    entries, frontier = site.verify_batch(0, log.raws(), log.signed, "hub")
    site.commit(entries, frontier, log.signed, "hub")
    # The hub signs another root for the same size: a split view.
    other = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, site.size, bytes(32)), log.hub)
    with pytest.raises(SplitViewError, match="split view detected"):
        site.check_against_ours(other, "site-b")
    assert not site.trust.trusted(HUB)
    assert [e.kind for e in site.store.evidence()] == ["split-view"]
    restarted = SyncServer(site.store, "site")
    assert restarted.trust.split_view
    assert not restarted.trust.trusted(HUB)


def test_a_checkpoint_over_a_rule_breaking_entry_distrusts_the_hub(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 1)
    site = log.fresh_site().log
    entries, frontier = site.verify_batch(0, log.raws(), log.signed, "hub")
    site.commit(entries, frontier, log.signed, "hub")
    # A stranger admits someone: only the admin may. The lying hub sequences it anyway.
    stranger = AuthorChain(Signer.generate())
    bad = stranger.append(
        "membership", membership_payload("admit", Signer.generate().public_key, "x", "site"), 1
    )
    start = log.log.size
    log.append([bad], check=False)
    got, frontier = site.verify_batch(start, log.raws(start), log.signed, "site-b")
    with pytest.raises(ReplayError):
        site.commit(got, frontier, log.signed, "site-b")
    assert site.size == start and site.state.size == start  # nothing of it kept
    assert "rule-breaking" in (site.trust.reason(HUB) or "")
    assert [e.kind for e in site.store.evidence()] == ["invalid-entry"]


def test_a_failed_write_leaves_memory_as_the_store_and_commits_later(tmp_path: Path) -> None:
    """Memory is never ahead of the store: the same batch commits once the lock is gone."""
    log = HubLog(tmp_path, 3)
    path = tmp_path / "locked.db"
    server = SyncServer(SqliteStore(path, busy_timeout_ms=50), "site")
    site = server.log
    site.expect(ORIGIN, log.hub.public_key)
    entries, frontier = site.verify_batch(0, log.raws(), log.signed, "hub")
    holder = sqlite3.connect(path, isolation_level=None, timeout=5)
    holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        with pytest.raises(StoreError) as failed:
            site.commit(entries, frontier, log.signed, "hub")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert is_local_fault(failed.value)
    assert site.size == 0 and site.state.size == 0 and server.book.latest is None
    assert server.trust.distrusted() == {}  # our fault blames nobody
    site.commit(entries, frontier, log.signed, "hub")
    assert site.size == site.store.size() == len(entries)


def test_local_faults_are_told_apart_from_damage() -> None:
    busy = StoreError("database is locked")
    busy.__cause__ = sqlite3.OperationalError("database is locked")
    assert is_local_fault(busy)
    corrupt = StoreError("malformed")
    cause = sqlite3.DatabaseError("database disk image is malformed")
    cause.sqlite_errorcode = sqlite3.SQLITE_CORRUPT  # type: ignore[attr-defined]
    corrupt.__cause__ = cause
    assert not is_local_fault(corrupt)
    assert not is_local_fault(DamagedLedger("damaged", "x.db"))
    assert not is_local_fault(ValueError("not a store error"))


def test_rebuild_replays_the_store(tmp_path: Path) -> None:
    log = HubLog(tmp_path, 2)
    before = log.log.state.size
    log.log.state = type(log.log.state)()  # a state gone wrong in memory
    log.log.rebuild()
    assert log.log.state.size == before == log.log.size


def test_commit_refuses_a_range_that_does_not_extend_this_log_to_the_checkpoint(
    tmp_path: Path,
) -> None:
    """``commit`` is where bytes are stored: a range verified against another starting
    point, or stopping short of the checkpoint, is refused there too, and nothing stored."""
    log = HubLog(tmp_path, 20)
    size = log.log.size
    site = log.fresh_site().log
    entries, frontier = site.verify_batch(0, log.raws(), log.signed, "hub")
    with pytest.raises(BadRange, match="do not extend our 0 entries"):
        site.commit(entries[:-1], frontier, log.signed, "hub")
    at_10 = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 10, log.log.store.root(10)), log.hub)
    short = site.verify_batch(0, log.raws()[:10], at_10, "hub")[1]
    with pytest.raises(BadRange, match=f"to the checkpoint of size {size}"):
        site.commit(entries[:10], short, log.signed, "hub")
    assert site.size == 0 and site.store.size() == 0 and site.store.checkpoints() == []
    site.commit(entries, frontier, log.signed, "hub")
    assert site.size == size
