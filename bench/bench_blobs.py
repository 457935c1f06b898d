"""Blob transfer benchmark: ``/ptm/blob/1.0.0`` against the raw rate of one py-libp2p stream.

    python bench/bench_blobs.py [--size-mb 100] [--reps 3]

A server process (this script with ``--serve``) runs a libp2p host with the blob server of
the hub (``network/blobs.py`` over a real ``hub/blob_store.py`` on disk: hashing, writing,
fsync, index) and two raw handlers: a sink that reads a stream to its end and a source that
writes N bytes, both in 1 MiB writes and nothing else. The client process (this one) then
alternates, per repetition:

1. raw up: N bytes written on one stream to the sink; put: ``put_blob`` of N random bytes;
2. raw down: N bytes read from the source; get: ``get_blob`` of the blob just stored.

Each rate is N ÷ wall time of the whole call (stream opening, STAT, verification and fsync
included for blobs). The figure of issue 14 is blob MB/s ÷ raw MB/s (target >= 0.8), for
each direction: the median over repetitions of the ratio of a transfer to the raw run just
before it (a shared machine's rate drifts by half within a minute, so only neighbours are
compared), and the best blob rate ÷ the best raw rate.

The issue's second figure (``--end-to-end``): a live hub and site daemon, the probe image
writing an answer of ``--size-mb`` MiB; publish → the researcher holds the opened, checked
plaintext (the site seals it, uploads the ciphertext to the hub's blob store, signs; the
researcher syncs, fetches the blob, decrypts and checks the commitment), ÷ ``docker cp`` of a
file of that size out of a container plus a local TCP socket copy (``docker_cp_baseline``,
the issue's literal denominator; target <= 1.5), and ÷ that plus a bare ``docker run`` of the
same task (the container's own time, which the numerator includes and the literal
denominator does not). ``--docker-cp IMAGE`` times only the copy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from ptm_p2p.network.host import free_port, listen_addr, make_host, parse_peer_addr

MB = 1024 * 1024
CHUNK = 1024 * 1024
RAW_SINK = "/ptm/bench/raw-sink/1"
RAW_SOURCE = "/ptm/bench/raw-source/1"
SERVER_SEED = bytes(range(32))
CLIENT_SEED = bytes(range(1, 33))


# --- the server process ---------------------------------------------------------------------


async def _serve(root: Path, port: int, ready: Path) -> None:
    from libp2p.custom_types import TProtocol

    from ptm_p2p.hub.blob_store import BlobStore
    from ptm_p2p.network.blobs import BlobServer

    host = make_host(SERVER_SEED)
    addr = listen_addr("127.0.0.1", port)
    store = BlobStore(root / "blobs", quota=1 << 40)

    async def sink(stream: Any) -> None:
        total = 0
        try:
            while chunk := await stream.read(CHUNK):
                total += len(chunk)
        except Exception:  # StreamEOF: the writer closed its side
            pass
        await stream.write(total.to_bytes(8, "big"))
        await stream.close()

    async def source(stream: Any) -> None:
        want = int.from_bytes(await stream.read(8), "big")
        block = os.urandom(CHUNK)
        sent = 0
        while sent < want:
            piece = block[: min(CHUNK, want - sent)]
            await stream.write(piece)
            sent += len(piece)
        await stream.close()

    async with host.run([addr]):
        host.set_stream_handler(TProtocol(RAW_SINK), sink)
        host.set_stream_handler(TProtocol(RAW_SOURCE), source)
        # The bench measures transfer, not admission: every peer counts as a member here.
        BlobServer(host, store, lambda key: True).install()
        tmp = ready.with_suffix(".tmp")  # renamed: the client never reads half a line
        tmp.write_text(f"{addr}/p2p/{host.get_id()}\n")
        tmp.rename(ready)
        await trio.sleep_forever()


# --- the client (this process) --------------------------------------------------------------


async def _raw_up(host: Any, peer: Any, size: int) -> float:
    from libp2p.custom_types import TProtocol

    block = os.urandom(CHUNK)
    start = time.perf_counter()
    stream = await host.new_stream(peer, [TProtocol(RAW_SINK)])
    sent = 0
    while sent < size:
        piece = block[: min(CHUNK, size - sent)]
        await stream.write(piece)
        sent += len(piece)
    await stream.close_write()  # end of data: the sink answers with its count
    got = int.from_bytes(await _read_exactly(stream, 8), "big")
    elapsed = time.perf_counter() - start
    assert got == size, f"the sink counted {got} bytes of {size}"
    return size / elapsed / MB


async def _raw_down(host: Any, peer: Any, size: int) -> float:
    from libp2p.custom_types import TProtocol

    start = time.perf_counter()
    stream = await host.new_stream(peer, [TProtocol(RAW_SOURCE)])
    await stream.write(size.to_bytes(8, "big"))
    got = 0
    while got < size:
        chunk = await stream.read(min(CHUNK, size - got))
        if not chunk:
            break
        got += len(chunk)
    elapsed = time.perf_counter() - start
    assert got == size, f"the source sent {got} bytes of {size}"
    return size / elapsed / MB


async def _read_exactly(stream: Any, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = await stream.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


async def _client(target: str, size: int, reps: int) -> dict[str, list[float]]:
    from ptm_p2p.network import blobs

    info = parse_peer_addr(target)
    host = make_host(CLIENT_SEED)
    rates: dict[str, list[float]] = {"raw_up": [], "put": [], "raw_down": [], "get": []}
    async with host.run([]):
        await host.connect(info)
        for _ in range(reps):
            data = os.urandom(size)
            blob = hashlib.sha256(data).digest()
            rates["raw_up"].append(await _raw_up(host, info.peer_id, size))
            start = time.perf_counter()
            await blobs.put_blob(host, info.peer_id, info.addrs, data, blob)
            rates["put"].append(size / (time.perf_counter() - start) / MB)
            rates["raw_down"].append(await _raw_down(host, info.peer_id, size))
            start = time.perf_counter()
            back = await blobs.get_blob(host, info.peer_id, info.addrs, blob, size)
            rates["get"].append(size / (time.perf_counter() - start) / MB)
            assert back == data, "the blob came back different"
    return rates


def bench(size: int, reps: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-blobs-") as tmp:
        root = Path(tmp)
        ready = root / "server.addr"
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(root), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=open(root / "server.log", "wb"),  # noqa: SIM115 - closed with the process
        )
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        "the bench server did not start:\n" + (root / "server.log").read_text()
                    )
                time.sleep(0.05)
            rates = trio.run(_client, ready.read_text().strip(), size, reps)
        finally:
            server.terminate()
            server.wait(timeout=15)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {"rates": rates, "median": medians}


def docker_cp_baseline(size: int, image: str) -> float:
    """Seconds to get a ``size``-byte file out of a container (``docker cp``) and through a
    local TCP socket: the floor an end-to-end answer of that size is compared with."""
    import socket
    import threading

    with tempfile.TemporaryDirectory(prefix="bench-cp-") as tmp:
        src, out = Path(tmp) / "answer", Path(tmp) / "copied"
        src.write_bytes(os.urandom(size))
        made = subprocess.run(
            ["docker", "create", "--network", "none", image],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        container = made.stdout.strip()
        try:
            subprocess.run(["docker", "cp", str(src), f"{container}:/tmp/answer"], check=True)
            started = time.perf_counter()
            subprocess.run(["docker", "cp", f"{container}:/tmp/answer", str(out)], check=True)
            with socket.create_server(("127.0.0.1", 0)) as server:
                port = server.getsockname()[1]
                received = [0]

                def receive() -> None:
                    conn, _ = server.accept()
                    with conn:
                        while chunk := conn.recv(CHUNK):
                            received[0] += len(chunk)

                thread = threading.Thread(target=receive)
                thread.start()
                with socket.create_connection(("127.0.0.1", port)) as client, open(out, "rb") as f:
                    client.sendfile(f)
                thread.join()
            elapsed = time.perf_counter() - started
            assert received[0] == size, f"the socket carried {received[0]} of {size} bytes"
            return elapsed
        finally:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=float, default=100.0, help="blob size in MiB")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each transfer")
    parser.add_argument(
        "--docker-cp",
        metavar="IMAGE",
        help="also time docker cp of the blob size out of a container created from IMAGE, "
        "plus a local socket copy (the end-to-end figure's denominator)",
    )
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="also time a --size-mb answer through a live hub and site daemon against docker "
        "cp + a local socket (needs the Docker engine and registry: `ptm dev up`)",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        root = Path(args.serve)
        trio.run(_serve, root, args.port, root / "server.addr")
        return
    size = int(args.size_mb * MB)
    result = bench(size, args.reps)
    m = result["median"]
    print(f"blob transfers of {size / MB:g} MiB, median of {args.reps} (MB/s = MiB/s):")
    for name in ("raw_up", "put", "raw_down", "get"):
        shown = ", ".join(f"{r:.0f}" for r in result["rates"][name])
        print(f"  {name:<9} {m[name]:7.1f} MB/s   ({shown})")
    for blob_name, raw_name, label in (("put", "raw_up", "put"), ("get", "raw_down", "get")):
        moved, raw = result["rates"][blob_name], result["rates"][raw_name]
        paired = [b / r for b, r in zip(moved, raw, strict=True)]
        best = max(moved) / max(raw)
        print(
            f"blob {label} ÷ raw stream: {statistics.median(paired):.2f}  (median of the "
            f"{len(paired)} side-by-side pairs; best ÷ best {best:.2f}; target >= 0.8)"
        )
    if args.docker_cp:
        seconds = docker_cp_baseline(size, args.docker_cp)
        print(f"docker cp + local socket of {size / MB:g} MiB: {seconds:.2f} s")
    if args.end_to_end:
        end_to_end(size)


def end_to_end(size: int) -> None:
    """Publish → opened answer of ``size`` bytes through live daemons, against docker cp."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from baseline import bare_docker_runs

    from ptm_p2p.client import Client
    from ptm_p2p.dev.cluster import LocalCluster
    from ptm_p2p.dev.stack import ensure_stack

    image = ensure_stack().images["testing/probe"]
    request = json.dumps({"action": "big-answer", "mb": size / MB}).encode()
    with tempfile.TemporaryDirectory(prefix="ptm-bench-blobs-") as tmp:
        root = Path(tmp)
        input_file = root / "input"
        input_file.write_bytes(request)
        input_file.chmod(0o644)
        bare = bare_docker_runs(image, [f"{input_file}:/ptm/input:ro"], 1)
        copy = docker_cp_baseline(size, image)
        with LocalCluster(root / "cluster") as cluster:
            cluster.create("ptm.example/bench-blobs", "consortium")
            cluster.start_hub()
            cluster.home("site")
            cluster.configure_site("site", images=[image.split("@")[0]], publishers=["bench"])
            cluster.start_site("site")
            cluster.admit("site", "site")
            cluster.admit("researcher", "researcher", org="bench")
            with Client(cluster.root / "researcher", cluster.invitation_path) as client:
                client.sync()
                warm = client.publish(image, to="site", input=b'{"action": "echo"}')
                client.wait(warm.id, timeout=120)  # the site has pulled and run the image
                started = time.perf_counter()
                task = client.publish(image, to="site", input=request, memory_mb=1024)
                client.wait(task.id, timeout=600)
                (answer,) = client.results(task.id).values()
                took = time.perf_counter() - started
        assert answer.status == "ok", (answer.status, answer.reason)
        assert len(answer.output) >= size, len(answer.output)
    print(f"end to end, an answer of {size / MB:g} MiB (publish → opened and checked):")
    print(f"  through the hub and a site daemon        {took:6.2f} s")
    print(f"  docker cp out + local socket             {copy:6.2f} s")
    print(f"  bare docker run of the task              {bare:6.2f} s")
    print(f"  ratio ÷ docker cp + socket (target <= 1.5): {took / copy:.2f}")
    print(f"  ratio ÷ (bare run + docker cp + socket):   {took / (bare + copy):.2f}")


if __name__ == "__main__":
    main()
