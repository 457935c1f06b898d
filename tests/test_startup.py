"""`ptm --help`, `ptm status` and `ptm id` stay fast: they import nothing heavy (issue 10).

Timing a process in a test is noisy on a shared machine, so this holds the *cause* instead:
the set of modules each command imports, read from ``python -X importtime`` of a real
process. libp2p (~1 s with aioquic and ACME TLS), Docker, pandas/NumPy (through
sqlite-utils) and trio belong to the commands that use them, never to these three.
The times themselves are measured by ``bench/bench_startup.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ptm_p2p.home import Home

HEAVY = ("libp2p", "docker", "pandas", "numpy", "sqlite_utils", "trio", "aioquic", "rich")


def imported_modules(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ptm_p2p.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert names, proc.stderr[-2000:]
    return names


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Home.init(tmp_path_factory.mktemp("homes") / "site-a", "site-a").path


@pytest.mark.parametrize(
    "args",
    [("--help",), ("status", "--home"), ("id", "--home"), ("status", "--json", "--home")],
    ids=lambda a: " ".join(a),
)
def test_quick_commands_import_nothing_heavy(args: tuple[str, ...], home: Path) -> None:
    argv = [*args, str(home)] if args[-1] == "--home" else list(args)
    modules = imported_modules(*argv)
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, f"`ptm {' '.join(args)}` imports {heavy[:10]}"


def test_help_does_not_even_load_the_crypto() -> None:
    modules = imported_modules("--help")
    assert not any(m.split(".")[0] == "nacl" for m in modules)
    assert "ptm_p2p.ledger.store" not in modules
