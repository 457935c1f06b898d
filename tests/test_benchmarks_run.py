"""Every benchmark in bench/ still runs, on tiny inputs.

The benchmarks are not timed tests (their figures live in the README); this only keeps them
from rotting: an API change that breaks a bench script fails here, not months later when
someone wants the figures. Each runs as its own process, exactly as the README tells.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"

CASES = {
    "bench_explore.py": (["--entries", "300", "--sites", "2", "--reps", "2"], "search: slowest"),
    "bench_ledger.py": (["--entries", "500", "--sites", "2"], "x raw verify"),
    "bench_log.py": (["--entries", "5000", "--append-entries", "1000"], "SqliteStore.append"),
    "bench_executor.py": (["--reps", "1"], "ratio_executor_over_bare"),
    "bench_startup.py": (["--reps", "1", "--entries", "200"], "startup   ptm status"),
    "bench_workflow.py": (
        ["--sizes", "1", "--reps", "1", "--tasks", "2", "--publishes", "3"],
        "throughput 3 sites",
    ),
    "bench_survival.py": (
        ["--sizes", "2", "--reps", "1", "--bare-reps", "1", "--covariates", "2"],
        "wall ÷ (rounds × one bare docker run)",
    ),
    "bench_flood.py": (
        ["--identities", "2", "--streams", "8", "--ops", "50", "--hold", "2"],
        "within bounds",
    ),
    "bench_blobs.py": (["--size-mb", "4", "--reps", "1"], "blob get ÷ raw stream"),
    "bench_network.py": (
        ["--entries", "500", "--sites", "3", "--rounds", "3", "--throughput", "500"],
        "latency, 3 sites",
    ),
}


def test_every_bench_script_is_covered() -> None:
    scripts = {p.name for p in BENCH.glob("bench_*.py")}
    assert scripts == set(CASES), "add new bench scripts to CASES"


@pytest.mark.parametrize("script", sorted(CASES))
def test_bench_script_runs(script: str, tmp_path: Path) -> None:
    args, expected = CASES[script]
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert expected in result.stdout, result.stdout
