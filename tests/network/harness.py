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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptm_p2p.dev.cluster import PTM, LocalCluster, wait_for
from ptm_p2p.ledger.entry import Entry, membership_payload
from ptm_p2p.ledger.replay import replay_store
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.network.hub_requests import submit

HERE = Path(__file__).resolve().parent
ORIGIN = "test.example/study"
ADMIN_ORG = "uni"


def audit(home: Path) -> int:
    """Replay a home's ledger from scratch (signatures + rules); return its size."""
    store = SqliteStore(home / "ledger.db", read_only=True)
    try:
        return replay_store(store).size
    finally:
        store.close()


class Cluster(LocalCluster):
    """The demo's LocalCluster plus what tests need: a fixed origin, bulk entries, sizes."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.admin = self.home("admin")
        self.hub_home = self.home("hub")
        self.counter = 0

    def address(self, name: str) -> str:
        return wait_for(f"{name}'s address", lambda: self.status(name).get("address"))

    def stop(self, name: str, sig: int = signal.SIGTERM) -> int:
        code = super().stop(name, sig)
        if code == -9:
            raise AssertionError(f"{name} did not stop within 15 s of signal {sig}")
        return code

    def stop_keeping_status(self, name: str) -> int:
        """SIGTERM and wait, leaving the daemon's own status file as it left it."""
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=15)

    # --- ledger actions --------------------------------------------------------------------

    def add_entries(self, count: int) -> list[int]:
        """Admit ``count`` new researcher keys in one submission (valid, signed entries)."""
        answer = submit(self.admin.signer, self.invitation, self.admissions(count))
        return list(answer["indexes"])

    def admissions(self, count: int) -> Callable[[Any], list[Entry]]:
        """What ``submit`` builds on the admin's chain: ``count`` new researcher keys
        admitted, each under a new organisation ``lab-N``."""
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

        return build

    # --- observation -----------------------------------------------------------------------

    def size(self, name: str) -> int:
        return int(self.status(name)["size"])

    def wait_synced(self, names: list[str], size: int, timeout: float = 20.0) -> None:
        for name in names:
            wait_for(f"{name} to reach size {size}", lambda n=name: self.size(n) >= size, timeout)


def run_json(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([*PTM, *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


__all__ = ["ADMIN_ORG", "ORIGIN", "PTM", "Cluster", "wait_for", "audit", "run_json", "HERE", "os"]
