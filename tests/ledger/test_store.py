"""LogStore contract, run on MemoryStore and SqliteStore, plus SQLite durability and schema.

Entries are real signed entries (``store_writer.entries``); the kill test runs a real child
process and SIGKILLs it while it appends.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ptm_p2p.errors import EquivocationError, StoreError
from ptm_p2p.ledger import merkle
from ptm_p2p.ledger.store import EVIDENCE_EQUIVOCATION, LogStore, MemoryStore, SqliteStore

# The helper is also the kill test's child script, so it is a plain file next to this one;
# make it importable whatever pytest's import mode or package layout of tests/ is.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import store_writer  # noqa: E402
from store_writer import entries, equivocating_twin  # noqa: E402

WRITER = Path(store_writer.__file__)


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogStore]:
    s: LogStore = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "l.db")
    yield s
    s.close()


def leaves_of(raws: list[bytes]) -> list[bytes]:
    return [merkle.leaf_hash(r) for r in raws]


class TestLogStoreContract:
    """The same behaviour on every backend."""

    def test_empty(self, store: LogStore) -> None:
        assert store.size() == 0
        assert store.root() == hashlib.sha256(b"").digest()
        assert store.raw_range(0, 0) == []
        assert store.head(store_writer.ADMIN.public_key) is None
        assert store.consistency_proof(0, 0) == []
        with pytest.raises(StoreError, match="outside"):
            store.raw(0)
        with pytest.raises(StoreError, match="outside"):
            store.inclusion_proof(0)
        with pytest.raises(StoreError, match="not available"):
            store.root(1)
        assert store.append([]) == 0

    def test_append_and_read(self, store: LogStore) -> None:
        es = entries(0, 10)
        assert store.append(es[:3]) == 3
        assert store.append(es[3:10]) == 10
        assert store.size() == 10
        assert store.raw_range(0, 10) == [e.raw for e in es]
        assert store.raw(7) == es[7].raw
        assert store.leaf_hash(7) == merkle.leaf_hash(es[7].raw)
        assert store.root() == merkle.root(leaves_of([e.raw for e in es]))
        with pytest.raises(StoreError, match="outside"):
            store.raw_range(5, 11)

    def test_roots_and_proofs_equal_list_functions(self, store: LogStore) -> None:
        es = entries(0, 90)
        lh = leaves_of([e.raw for e in es])
        size, step = 0, 1
        while size < len(es):
            size = store.append(es[size : size + step])
            step = step * 2 % 13 + 1
        for n in range(len(es) + 1):
            assert store.root(n) == merkle.root(lh[:n]), n
            for m in range(0, n, 7 if n > 30 else 1):
                assert store.inclusion_proof(m, n) == merkle.inclusion_proof(lh[:n], m)
            for old in range(n + 1):
                assert store.consistency_proof(old, n) == merkle.consistency_proof(lh[:n], old)
        proof = store.inclusion_proof(42)
        merkle.verify_inclusion(lh[42], 42, 90, proof, store.root())
        store.check_integrity()

    def test_head(self, store: LogStore) -> None:
        es = entries(0, 9)
        store.append(es)
        a3 = store_writer.AUTHORS[3].public_key
        last = [e for e in es if e.author == a3][-1]
        assert store.head(a3) == (last.seq, last.hash)
        assert store.head(b"\x00" * 32) is None

    def test_duplicate_rejected(self, store: LogStore) -> None:
        es = entries(0, 6)
        store.append(es[:4])
        root = store.root()
        with pytest.raises(StoreError, match="already in the log at index 2"):
            store.append([es[4], es[2]])
        with pytest.raises(StoreError, match="twice"):
            store.append([es[4], es[4]])
        assert store.size() == 4 and store.root() == root
        assert store.evidence() == []
        assert store.append(es[4:6]) == 6

    def test_equivocation_evidence_kept_nothing_appended(self, store: LogStore) -> None:
        es = entries(0, 8)
        store.append(es[:6])
        root = store.root()
        twin = equivocating_twin(es[5])
        assert (twin.author, twin.seq) == (es[5].author, es[5].seq) and twin.raw != es[5].raw
        with pytest.raises(EquivocationError) as info:
            store.append([es[6], twin, es[7]])
        assert info.value.first == es[5].raw and info.value.second == twin.raw
        assert "seq" in str(info.value) and "evidence" in str(info.value)
        assert store.size() == 6 and store.root() == root
        [ev] = store.evidence()
        assert (ev.kind, ev.first, ev.second) == (EVIDENCE_EQUIVOCATION, es[5].raw, twin.raw)
        assert ev.recorded_at > 1_600_000_000_000
        # offered again (gossip repeats): still one evidence row
        with pytest.raises(EquivocationError):
            store.append([twin])
        assert len(store.evidence()) == 1
        # the honest continuation still appends
        assert store.append(es[6:8]) == 8

    def test_equivocation_within_one_batch(self, store: LogStore) -> None:
        es = entries(0, 3)
        twin = equivocating_twin(es[2])
        with pytest.raises(EquivocationError) as info:
            store.append([es[0], es[1], es[2], twin])
        assert (info.value.first, info.value.second) == (es[2].raw, twin.raw)
        assert store.size() == 0
        assert len(store.evidence()) == 1

    def test_bad_entry_objects_rejected(self, store: LogStore) -> None:
        e = entries(0, 1)[0]

        class Fake:
            raw = e.raw
            hash = hashlib.sha256(b"other").digest()
            author = e.author
            seq = e.seq

        with pytest.raises(StoreError, match="not SHA-256"):
            store.append([Fake()])
        Fake.hash = e.hash
        Fake.seq = 0
        with pytest.raises(StoreError, match="seq >= 1"):
            store.append([Fake()])
        assert store.size() == 0

    def test_checkpoints_and_evidence(self, store: LogStore) -> None:
        store.add_checkpoint("note one\n", 1)
        store.add_checkpoint("note two\n", 5)
        assert store.checkpoints() == [(1, "note one\n"), (5, "note two\n")]
        store.add_evidence("split-view", b"a", b"b", "two roots at size 5", now_ms=123)
        store.add_evidence("split-view", b"a", b"b", "again", now_ms=456)
        [ev] = store.evidence()
        assert (ev.kind, ev.first, ev.second, ev.detail, ev.recorded_at) == (
            "split-view",
            b"a",
            b"b",
            "two roots at size 5",
            123,
        )


# --- SQLite only -------------------------------------------------------------------------------


def test_sqlite_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    es = entries(0, 40)
    with SqliteStore(path) as s:
        s.append(es[:30])
        with pytest.raises(EquivocationError):
            s.append([es[30], equivocating_twin(es[29])])
        s.add_checkpoint("cp\n", 30)
        root = s.root()
    with SqliteStore(path) as s:
        assert s.size() == 30 and s.root() == root
        assert [ev.second for ev in s.evidence()] == [equivocating_twin(es[29]).raw]
        assert s.checkpoints() == [(30, "cp\n")]
        assert s.append(es[30:40]) == 40
        s.check_integrity()
    # sqlite's own view of the settings we rely on
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_sqlite_two_handles_share_one_log(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    es = entries(0, 20)
    a, b = SqliteStore(path), SqliteStore(path)
    for i in range(0, 20, 2):
        a.append([es[i]])
        b.append([es[i + 1]])
    assert a.size() == b.size() == 20
    assert a.root() == merkle.root(leaves_of([e.raw for e in es]))
    a.check_integrity()
    a.close()
    b.close()


def test_sqlite_detects_tampering(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    es = entries(0, 33)
    with SqliteStore(path) as s:
        s.append(es)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE entries SET raw = ? WHERE idx = 17", (es[17].raw[:-1] + b"\x00",))
    conn.close()
    with SqliteStore(path) as s, pytest.raises(StoreError, match="level 0, index 17"):
        s.check_integrity()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE entries SET raw = ? WHERE idx = 17", (es[17].raw,))
        conn.execute("DELETE FROM nodes WHERE level = 4 AND idx = 1")
    conn.close()
    with SqliteStore(path) as s:
        with pytest.raises(StoreError, match="missing"):
            s.check_integrity()
        s.root()  # the root of 33 leaves reads (5, 0) and (0, 32) only
        with pytest.raises(StoreError, match=r"level 4, index 1\) is missing"):
            s.inclusion_proof(3)


def test_sqlite_refuses_foreign_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError, match="not a ptm ledger"):
        SqliteStore(junk)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    conn.close()
    with pytest.raises(StoreError, match=r"not a ptm ledger \(tables: photos\)"):
        SqliteStore(other)
    newer = tmp_path / "newer.db"
    SqliteStore(newer).close()
    conn = sqlite3.connect(newer)
    with conn:
        conn.execute("UPDATE ptm_schema SET version = 99")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore(newer)
    with pytest.raises(StoreError, match="cannot open|not a ptm ledger"):
        SqliteStore(tmp_path / "no-such-dir" / "x.db")


# --- durability: SIGKILL a real writer mid-append -----------------------------------------------


def _start_writer(path: Path, batch: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=WRITER.parent,
    )


def test_sigkill_mid_append_loses_nothing_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    rng = random.Random(9162)
    acked = 0
    for round_ in range(6):
        proc = _start_writer(path, batch=rng.choice([7, 50, 128]))
        try:
            assert proc.stdout is not None
            for _ in range(rng.randint(1, 6)):
                line = proc.stdout.readline()
                if not line:
                    pytest.fail(f"writer died early: {proc.stderr.read() if proc.stderr else ''}")
                acked = max(acked, int(line))
            # kill at a random moment, most likely in the middle of the next batch
            time.sleep(rng.uniform(0, 0.03))
            proc.send_signal(signal.SIGKILL)
            # the child may have acknowledged more before dying: those count too
            rest, _ = proc.communicate(timeout=10)
            acked = max([acked, *(int(x) for x in rest.split())])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL
        with SqliteStore(path) as s:
            size = s.size()
            assert size >= acked, f"round {round_}: acknowledged {acked}, found {size}"
            raws = s.raw_range(0, size)
            assert raws == [e.raw for e in entries(0, size)]  # raw bytes intact
            assert s.root() == merkle.root(leaves_of(raws))
            s.check_integrity()  # every stored node matches the entries
    assert acked > 0
