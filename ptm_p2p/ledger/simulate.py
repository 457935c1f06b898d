"""Write a valid, realistic signed ledger: for benchmarks, tests and auditors learning the tool.

A simulated collaboration has an admin, a hub, K hospital sites, two researchers and an
auditor. Researchers publish tasks (a summary or Cox-regression image pinned by digest,
inputs sealed to each targeted site); each targeted site answers with a result sealed to the
researcher (mostly ``ok``, sometimes ``failed``, ``timeout`` or ``refused``). Midway one
researcher's key is revoked and a new one admitted, as happens when people change jobs. The
hub signs a checkpoint every ``checkpoint_every`` entries and at the end, and every site
cosigns each one as a witness.

Everything derives from ``seed``: the same seed gives the same keys and the same entries
(sealed boxes use fresh randomness, so ciphertexts differ from run to run).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

from ptm_p2p.errors import LedgerError
from ptm_p2p.ledger.checkpoint import Checkpoint, cosign, sign_checkpoint
from ptm_p2p.ledger.crypto import Signer, sha256
from ptm_p2p.ledger.entry import (
    GENESIS,
    MEMBERSHIP,
    RESULT,
    TASK,
    AuthorChain,
    Entry,
    genesis_payload,
    membership_payload,
    result_payload,
    task_payload,
)
from ptm_p2p.ledger.store import LogStore

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a fixed clock keeps runs reproducible
BATCH = 1000
IMAGES = ("summary", "cox-webdisco")
STATUSES = ("ok", "failed", "timeout", "refused")
STATUS_WEIGHTS = (90, 4, 3, 3)


@dataclass(frozen=True)
class SimulationSummary:
    entries: int
    tasks: int
    results: int
    checkpoints: int
    origin: str
    hub_key: bytes


def identity(seed: int, name: str) -> Signer:
    """The simulated identity ``name`` (deterministic in ``seed``)."""
    return Signer(sha256(f"ptm-simulate/{seed}/{name}".encode()))


class _Simulation:
    def __init__(self, store: LogStore, sites: int, seed: int, checkpoint_every: int) -> None:
        self.store = store
        self.rng = random.Random(seed)
        self.seed = seed
        self.checkpoint_every = checkpoint_every
        self.origin = f"ptm.example/simulated-{seed}"
        self.clock = START_MS
        self.admin = AuthorChain(identity(seed, "admin"))
        self.hub = identity(seed, "hub")
        self.sites = {
            f"hospital-{i + 1}": AuthorChain(identity(seed, f"site-{i + 1}")) for i in range(sites)
        }
        self.researchers = {
            name: AuthorChain(identity(seed, name)) for name in ("researcher-a", "researcher-b")
        }
        self.batch: list[Entry] = []
        self.size = 0
        self.checkpoints = 0
        self.tasks = 0
        self.results = 0
        # (task entry, site org) pairs still owed a result, oldest first
        self.owed: list[tuple[Entry, str]] = []
        self.images = {
            name: f"registry.ptm.example:5000/ptm/{name}@sha256:"
            + sha256(f"{seed}/{name}".encode()).hex()
            for name in IMAGES
        }

    # --- plumbing -------------------------------------------------------------------------

    def tick(self) -> int:
        self.clock += self.rng.randint(200, 60_000)
        return self.clock

    def add(self, chain: AuthorChain, kind: str, payload: dict[str, object]) -> Entry:
        entry = chain.append(kind, payload, self.tick())
        self.batch.append(entry)
        self.size += 1
        if len(self.batch) >= BATCH or self.size % self.checkpoint_every == 0:
            self.flush()
        if self.size % self.checkpoint_every == 0:
            self.checkpoint()
        return entry

    def flush(self) -> None:
        if self.batch:
            self.store.append(self.batch)
            self.batch = []

    def checkpoint(self) -> None:
        self.flush()
        size = self.store.size()
        signed = sign_checkpoint(Checkpoint(self.origin, size, self.store.root(size)), self.hub)
        now_s = self.clock // 1000
        for org, chain in self.sites.items():
            signed = cosign(signed, chain.signer, org, now_s)
        self.store.add_checkpoint(signed.text, size)
        self.checkpoints += 1

    # --- the story ------------------------------------------------------------------------

    def admit(self, key: bytes, org: str, role: str) -> None:
        self.add(self.admin, MEMBERSHIP, membership_payload("admit", key, org, role))

    def start(self) -> None:
        self.add(
            self.admin,
            GENESIS,
            genesis_payload(
                self.origin,
                self.admin.signer.public_key,
                "collab-admin",
                self.hub.public_key,
                "ptm-hub",
                description="simulated collaboration (ptm ledger simulate)",
            ),
        )
        for org, chain in self.sites.items():
            self.admit(chain.signer.public_key, org, "site")
        for name, chain in self.researchers.items():
            self.admit(chain.signer.public_key, name, "researcher")
        self.admit(identity(self.seed, "auditor").public_key, "auditor-1", "auditor")

    def rotate_researcher(self) -> None:
        """researcher-b leaves: revoke the key, admit the successor's."""
        old = self.researchers.pop("researcher-b")
        self.add(
            self.admin,
            MEMBERSHIP,
            membership_payload(
                "revoke", old.signer.public_key, "researcher-b", "researcher", reason="left"
            ),
        )
        new = AuthorChain(identity(self.seed, "researcher-c"))
        self.researchers["researcher-c"] = new
        self.admit(new.signer.public_key, "researcher-c", "researcher")

    def publish(self) -> None:
        name = self.rng.choice(sorted(self.researchers))
        orgs = self.rng.sample(sorted(self.sites), self.rng.randint(1, len(self.sites)))
        algorithm = self.rng.choice(IMAGES)
        inputs = {
            self.sites[org].signer.public_key: json.dumps(
                {"algorithm": algorithm, "columns": ["age", "tsize", "pnodes"], "round": 1}
            ).encode()
            for org in orgs
        }
        limits = {"timeout_s": 600, "memory_mb": 512, "cpu_millis": 1000}
        task = self.add(
            self.researchers[name],
            TASK,
            task_payload(self.images[algorithm], inputs, limits, algorithm=algorithm),
        )
        self.tasks += 1
        self.owed.extend((task, org) for org in orgs)

    def answer(self) -> None:
        task, org = self.owed.pop(self.rng.randrange(min(len(self.owed), 8)))
        status = self.rng.choices(STATUSES, STATUS_WEIGHTS)[0]
        output = json.dumps(
            {"n": self.rng.randint(40, 900), "sum_age": self.rng.randint(2_000, 60_000)}
        ).encode()
        logs = f"{org}: {status}\n".encode()
        digest = "sha256:" + task.payload["image"].rsplit("@sha256:", 1)[1]
        self.add(
            self.sites[org],
            RESULT,
            result_payload(
                task,
                status,
                output if status == "ok" else b"",
                digest,
                sha256(logs),
                reason=None if status == "ok" else f"simulated {status}",
            ),
        )
        self.results += 1


def simulate(
    store: LogStore,
    entries: int,
    sites: int,
    seed: int = 0,
    checkpoint_every: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationSummary:
    """Append a simulated collaboration of exactly ``entries`` entries to an empty ``store``."""
    if store.size() != 0:
        raise LedgerError("simulate writes a new ledger: the target store is not empty")
    if sites < 1 or sites > 200:
        raise LedgerError(f"--sites must be between 1 and 200, got {sites}")
    minimum = sites + 4 + 3  # genesis, members, one task and its answers
    if entries < minimum:
        raise LedgerError(f"{sites} sites need at least {minimum} entries, got {entries}")
    if checkpoint_every < 1:
        raise LedgerError("checkpoint_every must be at least 1")
    sim = _Simulation(store, sites, seed, checkpoint_every)
    sim.start()
    rotate_at = entries // 2
    while sim.size < entries:
        if (
            sim.size >= rotate_at > 0
            and "researcher-b" in sim.researchers
            and (entries - sim.size > 2)
        ):
            sim.rotate_researcher()
            continue
        remaining = entries - sim.size
        # Publish only while every answer it implies still fits; otherwise drain answers.
        can_publish = remaining - len(sim.owed) > len(sim.sites)
        if sim.owed and (not can_publish or sim.rng.random() < 0.75):
            sim.answer()
        elif can_publish:
            sim.publish()
        else:  # nothing owed and no room for a whole task: admit auditors to fill up
            sim.admit(
                identity(seed, f"auditor-{sim.size}").public_key, f"auditor-{sim.size}", "auditor"
            )
        if progress is not None and sim.size % 1000 == 0:
            progress(sim.size, entries)
    sim.flush()
    if sim.store.size() % checkpoint_every:
        sim.checkpoint()
    if progress is not None:
        progress(sim.size, entries)
    return SimulationSummary(
        entries=sim.size,
        tasks=sim.tasks,
        results=sim.results,
        checkpoints=sim.checkpoints,
        origin=sim.origin,
        hub_key=sim.hub.public_key,
    )
