"""``ptm demo``: the main job — a small federated study on this machine, then its audit.

What it does, for real (no mocks, no canned numbers):

1. Three "hospitals" each get a share of a real breast-cancer survival study (GBSG2, shipped
   with lifelines) as a CSV that stays in the hospital's own folder.
2. A collaboration ledger is created: admin genesis, the hub named, three sites and a
   researcher admitted (all real Ed25519 identities, real SQLite ledger file).
3. The researcher publishes a signed task: the ``summary`` image **by digest** from the local
   registry, its input sealed to each site.
4. Each site opens its sealed input, checks its own deny-by-default policy, pulls the image
   by digest, runs it in the locked-down sandbox next to its data, and appends a signed
   result whose output is sealed to the researcher.
5. The hub signs a checkpoint; every site cosigns it as a witness.
6. The researcher opens the three sealed outputs and combines them: the federated means and
   counts are compared with the same figures computed centrally on the pooled data.
7. ``ptm audit`` replays the study's ledger, and a 20,000-entry simulated ledger; then one
   byte of one stored entry is flipped and the audit names the forged entry.

The live network (hub and site daemons over libp2p) is exercised by its own tests; driving
this study through it end to end is the workflow issue's job.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptm_p2p.errors import PtmError
from ptm_p2p.executor import Executor, SitePolicy, Task
from ptm_p2p.ledger.audit import audit
from ptm_p2p.ledger.checkpoint import Checkpoint, cosign, sign_checkpoint
from ptm_p2p.ledger.crypto import Signer, sha256
from ptm_p2p.ledger.entry import (
    GENESIS,
    MEMBERSHIP,
    RESULT,
    TASK,
    AuthorChain,
    Entry,
    digest_of_image,
    genesis_payload,
    membership_payload,
    result_payload,
    task_payload,
)
from ptm_p2p.ledger.replay import State
from ptm_p2p.ledger.simulate import simulate
from ptm_p2p.ledger.store import SqliteStore

SITES = ("hospital-a", "hospital-b", "hospital-c")
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


def _now_ms() -> int:
    return int(time.time() * 1000)


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
    """Steps 1-6: a real study recorded on a real ledger; returns both sets of figures."""
    data_paths, pooled = split_study(workdir)
    say(f"  data: GBSG2 ({len(pooled)} patients) split over {', '.join(SITES)} in {workdir}")

    ledger_path = workdir / "study-ledger.db"
    for suffix in ("", "-wal", "-shm"):  # a rerun starts a new study
        Path(f"{ledger_path}{suffix}").unlink(missing_ok=True)
    admin, hub = Signer.generate(), Signer.generate()
    researcher = AuthorChain(Signer.generate())
    sites = {name: AuthorChain(Signer.generate()) for name in SITES}
    store = SqliteStore(ledger_path)
    state = State()

    def append(entry: Entry) -> Entry:
        state.apply(entry)  # the hub's check: every entry obeys the replay rules
        store.append([entry])
        return entry

    try:
        admin_chain = AuthorChain(admin)
        append(
            admin_chain.append(
                GENESIS,
                genesis_payload(ORIGIN, admin.public_key, "consortium", hub.public_key, "ptm-hub"),
                _now_ms(),
            )
        )
        for name, chain in sites.items():
            append(
                admin_chain.append(
                    MEMBERSHIP,
                    membership_payload("admit", chain.signer.public_key, name, "site"),
                    _now_ms(),
                )
            )
        append(
            admin_chain.append(
                MEMBERSHIP,
                membership_payload(
                    "admit", researcher.signer.public_key, "researcher-1", "researcher"
                ),
                _now_ms(),
            )
        )
        say(f"  ledger: genesis + {len(SITES)} sites + 1 researcher admitted")

        params = {
            "data": DATA_LABEL,
            "columns": [*NUMERIC, *CATEGORICAL],
            "categorical": list(CATEGORICAL),
        }
        inputs = {chain.signer.public_key: json.dumps(params).encode() for chain in sites.values()}
        limits = {"timeout_s": 120, "memory_mb": 256, "cpu_millis": 1000}
        task = append(
            researcher.append(
                TASK, task_payload(summary_image, inputs, limits, algorithm="summary"), _now_ms()
            )
        )
        say(f"  task {task.hash.hex()[:12]}… published: {summary_image}")

        for name, chain in sites.items():
            sealed = task.payload["inputs"][chain.signer.public_key]
            site_input = chain.signer.open_sealed(sealed)
            policy = SitePolicy.from_table(
                {
                    "images": [summary_image.split("@", 1)[0]],
                    "publishers": [researcher.signer.public_key.hex()],
                    "data": {DATA_LABEL: str(data_paths[name])},
                    "min_group_size": 5,
                }
            )
            result = Executor(docker_client, policy).run(
                Task(
                    image=summary_image,
                    input=site_input,
                    data=[DATA_LABEL],
                    publisher_key=researcher.signer.public_key.hex(),
                    task_id=task.hash.hex(),
                    timeout_s=limits["timeout_s"],
                )
            )
            if result.status != "ok":
                raise PtmError(f"{name}: the summary task ended {result.status}: {result.reason}")
            ran = digest_of_image(result.digest or "")  # what really ran, from the engine
            append(
                chain.append(
                    RESULT,
                    result_payload(task, result.status, result.output, ran, sha256(result.logs)),
                    _now_ms(),
                )
            )
            say(
                f"  {name}: ran {ran[:19]}… in {result.timings.total_s:.2f} s; "
                f"result sealed to the researcher"
            )

        size = store.size()
        signed = sign_checkpoint(Checkpoint(ORIGIN, size, store.root(size)), hub)
        for name, chain in sites.items():
            signed = cosign(signed, chain.signer, name, int(time.time()))
        store.add_checkpoint(signed.text, size)
        say(f"  checkpoint: size {size}, signed by the hub, cosigned by {len(SITES)} sites")

        outputs = []
        for result_state in state.tasks[task.hash].results.values():
            raw = store.raw(result_state.index)
            sealed_output = Entry.from_bytes(raw).payload["output"]
            outputs.append(json.loads(researcher.signer.open_sealed(sealed_output)))
        federated = combine(outputs)
        central = central_figures(pooled)
        report = audit(store)
    finally:
        store.close()
    matches = federated.keys() == central.keys() and all(
        math.isclose(federated[k], central[k], rel_tol=1e-9) for k in central
    )
    say("")
    say(f"  {'figure':<22}{'federated':>14}{'central':>14}")
    for key in central:
        say(f"  {key:<22}{federated.get(key, float('nan')):>14.3f}{central[key]:>14.3f}")
    say(
        f"  federated == central: {'yes' if matches else 'NO'}; "
        f"study ledger audit: {'ok' if report.ok else 'FAILED'}"
    )
    return DemoOutcome(matches and report.ok, workdir, federated, central)


def audit_simulated(workdir: Path, say: Say) -> bool:
    """Step 7: audit a simulated ledger, then a copy with one flipped byte."""
    path = workdir / "simulated.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    store = SqliteStore(path)
    try:
        simulate(store, SIMULATED_ENTRIES, sites=5, seed=7)
        started = time.perf_counter()
        clean = audit(store)
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

    workdir.mkdir(parents=True, exist_ok=True)
    say("[1/3] local infrastructure: Docker engine, registry, base and algorithm images")
    stack = ensure_stack()
    summary = stack.images["summary"]
    say(f"  summary image: {summary}")
    say("[2/3] a federated study on real survival data, recorded on a signed ledger")
    study = run_study(workdir / "study", summary, stack.client, say)
    say("[3/3] the auditor's view")
    audited = audit_simulated(workdir, say)
    ok = study.ok and audited
    say("")
    say("demo: ok" if ok else "demo: FAILED (see above)")
    return ok
