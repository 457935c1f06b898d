"""Blobs outside the log (issue 14): the hub's store and ``/ptm/blob/1.0.0`` transfers.

The hub runs as a real ``ptm hub`` process; clients are real libp2p hosts in this process
whose identities are homes the admin admitted (or not). The store's own rules (retention,
crash recovery) are also tested directly on a real SQLite index and real files.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from harness import ADMIN_ORG, ORIGIN, Cluster, wait_for

from ptm_p2p.errors import BlobError, BlobMismatch, BlobRefused, PtmError
from ptm_p2p.home import Home
from ptm_p2p.hub.blob_store import DAY_S, BlobStore
from ptm_p2p.network import blobs, protocol
from ptm_p2p.network.home_status import render
from ptm_p2p.network.host import make_host, parse_peer_addr
from ptm_p2p.network.rpc import PeerClient

MB = 1024 * 1024


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Cluster]:
    """A running hub whose collaboration admitted ``site-a``; ``stranger`` is not admitted.

    The hub's ``[hub]`` section is set to a 150 MB quota so that the quota test can reach it
    with small blobs while the 100 MB test fits.
    """
    c = Cluster(tmp_path)
    try:
        c.create(ORIGIN, ADMIN_ORG)
        with open(c.hub_home.config_path, "a") as config:
            config.write('\n[hub]\nblob_quota = "150m"\nblob_retention = 30\n')
        c.start_hub()
        c.home("site-a")
        c.home("stranger")
        c.admit("site-a")
        yield c
    finally:
        c.close()


def as_member(cluster: Cluster, name: str, work: Callable[..., Awaitable[Any]]) -> Any:
    """Run ``work(host, peer_id, addrs)`` on a libp2p host with ``name``'s identity.

    Domain errors come back raised as themselves, not wrapped in libp2p's exception groups.
    """
    home: Home = cluster.home(name)
    info = parse_peer_addr(cluster.invitation.hub_addr)

    async def main() -> tuple[bool, Any]:
        host = make_host(home.signer.seed)
        async with host.run([]):
            try:
                return True, await work(host, info.peer_id, info.addrs)
            except PtmError as exc:
                return False, exc

    ok, value = trio.run(main)
    if not ok:
        raise value
    return value


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def stored_path(cluster: Cluster, blob: bytes) -> Path:
    return cluster.hub_home.path / "blobs" / blob.hex()[:2] / blob.hex()[2:]


def parts(cluster: Cluster) -> list[Path]:
    return sorted((cluster.hub_home.path / "blobs" / "parts").glob("*.part"))


def test_a_100_mb_blob_goes_up_and_comes_back_intact(hub: Cluster, tmp_path: Path) -> None:
    data = os.urandom(100 * MB)
    blob = sha(data)

    async def work(host: Any, peer: Any, addrs: Any) -> Any:
        sent = await blobs.put_blob(host, peer, addrs, data, blob)
        again = await blobs.put_blob(host, peer, addrs, data, blob)  # already there: no bytes
        back = await blobs.get_blob(host, peer, addrs, blob, len(data))
        to_file = await blobs.get_blob_to_file(host, peer, addrs, blob, tmp_path / "out", len(data))
        return sent, again, back, to_file

    sent, again, back, to_file = as_member(hub, "site-a", work)
    assert sent.sent == len(data) and sent.resumed_from == 0
    assert again.already_stored and again.sent == 0
    assert back == data
    assert (tmp_path / "out").read_bytes() == data and to_file.sent == len(data)
    assert not (tmp_path / "out.part").exists()
    assert stored_path(hub, blob).read_bytes() == data  # ciphertext at rest, content-addressed
    assert parts(hub) == []
    status = hub.status("hub")
    assert status["blobs"] == {"count": 1, "bytes": len(data), "parts": 0}
    assert f"blobs       1 stored, {len(data):,} bytes" in render(status)  # `ptm status`


def test_a_cut_upload_resumes_and_sends_only_the_rest(hub: Cluster) -> None:
    data = os.urandom(40 * MB)
    blob = sha(data)

    async def work(host: Any, peer: Any, addrs: Any) -> Any:
        with trio.CancelScope() as scope:

            def cut(done: int, size: int) -> None:
                if done >= 15 * MB:
                    scope.cancel()  # the stream is reset in the middle of the upload

            await blobs.put_blob(host, peer, addrs, data, blob, progress=cut)
        assert scope.cancelled_caught
        await trio.sleep(0.5)  # let the hub notice the reset and flush what it received
        stat = await blobs.stat_blob(host, peer, addrs, blob)
        resumed = await blobs.put_blob(host, peer, addrs, data, blob)
        back = await blobs.get_blob(host, peer, addrs, blob, len(data))
        return stat, resumed, back

    stat, resumed, back = as_member(hub, "site-a", work)
    assert not stat.have and 0 < stat.offset < len(data)
    assert resumed.resumed_from == stat.offset
    assert resumed.sent == len(data) - stat.offset  # only the rest went over the network
    assert back == data
    assert parts(hub) == []


def test_a_cut_download_resumes_from_the_file_it_has(hub: Cluster, tmp_path: Path) -> None:
    data = os.urandom(30 * MB)
    blob = sha(data)
    out = tmp_path / "answer.bin"

    async def work(host: Any, peer: Any, addrs: Any) -> Any:
        await blobs.put_blob(host, peer, addrs, data, blob)
        with trio.CancelScope() as scope:

            def cut(done: int, size: int) -> None:
                if done >= 10 * MB:
                    scope.cancel()

            await blobs.get_blob_to_file(host, peer, addrs, blob, out, len(data), progress=cut)
        had = (tmp_path / "answer.bin.part").stat().st_size
        stats = await blobs.get_blob_to_file(host, peer, addrs, blob, out, len(data))
        return had, stats

    had, stats = as_member(hub, "site-a", work)
    assert 10 * MB <= had < len(data)
    assert stats.resumed_from == had and stats.sent == len(data) - had
    assert out.read_bytes() == data


def test_bytes_that_do_not_hash_to_the_blob_id_are_refused_and_not_kept(hub: Cluster) -> None:
    data = os.urandom(3 * MB)
    claimed = sha(b"something else")

    async def work(host: Any, peer: Any, addrs: Any) -> Any:
        with pytest.raises(BlobMismatch) as caught:
            await blobs.put_blob(host, peer, addrs, data, claimed)
        stat = await blobs.stat_blob(host, peer, addrs, claimed)
        with pytest.raises(BlobError, match="holds no blob"):
            await blobs.get_blob(host, peer, addrs, claimed)
        return caught.value, stat

    error, stat = as_member(hub, "site-a", work)
    assert "nothing was stored" in str(error) and "peer " in str(error)
    assert not stat.have and stat.offset == 0
    assert not stored_path(hub, claimed).exists() and parts(hub) == []


def test_a_non_member_can_neither_store_nor_fetch(hub: Cluster) -> None:
    data = os.urandom(MB)
    blob = sha(data)
    as_member(hub, "site-a", lambda h, p, a: blobs.put_blob(h, p, a, data, blob))

    async def work(host: Any, peer: Any, addrs: Any) -> Any:
        with pytest.raises(BlobRefused) as put:
            await blobs.put_blob(host, peer, addrs, os.urandom(MB))
        with pytest.raises(BlobRefused) as get:
            await blobs.get_blob(host, peer, addrs, blob)
        return put.value, get.value

    put, get = as_member(hub, "stranger", work)
    for error in (put, get):
        assert "not an admitted member" in str(error)
    assert len(list((hub.hub_home.path / "blobs").glob("??/*"))) == 1


def test_an_upload_over_the_quota_is_refused_before_any_byte(hub: Cluster) -> None:
    first = os.urandom(100 * MB)
    second = os.urandom(60 * MB)  # 100 + 60 MB > the 150 MB quota

    async def work(host: Any, peer: Any, addrs: Any) -> Any:
        await blobs.put_blob(host, peer, addrs, first)
        with pytest.raises(BlobRefused) as caught:
            await blobs.put_blob(host, peer, addrs, second)
        return caught.value

    error = as_member(hub, "site-a", work)
    assert "quota exceeded" in str(error) and "[hub] blob_quota" in str(error)
    assert "nothing was stored" in str(error)
    assert not stored_path(hub, sha(second)).exists() and parts(hub) == []


def test_an_upload_survives_a_hub_crash_and_restart(hub: Cluster) -> None:
    """SIGKILL the hub mid-upload: the client retries with back-off and resumes from what
    the restarted hub kept; the blob arrives intact."""
    data = os.urandom(60 * MB)
    blob = sha(data)
    killed: list[int] = []

    async def work(host: Any, peer: Any, addrs: Any) -> Any:
        async def restart() -> None:
            await trio.to_thread.run_sync(hub.start_hub)

        async with trio.open_nursery() as nursery:

            def crash(done: int, size: int) -> None:
                if done >= 20 * MB and not killed:
                    killed.append(done)
                    hub.procs["hub"].send_signal(signal.SIGKILL)
                    hub.procs["hub"].wait()
                    nursery.start_soon(restart)

            stats = await blobs.put_blob(host, peer, addrs, data, blob, progress=crash)
        return stats, await blobs.get_blob(host, peer, addrs, blob, len(data))

    stats, back = as_member(hub, "site-a", work)
    assert killed and stats.attempts > 1
    assert back == data
    # Acknowledged means durable: killed again right after, the hub still serves it.
    hub.procs["hub"].send_signal(signal.SIGKILL)
    hub.procs["hub"].wait()
    hub.start_hub()
    assert as_member(hub, "site-a", lambda h, p, a: blobs.get_blob(h, p, a, blob)) == data


# --- the store itself ---------------------------------------------------------------------


def _store_blob(store: BlobStore, owner: bytes, data: bytes) -> bytes:
    blob = sha(data)
    part = store.open_part(owner, blob, len(data), 0)
    try:
        part.open()
        part.write(data)
        assert part.finish()
    finally:
        part.close()
    return blob


def test_retention_sweeps_out_old_blobs_only(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = BlobStore(tmp_path / "blobs", retention_days=30, clock=lambda: now[0])
    owner = b"\x01" * 32
    old = _store_blob(store, owner, b"old answer")
    now[0] += 20 * DAY_S
    young = _store_blob(store, owner, b"young answer")
    stale_part = store.open_part(owner, sha(b"never finished"), 100, 0)
    stale_part.open()
    stale_part.write(b"x" * 10)
    stale_part.close()
    os.utime(store.part_path(owner, sha(b"never finished")), (now[0], now[0]))

    assert store.sweep(now[0] + 9 * DAY_S) == (0, 0)  # nothing is 30 days old yet
    now[0] += 11 * DAY_S  # old: 31 days, young: 11 days, the part: 11 days
    removed, _ = store.sweep()
    assert removed == 1
    assert store.size_of(old) is None and not store.path(old).exists()
    assert store.size_of(young) == len(b"young answer")
    assert store.partial(owner, sha(b"never finished")) == 10
    now[0] += 25 * DAY_S
    store.sweep()
    assert store.size_of(young) is None and store.partial(owner, sha(b"never finished")) == 0
    assert store.stats() == {"count": 0, "bytes": 0, "parts": 0}
    store.close()


def test_the_store_recovers_from_a_crash_between_its_row_and_its_rename(tmp_path: Path) -> None:
    """A crash after the index row was committed but before the part was renamed: on reopen
    the row is dropped, and the complete part is finished by the uploader's next PUT."""
    owner = b"\x02" * 32
    data = os.urandom(100_000)
    blob = sha(data)
    store = BlobStore(tmp_path / "blobs")
    part = store.open_part(owner, blob, len(data), 0)
    part.open()
    part.write(data)
    part.close()
    store._db.execute(  # what _commit writes first
        "INSERT INTO blobs (blob, owner, size, stored) VALUES (?, ?, ?, 0)",
        (blob, owner, len(data)),
    )
    store.close()

    store = BlobStore(tmp_path / "blobs")
    assert store.size_of(blob) is None and store.stats()["count"] == 0
    assert store.partial(owner, blob) == len(data)
    part = store.open_part(owner, blob, len(data), len(data))
    part.open()
    assert part.finish()
    part.close()
    assert store.path(blob).read_bytes() == data and store.held(owner) == len(data)
    store.close()


def test_the_running_hub_sweeps_out_blobs_past_their_retention(tmp_path: Path) -> None:
    """``[hub] blob_retention`` reaches the daemon's periodic sweep: with a retention of
    about 17 s, a blob stored 8 s before another is removed while the younger one stays."""
    c = Cluster(tmp_path)
    try:
        c.create(ORIGIN, ADMIN_ORG)
        with open(c.hub_home.config_path, "a") as config:
            config.write("\n[hub]\nblob_retention = 0.0002\n")  # 17.28 s, swept every 1.7 s
        c.start_hub()
        c.home("site-a")
        c.admit("site-a")
        old, young = os.urandom(1000), os.urandom(1000)
        as_member(c, "site-a", lambda h, p, a: blobs.put_blob(h, p, a, old))
        time.sleep(8)
        as_member(c, "site-a", lambda h, p, a: blobs.put_blob(h, p, a, young))
        wait_for("the old blob to be swept", lambda: not stored_path(c, sha(old)).exists(), 30)
        assert stored_path(c, sha(young)).exists()
        wait_for("the young blob to be swept", lambda: not stored_path(c, sha(young)).exists(), 30)
        wait_for("`ptm status` to count 0 blobs", lambda: c.status("hub")["blobs"]["count"] == 0)
    finally:
        c.close()


def test_a_blob_larger_than_the_hub_takes_is_refused(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_blob_size=5000, quota=8000)
    owner = b"\x03" * 32
    with pytest.raises(BlobRefused, match="larger than this hub takes"):
        store.check_put(owner, sha(b"x"), 5001, 0)
    store.check_put(owner, sha(b"x"), 5000, 0)
    # An upload in progress is charged its declared size: a second one cannot slip past.
    part = store.open_part(owner, sha(b"x"), 5000, 0)
    with pytest.raises(BlobRefused, match="quota exceeded"):
        store.check_put(owner, sha(b"y"), 3001, 0)
    part.close()  # nothing of it was written: it holds nothing any more
    store.check_put(owner, sha(b"y"), 3001, 0)
    store.close()


def test_put_and_get_share_the_hub_client_a_site_already_holds(hub: Cluster) -> None:
    """FORMAT.md's ``blobs.put(client, blob, data)`` / ``blobs.get(client, blob, size)``: the
    transfer runs on the connection of the ``PeerClient`` that also carries sync requests."""
    data = os.urandom(5 * MB)
    blob = sha(data)

    async def work(host: Any, peer: Any, addrs: Any) -> Any:
        client = PeerClient(host, peer, addrs)
        try:
            before = await client.ask(protocol.CheckpointRequest())
            await blobs.put(client, blob, data)
            back = await blobs.get(client, blob, len(data))
            after = await client.ask(protocol.CheckpointRequest())
        finally:
            await client.close()
        return before, back, after, len(host.get_network().connections)

    before, back, after, connections = as_member(hub, "site-a", work)
    assert back == data and after.size == before.size
    assert connections == 1


def test_a_damaged_copy_at_the_hub_is_caught_by_the_reader_naming_the_hub(
    hub: Cluster, tmp_path: Path
) -> None:
    data = os.urandom(2 * MB)
    blob = sha(data)
    out = tmp_path / "answer.bin"

    async def work(host: Any, peer: Any, addrs: Any) -> Any:
        await blobs.put_blob(host, peer, addrs, data, blob)
        with pytest.raises(BlobMismatch) as wrong_size:
            await blobs.get_blob(host, peer, addrs, blob, len(data) + 1)
        on_disk = stored_path(hub, blob)
        damaged = bytearray(on_disk.read_bytes())
        damaged[12345] ^= 1
        on_disk.write_bytes(bytes(damaged))  # a disk fault, or a hub that lies
        with pytest.raises(BlobMismatch) as in_memory:
            await blobs.get_blob(host, peer, addrs, blob, len(data))
        with pytest.raises(BlobMismatch) as to_file:
            await blobs.get_blob_to_file(host, peer, addrs, blob, out, len(data))
        return str(peer), wrong_size.value, in_memory.value, to_file.value

    peer, wrong_size, in_memory, to_file = as_member(hub, "site-a", work)
    assert "the result entry says" in str(wrong_size) and peer in str(wrong_size)
    for error in (in_memory, to_file):
        assert f"from peer {peer} hashes to" in str(error) and "nothing was accepted" in str(error)
    assert not out.exists() and not (tmp_path / "answer.bin.part").exists()
