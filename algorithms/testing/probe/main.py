"""A hostile test image: does what its input asks, to prove the sandbox holds.

Input: ``{"action": NAME, ...}``. Each action reports what happened in the output (when it
still can). Actions: ``echo`` (copy input to output), ``network`` (try TCP connections and
list /proc/net/dev), ``write`` (try to write outside /ptm/output), ``sleep`` (``seconds``),
``memory`` (allocate ``mb`` megabytes), ``fork`` (try ``count`` processes), ``output``
(write ``mb`` megabytes of output), ``big-answer`` (an output.json of ``mb`` megabytes: a
string of a pattern the researcher can check), ``logs`` (print ``mb`` megabytes), ``whoami``,
``plant`` (leave symlinks to ``target``, a fifo and an unreadable file in the output, then
exit 0 without writing output.json itself).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any

from ptm_p2p import algorithm


def network(params: dict[str, Any]) -> dict[str, Any]:
    # Loopback and a documentation address (TEST-NET-1): nothing private is ever targeted,
    # and with network_mode=none neither can leave the container anyway.
    attempts = {}
    for host, port in params.get("targets", [["127.0.0.1", 9], ["192.0.2.1", 80]]):
        try:
            with socket.create_connection((host, port), timeout=2):
                attempts[f"{host}:{port}"] = "connected"
        except OSError as exc:
            attempts[f"{host}:{port}"] = f"{type(exc).__name__}: {exc.strerror or exc}"
    with open("/proc/net/dev") as handle:
        lines = handle.read().splitlines()[2:]
    interfaces = sorted(line.split(":")[0].strip() for line in lines)
    return {"attempts": attempts, "interfaces": interfaces}


def write(params: dict[str, Any]) -> dict[str, Any]:
    results = {}
    for path in params.get(
        "paths", ["/evil", "/etc/evil", "/ptm/data/evil", "/ptm/input", "/opt/ptm/evil", "/tmp/ok"]
    ):
        try:
            with open(path, "w") as handle:
                handle.write("x")
            results[path] = "written"
        except OSError as exc:
            results[path] = f"{type(exc).__name__}: {exc.strerror}"
    return {"writes": results}


def memory(params: dict[str, Any]) -> dict[str, Any]:
    blocks = []
    for _ in range(int(params.get("mb", 1024))):
        blocks.append(bytearray(1024 * 1024))  # bytearray zero-fills: pages are touched
    return {"allocated_mb": len(blocks)}


def fork(params: dict[str, Any]) -> dict[str, Any]:
    children, error = [], None
    for _ in range(int(params.get("count", 200))):
        try:
            pid = os.fork()
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc.strerror}"
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return {"forked": len(children), "error": error}


def plant(params: dict[str, Any]) -> None:
    out = algorithm.output_dir()
    target = str(params.get("target", "/etc/passwd"))
    os.symlink(target, out / "output.json")  # a host that followed it would read target
    os.symlink("/", out / "root")
    os.mkfifo(out / "fifo")  # a host that opened it would block forever
    (out / "sub").mkdir()
    os.symlink(target, out / "sub" / "link")
    secret = out / "sub" / "unreadable"
    secret.write_text("x")
    secret.chmod(0)
    print("probe: planted", flush=True)
    os._exit(0)  # main() would write output.json through the planted link


def compute(params: dict[str, Any]) -> Any:
    action = params.get("action", "echo")
    if action == "echo":
        print("probe: echo")
        return {"echo": params, "variant": os.environ.get("PROBE_VARIANT", "a")}
    if action == "whoami":
        return {"uid": os.getuid(), "gid": os.getgid(), "env": dict(os.environ)}
    if action == "network":
        return network(params)
    if action == "write":
        return write(params)
    if action == "sleep":
        time.sleep(float(params.get("seconds", 3600)))
        return {"slept": True}
    if action == "memory":
        return memory(params)
    if action == "fork":
        return fork(params)
    if action == "plant":
        plant(params)
    if action == "output":
        chunk = b"x" * (1024 * 1024)
        try:
            with open(algorithm.output_dir() / "big.bin", "wb") as handle:
                for _ in range(int(params.get("mb", 100))):
                    handle.write(chunk)
        except OSError as exc:
            print(f"probe: output write failed: {exc}", file=sys.stderr)
        return {"wrote_mb": params.get("mb", 100)}
    if action == "big-answer":
        # An answer of ``mb`` MiB: a position-dependent pattern, so a truncated, reordered or
        # corrupted answer cannot pass for the real one.
        size = int(float(params.get("mb", 100)) * 1024 * 1024)
        unit = "".join(f"{i:07d}|" for i in range(1024))  # 8 KiB
        return {"pattern": (unit * (size // len(unit) + 1))[:size]}
    if action == "logs":
        line = "L" * 1023 + "\n"
        for _ in range(int(params.get("mb", 10)) * 1024):
            sys.stdout.write(line)
        sys.stdout.flush()
        return {"logged_mb": params.get("mb", 10)}
    raise algorithm.AlgorithmError(f"unknown action {action!r}")


if __name__ == "__main__":
    algorithm.main(compute)
