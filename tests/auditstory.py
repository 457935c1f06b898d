"""A small collaboration with everything an auditor asks about, written as a real signed
ledger: a three-round Cox study, a summary task refused by one site and failed at another,
a cancelled task, a revoked researcher, a format-2 task (inputs boxed and bound, outputs as
commitments) answered ok by one site and refused by another, two organisations of the same
name, and checkpoints kept twice (the hub's note, then its cosigned version), as a live
copy keeps them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ptm_p2p.ledger import entry as E
from ptm_p2p.ledger.checkpoint import Checkpoint, cosign, sign_checkpoint
from ptm_p2p.ledger.crypto import sha256
from ptm_p2p.ledger.entry import AuthorChain, Entry
from ptm_p2p.ledger.simulate import identity
from ptm_p2p.ledger.store import SqliteStore

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
COX = "127.0.0.1:5000/ptm/coxph-pooled@sha256:" + sha256(b"cox").hex()
SUMMARY = "127.0.0.1:5000/ptm/summary@sha256:" + sha256(b"summary").hex()
KM = "127.0.0.1:5000/ptm/km@sha256:" + sha256(b"km").hex()
LIMITS = {"timeout_s": 600, "memory_mb": 512, "cpu_millis": 1000}
REFUSAL = "policy: image 127.0.0.1:5000/ptm/summary is not in [policy] images"
FAILURE = "the algorithm exited with code 2"
UNBOUND = (
    "the input for this site was not encrypted by the task's publisher for this site; "
    "nothing was run"
)


@dataclass
class Story:
    path: Path
    entries: list[Entry] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)  # name -> log index

    def hash(self, name: str) -> str:
        return self.entries[self.index[name]].hash.hex()


def write_story(path: Path) -> Story:
    story = Story(path)
    store = SqliteStore(path)
    admin = AuthorChain(identity(1, "admin"))
    hub = identity(1, "hub")
    sites = {n: AuthorChain(identity(1, n)) for n in ("hospital-a", "hospital-b", "hospital-c")}
    uni = AuthorChain(identity(1, "uni"))
    pharma = AuthorChain(identity(1, "pharma"))
    clock = [START]

    def add(name: str, chain: AuthorChain, kind: str, payload: dict, minutes: float = 1) -> Entry:
        clock[0] += int(minutes * MIN)
        entry = chain.append(kind, payload, clock[0])
        story.index[name] = len(story.entries)
        story.entries.append(entry)
        store.append([entry])
        return entry

    def checkpoint() -> None:
        size = store.size()
        signed = sign_checkpoint(Checkpoint("example.org/study", size, store.root(size)), hub)
        store.add_checkpoint(signed.text, size)  # the hub's note, no cosignature yet
        for org, chain in sites.items():
            signed = cosign(signed, chain.signer, org, clock[0] // 1000)
        store.add_checkpoint(signed.text, size)  # the same checkpoint, cosigned

    add(
        "genesis",
        admin,
        E.GENESIS,
        E.genesis_payload(
            "example.org/study",
            admin.signer.public_key,
            "consortium",
            hub.public_key,
            "ptm-hub",
            description="audit story",
        ),
    )
    for org, chain in sites.items():
        add(
            f"admit-{org}",
            admin,
            E.MEMBERSHIP,
            E.membership_payload("admit", chain.signer.public_key, org, "site"),
        )
    add(
        "admit-uni",
        admin,
        E.MEMBERSHIP,
        E.membership_payload("admit", uni.signer.public_key, "uni-research", "researcher"),
    )
    add(
        "admit-pharma",
        admin,
        E.MEMBERSHIP,
        E.membership_payload("admit", pharma.signer.public_key, "pharma-lab", "researcher"),
    )
    # A second key under an existing organisation's name: allowed, but the report warns.
    add(
        "admit-auditor",
        admin,
        E.MEMBERSHIP,
        E.membership_payload("admit", identity(1, "auditor").public_key, "consortium", "auditor"),
    )
    a, b, c = (sites[n].signer.public_key for n in ("hospital-a", "hospital-b", "hospital-c"))
    for r in (1, 2, 3):
        task = add(
            f"cox-{r}",
            uni,
            E.TASK,
            E.task_payload(
                COX,
                {a: json.dumps({"round": r}).encode(), b: b"{}"},
                LIMITS,
                algorithm=f"cox/round-{r}",
                data=["survival"],
                description="pooled Cox, age+trt",
            ),
            minutes=2,
        )
        for org in ("hospital-a", "hospital-b"):
            add(
                f"cox-{r}-{org}",
                sites[org],
                E.RESULT,
                E.result_payload(
                    task,
                    "ok",
                    b'{"beta": 1}',
                    "sha256:" + sha256(b"cox").hex(),
                    sha256(b"log"),
                    timings={"run_ms": 1200, "total_ms": 1500},
                ),
                minutes=0.5,
            )
    checkpoint()
    task = add(
        "summary",
        uni,
        E.TASK,
        E.task_payload(
            SUMMARY, {a: b"{}", b: b"{}", c: b"{}"}, LIMITS, algorithm="summary", data=["survival"]
        ),
        minutes=180,
    )
    add(
        "summary-hospital-a",
        sites["hospital-a"],
        E.RESULT,
        E.result_payload(
            task, "ok", b'{"rows": 10}', "sha256:" + sha256(b"summary").hex(), sha256(b"l")
        ),
    )
    add(
        "summary-hospital-b",
        sites["hospital-b"],
        E.RESULT,
        E.result_payload(
            task, "refused", b"", "sha256:" + sha256(b"summary").hex(), sha256(b"l"), reason=REFUSAL
        ),
    )
    add(
        "summary-hospital-c",
        sites["hospital-c"],
        E.RESULT,
        E.result_payload(
            task, "failed", b"", "sha256:" + sha256(b"summary").hex(), sha256(b"l"), reason=FAILURE
        ),
    )
    km = add(
        "km",
        pharma,
        E.TASK,
        E.task_payload(KM, {c: b"{}"}, LIMITS, algorithm="km", data=["registry"]),
        minutes=10,
    )
    add("km-cancel", pharma, E.CANCEL, E.cancel_payload(km.hash, "wrong cohort"))
    add(
        "km-hospital-c",
        sites["hospital-c"],
        E.RESULT,
        E.result_payload(km, "cancelled", b"", "sha256:" + sha256(b"km").hex(), sha256(b"l")),
    )
    add(
        "revoke-pharma",
        admin,
        E.MEMBERSHIP,
        E.membership_payload(
            "revoke",
            pharma.signer.public_key,
            "pharma-lab",
            "researcher",
            reason="left the project",
        ),
    )
    # Format 2: inputs boxed to each site and bound to this entry; outputs as commitments.
    v2 = add(
        "descriptives",
        uni,
        E.TASK,
        E.task_payload_v2(
            uni.signer,
            uni.seq + 1,
            SUMMARY,
            {a: b'{"q": 1}', b: b'{"q": 1}'},
            LIMITS,
            algorithm="descriptives",
            data=["survival"],
        ),
        minutes=60,
    )
    digest = "sha256:" + sha256(b"summary").hex()
    for org, status, reason in (("hospital-a", "ok", None), ("hospital-b", "refused", UNBOUND)):
        sealed = E.sealed_output(sites[org].signer, uni.signer.public_key, b'{"n": 3}', b"log")
        add(
            f"descriptives-{org}",
            sites[org],
            E.RESULT,
            E.result_payload_v2(
                v2, status, sealed.output_map(True), sealed.log_commit, digest, reason=reason
            ),
        )
    checkpoint()
    store.close()
    return story


def forge(story: Story, name: str, target: Path) -> int:
    """Copy the story's ledger to ``target`` with one byte of entry ``name`` changed (inside
    its signed body, so it still decodes but its signature fails); returns its index."""
    import sqlite3

    source = sqlite3.connect(story.path)
    dest = sqlite3.connect(target)
    source.backup(dest)
    source.close()
    index = story.index[name]
    raw = bytearray(dest.execute("SELECT raw FROM entries WHERE idx = ?", (index,)).fetchone()[0])
    at = bytes(raw).find(b"policy: image")
    raw[at if at >= 0 else len(raw) // 2] ^= 0x20
    dest.execute("UPDATE entries SET raw = ? WHERE idx = ?", (bytes(raw), index))
    dest.commit()
    dest.close()
    return index
