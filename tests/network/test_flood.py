"""A hostile peer can neither fill a daemon's log disk nor pin its memory.

A real hub daemon on 127.0.0.1 and an attacker in this process (a real libp2p host that
completes the Noise handshake like anyone may): 200 requests with 64 KiB operation names, 48
streams held open at once, and 24 frames announcing 8 MiB of which 4 MiB arrive before the
sender stalls. Bounded: about 40 MiB of attack traffic, well under a minute.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import psutil
import pytest
import trio
from harness import Cluster

from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.network.framing import HEADER, MAX_FRAME, decode, encode, read_frame, write_frame
from ptm_p2p.network.host import free_port, listen_addr, make_host, parse_peer_addr
from ptm_p2p.network.protocol import PROTOCOL_ID
from ptm_p2p.network.rpc import MAX_STREAMS_PER_PEER, PEER_FRAME_BUDGET

pytestmark = [pytest.mark.network, pytest.mark.slow]

LONG_OPS = 200
OP_LEN = 64 * 1024
STREAMS = MAX_STREAMS_PER_PEER + 16
STALLED = 24
STALLED_BYTES = 4 * 1024 * 1024


def _rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    return int(psutil.Process(pid).memory_info().rss)


async def _attacker(addr: str, attack: Any) -> Any:
    host = make_host(Signer.generate().seed)
    info = parse_peer_addr(addr)
    async with host.run([listen_addr("127.0.0.1", free_port())]):
        await host.connect(info)
        return await attack(host, info.peer_id)


async def _long_ops(host: Any, peer: Any) -> int:
    """Unknown operations with 64 KiB names, pipelined on one stream; count the answers."""
    stream = await host.new_stream(peer, [PROTOCOL_ID])
    answered = 0
    for i in range(LONG_OPS):
        await write_frame(stream, encode({"v": 1, "op": f"{i:08d}" + "x" * OP_LEN}))
        answer = decode(await read_frame(stream))
        answered += answer.get("error") == "unknown-op"
    await stream.reset()
    return answered


async def _many_streams(host: Any, peer: Any) -> int:
    """Open STREAMS streams at once and ask for the checkpoint on each; count the answers."""
    streams = []
    for _ in range(STREAMS):
        # A stream over the cap is reset as soon as the daemon sees it, sometimes before
        # libp2p's protocol negotiation completes on our side: that is a refusal too.
        with contextlib.suppress(Exception):
            streams.append(await host.new_stream(peer, [PROTOCOL_ID]))
    await trio.sleep(0.5)  # let the daemon start (or refuse) a handler for each
    answered = 0
    for stream in streams:
        with contextlib.suppress(Exception), trio.move_on_after(3):
            await write_frame(stream, encode({"v": 1, "op": "checkpoint"}))
            answered += bool(decode(await read_frame(stream)).get("ok"))
    for stream in streams:
        with contextlib.suppress(Exception):
            await stream.reset()
    return answered


def _stalled_frames(pid: int) -> Any:
    async def attack(host: Any, peer: Any) -> int:
        """STALLED frames announcing MAX_FRAME bytes; send 4 MiB of each, then stall. Return
        the daemon's memory growth while they stall."""
        before = _rss(pid)
        streams = [await host.new_stream(peer, [PROTOCOL_ID]) for _ in range(STALLED)]
        assert STALLED < MAX_STREAMS_PER_PEER  # the frame budget, not the stream cap, acts

        async def send(stream: Any) -> None:
            try:
                with trio.move_on_after(8):
                    await stream.write(HEADER.pack(MAX_FRAME))
                    chunk = os.urandom(256 * 1024)
                    for _ in range(STALLED_BYTES // len(chunk)):
                        await stream.write(chunk)
            except Exception:
                pass  # the daemon refused this frame and reset the stream

        async with trio.open_nursery() as nursery:
            for stream in streams:
                nursery.start_soon(send, stream)
        await trio.sleep(1.0)
        growth = _rss(pid) - before
        for stream in streams:
            with contextlib.suppress(Exception):
                await stream.reset()
        return growth

    return attack


def test_a_flooding_peer_neither_fills_the_log_nor_pins_memory(cluster: Cluster) -> None:
    """Before: an unknown op was logged whole (64 KiB a line), streams were unlimited and
    every stalled frame held its bytes (here +96 MiB; 120 such frames held +790 MB)."""
    cluster.start_hub()
    cluster.start_site("site-a")
    cluster.admit("site-a")
    hub_addr = cluster.invitation.hub_addr
    log_file = cluster.root / "hub.log"
    log_before = log_file.stat().st_size

    answered = trio.run(_attacker, hub_addr, _long_ops)
    assert answered == LONG_OPS  # every request still gets its answer
    grown = log_file.stat().st_size - log_before
    assert grown < 32 * 1024, f"hub log grew {grown} bytes for {LONG_OPS} long op names"
    assert "suppressed" in cluster.logs("hub") or "suppressing" in cluster.logs("hub")

    answered = trio.run(_attacker, hub_addr, _many_streams)
    assert answered <= MAX_STREAMS_PER_PEER, answered
    assert answered >= MAX_STREAMS_PER_PEER - 4, answered  # the cap, not a collapse

    growth = trio.run(_attacker, hub_addr, _stalled_frames(cluster.procs["hub"].pid))
    bound = PEER_FRAME_BUDGET + 16 * 1024 * 1024  # the frames it may hold, plus slack
    assert growth < bound, f"stalled frames grew the hub by {growth >> 20} MiB"

    # The hub still serves everyone else, and its log stayed small.
    assert cluster.alive("hub")
    last = cluster.add_entries(3)[-1] + 1
    cluster.wait_synced(["site-a"], last)
    assert log_file.stat().st_size - log_before < 64 * 1024
    assert "Traceback" not in cluster.logs("hub")
