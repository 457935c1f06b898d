"""`ptm audit` and `ptm ledger copy` leave folders as they found them (issue 10, probe 6).

An auditor's look is read-only: no ``-wal``/``-shm`` files beside the copy, and a copy made
by ``ptm ledger copy`` can be audited from a read-only folder (a read-only bind mount here,
since the tests run as root). A ledger SQLite cannot read without writing beside it is named
as such, never as "not a ptm ledger".
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ptm_p2p.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readonly import read_only_view  # noqa: E402
from simulated import simulate_ledger  # noqa: E402


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "ledger.db"
    simulate_ledger(path, "-n", "120", "-k", "2")
    return path


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_audit_leaves_no_side_files(simulated: Path, tmp_path: Path) -> None:
    copy = tmp_path / "a.db"
    copy.write_bytes(simulated.read_bytes())  # a WAL-mode file, as a daemon's ledger.db is
    result = CliRunner().invoke(main, ["audit", str(copy)])
    assert result.exit_code == 0, result.output
    assert _files(tmp_path) == ["a.db"]


def test_ledger_copy_leaves_no_side_files_beside_the_source(
    simulated: Path, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "ledger.db").write_bytes(simulated.read_bytes())
    result = CliRunner().invoke(main, ["ledger", "copy", str(source), str(tmp_path / "c.db")])
    assert result.exit_code == 0, result.output
    assert _files(source) == ["ledger.db"]
    assert _files(tmp_path) == ["c.db", "src"]


def test_a_ledger_copy_is_audited_in_a_read_only_folder(simulated: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copies"
    folder.mkdir()
    result = CliRunner().invoke(main, ["ledger", "copy", str(simulated), str(folder / "c.db")])
    assert result.exit_code == 0, result.output
    # The copy is a plain rollback-journal file: nothing beside it is needed to read it.
    conn = sqlite3.connect(folder / "c.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()
    with read_only_view(folder, tmp_path / "ro") as view:
        result = CliRunner().invoke(main, ["audit", str(view / "c.db")])
        assert result.exit_code == 0, result.output
        assert "result: ok" in result.output
    assert _files(folder) == ["c.db"]


def test_a_wal_mode_file_is_audited_in_a_read_only_folder(simulated: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copies"
    folder.mkdir()
    (folder / "ledger.db").write_bytes(simulated.read_bytes())
    with read_only_view(folder, tmp_path / "ro") as view:
        result = CliRunner().invoke(main, ["audit", str(view)])  # a home-like folder
        assert result.exit_code == 0, result.output


def test_a_pending_wal_in_a_read_only_folder_is_named(simulated: Path, tmp_path: Path) -> None:
    """A killed daemon's ledger: committed entries still in -wal, in a read-only folder.

    Reading it needs a -shm index SQLite cannot create there; the error says so and what to
    do, instead of calling a good ledger "not a ptm ledger"."""
    folder = tmp_path / "killed"
    folder.mkdir()
    db = folder / "ledger.db"
    db.write_bytes(simulated.read_bytes())
    writer = sqlite3.connect(db)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("INSERT INTO checkpoints (size, note) VALUES (0, 'x')")
    writer.commit()
    # Keep -wal as a killed process leaves it: copy the files while the writer holds them.
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    for name in ("ledger.db", "ledger.db-wal"):
        (snapshot / name).write_bytes((folder / name).read_bytes())
    writer.close()
    with read_only_view(snapshot, tmp_path / "ro") as view:
        result = CliRunner().invoke(main, ["audit", str(view / "ledger.db")])
    assert result.exit_code == 1
    assert "not a ptm ledger" not in result.output
    assert "ledger.db-wal" in result.output
    assert "writable folder" in result.output
