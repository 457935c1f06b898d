"""Random bytes, oversized frames and malformed requests leave every daemon running."""

from __future__ import annotations

import os
import random
import socket
import struct
from typing import Any

import msgpack
import pytest
import trio
from harness import Cluster, wait_for
from request_fields import REQUEST_FIELDS

from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.network.framing import MAX_FRAME
from ptm_p2p.network.host import free_port, listen_addr, make_host, parse_peer_addr
from ptm_p2p.network.protocol import OPS, PROTOCOL_ID

pytestmark = [pytest.mark.network, pytest.mark.slow]


def _raw_tcp_garbage(addr: str) -> None:
    """Bytes before any handshake: the multistream/Noise layer must shrug them off."""
    info = parse_peer_addr(addr)
    port = int(info.addrs[0].value_for_protocol("tcp"))
    rng = random.Random(1)
    for size in (1, 17, 4096, 1 << 20):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            try:
                sock.sendall(rng.randbytes(size))
                sock.settimeout(1)
                sock.recv(100)
            except OSError:
                pass  # the peer may reset: fine, as long as it keeps running


def _hostile_payloads() -> list[bytes]:
    rng = random.Random(2)
    frames: list[bytes] = []

    def frame(body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + body

    frames.append(rng.randbytes(64))  # random bytes, random "length"
    frames.append(frame(rng.randbytes(100)))  # a frame of garbage
    frames.append(frame(msgpack.packb([1, 2, 3])))  # not a map
    frames.append(frame(msgpack.packb({"v": 99, "op": "checkpoint"})))  # wrong version
    frames.append(frame(msgpack.packb({"v": 1, "op": "rm -rf"})))  # unknown op
    frames.append(
        frame(msgpack.packb({"v": 1, "op": "entries", "start": -1, "end": 2**62, "old_size": True}))
    )
    frames.append(frame(msgpack.packb({"v": 1, "op": "wait", "after": 0, "timeout_ms": "soon"})))
    frames.append(frame(msgpack.packb({"v": 1, "op": "submit", "entries": [b"\x00" * 10, 5]})))
    frames.append(frame(msgpack.packb({"v": 1, "op": "cosign", "note": "not a note\n\n— x y\n"})))
    frames.append(
        frame(
            msgpack.packb(
                {
                    "v": 1,
                    "op": "evidence",
                    "kind": "split-view",
                    "first": b"a",
                    "second": b"b",
                    "detail": "lies",
                }
            )
        )
    )
    deep: Any = []
    for _ in range(500):
        deep = [deep]
    frames.append(frame(msgpack.packb({"v": 1, "op": "hello", "addrs": deep})))
    for op in sorted(OPS):  # every op with random field values
        fields = {
            k: rng.choice([None, -5, 2**63, "x" * 300, b"\xff" * 40, [1], {"a": 1}])
            for k in REQUEST_FIELDS
        }
        frames.append(frame(msgpack.packb({"v": 1, "op": op, **fields}, use_bin_type=True)))
    return frames


async def _attack(addrs: list[str]) -> dict[str, int]:
    """Send every hostile payload on its own stream; count the error answers we got back."""
    host = make_host(Signer.generate().seed)
    answered: dict[str, int] = {}
    async with host.run([listen_addr("127.0.0.1", free_port())]):
        for addr in addrs:
            info = parse_peer_addr(addr)
            await host.connect(info)
            answered[addr] = 0
            payloads = _hostile_payloads()
            payloads.append(struct.pack(">I", 0xFFFFFFFF))  # a 4 GiB frame announced
            payloads.append(struct.pack(">I", MAX_FRAME + 1) + b"\x00" * 1000)
            payloads.append(struct.pack(">I", 1000) + b"\x00" * 10)  # truncated, then closed
            for payload in payloads:
                stream = await host.new_stream(info.peer_id, [PROTOCOL_ID])
                await stream.write(payload)
                try:
                    with trio.move_on_after(2):
                        data = await stream.read(65536)
                        if data and b"error" in data:
                            answered[addr] += 1
                    await stream.reset()
                except Exception:
                    pass  # the daemon reset the stream: allowed for unframeable input
            for proto in ("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/ipfs/id/push/1.0.0"):
                try:
                    stream = await host.new_stream(info.peer_id, [proto])
                    await stream.write(os.urandom(5000))
                    await stream.reset()
                except Exception:
                    pass  # not every protocol is offered: fine
    return answered


def test_garbage_to_every_protocol_leaves_daemons_running(cluster: Cluster) -> None:
    cluster.start_hub()
    cluster.start_site("site-a")
    cluster.admit("site-a")
    before = cluster.add_entries(3)[-1] + 1
    cluster.wait_synced(["site-a"], before)
    targets = [cluster.invitation.hub_addr, cluster.address("site-a")]
    for addr in targets:
        _raw_tcp_garbage(addr)
    answered = trio.run(_attack, targets)
    # Every well-framed hostile request got an error response (not a crash, not silence).
    for addr, count in answered.items():
        assert count >= len(_hostile_payloads()) - 1, (addr, count)
    assert cluster.alive("hub") and cluster.alive("site-a")
    # And they still do their job.
    after = cluster.add_entries(2)[-1] + 1
    cluster.wait_synced(["site-a"], after)
    assert "Traceback" not in cluster.logs("hub") + cluster.logs("site-a")
    wait_for(
        "status files to stay fresh",
        lambda: cluster.status("hub")["running"] and cluster.status("site-a")["running"],
    )
