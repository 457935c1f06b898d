"""An operator's mistakes and a damaged file stop a daemon at once, loudly, blaming nobody.

Real daemons on 127.0.0.1: a port another daemon already listens on, a flipped bit in the
stored tree nodes of a site and of the hub, an invitation naming the wrong origin. Each
daemon that must refuse is given at most 30 s to exit with code 1 and one clear line.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest
from harness import PTM, Cluster, audit

pytestmark = [pytest.mark.network, pytest.mark.slow]


def _refused(cluster: Cluster, name: str, argv: list[str], timeout: float = 30) -> str:
    """Run a daemon that must refuse to start; return its output (exit code 1 checked)."""
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=cluster.root, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{name} kept running for {timeout} s instead of refusing") from exc
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, (proc.returncode, output[-2000:])
    assert "Traceback" not in output, output[-2000:]
    return output


# --- ports ---------------------------------------------------------------------------------


def test_a_taken_port_is_refused_with_its_name(cluster: Cluster) -> None:
    """Before: `ptm node --port P` started on the hub's port (libp2p sets SO_REUSEPORT) and
    the kernel split the hub's connections between the two."""
    cluster.start_hub()
    port = cluster.hub_port
    site = cluster.home("site-a").path
    out = _refused(
        cluster,
        "a node on the hub's port",
        [*PTM, "node", "--home", str(site), "--join", str(cluster.invitation_path),
         "--port", str(port)],
    )  # fmt: skip
    assert f"port {port}" in out and "already in use" in out and "--port" in out
    assert not (site / "listen.addr").exists()

    # The hub that held the port was never disturbed.
    cluster.start_site("site-a")
    cluster.admit("site-a")
    last = cluster.add_entries(2)[-1] + 1
    cluster.wait_synced(["site-a"], last)

    # A port held by any other program: the same refusal, not a traceback.
    cluster.stop("hub")
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        out = _refused(
            cluster,
            "a hub on a taken port",
            [*PTM, "hub", "--home", str(cluster.path("hub")), "--port", str(taken)],
        )
        assert f"port {taken}" in out and "already in use" in out
    cluster.start_hub()  # on its own port, as before
    last = cluster.add_entries(2)[-1] + 1
    cluster.wait_synced(["site-a"], last)


# --- a flipped bit in the stored tree -------------------------------------------------------


def _flip_node_bit(ledger: Path, level: int) -> None:
    with sqlite3.connect(ledger) as db:
        (node,) = db.execute(
            "SELECT hash FROM nodes WHERE level = ? AND idx = 0", (level,)
        ).fetchone()
        flipped = bytes([node[0] ^ 0x10]) + bytes(node[1:])
        db.execute("UPDATE nodes SET hash = ? WHERE level = ? AND idx = 0", (flipped, level))


def _evidence_rows(ledger: Path) -> int:
    with sqlite3.connect(f"{ledger.resolve().as_uri()}?mode=ro", uri=True) as db:
        (count,) = db.execute("SELECT count(*) FROM evidence").fetchone()
    return int(count)


def _restarted_on_damage(
    cluster: Cluster, name: str, level: int, argv: list[str]
) -> tuple[Path, str]:
    """Stop daemon ``name``, flip a bit of a stored tree node at ``level`` in its ledger and
    start it again with ``argv``: its ledger's path and what it said as it refused."""
    cluster.stop(name)
    ledger = cluster.path(name) / "ledger.db"
    _flip_node_bit(ledger, level=level)
    return ledger, _refused(cluster, f"{name} on a damaged ledger", argv)


def test_a_flipped_bit_in_stored_nodes_stops_the_daemon_at_start(cluster: Cluster) -> None:
    """Before: a site started on damaged nodes and later took a genuine old checkpoint for a
    split view (distrusting the hub for good); a hub served failing proofs, silently."""
    cluster.start_hub()
    cluster.start_site("site-a")
    cluster.admit("site-a")
    last = cluster.add_entries(20)[-1] + 1
    cluster.wait_replicated(["site-a"], last, cosigners=1)

    site_ledger, out = _restarted_on_damage(
        cluster,
        "site-a",
        2,
        [*PTM, "node", "--home", str(cluster.path("site-a")), "--join",
         str(cluster.invitation_path)],
    )  # fmt: skip
    assert f"ledger {site_ledger} is damaged" in out
    assert "tree node (level 2, index 0)" in out
    assert f"move {site_ledger} away" in out  # the fix
    assert _evidence_rows(site_ledger) == 0  # our own damage is never evidence

    hub_ledger, out = _restarted_on_damage(
        cluster,
        "hub",
        1,
        [*PTM, "hub", "--home", str(cluster.path("hub")), "--port", str(cluster.hub_port)],
    )
    assert f"ledger {hub_ledger} is damaged" in out
    assert "tree node (level 1, index 0)" in out
    assert "backup" in out
    assert _evidence_rows(hub_ledger) == 0

    # The site's fix works: its ledger moved away, it resyncs from a hub with a sound file.
    site_ledger.rename(cluster.path("site-a") / "ledger.db.damaged")
    _restore_node(hub_ledger, level=1)
    cluster.start_hub()
    cluster.start_site("site-a")
    cluster.wait_synced(["site-a"], last)
    assert audit(cluster.path("site-a")) == last
    status = cluster.status("site-a")
    assert not status.get("distrusted") and not status.get("evidence")


def _restore_node(ledger: Path, level: int) -> None:
    _flip_node_bit(ledger, level)  # flipping the same bit again restores it


# --- an invitation with the wrong origin ---------------------------------------------------


def test_an_invitation_with_the_wrong_origin_stops_the_site_and_blames_nobody(
    cluster: Cluster,
) -> None:
    """Before: thousands of error lines, and every honest peer in distrusted.json."""
    cluster.start_hub()
    cluster.start_site("site-a")
    cluster.admit("site-a")
    cluster.admit("site-b")  # the log is served to members only
    last = cluster.add_entries(3)[-1] + 1
    cluster.wait_synced(["site-a"], last)

    wrong = json.loads(cluster.invitation_path.read_text())
    wrong["origin"] = "wrong.example/another-study"
    bad_invitation = cluster.root / "wrong-invite.json"
    bad_invitation.write_text(json.dumps(wrong))
    site = cluster.home("site-b").path
    out = _refused(
        cluster,
        "site-b with a wrong invitation",
        [*PTM, "node", "--home", str(site), "--join", str(bad_invitation),
         "--peer", cluster.address("site-a")],
    )  # fmt: skip
    assert "wrong.example/another-study" in out and "test.example/study" in out
    assert "origin" in out and "invitation" in out
    assert len(out.splitlines()) < 30, out[-3000:]
    assert not (site / "distrusted.json").exists()
    assert _evidence_rows(site / "ledger.db") == 0

    # With the right invitation, the same home joins at once: nothing was held against anyone.
    cluster.start_site("site-b", peers=[cluster.address("site-a")])
    cluster.wait_synced(["site-b"], last)
    assert not cluster.status("site-b").get("distrusted")
