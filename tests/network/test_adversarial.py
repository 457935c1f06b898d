"""Hostile peers: forged or tampered ranges, a hub showing two views, an equivocating author."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from harness import HERE, Cluster, audit, run_json, wait_for

from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.entry import AuthorChain, membership_payload
from ptm_p2p.network.host import free_port, peer_id_of
from ptm_p2p.network.hub_requests import submit
from ptm_p2p.network.protocol import RemoteError

pytestmark = [pytest.mark.network, pytest.mark.slow]
MODES = ["forge", "alter", "truncate", "reorder"]


def _copy_ledger(src: Path, dst: Path) -> None:
    # The SQLite backup API copies a consistent snapshot, WAL included.
    with sqlite3.connect(src) as s, sqlite3.connect(dst) as d:
        s.backup(d)


def test_peers_serving_bad_ranges_are_refused_and_named(cluster: Cluster) -> None:
    cluster.start_hub()
    cluster.start_site("site-a")
    cluster.admit("site-a")
    cluster.admit("site-new")  # so that honest site-a serves it the log (members only)
    last = cluster.add_entries(12)[-1] + 1
    cluster.wait_synced(["site-a"], last)
    cluster.stop("hub")  # the only honest sources left are site-a and the hub's copy
    evil: dict[str, str] = {}
    for mode in MODES:
        name = f"evil-{mode}"
        home = cluster.home(name)
        _copy_ledger(cluster.path("hub") / "ledger.db", home.ledger_path)
        cluster.spawn(
            name,
            [sys.executable, str(HERE / "evil_peer.py"), str(home.path), str(free_port()), mode],
        )
        evil[mode] = cluster.address(name)

    cluster.start_site("site-new", peers=list(evil.values()))

    def every_evil_peer_named() -> bool:
        distrusted = cluster.status("site-new").get("distrusted") or {}
        return all(
            any(addr.split("/p2p/")[1] in who for who in distrusted) for addr in evil.values()
        )

    wait_for("site-new to refuse and name all four tampering peers", every_evil_peer_named)
    assert cluster.size("site-new") == 0  # nothing unverified was stored
    reasons = " ".join(cluster.status("site-new")["distrusted"].values())
    assert "signature does not verify" in reasons
    assert "do not hash to the root the hub signed" in reasons
    logs = cluster.logs("site-new")
    for addr in evil.values():
        assert addr.split("/p2p/")[1] in logs  # named in the daemon's log too

    # The refusals are remembered in the home, so they outlive a restart.
    recorded = json.loads((cluster.path("site-new") / "distrusted.json").read_text())
    assert sorted(recorded) == sorted(addr.split("/p2p/")[1] for addr in evil.values())

    # Given one honest peer among the liars, the restarted site gets the true log from it,
    # and never even dials the peers it refused before.
    cluster.stop("site-new")
    cluster.start_site("site-new", peers=[*evil.values(), cluster.address("site-a")])
    assert every_evil_peer_named()  # from its first status on, before any exchange
    cluster.wait_synced(["site-new"], last)
    assert audit(cluster.path("site-new")) == last
    status = cluster.status("site-new")
    assert status["checkpoint"]["root"] == cluster.status("site-a")["checkpoint"]["root"]
    evil_ids = {addr.split("/p2p/")[1] for addr in evil.values()}
    time.sleep(1.5)  # a few more exchange rounds, and a fresh status file
    assert not evil_ids & set(cluster.status("site-new")["connected"])
    assert "still distrusting 4 peer(s)" in cluster.logs("site-new")
    text = _status_text(cluster, "site-new")
    assert all(f"DISTRUSTED  peer {pid}" in text for pid in evil_ids)


def test_a_peer_answering_malformed_maps_is_refused_and_named(cluster: Cluster) -> None:
    """An answer of the wrong shape is not a network hiccup: the peer answered, with
    something no honest peer sends, so it is refused as a peer sending a bad note is."""
    cluster.start_hub()
    cluster.start_site("site-a")
    cluster.admit("site-a")
    home = cluster.home("evil-junk")
    _copy_ledger(cluster.path("hub") / "ledger.db", home.ledger_path)
    cluster.spawn(
        "evil-junk",
        [sys.executable, str(HERE / "evil_peer.py"), str(home.path), str(free_port()), "junk"],
    )
    junk = cluster.address("evil-junk").split("/p2p/")[1]
    cluster.start_site("site-new", peers=[cluster.address("evil-junk")])

    def refused() -> str:
        return str((cluster.status("site-new").get("distrusted") or {}).get(f"peer {junk}", ""))

    wait_for("site-new to refuse the peer answering junk", refused)
    assert "malformed answer" in refused() and "checkpoint" in refused()


@pytest.mark.parametrize("extra", [0, 2], ids=["same-size", "different-size"])
def test_split_view_is_detected_with_evidence(cluster: Cluster, extra: int) -> None:
    sites = ["site-a", "site-b", "site-c"]
    keys = [f"{cluster.home(n).public_key.hex()}={n}" for n in sites]
    victim = str(peer_id_of(cluster.home("site-a").public_key))
    cluster.spawn(
        "hub",
        [
            sys.executable,
            str(HERE / "evil_hub.py"),
            str(cluster.path("hub")),
            str(cluster.path("admin")),
            str(free_port()),
            str(cluster.invitation_path),
            victim,
            str(extra),
            *keys,
        ],
    )
    wait_for("the evil hub's invitation", cluster.invitation_path.exists)
    for name in sites:
        cluster.start_site(name)

    def detected(name: str) -> bool:
        status = cluster.status(name)
        return any(e["kind"] == "split-view" for e in status["evidence"]) and "hub" in (
            status.get("distrusted") or {}
        )

    for name in sites:
        wait_for(f"{name} to detect the split view", lambda n=name: detected(n), timeout=30)
    # `ptm status` shows it, in text and JSON.
    data = run_json(["status", "--home", str(cluster.path("site-a"))])
    assert data["split_view"] is True
    text = _status_text(cluster, "site-b")
    assert "EVIDENCE" in text and "split-view" in text and "DISTRUSTED  hub" in text
    # `ptm audit` of the site's copy shows the evidence too, and fails because of it.
    report = _audit_json(cluster, "site-c")
    assert report["ok"] is False
    assert any(item.startswith("split-view") for item in report["evidence"])
    # Every daemon is still up: detection stops trust, not the process.
    assert all(cluster.alive(n) for n in [*sites, "hub"])


def _audit_json(cluster: Cluster, name: str) -> dict:
    import json
    import subprocess

    from harness import PTM

    proc = subprocess.run(
        [*PTM, "audit", str(cluster.path(name) / "ledger.db"), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _status_text(cluster: Cluster, name: str) -> str:
    import subprocess

    from harness import PTM

    return subprocess.run(
        [*PTM, "status", "--home", str(cluster.path(name))],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_equivocating_author_is_refused_and_evidence_kept(cluster: Cluster) -> None:
    cluster.start_hub()
    cluster.start_site("site-a")
    cluster.admit("site-a")
    signer = cluster.admin.signer
    forks: list[int] = []

    def fork(chain: AuthorChain) -> list:
        # The same (author, seq) as the chain's next entry, twice, with different payloads.
        forks.append(chain.seq)
        twin = AuthorChain(signer, chain.seq, chain.prev)
        now = int(time.time() * 1000)
        first = chain.append(
            "membership",
            membership_payload("admit", Signer.generate().public_key, "lab-one", "researcher"),
            now,
        )
        second = twin.append(
            "membership",
            membership_payload("admit", Signer.generate().public_key, "lab-two", "researcher"),
            now,
        )
        assert (first.author, first.seq) == (second.author, second.seq)
        return [first, second]

    with pytest.raises(RemoteError, match="equivocation"):
        submit(signer, cluster.invitation, fork)
    hub = run_json(["status", "--home", str(cluster.path("hub"))])
    wait_for(
        "the hub to keep the evidence",
        lambda: any(
            e["kind"] == "equivocation"
            for e in run_json(["status", "--home", str(cluster.path("hub"))])["evidence"]
        ),
    )
    assert hub["size"] == 3  # genesis, site-a, and the first of the two twins
    # The author is no longer accepted.
    with pytest.raises(RemoteError, match="equivocated"):
        cluster.add_entries(1)
