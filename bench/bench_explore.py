"""`ptm explore` on a large ledger: start-up, first page and search latency, measured against
reading the same rows straight from SQLite in the same run.

    python3 bench/bench_explore.py [--entries 100000] [--sites 5] [--ledger FILE] [--reps 20]

Builds (or reuses, with ``--ledger``) a simulated ledger, opens it as ``ptm explore`` does
(snapshot, audit, index), serves it on 127.0.0.1 and times over real HTTP:

* first page: what the browser fetches to show the overview (``/``, ``app.js``, ``app.css``,
  ``/api/overview``) and the entry list's first page (``/api/entries``); goal < 1 s;
* search: by task-id prefix, entry-hash prefix, key prefix, organisation, image and data
  label (``/api/search``); goal < 200 ms each.

Baselines, same run: the entry list's 50 rows read from SQLite by index and decoded, and
each search answered by SQLite alone (an indexed range scan for a hash prefix; a scan that
decodes every entry for an organisation, image or label, which SQLite cannot index inside
the signed msgpack). Each figure is the median of ``--reps`` requests.
"""

from __future__ import annotations

import argparse
import http.client
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptm_p2p.explorer.index import Explorer  # noqa: E402
from ptm_p2p.explorer.server import serve_in_thread  # noqa: E402
from ptm_p2p.ledger.entry import Entry  # noqa: E402
from ptm_p2p.ledger.simulate import simulate  # noqa: E402
from ptm_p2p.ledger.store import SqliteStore  # noqa: E402

FIRST_PAGE_GOAL_S = 1.0
SEARCH_GOAL_S = 0.2


def median_time(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fetcher(port: int) -> Callable[[str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def fetch(path: str) -> bytes:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (path, response.status, body[:200])
        return body

    return fetch


def sqlite_rows(path: Path) -> Callable[..., object]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def page() -> list[Entry]:
        rows = db.execute("SELECT raw FROM entries ORDER BY idx LIMIT 50").fetchall()
        return [Entry.from_bytes_signature_checked_elsewhere(r[0]) for r in rows]

    def prefix(column: str, hex_prefix: str) -> list[int]:
        low = bytes.fromhex(hex_prefix.ljust(64, "0"))
        high = bytes.fromhex(hex_prefix.ljust(64, "f"))
        sql = f"SELECT idx FROM entries WHERE {column} BETWEEN ? AND ? LIMIT 50"
        return [r[0] for r in db.execute(sql, (low, high))]

    def scan(needle: str) -> int:
        # What SQLite alone can do for a text inside the signed payload: decode every entry.
        found = 0
        for (raw,) in db.execute("SELECT raw FROM entries"):
            entry = Entry.from_bytes_signature_checked_elsewhere(raw)
            if needle in str(entry.payload):
                found += 1
        return found

    def call(kind: str, *args: str) -> object:
        return {"page": page, "prefix": prefix, "scan": scan}[kind](*args)

    return call


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--sites", type=int, default=5)
    parser.add_argument("--ledger", type=Path, default=None, help="reuse this ledger file")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.ledger
        if path is None:
            path = Path(tmp) / "ledger.db"
            store = SqliteStore(path)
            simulate(store, args.entries, args.sites)
            store.close()
        start = time.perf_counter()
        explorer = Explorer.open(path)
        startup = time.perf_counter() - start
        server, url = serve_in_thread(explorer)
        port = int(url.rsplit(":", 1)[1])
        try:
            fetch = fetcher(port)
            entries = explorer.audit.size
            first_cold_start = time.perf_counter()
            for p in ("/", "/static/app.js", "/static/app.css", "/api/overview", "/api/entries"):
                fetch(p)
            first_cold = time.perf_counter() - first_cold_start

            def first_page() -> None:
                for p in (
                    "/",
                    "/static/app.js",
                    "/static/app.css",
                    "/api/overview",
                    "/api/entries",
                ):
                    fetch(p)

            first = median_time(first_page, args.reps)
            base = sqlite_rows(path)
            page_sqlite = median_time(lambda: base("page"), args.reps)
            task = explorer.tasks[len(explorer.tasks) // 2]
            entry_hash = explorer.rows[entries // 3].hash  # type: ignore[union-attr]
            site = next(iter(explorer.sites.values()))
            queries = {
                "task id prefix": (task["task"][:8], ("prefix", "hash", task["task"][:8])),
                "entry hash prefix": (entry_hash[:8], ("prefix", "hash", entry_hash[:8])),
                "key prefix": (site["key"][:10], ("prefix", "author", site["key"][:10])),
                "organisation": (site["org"], ("scan", site["org"])),
                "image": ("cox-webdisco", ("scan", "cox-webdisco")),
                "data label": ("survival", ("scan", "survival")),
            }
            print(
                f"ledger: {entries:,} entries, {len(explorer.tasks):,} tasks, "
                f"{len(explorer.checkpoint_rows)} checkpoints; cores {os.cpu_count()}"
            )
            import psutil

            rss = psutil.Process().memory_info().rss / 2**20
            print(
                f"startup (snapshot + audit + index)       {startup:7.2f} s, {rss:.0f} MiB resident"
            )
            verdict = "ok" if first < FIRST_PAGE_GOAL_S else "MISSED"
            print(
                f"first page over HTTP (5 requests)         {first * 1000:7.1f} ms median, "
                f"{first_cold * 1000:.1f} ms cold   "
                f"goal < {FIRST_PAGE_GOAL_S * 1000:.0f} ms: {verdict}"
            )
            print(
                f"  same 50 rows read from SQLite + decoded {page_sqlite * 1000:7.1f} ms "
                f"(first page ÷ SQLite rows = {first / page_sqlite:.1f})"
            )
            worst = 0.0
            for name, (q, sqlite_query) in queries.items():
                t = median_time(lambda q=q: fetch("/api/search?q=" + q), args.reps)
                reps = args.reps if sqlite_query[0] == "prefix" else 1
                s = median_time(lambda sq=sqlite_query: base(*sq), reps)
                worst = max(worst, t)
                print(
                    f"search {name:<18} {q[:14]:<14} {t * 1000:7.1f} ms   SQLite alone "
                    f"{s * 1000:8.1f} ms   (explorer ÷ SQLite = {t / s:.3g})"
                )
            verdict = "ok" if worst < SEARCH_GOAL_S else "MISSED"
            print(
                f"search: slowest {worst * 1000:.1f} ms   "
                f"goal < {SEARCH_GOAL_S * 1000:.0f} ms: {verdict}"
            )
        finally:
            server.shutdown()
            server.server_close()
            explorer.close()


if __name__ == "__main__":
    main()
