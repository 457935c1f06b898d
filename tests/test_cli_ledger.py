"""`ptm ledger simulate` and `ptm audit` through the real CLI on real SQLite files.

The tampering cases edit the ledger file with plain SQL, as an attacker with the file would:
flip one byte of a stored entry, delete an entry, swap two entries. The audit must exit 1
and name the entry each time.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ptm_p2p.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simulated import flip_byte, simulate_ledger  # noqa: E402

ENTRIES = 1200


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sim") / "ledger.db"
    options = ["--entries", str(ENTRIES), "--sites", "3", "--seed", "5"]
    output = simulate_ledger(path, *options, "--checkpoint-every", "250")
    assert "1200 entries" in output
    return path


def copy_of(simulated: Path, tmp_path: Path, *damage: str) -> Path:
    """A copy of the simulated ledger, with the SQL statements ``damage`` run on it."""
    target = tmp_path / "copy.db"
    source = sqlite3.connect(simulated)
    dest = sqlite3.connect(target)
    source.backup(dest)
    source.close()
    dest.close()
    with sqlite3.connect(target) as db:
        for statement in damage:
            db.execute(statement)
    return target


def run_audit(path: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["audit", str(path), *extra])
    return result.exit_code, result.output


def failing_audit(path: Path, *extra: str) -> str:
    """``ptm audit`` of a damaged ledger, which must exit 1: what it said."""
    code, output = run_audit(path, *extra)
    assert code == 1
    return output


def test_simulated_ledger_audits_clean(simulated: Path) -> None:
    code, output = run_audit(simulated)
    assert code == 0, output
    assert "result: ok" in output
    assert "checkpoints (5, 5 verified)" in output
    assert "hospital-1" in output and "researcher" in output


def test_audit_json_reports_tasks_members_and_checkpoints(simulated: Path) -> None:
    code, output = run_audit(simulated, "--json")
    assert code == 0
    report = json.loads(output)
    assert report["ok"] is True
    assert report["size"] == ENTRIES
    assert sum(report["entries_by_kind"].values()) == ENTRIES
    roles = {m["role"] for m in report["members"]}
    assert roles == {"admin", "hub", "site", "researcher", "auditor"}
    revoked = [m for m in report["members"] if m["revoked_at"] is not None]
    assert len(revoked) == 1  # the simulated researcher who left
    task = report["tasks"][0]
    assert task["image"].endswith(task["image_digest"])
    assert task["results"] and all(
        r["status"] in {"ok", "failed", "timeout", "refused"} for r in task["results"].values()
    )
    assert [c["size"] for c in report["checkpoints"]] == [250, 500, 750, 1000, 1200]
    assert all(len(c["cosigners"]) == 3 for c in report["checkpoints"])


def test_flipped_byte_is_named(simulated: Path, tmp_path: Path) -> None:
    path = copy_of(simulated, tmp_path)
    flip_byte(path, 700)
    output = failing_audit(path, "--json")
    first = json.loads(output)["problems"][0]
    assert first["index"] == 700
    assert first["message"].startswith("entry 700")


def test_deleted_entry_is_named(simulated: Path, tmp_path: Path) -> None:
    path = copy_of(simulated, tmp_path, "DELETE FROM entries WHERE idx = 333")
    output = failing_audit(path)
    assert "entry 333 is missing" in output
    assert "BAD size 500" in output  # the signed tree no longer matches


def test_deleted_tail_is_reported(simulated: Path, tmp_path: Path) -> None:
    path = copy_of(simulated, tmp_path, "DELETE FROM entries WHERE idx >= 1100")
    output = failing_audit(path)
    assert "signed a log of 1200 entries but this copy has only 1100" in output


@pytest.mark.parametrize(("a", "b"), [(600, 601), (420, 950)])
def test_swapped_entries_are_named(simulated: Path, tmp_path: Path, a: int, b: int) -> None:
    path = copy_of(
        simulated,
        tmp_path,
        f"UPDATE entries SET idx = -1 WHERE idx = {a}",
        f"UPDATE entries SET idx = {a} WHERE idx = {b}",
        f"UPDATE entries SET idx = {b} WHERE idx = -1",
    )
    output = failing_audit(path, "--json")
    report = json.loads(output)
    named = {p["index"] for p in report["problems"]} | {
        i for p in report["problems"] for i in (a, b) if str(i) in p["message"]
    }
    assert named & {a, b}, report["problems"][:5]
    assert not all(c["matches_entries"] for c in report["checkpoints"])


def test_audit_of_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    code, output = run_audit(tmp_path / "nope.db")
    assert code == 1
    assert "no such ledger file" in output
    assert not (tmp_path / "nope.db").exists()


def test_simulate_refuses_to_overwrite(simulated: Path) -> None:
    result = CliRunner().invoke(main, ["ledger", "simulate", str(simulated), "--entries", "50"])
    assert result.exit_code == 1
    assert "already exists" in result.output


def test_parallel_and_serial_audit_agree(simulated: Path, tmp_path: Path) -> None:
    from ptm_p2p.ledger.audit import audit
    from ptm_p2p.ledger.store import SqliteStore

    path = copy_of(simulated, tmp_path)
    flip_byte(path, 900, at=-1, mask=0x80)  # inside the signature
    store = SqliteStore(path)
    try:
        serial = audit(store, workers=0)
        parallel = audit(store, workers=2)
    finally:
        store.close()
    assert serial.to_json() == parallel.to_json()
    assert serial.problems[0].index == 900
    assert "signature does not verify" in serial.problems[0].message


def test_audit_never_changes_the_file_it_judges(simulated: Path, tmp_path: Path) -> None:
    import hashlib

    path = copy_of(simulated, tmp_path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    code, _ = run_audit(path)
    assert code == 0
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_read_only_store_refuses_writes(simulated: Path) -> None:
    from ptm_p2p.errors import StoreError
    from ptm_p2p.ledger.store import SqliteStore

    store = SqliteStore(simulated, read_only=True)
    try:
        assert store.size() == ENTRIES
        with pytest.raises(StoreError, match="read-only"):
            store.add_evidence("test", b"a", b"b", "must not be written")
    finally:
        store.close()


def test_audit_refuses_a_file_that_is_not_a_ledger(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE patients (id INTEGER)")
    code, output = run_audit(other)
    assert code == 1
    assert "not a ptm ledger" in output


def test_one_forged_entry_is_one_cause_not_a_cascade(simulated: Path, tmp_path: Path) -> None:
    path = copy_of(simulated, tmp_path)
    with sqlite3.connect(path) as db:
        raw = bytearray(db.execute("SELECT raw FROM entries WHERE idx = 300").fetchone()[0])
        raw[-1] ^= 0x01  # the signature: the claimed author stays the real one
        db.execute("UPDATE entries SET raw = ? WHERE idx = 300", (bytes(raw),))
    code, output = run_audit(path, "--json")
    assert code == 1
    problems = json.loads(output)["problems"]
    causes = [p for p in problems if p["index"] is not None]
    assert [p["index"] for p in causes] == [300]
    assert any("consequences of the problems above" in p["message"] for p in problems)


def test_a_ledger_without_genesis_is_not_ok(tmp_path: Path) -> None:
    from ptm_p2p.ledger.store import SqliteStore

    SqliteStore(tmp_path / "empty.db").close()
    code, output = run_audit(tmp_path / "empty.db")
    assert code == 1
    assert "no genesis entry" in output and "ptm ledger copy" in output


def test_copy_then_audit_a_home_folder(simulated: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    result = CliRunner().invoke(main, ["ledger", "copy", str(simulated), str(home / "ledger.db")])
    assert result.exit_code == 0, result.output
    code, output = run_audit(home)  # a home folder stands for its ledger.db
    assert code == 0, output


@pytest.mark.parametrize("where", [0.25, 0.5, 0.75, 0.99])
def test_a_damaged_sqlite_file_is_named_as_such(
    simulated: Path, tmp_path: Path, where: float
) -> None:
    path = copy_of(simulated, tmp_path)
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")  # SQLite file header
    page = max(1, int((len(data) // page_size) * where))
    # Wipe a b-tree page header: structural damage that SQLite must report, whichever
    # table or index the page belongs to (damage inside a blob is the signatures' job).
    data[page * page_size : page * page_size + 16] = bytes(16)
    path.write_bytes(bytes(data))
    code, output = run_audit(path)
    assert code == 1
    assert "the SQLite file itself is damaged" in output
