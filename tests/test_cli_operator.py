"""What a site operator, a hub operator and an admin meet first (issue 10): role-aware next
steps after `ptm init`, one name for the invitation option, a warning when a restarted hub
makes its invitation stale, and clear one-line errors — not tracebacks — for a read-only
home, `ptm run-local ""` and a ledger copy holding a forged entry.

The CLI runs through CliRunner, or as a real process where a daemon must start (the hub).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ptm_p2p.cli import main
from ptm_p2p.home import Home
from ptm_p2p.ledger.entry import AuthorChain, genesis_payload, membership_payload
from ptm_p2p.ledger.store import SqliteStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readonly import read_only_view  # noqa: E402

PTM = [sys.executable, "-m", "ptm_p2p.cli"]


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    # A traceback would show up as an exception other than SystemExit.
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.output,
        result.exception,
    )
    return result.exit_code, result.output


# --- ptm init --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "hub"])
def test_init_does_not_tell_the_admin_or_hub_to_ask_the_admin(tmp_path: Path, role: str) -> None:
    code, out = run("init", "--home", str(tmp_path / role), "--name", role, "--role", role)
    assert code == 0, out
    assert "to the collaboration's admin" not in out
    assert ("ptm collab create" if role == "admin" else "ptm hub") in out


def test_init_tells_a_site_to_give_its_key_and_check_its_config(tmp_path: Path) -> None:
    code, out = run("init", "--home", str(tmp_path / "s"), "--name", "s", "--role", "site")
    assert code == 0, out
    assert "collaboration's admin" in out and "ptm config check" in out


def test_init_without_a_role_gives_the_steps_of_each_role(tmp_path: Path) -> None:
    code, out = run("init", "--home", str(tmp_path / "x"), "--name", "x")
    assert code == 0, out
    for role in ("as the admin", "as the hub", "as a site", "as a researcher", "as an auditor"):
        assert role in out
    assert "Send the public key to the collaboration's admin to be admitted." not in out


# --- one invitation option -------------------------------------------------------------------


def test_the_invitation_option_has_one_visible_name() -> None:
    for command in (["node"], ["collab", "admit"], ["collab", "revoke"], ["collab", "members"]):
        code, out = run(*command, "--help")
        assert code == 0
        assert "--invitation" in out
        assert "Its old name, --join FILE, still works." in " ".join(out.split())
        # Hidden: no option line of its own, only the note above.
        assert not any(line.startswith("  --join") for line in out.splitlines()), out


def test_join_and_invitation_naming_different_files_is_a_usage_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text("{}")
    b.write_text("{}")
    result = CliRunner().invoke(main, ["node", "--invitation", str(a), "--join", str(b)])
    assert result.exit_code == 2
    assert "name different files" in result.output
    result = CliRunner().invoke(main, ["node", "--home", str(tmp_path)])
    assert result.exit_code == 2
    assert "Missing option '--invitation'" in result.output


# --- clear errors ----------------------------------------------------------------------------


def test_run_local_with_an_empty_image_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["run-local", "", "--out", "/tmp/never-written"])
    assert result.exit_code == 2
    assert "no image given" in result.output
    assert not Path("/tmp/never-written").exists()


def test_run_local_refuses_a_device_as_data() -> None:
    code, out = run("run-local", "img:latest", "--data", "z=/dev/zero", "--out", "/tmp/x-out")
    assert code == 1
    # Refused before any engine is contacted, and never with chmod advice.
    assert "system folder" in out or "Docker" in out
    assert "chmod" not in out


def test_a_read_only_home_gives_one_line_errors(tmp_path: Path) -> None:
    folder = tmp_path / "homes"
    folder.mkdir()
    Home.init(folder / "site-a", "site-a")
    invitation = tmp_path / "invite.json"
    invitation.write_text("{}")
    with read_only_view(folder, tmp_path / "ro") as view:
        code, out = run("node", "--home", str(view / "site-a"), "--invitation", str(invitation))
        assert code == 1
        assert "is not writable" in out and str(view / "site-a") in out
        code, out = run("init", "--home", str(view / "new"), "--name", "new")
        assert code == 1
        assert str(view / "new") in out and "read-only" in out.lower()
        # Reading still works on a read-only home.
        code, out = run("status", "--home", str(view / "site-a"))
        assert code == 0, out
        code, out = run("id", "--home", str(view / "site-a"))
        assert code == 0, out


def _forged_site_home(tmp_path: Path) -> Home:
    admin = Home.init(tmp_path / "admin", "admin")
    hub = Home.init(tmp_path / "hub", "hub")
    site = Home.init(tmp_path / "site-a", "site-a")
    chain = AuthorChain(admin.signer)
    entries = [
        chain.append(
            "genesis",
            genesis_payload("example.org/s", admin.public_key, "a", hub.public_key, "hub"),
            1,
        ),
        chain.append("membership", membership_payload("admit", site.public_key, "s", "site"), 2),
    ]
    with SqliteStore(site.ledger_path) as store:
        store.append(entries)
    conn = sqlite3.connect(site.ledger_path)
    (raw,) = conn.execute("SELECT raw FROM entries WHERE idx = 1").fetchone()
    forged = bytearray(raw)
    forged[-1] ^= 1  # the signature's last byte: the entry still decodes, it does not verify
    conn.execute("UPDATE entries SET raw = ? WHERE idx = 1", (bytes(forged),))
    conn.commit()
    conn.close()
    return site


def test_a_forged_entry_at_start_names_the_file_and_the_fix(tmp_path: Path) -> None:
    from ptm_p2p.network.host import peer_id_of
    from ptm_p2p.network.invitation import Invitation

    site = _forged_site_home(tmp_path)
    hub = Home.load(tmp_path / "hub")
    invitation = tmp_path / "invite.json"
    Invitation(
        f"/ip4/127.0.0.1/tcp/9/p2p/{peer_id_of(hub.public_key)}", hub.public_key, "example.org/s"
    ).save(invitation)
    proc = subprocess.run(
        [*PTM, "node", "--home", str(site.path), "--invitation", str(invitation)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(site.ledger_path) in proc.stderr
    assert "entry 1" in proc.stderr
    # The fix: what to do with the file and how the node gets a good copy again.
    assert any(fix in proc.stderr for fix in ("mv ", "fresh copy", "resync", "delete"))


# --- a restarted hub and its invitation ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_hub(home: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*PTM, "hub", "--home", str(home), "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    return err


@pytest.mark.network
def test_a_hub_restarted_on_another_port_warns_that_its_invitation_is_stale(
    tmp_path: Path,
) -> None:
    Home.init(tmp_path / "admin", "admin")
    Home.init(tmp_path / "hub", "hub")
    code, out = run(
        "collab", "create", "--home", str(tmp_path / "admin"), "--hub-home",
        str(tmp_path / "hub"), "--origin", "example.org/s", "--org", "uni",
    )  # fmt: skip
    assert code == 0, out
    invitation = tmp_path / "invite.json"
    first = _start_hub(tmp_path / "hub", _free_port(), "--invitation", str(invitation))
    try:
        deadline = time.monotonic() + 60
        while not invitation.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert invitation.exists(), _stop(first)
    finally:
        err = _stop(first)
    assert "warning" not in err
    second = _start_hub(tmp_path / "hub", _free_port())
    seen = ""
    try:
        # The warning comes before the hub starts listening; its log lines follow it.
        assert second.stderr is not None
        deadline = time.monotonic() + 60
        while "warning" not in seen and second.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([second.stderr], [], [], 1.0)
            if ready:
                seen += second.stderr.readline()
    finally:
        seen += _stop(second)
    assert f"warning: {invitation.resolve()}" in seen
    assert "--invitation" in seen
