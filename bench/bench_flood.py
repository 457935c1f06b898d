"""Flood a real hub with stalled streams and long operation names; report memory and log growth.

    python bench/bench_flood.py [--identities 8] [--streams 40] [--stall-mib 4]
                                [--ops 2000] [--op-kib 60] [--hold 5]

A hub daemon runs as its own process on 127.0.0.1 (``ptm collab create`` + ``ptm hub``). The
attack, from this process, uses several libp2p identities (anyone may make keys and complete
the Noise handshake):

1. every identity opens ``--streams`` streams at once, each announcing an 8 MiB frame and
   sending ``--stall-mib`` MiB of it before stalling (held for ``--hold`` seconds, under the
   server's 30 s body timeout);
2. meanwhile ``--ops`` requests with ``--op-kib`` KiB operation names are sent on one stream.

Measured in the same run: the hub's resident memory before the attack (the baseline) and its
peak during it (psutil, sampled every 20 ms), the growth of its log file,
and the round trip of an honest ``checkpoint`` request before and during the flood. Each is
printed against the bound the daemon sets (``rpc.TOTAL_FRAME_BUDGET`` and the per-peer stream
cap for memory; ``rpc.LOG_BURST`` lines per kind per minute for the log).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import trio

from ptm_p2p.dev.cluster import LocalCluster
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.network.framing import HEADER, MAX_FRAME, decode, encode, read_frame, write_frame
from ptm_p2p.network.host import free_port, listen_addr, make_host, parse_peer_addr
from ptm_p2p.network.protocol import PROTOCOL_ID
from ptm_p2p.network.rpc import (
    LOG_BURST,
    LOG_QUOTE,
    LOG_WINDOW_S,
    MAX_STREAMS_PER_PEER,
    TOTAL_FRAME_BUDGET,
    PeerClient,
)

MIB = 1024 * 1024
# Kinds of complaint the flood provokes (rpc.LogLimiter kinds): bad-request,
# too-many-streams, frame-budget, dropped, refused; one summary line each per window.
FLOOD_KINDS = 5
LINE_BYTES = LOG_QUOTE + 250  # a clipped quote plus timestamp, logger, peer id and text


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    return int(psutil.Process(pid).memory_info().rss)


class PeakSampler:
    """Samples a process's resident memory every 20 ms in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def honest_rtts(addr: str, count: int) -> list[float]:
    """Round trips (ms) of ``checkpoint`` requests from a well-behaved client."""
    host = make_host(Signer.generate().seed)
    info = parse_peer_addr(addr)
    out: list[float] = []
    async with host.run([listen_addr("127.0.0.1", free_port())]):
        client = PeerClient(host, info.peer_id, info.addrs)
        await client.call("checkpoint", timeout=30)
        for _ in range(count):
            start = time.perf_counter()
            await client.call("checkpoint", timeout=30)
            out.append((time.perf_counter() - start) * 1000)
            await trio.sleep(0.05)
        await client.close()
    return out


async def stalled_streams(
    addr: str, streams: int, stall: int, hold: float, counts: dict[str, int]
) -> None:
    """One identity: ``streams`` frames announcing MAX_FRAME bytes, ``stall`` sent, then held."""
    host = make_host(Signer.generate().seed)
    info = parse_peer_addr(addr)
    chunk = bytes(256 * 1024)
    async with host.run([listen_addr("127.0.0.1", free_port())]):
        await host.connect(info)
        opened: list[Any] = []
        for _ in range(streams):
            try:
                opened.append(await host.new_stream(info.peer_id, [PROTOCOL_ID]))
            except Exception:
                counts["refused at open"] += 1  # over the stream cap

        async def send(stream: Any) -> None:
            try:
                with trio.move_on_after(hold):
                    await stream.write(HEADER.pack(MAX_FRAME))
                    for _ in range(stall // len(chunk)):
                        await stream.write(chunk)
                    counts["body bytes sent, then stalled"] += 1
                    await trio.sleep(hold)
            except Exception:
                counts["reset by the hub"] += 1

        async with trio.open_nursery() as nursery:
            for stream in opened:
                nursery.start_soon(send, stream)
        for stream in opened:
            with contextlib.suppress(Exception):
                await stream.reset()


async def long_ops(addr: str, ops: int, op_len: int, counts: dict[str, int]) -> None:
    """Unknown operations with long names, pipelined; a stream the hub resets is reopened."""
    host = make_host(Signer.generate().seed)
    info = parse_peer_addr(addr)
    async with host.run([listen_addr("127.0.0.1", free_port())]):
        await host.connect(info)
        stream = None
        for i in range(ops):
            try:
                if stream is None:
                    stream = await host.new_stream(info.peer_id, [PROTOCOL_ID])
                await write_frame(stream, encode({"v": 1, "op": f"{i:08d}" + "x" * op_len}))
                if decode(await read_frame(stream)).get("error") == "unknown-op":
                    counts["long op names answered unknown-op"] += 1
            except Exception:
                counts["long op names refused (stream reset)"] += 1
                stream = None
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.reset()


async def flood(addr: str, args: argparse.Namespace, counts: dict[str, int]) -> list[float]:
    rtts: list[float] = []

    async def measure() -> None:
        await trio.sleep(0.5)
        rtts.extend(await honest_rtts(addr, 20))

    async with trio.open_nursery() as nursery:
        for _ in range(args.identities):
            nursery.start_soon(
                stalled_streams, addr, args.streams, args.stall_mib * MIB, args.hold, counts
            )
        nursery.start_soon(long_ops, addr, args.ops, args.op_kib * 1024, counts)
        nursery.start_soon(measure)
    return rtts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--identities", type=int, default=8, help="attacking peer identities")
    parser.add_argument("--streams", type=int, default=40, help="stalled streams per identity")
    parser.add_argument("--stall-mib", type=int, default=4, help="MiB sent of each 8 MiB frame")
    parser.add_argument("--ops", type=int, default=2000, help="requests with long op names")
    parser.add_argument("--op-kib", type=int, default=60, help="KiB per op name")
    parser.add_argument("--hold", type=float, default=5.0, help="seconds the frames stall")
    args = parser.parse_args()
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)  # refused streams are expected
    if not 0 < args.hold < 30:
        parser.error("--hold must be under the server's 30 s body timeout")

    with (
        tempfile.TemporaryDirectory(prefix="ptm-bench-flood-") as tmp,
        LocalCluster(Path(tmp)) as cluster,
    ):
        cluster.create("bench.example/flood", "bench")
        cluster.start_hub()
        addr = cluster.invitation.hub_addr
        pid = cluster.procs["hub"].pid
        log_file = Path(tmp) / "hub.log"
        time.sleep(1.0)  # let the hub settle before the baseline
        baseline_rss = rss(pid)
        baseline_rtt = trio.run(honest_rtts, addr, 20)
        log_before = log_file.stat().st_size
        counts: dict[str, int] = {
            "refused at open": 0,
            "reset by the hub": 0,
            "body bytes sent, then stalled": 0,
            "long op names answered unknown-op": 0,
            "long op names refused (stream reset)": 0,
        }
        started = time.perf_counter()
        with PeakSampler(pid) as sampler:
            flood_rtt = trio.run(flood, addr, args, counts)
        took = time.perf_counter() - started
        log_growth = log_file.stat().st_size - log_before
        alive = cluster.alive("hub")
        peak = sampler.peak

    growth = peak - baseline_rss
    # Memory: the frame budget, plus for every stream within the cap a small frame's worth
    # (64 KiB) and a yamux receive window (256 KiB), plus 32 MiB for everything else.
    streams_held = args.identities * min(args.streams, MAX_STREAMS_PER_PEER)
    memory_bound = TOTAL_FRAME_BUDGET + streams_held * (64 + 256) * 1024 + 32 * MIB
    minutes = max(1, int(took // LOG_WINDOW_S) + 1)
    log_bound = minutes * FLOOD_KINDS * (LOG_BURST + 2) * LINE_BYTES
    attack_bytes = (
        args.identities * args.streams * args.stall_mib * MIB + args.ops * args.op_kib * 1024
    )
    print(f"flood: {args.identities} identities x {args.streams} stalled streams "
          f"({args.stall_mib} MiB of 8 MiB each, held {args.hold:g} s) + {args.ops} ops of "
          f"{args.op_kib} KiB; {attack_bytes / MIB:,.0f} MiB offered in {took:.1f} s")  # fmt: skip
    for what, n in counts.items():
        print(f"  {what:36s} {n:6d}")
    print(f"baseline memory (hub at rest)         {baseline_rss / MIB:8.1f} MiB")
    print(f"peak memory during the flood          {peak / MIB:8.1f} MiB")
    print(f"peak memory growth                    {growth / MIB:8.1f} MiB  bound "
          f"{memory_bound / MIB:.0f} MiB  ratio {growth / memory_bound:.2f}")  # fmt: skip
    print(f"log growth                            {log_growth / 1024:8.1f} KiB  bound "
          f"{log_bound / 1024:.0f} KiB  ratio {log_growth / log_bound:.2f}  "
          f"({log_growth / attack_bytes * 1e6:.1f} bytes logged per MB offered)")  # fmt: skip
    print(f"honest checkpoint round trip          median {statistics.median(baseline_rtt):.1f} ms "
          f"at rest, {statistics.median(flood_rtt):.1f} ms during the flood "
          f"(max {max(flood_rtt):.1f} ms)")  # fmt: skip
    print(f"hub still running                     {alive}")
    ok = alive and growth <= memory_bound and log_growth <= log_bound
    print("within bounds" if ok else "OUT OF BOUNDS")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
