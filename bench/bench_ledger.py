"""Audit throughput against raw Ed25519 verification, measured in one run.

    python3 bench/bench_ledger.py [--entries 100000] [--sites 5] [--repeat 3]

Prints the rate at which ``ptm_p2p.ledger.audit.audit`` replays a simulated ledger (decode,
canonical check, signature, chain, rules, Merkle tree, checkpoints) as a ratio to raw PyNaCl
verifications per second on one core — once all in one process (target: >= 0.8), once with
signatures verified by worker processes (what ``ptm audit`` does on logs of 20,000 entries
or more; target: >= 1.6 on two cores, whose physical limit is 2.0).

On a shared machine the rate of both drifts with what else runs, so each audit run is
divided by the mean of raw rates measured right before and right after it, and the median
of ``--repeat`` runs is what meets or misses the target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import raw_ed25519_verifies_per_second  # noqa: E402

from ptm_p2p.ledger.audit import audit  # noqa: E402
from ptm_p2p.ledger.simulate import simulate  # noqa: E402
from ptm_p2p.ledger.store import SqliteStore  # noqa: E402

ONE_PROCESS_TARGET = 0.8
PARALLEL_TARGET = 1.6
BASELINE_SECONDS = 1.0


def _audit_once(path: Path, entries: int, workers: int) -> tuple[float, float, str]:
    """(audit rate, raw verify rate around it, where the CPU time went)."""
    raw_before = raw_ed25519_verifies_per_second(BASELINE_SECONDS)
    store = SqliteStore(path, read_only=True)
    times = os.times()
    start = time.perf_counter()
    report = audit(store, workers=workers)
    elapsed = time.perf_counter() - start
    spent = os.times()
    store.close()
    raw_after = raw_ed25519_verifies_per_second(BASELINE_SECONDS)
    assert report.ok, report.problems[:3]
    # CPU time per entry, here and in the workers: what the audit costs whatever else runs
    # on the machine (on a busy one, the rate says more about the neighbours).
    here = (spent.user + spent.system - times.user - times.system) / entries * 1e6
    workers_cpu = (
        (spent.children_user + spent.children_system - times.children_user - times.children_system)
        / entries
        * 1e6
    )
    cpu = f"CPU {here:.0f} µs/entry here" + (f" + {workers_cpu:.0f} in workers" if workers else "")
    return entries / elapsed, (raw_before + raw_after) / 2, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--sites", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="audit runs per mode (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        store = SqliteStore(path)
        start = time.perf_counter()
        simulate(store, args.entries, args.sites, seed=1)
        built = time.perf_counter() - start
        store.close()
        print(f"simulated ledger: {args.entries:,} entries, {args.sites} sites ({built:.1f} s)")

        cpus = os.cpu_count() or 1
        for label, workers, target in (
            ("audit, one process", 0, ONE_PROCESS_TARGET),
            (f"audit, parallel verify ({cpus} workers)", cpus, PARALLEL_TARGET),
        ):
            ratios = []
            for _ in range(args.repeat):
                rate, raw_rate, cpu = _audit_once(path, args.entries, workers)
                ratios.append(rate / raw_rate)
                print(
                    f"  {label}: {rate:,.0f} entries/s, raw Ed25519 verify {raw_rate:,.0f}/s "
                    f"(PyNaCl, one core) = {rate / raw_rate:.2f} x; {cpu}"
                )
            ratio = statistics.median(ratios)
            verdict = "meets" if ratio >= target else "misses"
            print(
                f"{label}: median {ratio:.2f} x raw verify over {len(ratios)} runs "
                f"({verdict} the target of {target})"
            )


if __name__ == "__main__":
    main()
