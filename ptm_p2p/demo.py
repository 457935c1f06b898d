"""``ptm demo``: the main job — a small federated study on this machine, then its audit.

What it does, for real (no mocks, no canned numbers):

1. Three "hospitals" each get a share of a real breast-cancer survival study (GBSG2, shipped
   with lifelines) as a CSV that stays in the hospital's own folder.
2. An admin creates the collaboration (``ptm collab create``: genesis naming the hub); a hub
   and three site daemons start as separate processes on 127.0.0.1 (``ptm hub``,
   ``ptm node``: libp2p with Noise); the admin admits the sites and a researcher.
3. The researcher publishes a signed task through the hub: the ``summary`` image **by
   digest** from the local registry, its input sealed to each site.
4. Each site reads the task from its *own verified replica*, opens its sealed input, checks
   its deny-by-default policy, pulls the image by digest, runs it in the locked-down sandbox
   next to its data, and submits a signed result whose output is sealed to the researcher.
5. The hub sequences and checkpoints; every site replicates, verifies and cosigns.
6. The researcher opens the sealed outputs from a replica and pools them: the federated
   means and counts are compared with the same figures computed centrally.
7. ``ptm audit`` replays the hub's and every site's copy (one root for all), and a
   20,000-entry simulated ledger; then one byte of one stored entry is flipped and the audit
   names the forged entry.

In step 4 the demo plays the site's part by calling the executor itself; a site daemon that
picks up tasks from its replica on its own is the workflow issue's job.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptm_p2p.errors import PtmError
from ptm_p2p.executor import Executor, SitePolicy, Task
from ptm_p2p.ledger.audit import AuditReport, audit, default_workers
from ptm_p2p.ledger.crypto import sha256
from ptm_p2p.ledger.entry import (
    RESULT,
    TASK,
    Entry,
    digest_of_image,
    result_payload,
    task_payload,
)
from ptm_p2p.ledger.simulate import simulate
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.local_cluster import LocalCluster
from ptm_p2p.network.client import submit_one

SITES = ("hospital-a", "hospital-b", "hospital-c")
RESEARCHER = "researcher-1"
NUMERIC = ("age", "tsize", "pnodes", "time")
CATEGORICAL = ("horTh", "menostat", "tgrade")
DATA_LABEL = "gbsg2"
ORIGIN = "ptm.example/demo-study"
SIMULATED_ENTRIES = 20_000

Say = Callable[[str], None]


@dataclass
class DemoOutcome:
    ok: bool
    workdir: Path
    federated: dict[str, float]
    central: dict[str, float]


def split_study(workdir: Path) -> tuple[dict[str, Path], Any]:
    """Write each hospital's share of GBSG2 to its own folder; return paths and the pool."""
    from lifelines.datasets import load_gbsg2  # the demo's one heavy import, only here

    pooled = load_gbsg2()
    paths: dict[str, Path] = {}
    for i, site in enumerate(SITES):
        share = pooled.iloc[i :: len(SITES)]  # deterministic, interleaved shares
        folder = workdir / site
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{DATA_LABEL}.csv"
        share.to_csv(path, index=False)
        paths[site] = path
    return paths, pooled


def combine(outputs: list[dict[str, Any]]) -> dict[str, float]:
    """The researcher's side: pool per-site sums into means, standard deviations, counts."""
    combined: dict[str, float] = {"patients": float(sum(o["rows"] for o in outputs))}
    for column in NUMERIC:
        n = sum(o["numeric"][column]["count"] for o in outputs)
        total = math.fsum(o["numeric"][column]["sum"] for o in outputs)
        squares = math.fsum(o["numeric"][column]["sum_sq"] for o in outputs)
        mean = total / n
        combined[f"mean {column}"] = mean
        combined[f"sd {column}"] = math.sqrt((squares - n * mean * mean) / (n - 1))
    for column in CATEGORICAL:
        for category in sorted({c for o in outputs for c in o["categorical"][column]}):
            count = sum(o["categorical"][column].get(category, 0) for o in outputs)
            combined[f"{column}={category}"] = float(count)
    return combined


def central_figures(pooled: Any) -> dict[str, float]:
    """The same figures computed on the pooled data, as a reference (never done in reality)."""
    figures: dict[str, float] = {"patients": float(len(pooled))}
    for column in NUMERIC:
        figures[f"mean {column}"] = float(pooled[column].mean())
        figures[f"sd {column}"] = float(pooled[column].std(ddof=1))
    for column in CATEGORICAL:
        for category, count in sorted(pooled[column].value_counts().items()):
            figures[f"{column}={category}"] = float(count)
    return figures


def run_study(workdir: Path, summary_image: str, docker_client: Any, say: Say) -> DemoOutcome:
    """Steps 1-6: a real study over a live hub and site daemons; returns both figure sets."""
    data_paths, pooled = split_study(workdir)
    say(f"  data: GBSG2 ({len(pooled)} patients) split over {', '.join(SITES)} in {workdir}")
    peers = workdir / "peers"
    if (peers / "admin" / "identity.key").exists():
        shutil.rmtree(peers)  # an earlier demo's collaboration: a rerun starts a new one
    with LocalCluster(peers) as cluster:
        cluster.create(ORIGIN, "consortium")
        cluster.start_hub()
        for name in SITES:
            cluster.start_site(name)
        for name in SITES:
            cluster.admit(name, "site")
        cluster.admit(RESEARCHER, "researcher")
        say(
            f"  network: hub + {len(SITES)} site daemons on 127.0.0.1 (libp2p, Noise); "
            f"genesis, {len(SITES)} sites and a researcher admitted"
        )

        researcher = cluster.home(RESEARCHER)
        params = {
            "data": DATA_LABEL,
            "columns": [*NUMERIC, *CATEGORICAL],
            "categorical": list(CATEGORICAL),
        }
        inputs = {cluster.home(name).public_key: json.dumps(params).encode() for name in SITES}
        limits = {"timeout_s": 120, "memory_mb": 256, "cpu_millis": 1000}
        payload = task_payload(summary_image, inputs, limits, algorithm="summary")
        task_index = submit_one(researcher.signer, cluster.invitation, TASK, payload)["indexes"][0]
        say(f"  researcher published task #{task_index}: {summary_image}")

        for name in SITES:
            site = cluster.home(name)
            # The site acts on its own verified replica, never on what the researcher sent.
            cluster.wait_replicated([name], task_index + 1)
            (task,) = _entries(cluster.root / name, task_index, task_index + 1)
            site_input = site.signer.open_sealed(task.payload["inputs"][site.public_key])
            policy = SitePolicy.from_table(
                {
                    "images": [summary_image.split("@", 1)[0]],
                    "publishers": [researcher.public_key.hex()],
                    "data": {DATA_LABEL: str(data_paths[name])},
                    "min_group_size": 5,
                }
            )
            result = Executor(docker_client, policy).run(
                Task(
                    image=task.payload["image"],
                    input=site_input,
                    data=[DATA_LABEL],
                    publisher_key=task.author.hex(),
                    task_id=task.hash.hex(),
                    timeout_s=task.payload["limits"]["timeout_s"],
                    memory_bytes=task.payload["limits"]["memory_mb"] * 1024 * 1024,
                    cpus=task.payload["limits"]["cpu_millis"] / 1000,
                )
            )
            if result.status != "ok":
                raise PtmError(f"{name}: the summary task ended {result.status}: {result.reason}")
            ran = digest_of_image(result.digest or "")  # what really ran, from the engine
            submit_one(
                site.signer,
                cluster.invitation,
                RESULT,
                result_payload(task, result.status, result.output, ran, sha256(result.logs)),
            )
            say(
                f"  {name}: ran {ran[:19]}… in {result.timings.total_s:.2f} s; "
                "signed result (output sealed to the researcher) submitted"
            )

        size = task_index + 1 + len(SITES)
        cluster.wait_replicated(["hub", *SITES], size, cosigners=len(SITES))
        say(
            f"  replicated: every site holds {size} entries under a hub checkpoint cosigned "
            f"by {len(SITES)} witnesses"
        )

        # The researcher reads the sealed results from any replica: here hospital-c's copy.
        outputs = []
        task_entry, *results = _entries(cluster.root / SITES[-1], task_index, size)
        for index, entry in enumerate(results, task_index + 1):
            if entry.kind != RESULT or entry.payload["task"] != task_entry.hash:
                raise PtmError(f"entry {index} is not a result for task #{task_index}")
            outputs.append(json.loads(researcher.signer.open_sealed(entry.payload["output"])))
        federated = combine(outputs)
        central = central_figures(pooled)

        audits = {name: _audit_home(cluster.root / name) for name in ["hub", *SITES]}
        roots = {report.checkpoints[-1].root for report in audits.values() if report.checkpoints}
        exits = {name: cluster.stop(name) for name in ["hub", *SITES]}
    replicas_ok = all(r.ok for r in audits.values()) and len(roots) == 1
    clean_stop = all(code == 0 for code in exits.values())
    matches = federated.keys() == central.keys() and all(
        math.isclose(federated[k], central[k], rel_tol=1e-9) for k in central
    )
    say("")
    say(f"  {'figure':<22}{'federated':>14}{'central':>14}")
    for key in central:
        say(f"  {key:<22}{federated.get(key, float('nan')):>14.3f}{central[key]:>14.3f}")
    say(
        f"  federated == central: {'yes' if matches else 'NO'}; "
        f"audit of the hub's and every site's copy: {'ok, one root' if replicas_ok else 'FAILED'}; "
        f"daemons stopped cleanly: {'yes' if clean_stop else 'NO'}"
    )
    return DemoOutcome(matches and replicas_ok and clean_stop, workdir, federated, central)


def _entries(home: Path, start: int, end: int) -> list[Entry]:
    """Entries ``start..end-1`` of a home's verified ledger copy, read without writing to it."""
    store = SqliteStore(home / "ledger.db", read_only=True)
    try:
        return [Entry.from_bytes(raw) for raw in store.raw_range(start, end)]
    finally:
        store.close()


def _audit_home(home: Path) -> AuditReport:
    store = SqliteStore(home / "ledger.db", read_only=True)
    try:
        return audit(store)
    finally:
        store.close()


def audit_simulated(workdir: Path, say: Say) -> bool:
    """Step 7: audit a simulated ledger, then a copy with one flipped byte."""
    path = workdir / "simulated.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = SqliteStore(path)
    try:
        simulate(store, SIMULATED_ENTRIES, sites=5, seed=7)
        started = time.perf_counter()
        clean = audit(store, workers=default_workers(SIMULATED_ENTRIES, os.cpu_count()))
        elapsed = time.perf_counter() - started
    finally:
        store.close()
    say(
        f"  simulated ledger: {SIMULATED_ENTRIES:,} entries, audit "
        f"{'ok' if clean.ok else 'FAILED'} in {elapsed:.2f} s "
        f"({SIMULATED_ENTRIES / elapsed:,.0f} entries/s), {len(clean.checkpoints)} checkpoints"
    )

    forged = workdir / "simulated-forged.db"
    forged.unlink(missing_ok=True)
    with sqlite3.connect(path) as source, sqlite3.connect(forged) as target:
        source.backup(target)
    target_index = SIMULATED_ENTRIES // 2 + 17
    with sqlite3.connect(forged) as db:
        raw = bytearray(
            db.execute("SELECT raw FROM entries WHERE idx = ?", (target_index,)).fetchone()[0]
        )
        raw[len(raw) // 2] ^= 0x01
        db.execute("UPDATE entries SET raw = ? WHERE idx = ?", (bytes(raw), target_index))
    store = SqliteStore(forged)
    try:
        tampered = audit(store)
    finally:
        store.close()
    first = tampered.problems[0] if tampered.problems else None
    caught = (not tampered.ok) and first is not None and first.index == target_index
    say(
        f"  flipped one byte of entry {target_index}: audit "
        f"{'caught it' if caught else 'MISSED IT'}: {first.message[:110] if first else '-'}…"
    )
    return clean.ok and caught


def run_demo(workdir: Path, say: Say) -> bool:
    from ptm_p2p.dev.stack import ensure_stack

    workdir = workdir.resolve()  # site policies name data by absolute path
    workdir.mkdir(parents=True, exist_ok=True)
    say("[1/3] local infrastructure: Docker engine, registry, base and algorithm images")
    stack = ensure_stack()
    summary = stack.images["summary"]
    say(f"  summary image: {summary}")
    say("[2/3] a federated study on real survival data over a live hub and site daemons")
    study = run_study(workdir / "study", summary, stack.client, say)
    say("[3/3] the auditor's view")
    audited = audit_simulated(workdir, say)
    ok = study.ok and audited
    say("")
    say("demo: ok" if ok else "demo: FAILED (see above)")
    return ok
