"""Benchmark of command start-up: `ptm --help`, `ptm status` and `ptm id`, end to end.

Each command runs as a fresh process, as an operator types it, ``--reps`` times; the median
wall-clock time is reported. Baseline measured in the same run: a bare interpreter start
(``python -c pass``) with the same site-packages, i.e. what no command can go below.

`ptm status` reads a home holding a simulated log of ``--entries`` entries (its membership
line folds the admin's chain; nothing imports libp2p). Commands run through the console
script beside this interpreter when there is one (what `ptm` on PATH runs, minus any shim
such as pyenv's, which adds its own ~0.2 s), else ``python -m ptm_p2p.cli``.

Python's bytecode cache is on for the timed processes, as after ``pip install`` (which
compiles every module): ``PYTHONDONTWRITEBYTECODE`` is dropped from their environment and
each command runs once untimed first. With the cache off, every run recompiles the package
(~75 ms more on this machine).

Run: ``python bench/bench_startup.py [--reps 9] [--entries 20000]``.
Target: each command under 0.3 s on this machine.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.3


def ptm_command() -> list[str]:
    script = Path(sys.executable).with_name("ptm")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ptm_p2p.cli"]


def timed_runs(argv: list[str], reps: int) -> tuple[float, float]:
    """(median, fastest) wall-clock seconds of ``reps`` runs after one untimed warm-up; on a
    shared machine the fastest run shows what the command costs, the median what an operator
    meets."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times = []
    for rep in range(reps + 1):
        start = time.perf_counter()
        subprocess.run(
            argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        if rep:
            times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=9, help="runs per command (median taken)")
    parser.add_argument(
        "--entries", type=int, default=20_000, help="entries in the status home's log"
    )
    parser.add_argument(
        "--command", default=None, help="the ptm command to time, e.g. 'python3 -m ptm_p2p.cli'"
    )
    args = parser.parse_args()

    from ptm_p2p.home import Home
    from ptm_p2p.ledger.simulate import simulate
    from ptm_p2p.ledger.store import SqliteStore

    ptm = shlex.split(args.command) if args.command else ptm_command()
    with tempfile.TemporaryDirectory() as tmp:
        home = Home.init(Path(tmp) / "site-a", "site-a")
        home.ledger_path.unlink()
        with SqliteStore(home.ledger_path) as store:
            simulate(store, args.entries, 4, 7, 1000, lambda done, total: None)
        commands = {
            "ptm --help": [*ptm, "--help"],
            "ptm status": [*ptm, "status", "--home", str(home.path)],
            "ptm id": [*ptm, "id", "--home", str(home.path)],
        }
        baseline, fastest = timed_runs([sys.executable, "-c", "pass"], args.reps)
        print(f"command: {' '.join(ptm)}; {args.reps} runs each: median (fastest)")
        print(f"baseline  python -c pass           {baseline:6.3f} s ({fastest:.3f} s)")
        worst = 0.0
        for name, argv in commands.items():
            took, fastest = timed_runs(argv, args.reps)
            worst = max(worst, took)
            print(
                f"startup   {name:<24} {took:6.3f} s ({fastest:.3f} s) = "
                f"{took / baseline:4.1f} x bare python "
                f"(target < {TARGET_S} s: {'ok' if took < TARGET_S else 'MISSED'})"
            )
        print(f"worst_startup_s {worst:.3f}")


if __name__ == "__main__":
    main()
