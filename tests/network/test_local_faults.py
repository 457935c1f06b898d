"""Our own write failures are local faults: never evidence, never distrust, never a lie.

Real daemons on 127.0.0.1 whose ledgers fail to write for a while: another process holding
the SQLite write lock (``BEGIN IMMEDIATE`` from the test), a site home on a full 4 MiB
tmpfs, and a hub whose checkpoint (or entry) writes are made to fail by a trigger the test
arms and disarms. Each test is bounded: a few hundred entries, holds of at most 12 s.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Cluster, audit, wait_for

from ptm_p2p.network.hub_requests import submit
from ptm_p2p.network.protocol import RemoteError

pytestmark = [pytest.mark.network, pytest.mark.slow]


def _status_file(cluster: Cluster, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((cluster.path(name) / "status.json").read_text())
    return data


def _assert_nobody_blamed(cluster: Cluster, name: str) -> None:
    """No peer or hub distrusted, no evidence stored, nothing in distrusted.json."""
    status = cluster.status(name)
    assert not status.get("distrusted"), status.get("distrusted")
    assert not status.get("evidence"), status.get("evidence")
    assert not status.get("split_view")
    distrust_file = cluster.path(name) / "distrusted.json"
    assert not distrust_file.exists() or json.loads(distrust_file.read_text()) == {}


def _two_sites(cluster: Cluster) -> int:
    cluster.start_hub()
    for name in ("site-a", "site-b"):
        cluster.start_site(name)
        cluster.admit(name)
    last = cluster.add_entries(3)[-1] + 1
    cluster.wait_synced(["site-a", "site-b"], last)
    return last


def test_a_held_write_lock_neither_freezes_a_site_nor_blames_anyone(cluster: Cluster) -> None:
    """Before: the site froze in SQLite's 10 s busy wait, then blamed the hub and site-b."""
    _two_sites(cluster)
    ledger = cluster.path("site-a") / "ledger.db"
    holder = sqlite3.connect(ledger, isolation_level=None, timeout=5)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another program holds the ledger's write lock
        held_since = time.monotonic()
        last = 0
        stalest = 0.0
        while time.monotonic() - held_since < 12:
            if last < 80:
                last = cluster.add_entries(20)[-1] + 1  # entries keep arriving meanwhile
            # The daemon's event loop keeps running: its status file stays fresh.
            with contextlib.suppress(ValueError, OSError):
                stalest = max(stalest, time.time() - _status_file(cluster, "site-a")["updated"])
            time.sleep(0.2)
        assert cluster.size("site-a") < last  # it really could not write meanwhile
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert stalest < 3.0, f"site-a's loop froze: status.json went {stalest:.1f} s stale"
    cluster.wait_synced(["site-a", "site-b"], last, timeout=30)
    for name in ("site-a", "site-b"):
        _assert_nobody_blamed(cluster, name)
    assert audit(cluster.path("site-a")) == cluster.size("site-a")
    logs = cluster.logs("site-a")
    assert "not of any peer" in logs
    assert logs.count("not of any peer") == 1  # one line per outage, not one per retry
    assert "Traceback" not in logs


@contextlib.contextmanager
def _tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    path.mkdir(parents=True)
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"this test mounts a small tmpfs and needs root: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to the last byte; returns the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            block = b"\0" * size
            try:
                while os.write(fd, block) == size:
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_a_local_fault_and_replication_resumes(cluster: Cluster) -> None:
    """Before: the failed write left memory ahead of the store, and once space was freed the
    retry failed replay and the honest hub was accused (evidence, distrust for good)."""
    last = _two_sites(cluster)
    with _tmpfs(cluster.root / "site-t"):
        try:
            cluster.start_site("site-t")
            cluster.admit("site-t")
            last = cluster.add_entries(5)[-1] + 1
            cluster.wait_synced(["site-t"], last)
            filler = _fill(cluster.path("site-t"))
            for _ in range(4):
                last = cluster.add_entries(50)[-1] + 1  # 200 entries it cannot store
            time.sleep(4)  # several tries on the full disk
            assert cluster.alive("site-t")
            assert _stored_size(cluster.path("site-t") / "ledger.db") < last
            filler.unlink()
            wait_for(
                "site-t to store what it could not",
                lambda: _stored_size(cluster.path("site-t") / "ledger.db") >= last,
                timeout=40,
            )
            cluster.wait_synced(["site-t"], last, timeout=20)
            _assert_nobody_blamed(cluster, "site-t")
            assert "not of any peer" in cluster.logs("site-t")
            assert audit(cluster.path("site-t")) >= last
            logs = cluster.logs("site-t")
            assert "Traceback" not in logs
            assert len(logs.splitlines()) < 60, "the full disk flooded the log"
            cluster.wait_replicated(["site-t"], last)
        finally:
            if cluster.alive("site-t"):
                cluster.stop("site-t")


# --- the hub -------------------------------------------------------------------------------


def _arm_hub_fault(ledger: Path, table: str) -> None:
    """Make every later insert into ``table`` of the hub's ledger fail while armed.

    An ``ABORT`` from a trigger fails the insert the way a full disk does: SQLite rolls the
    statement back and the store reports a failed write.
    """
    with sqlite3.connect(ledger, timeout=10) as db:
        db.execute("CREATE TABLE IF NOT EXISTS injected_fault (armed INTEGER)")
        db.execute(
            f"CREATE TRIGGER IF NOT EXISTS injected_{table}_fault BEFORE INSERT ON {table} "
            "WHEN (SELECT count(*) FROM injected_fault) > 0 "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full (injected by the test)'); END"
        )
        db.execute("INSERT INTO injected_fault VALUES (1)")


def _disarm_hub_fault(ledger: Path) -> None:
    with sqlite3.connect(ledger, timeout=10) as db:
        db.execute("DELETE FROM injected_fault")


def _stored_size(ledger: Path) -> int:
    with sqlite3.connect(f"{ledger.resolve().as_uri()}?mode=ro", uri=True) as db:
        (size,) = db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries").fetchone()
    return int(size)


def test_the_hub_answers_truthfully_when_its_disk_fails(cluster: Cluster) -> None:
    """Before: entries appended, then the checkpoint write failed, and the submitter was told
    its batch was refused. Now: appended means "yes, at these indexes"; not appended means
    "no, send it again", and the store agrees with the answer either way."""
    last = _two_sites(cluster)
    ledger = cluster.path("hub") / "ledger.db"

    # 1. The entries are stored, the checkpoint over them is not: the answer is success.
    _arm_hub_fault(ledger, "checkpoints")
    try:
        answer = submit(cluster.admin.signer, cluster.invitation, cluster.admissions(5))
        assert answer["indexes"] == list(range(last, last + 5))
        assert _stored_size(ledger) == last + 5
        time.sleep(1.5)  # the hub keeps retrying its checkpoint, sites wait for it
        assert cluster.size("site-a") == last
    finally:
        _disarm_hub_fault(ledger)
    last += 5
    cluster.wait_replicated(["site-a", "site-b"], last)

    # 2. The entries cannot be stored: the answer is a refusal, and nothing was appended.
    _arm_hub_fault(ledger, "entries")
    try:
        with pytest.raises(RemoteError) as refused:
            submit(cluster.admin.signer, cluster.invitation, cluster.admissions(3))
        assert "not in the log" in refused.value.reason
        assert _stored_size(ledger) == last
    finally:
        _disarm_hub_fault(ledger)
    answer = submit(cluster.admin.signer, cluster.invitation, cluster.admissions(3))
    assert answer["indexes"] == list(range(last, last + 3))
    last += 3

    # 3. Another program holds the hub's write lock for a second: the hub tries again and
    #    the submitter simply waits a little; nobody is told to resend.
    holder = sqlite3.connect(ledger, isolation_level=None, timeout=5, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(1.0, holder.execute, ("ROLLBACK",))
    timer.start()
    try:
        answer = submit(cluster.admin.signer, cluster.invitation, cluster.admissions(2))
    finally:
        timer.join()
        holder.close()
    assert answer["indexes"] == list(range(last, last + 2))
    last += 2

    cluster.wait_replicated(["site-a", "site-b"], last)
    for name in ("site-a", "site-b"):
        _assert_nobody_blamed(cluster, name)
    assert cluster.alive("hub")
    assert audit(cluster.path("hub")) == last
