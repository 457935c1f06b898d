"""A fake site for the worker's tests, in the manner of Flower's ``state_factory``: the
worker sees its site only through ``WorkerSite`` (``ptm_p2p/site/worker_site.py``), and this
implements it in memory: a replayed state, the size it vouched for, why it is halted, what
was submitted, the stored entries, this site's home. ``FakeContainers`` stands in for the
Docker engine (``containers.ContainerRunner``): what a task's container would have given.

Everything else is real: signed entries, keys, the journal (SQLite in ``tmp_path``), replay's
rules when a result is applied to the state."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from ptm_p2p.errors import NetworkError
from ptm_p2p.executor.result import RunResult
from ptm_p2p.home import Home
from ptm_p2p.ledger import entry as E
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.ledger.replay import State
from ptm_p2p.site.worker_site import WorkerSite

REPO = "127.0.0.1:5000/ptm/cox-round"
IMAGE = REPO + "@sha256:" + "ab" * 32
LIMITS = {"timeout_s": 60, "memory_mb": 512, "cpu_millis": 1500}


def key(name: str) -> Signer:
    return Signer(hashlib.sha256(f"ptm-test-key/decide/{name}".encode()).digest())


SITE, OTHER_SITE, RESEARCHER = key("site"), key("other site"), key("researcher")
ME = SITE.public_key


def task_entry(
    *,
    format_1: bool = False,
    inputs: dict[bytes, bytes] | None = None,
    data: tuple[str, ...] = (),
    aggregate: str | None = None,
) -> Entry:
    inputs = inputs if inputs is not None else {ME: b"my input"}
    if format_1:
        payload = E.task_payload(IMAGE, inputs, LIMITS, data=data)
    else:
        payload = E.task_payload_v2(
            RESEARCHER, 1, IMAGE, inputs, LIMITS, data=data, aggregate=aggregate
        )
    return Entry.create(RESEARCHER, E.TASK, 1, E.ZERO_HASH, 1_000, payload)


@dataclass
class FakeSite:
    """A site as the worker sees it: everything held in memory."""

    state: State = field(default_factory=State)
    witness_size: int = 100
    halted: str | None = None
    hub_says_revoked: int | None = None
    home_path: Path = Path("/nonexistent/ptm-fake-site")
    stored: dict[int, bytes] = field(default_factory=dict)  # the ledger copy's entries
    submitted: list[list[bytes]] = field(default_factory=list)
    cosigned: int = 0
    hub_reachable: bool = False

    @property
    def home(self) -> Home:
        return Home(self.home_path, "site-a", SITE, {})

    def why_halted(self) -> str | None:
        return self.halted

    async def submit(self, entries: list[bytes]) -> None:
        self.submitted.append(entries)

    def stored_entry(self, index: int) -> bytes:
        return self.stored[index]

    @property
    def checkpoint_size(self) -> int:
        return len(self.stored)

    async def wait_for_checkpoint(self, after: int, timeout: float) -> None:
        await trio.sleep(timeout)

    def cosign_pending(self) -> None:
        self.cosigned += 1

    def hub(self) -> Any:
        raise NetworkError("the fake site has no hub")


def fake_site(**kwargs: Any) -> WorkerSite:
    """The factory the worker's tests use; typed as the interface, so mypy checks the fake."""
    return FakeSite(**kwargs)


@dataclass
class FakeContainers:
    """Containers that give ``result`` at once (or raise ``error``), and what was asked."""

    result: RunResult | None = None
    error: Exception | None = None
    ran: list[Any] = field(default_factory=list)
    killed: list[bytes] = field(default_factory=list)
    removed: list[bytes] = field(default_factory=list)
    during_run: Any = None  # called inside run(), e.g. to revoke the publisher meanwhile

    def run(self, run_task: Any) -> RunResult:
        self.ran.append(run_task)
        if self.during_run is not None:
            self.during_run()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    async def kill(self, task_hash: bytes) -> None:
        self.killed.append(task_hash)

    async def remove(self, task_hash: bytes) -> int:
        self.removed.append(task_hash)
        return 1
