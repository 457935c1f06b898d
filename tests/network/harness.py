"""Multi-process test harness: real homes, real daemons (`ptm hub`, `ptm node`) on 127.0.0.1.

Every peer is its own OS process with its own home folder. The harness starts them through
the real CLI, waits on what they write (status.json, the ledger), and always stops what it
started, by pid, in ``close()``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptm_p2p.home import Home
from ptm_p2p.ledger.entry import Entry, membership_payload
from ptm_p2p.ledger.replay import replay
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.network.client import submit
from ptm_p2p.network.host import free_port
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.network.status import collect

HERE = Path(__file__).resolve().parent
PTM = [sys.executable, "-c", "from ptm_p2p.cli import main; main()"]


def wait_for(
    what: str, predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the file may be half-written; retry
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_exc})")


def audit(home: Path) -> int:
    """Replay a home's ledger from scratch (signatures + rules); return its size."""
    store = SqliteStore(home / "ledger.db")
    try:
        size = store.size()
        replay(store.raw_range(0, size)) if size else None
        return size
    finally:
        store.close()


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.homes: dict[str, Home] = {}
        self.admin = self.home("admin")
        self.hub_home = self.home("hub")
        self.invitation_path = root / "invite.json"
        self.hub_port = free_port()
        self.counter = 0

    def home(self, name: str) -> Home:
        if name not in self.homes:
            self.homes[name] = Home.init(self.root / name, name)
        return self.homes[name]

    def path(self, name: str) -> Path:
        return self.root / name

    # --- processes ------------------------------------------------------------------------

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        assert name not in self.procs or self.procs[name].poll() is not None, name
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=self.root)
        log.close()
        self.procs[name] = proc
        return proc

    def create(self) -> None:
        subprocess.run(
            [
                *PTM,
                "collab",
                "create",
                "--home",
                str(self.path("admin")),
                "--hub-home",
                str(self.path("hub")),
                "--origin",
                "test.example/study",
                "--org",
                "uni",
            ],
            check=True,
            capture_output=True,
        )

    def start_hub(self) -> None:
        if self.invitation_path.exists():
            self.invitation_path.unlink()
        self.spawn(
            "hub",
            [
                *PTM,
                "hub",
                "--home",
                str(self.path("hub")),
                "--port",
                str(self.hub_port),
                "--invitation",
                str(self.invitation_path),
            ],
        )
        wait_for("the hub's invitation", self.invitation_path.exists)
        wait_for("the hub's status", lambda: self.status("hub")["running"])

    @property
    def invitation(self) -> Invitation:
        return Invitation.load(self.invitation_path)

    def start_site(self, name: str, peers: list[str] = (), wait: bool = True) -> None:
        self.home(name)
        args = [*PTM, "node", "--home", str(self.path(name)), "--join", str(self.invitation_path)]
        for peer in peers:
            args += ["--peer", peer]
        self.spawn(name, args)
        if wait:
            wait_for(f"{name} to run", lambda: self.status(name)["running"])

    def address(self, name: str) -> str:
        return wait_for(f"{name}'s address", lambda: self.status(name).get("address"))

    def stop(self, name: str, sig: int = signal.SIGTERM) -> int:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{name} did not stop within 15 s of signal {sig}") from None
        finally:
            status = self.path(name) / "status.json"
            if status.exists():
                status.unlink()

    def alive(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def close(self) -> None:
        procs = list(self.procs.values())
        self.procs.clear()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")

    # --- ledger actions --------------------------------------------------------------------

    def admit(self, name: str, role: str = "site") -> None:
        key = self.home(name).public_key.hex()
        subprocess.run(
            [
                *PTM,
                "collab",
                "admit",
                "--home",
                str(self.path("admin")),
                "--join",
                str(self.invitation_path),
                "--role",
                role,
                "--org",
                name,
                key,
            ],
            check=True,
            capture_output=True,
        )

    def add_entries(self, count: int) -> list[int]:
        """Admit ``count`` new researcher keys in one submission (valid, signed entries)."""
        from ptm_p2p.ledger.crypto import Signer

        def build(chain: Any) -> list[Entry]:
            out = []
            for _ in range(count):
                self.counter += 1
                payload = membership_payload(
                    "admit", Signer.generate().public_key, f"lab-{self.counter}", "researcher"
                )
                out.append(chain.append("membership", payload, int(time.time() * 1000)))
            return out

        answer = submit(self.admin.signer, self.invitation, build)
        return list(answer["indexes"])

    # --- observation -----------------------------------------------------------------------

    def status(self, name: str) -> dict[str, Any]:
        return collect(self.path(name))

    def size(self, name: str) -> int:
        return int(self.status(name)["size"])

    def wait_synced(self, names: list[str], size: int, timeout: float = 20.0) -> None:
        for name in names:
            wait_for(f"{name} to reach size {size}", lambda n=name: self.size(n) >= size, timeout)


def run_json(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([*PTM, *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


__all__ = ["Cluster", "wait_for", "audit", "run_json", "HERE", "os"]
