"""Audit throughput against raw Ed25519 verification, measured in one run.

    python3 bench/bench_ledger.py [--entries 100000] [--sites 5]

Prints raw PyNaCl verifications per second on one core (the baseline), then the rate at
which ``ptm_p2p.ledger.audit.audit`` replays a simulated ledger (decode, canonical check,
signature, chain, rules, Merkle tree, checkpoints), and their ratio — once all in one
process, once with signatures verified by worker processes (what ``ptm audit`` does on
logs of 20,000 entries or more). Target: >= 0.8.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import raw_ed25519_verifies_per_second  # noqa: E402

from ptm_p2p.ledger.audit import audit  # noqa: E402
from ptm_p2p.ledger.simulate import simulate  # noqa: E402
from ptm_p2p.ledger.store import SqliteStore  # noqa: E402

TARGET = 0.8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--sites", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        store = SqliteStore(path)
        start = time.perf_counter()
        simulate(store, args.entries, args.sites, seed=1)
        built = time.perf_counter() - start
        store.close()
        print(f"simulated ledger: {args.entries:,} entries, {args.sites} sites ({built:.1f} s)")

        raw_rate = raw_ed25519_verifies_per_second()
        print(f"baseline: raw Ed25519 verifications: {raw_rate:,.0f}/s (PyNaCl, one core)")

        for label, workers in (
            ("audit, one process", 0),
            ("audit, parallel verify", os.cpu_count() or 1),
        ):
            store = SqliteStore(path, read_only=True)
            start = time.perf_counter()
            report = audit(store, workers=workers)
            elapsed = time.perf_counter() - start
            store.close()
            assert report.ok, report.problems[:3]
            rate = args.entries / elapsed
            ratio = rate / raw_rate
            verdict = "meets" if ratio >= TARGET else "misses"
            print(
                f"{label}: {rate:,.0f} entries/s ({elapsed:.2f} s, "
                f"{len(report.checkpoints)} checkpoints) = {ratio:.2f} x raw verify "
                f"({verdict} the target of {TARGET})"
            )


if __name__ == "__main__":
    main()
