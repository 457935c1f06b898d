"""Benchmark of the durable log (ptm_p2p.ledger.store.SqliteStore).

1. Durable append throughput: real signed entries (``Entry.create``, membership payloads,
   ~240 bytes), appended in batches of 1000 to a fresh SqliteStore (WAL, synchronous=FULL).
   Baseline measured in the same run: the same rows inserted into a bare SQLite table with
   the same pragmas, one transaction per batch, no checks and no Merkle nodes.
2. Proof latency on a 1,000,000-entry SqliteStore. For building speed these entries are
   *synthetic*: unsigned 240-byte raw blobs with correct SHA-256 ids, 64 authors (the store
   never looks inside ``raw``, so the tree and index shapes are the same as for real
   entries). Inclusion and consistency proofs at random positions, plus ``root()``; each
   result is verified once with merkle.verify_*.

Run: ``python bench/bench_log.py [--entries 1000000] [--db PATH to keep/reuse the big log]``.
Targets: >= 10,000 entries/s durable append; proofs < 1 ms on 1M entries.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ptm_p2p.ledger import entry as entry_mod
from ptm_p2p.ledger import merkle
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.store import SqliteStore

APPEND_TARGET = 10_000
PROOF_TARGET_MS = 1.0


@dataclass(frozen=True)
class Synthetic:
    raw: bytes
    hash: bytes
    author: bytes
    seq: int


def real_entries(n: int) -> list[entry_mod.Entry]:
    signers = [Signer(bytes([i + 1]) * 32) for i in range(8)]
    chains = [entry_mod.AuthorChain(s) for s in signers]
    out = []
    for k in range(n):
        # A real public key per member: membership payloads refuse unusable points.
        member = Signer(hashlib.sha256(b"member %d" % k).digest()).public_key
        payload = entry_mod.membership_payload(
            "admit", member, f"site-{k}", "site", reason=f"bench {k}"
        )
        out.append(chains[k % 8].append(entry_mod.MEMBERSHIP, payload, 1_700_000_000_000 + k))
    return out


def synthetic(start: int, end: int) -> list[Synthetic]:
    authors = [hashlib.sha256(b"author %d" % a).digest() for a in range(64)]
    out = []
    for k in range(start, end):
        raw = b"synthetic entry %012d " % k
        raw += bytes(240 - len(raw))
        out.append(Synthetic(raw, hashlib.sha256(raw).digest(), authors[k % 64], k // 64 + 1))
    return out


def bench_append(tmp: Path, n: int, batch: int) -> tuple[float, float]:
    es = real_entries(n)
    store = SqliteStore(tmp / "append.db")
    t = time.perf_counter()
    for i in range(0, n, batch):
        store.append(es[i : i + batch])
    store_rate = n / (time.perf_counter() - t)
    store.check_integrity()
    store.close()

    conn = sqlite3.connect(tmp / "baseline.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE entries (idx INTEGER PRIMARY KEY, hash BLOB UNIQUE, author BLOB, "
        "seq INTEGER, raw BLOB, UNIQUE (author, seq))"
    )
    t = time.perf_counter()
    for i in range(0, n, batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO entries VALUES (?, ?, ?, ?, ?)",
            [(j, e.hash, e.author, e.seq, e.raw) for j, e in enumerate(es[i : i + batch], i)],
        )
        conn.execute("COMMIT")
    base_rate = n / (time.perf_counter() - t)
    conn.close()
    return store_rate, base_rate


def build_big(path: Path, n: int) -> SqliteStore:
    store = SqliteStore(path)
    have = store.size()
    if have < n:
        t = time.perf_counter()
        step = 20_000
        for i in range(have, n, step):
            store.append(synthetic(i, min(n, i + step)))
        print(f"  built {n - have:,} synthetic entries in {time.perf_counter() - t:.1f} s")
    return store


def timed_us(fn: object, args: list[tuple[int, ...]]) -> list[float]:
    out = []
    for a in args:
        t = time.perf_counter()
        fn(*a)  # type: ignore[operator]
        out.append((time.perf_counter() - t) * 1e6)
    return out


def report(name: str, us: list[float]) -> None:
    us = sorted(us)
    p50 = statistics.median(us)
    p99 = us[int(len(us) * 0.99) - 1]
    ok = "OK" if p99 / 1000 < PROOF_TARGET_MS else "MISSED"
    print(f"  {name:<28} median {p50:7.1f} µs   p99 {p99:7.1f} µs   max {us[-1]:7.1f} µs  [{ok}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--append-entries", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--db", type=Path, help="keep the big log here (reused if present)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(
            f"durable append: {args.append_entries:,} real signed entries, batches of "
            f"{args.batch}, WAL + synchronous=FULL"
        )
        rate, base = bench_append(tmp, args.append_entries, args.batch)
        ok = "OK" if rate >= APPEND_TARGET else "MISSED"
        print(
            f"  SqliteStore.append          {rate:10,.0f} entries/s  (target >= "
            f"{APPEND_TARGET:,}) [{ok}]"
        )
        print(
            f"  bare SQLite insert baseline {base:10,.0f} entries/s  "
            f"(store / baseline = {rate / base:.2f})"
        )

        n = args.entries
        print(f"proofs on a {n:,}-entry SqliteStore (synthetic unsigned entries)")
        store = build_big(args.db or tmp / "big.db", n)
        rng = random.Random(1)
        root = store.root(n)
        incl = [(rng.randrange(n), n) for _ in range(2000)]
        cons = [(rng.randrange(1, n), n) for _ in range(2000)]
        report("root()", timed_us(lambda: store.root(n), [()] * 500))
        report("inclusion_proof(i, n)", timed_us(store.inclusion_proof, incl))  # type: ignore[arg-type]
        report("consistency_proof(m, n)", timed_us(store.consistency_proof, cons))  # type: ignore[arg-type]
        i, _ = incl[0]
        merkle.verify_inclusion(store.leaf_hash(i), i, n, store.inclusion_proof(i, n), root)
        m, _ = cons[0]
        merkle.verify_consistency(m, n, store.consistency_proof(m, n), store.root(m), root)
        print("  (sample proofs verified against the root)")
        print(f"  proof targets: < {PROOF_TARGET_MS} ms")
        store.close()


if __name__ == "__main__":
    main()
