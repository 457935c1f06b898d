"""`ptm status` and `ptm collab members` on real homes and ledger files (issue 10).

Status says whether this home's key is an admitted member, with which role and since which
log entry, from the home's own verified ledger copy; `ptm collab members` lists everyone
from a verified copy (a home or a ledger file), for admins and auditors. Both run through
the real CLI on real SQLite files; no daemon is needed to read a ledger.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ptm_p2p.cli import main
from ptm_p2p.home import Home
from ptm_p2p.ledger.store import SqliteStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collab_log import collaboration_log  # noqa: E402

T0 = 1_700_000_000_000


@pytest.fixture
def collaboration(tmp_path: Path) -> dict[str, Home]:
    """admin, hub, a site (admitted), a researcher (admitted then revoked) and a stranger; the
    site's and the stranger's homes hold the log, as a node's verified copy would."""
    homes = {
        name: Home.init(tmp_path / name, name)
        for name in ("admin", "hub", "site-a", "uni", "stranger")
    }
    changes = [
        ("admit", "site-a", "hospital-a", "site"),
        ("admit", "uni", "uni", "researcher"),
        ("revoke", "uni", "uni", "researcher", "left"),
    ]
    entries = collaboration_log(homes, "example.org/study", "uni-admin", changes, T0)
    for name in ("site-a", "uni", "stranger"):
        with SqliteStore(homes[name].ledger_path) as store:
            store.append(entries)
    return homes


def status(home: Home, *extra: str) -> str:
    """``ptm status`` of ``home``, which always exits 0 (it reports, it does not judge)."""
    result = CliRunner().invoke(main, ["status", "--home", str(home.path), *extra])
    assert result.exit_code == 0, result.output
    return result.output


def copy_ledger(home: Home, copy: Path) -> None:
    copied = CliRunner().invoke(main, ["ledger", "copy", str(home.path), str(copy)])
    assert copied.exit_code == 0, copied.output


def collab_members(*args: str) -> Result:
    return CliRunner().invoke(main, ["collab", "members", *args])


def test_status_names_an_admitted_site_its_role_and_entry(
    collaboration: dict[str, Home],
) -> None:
    out = status(collaboration["site-a"])
    assert "member      site of hospital-a, admitted at log entry 1" in out
    out = status(collaboration["site-a"], "--json")
    member = json.loads(out)["membership"]
    assert member["status"] == "admitted"
    assert (member["role"], member["org"], member["admitted_at"]) == ("site", "hospital-a", 1)
    assert member["origin"] == "example.org/study"


def test_status_says_revoked_and_not_admitted(collaboration: dict[str, Home]) -> None:
    out = status(collaboration["uni"])
    assert "REVOKED at log entry 3 (was researcher of uni since entry 2)" in out
    out = status(collaboration["stranger"])
    assert "NOT ADMITTED" in out
    assert "ptm collab admit" in out


def test_status_of_a_home_without_a_log_points_to_collab_members(
    collaboration: dict[str, Home],
) -> None:
    out = status(collaboration["admin"])
    assert "ptm collab members" in out


def test_collab_members_lists_everyone_from_a_verified_copy(
    collaboration: dict[str, Home], tmp_path: Path
) -> None:
    copy = tmp_path / "copy.db"
    copy_ledger(collaboration["site-a"], copy)
    for source in (str(copy), str(collaboration["site-a"].path)):
        result = collab_members(source)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert any("hospital-a" in line and "site" in line for line in lines)
        assert any("uni " in line and "revoked at entry 3" in line for line in lines)
    result = collab_members(str(copy), "--json")
    assert result.exit_code == 0, result.output
    members = {m["org"]: m for m in json.loads(result.output)["members"]}
    assert members["hospital-a"]["role"] == "site"
    assert members["hospital-a"]["active"] is True
    assert members["uni"]["revoked_at"] == 3
    assert members["uni-admin"]["role"] == "admin"
    assert members["hub"]["key"] == collaboration["hub"].public_key.hex()


def test_collab_members_refuses_a_copy_that_does_not_verify(
    collaboration: dict[str, Home], tmp_path: Path
) -> None:
    import sqlite3

    copy = tmp_path / "forged.db"
    copy_ledger(collaboration["site-a"], copy)
    conn = sqlite3.connect(copy)
    (raw,) = conn.execute("SELECT raw FROM entries WHERE idx = 1").fetchone()
    forged = bytearray(raw)
    forged[-1] ^= 1
    conn.execute("UPDATE entries SET raw = ? WHERE idx = 1", (bytes(forged),))
    conn.commit()
    conn.close()
    result = collab_members(str(copy))
    assert result.exit_code == 1
    assert "ptm audit" in result.output


def test_status_shows_the_largest_checkpoint_even_when_an_older_one_was_stored_last(
    tmp_path: Path,
) -> None:
    """A cosignature merged into an older checkpoint is stored as a new row for that older
    size, after newer notes: the status still shows the newest tree, not the last row."""
    from ptm_p2p.ledger import checkpoint as cp
    from ptm_p2p.ledger.crypto import Signer
    from ptm_p2p.ledger.store import SqliteStore
    from ptm_p2p.network.home_status import collect

    hub = Signer.generate()

    def note(size: int) -> str:
        tree = cp.Checkpoint("example.org/x", size, bytes([size]) * 32)
        return cp.sign_checkpoint(tree, hub).text

    store = SqliteStore(tmp_path / "ledger.db")
    for size in (10, 20, 10):
        store.add_checkpoint(note(size), size)
    store.close()
    assert collect(tmp_path)["checkpoint"]["size"] == 20
