"""Hub + sites as separate processes: replication, witnessing, restarts and catch-up."""

from __future__ import annotations

import pytest
from harness import Cluster, audit, run_json, wait_for

from ptm_p2p.ledger import checkpoint as cp

pytestmark = [pytest.mark.network, pytest.mark.slow]
SITES = ["site-a", "site-b", "site-c"]


def _start(cluster: Cluster, sites: list[str] = SITES) -> None:
    cluster.start_hub()
    for name in sites:
        cluster.start_site(name)
        cluster.admit(name)


def test_entries_reach_every_site_verified_and_cosigned(cluster: Cluster) -> None:
    _start(cluster)
    indexes = cluster.add_entries(40)
    size = indexes[-1] + 1
    assert size == 1 + 3 + 40  # genesis, three site admissions, forty researchers
    cluster.wait_synced(SITES, size)

    def hub_cosigned_by_all() -> bool:
        status = run_json(["status", "--home", str(cluster.path("hub"))])
        return status["checkpoint"]["size"] == size and set(status["cosigners"]) == set(SITES)

    wait_for("the hub's checkpoint to carry all three cosignatures", hub_cosigned_by_all)
    hub_root = cluster.status("hub")["checkpoint"]["root"]
    for name in SITES:
        assert cluster.status(name)["checkpoint"]["root"] == hub_root
        assert audit(cluster.path(name)) == size
    # The cosignatures verify under the sites' keys (C2SP tlog-cosignature).
    note = cluster.status("hub")
    assert note["evidence"] == []
    witnesses = [cp.Verifier.witness(n, cluster.home(n).public_key) for n in SITES]

    def stored_cosigners() -> set[str]:
        # Merged cosignatures reach the hub's file at its next flush (about once a second).
        hub_note = _latest_note(cluster, "hub", size)
        return {c.name for c in cp.verify_cosignatures(cp.parse_checkpoint(hub_note), witnesses)}

    wait_for("the hub to store the cosigned note", lambda: stored_cosigners() == set(SITES))
    assert stored_cosigners() == set(SITES)


def _latest_note(cluster: Cluster, name: str, size: int) -> str:
    """The newest stored note for tree ``size``. Not simply the last row: a witness's late
    cosignature on an older checkpoint is stored (merged into that older note) after it."""
    from ptm_p2p.ledger.store import SqliteStore

    store = SqliteStore(cluster.path(name) / "ledger.db", read_only=True)
    try:
        return [note for at, note in store.checkpoints() if at == size][-1]
    finally:
        store.close()


def test_killed_site_catches_up_after_restart(cluster: Cluster) -> None:
    _start(cluster)
    first = cluster.add_entries(5)[-1] + 1
    cluster.wait_synced(SITES, first)
    assert cluster.stop("site-b") == 0  # SIGTERM: clean exit
    last = cluster.add_entries(30)[-1] + 1
    cluster.wait_synced(["site-a", "site-c"], last)
    assert cluster.size("site-b") == first
    cluster.start_site("site-b")
    cluster.wait_synced(["site-b"], last)
    assert audit(cluster.path("site-b")) == last
    wait_for("site-b to report no lag", lambda: cluster.status("site-b").get("lag") == 0)


def test_without_the_hub_sites_catch_up_from_each_other(cluster: Cluster) -> None:
    _start(cluster)
    cluster.wait_synced(SITES, 4)
    wait_for(
        "site-c to learn the other sites' addresses from the hub",
        lambda: len(cluster.status("site-c").get("known_peers") or {}) >= 2,
    )
    cluster.stop("site-c")
    # A site replicates only once admitted (sites serve entries to members only): the admin
    # admits site-new while the hub is up, so site-a's copy holds the admission.
    cluster.admit("site-new")
    last = cluster.add_entries(25)[-1] + 1
    cluster.wait_synced(["site-a", "site-b"], last)
    cluster.stop("hub")
    # A lagging site: knows the other sites from its peers.json (learned from the hub).
    cluster.start_site("site-c")
    cluster.wait_synced(["site-c"], last)
    assert audit(cluster.path("site-c")) == last
    # A brand-new site that has only the (dead) hub's invitation and one site's address.
    cluster.start_site("site-new", peers=[cluster.address("site-a")])
    cluster.wait_synced(["site-new"], last)
    assert audit(cluster.path("site-new")) == last
    assert (
        cluster.status("site-new")["checkpoint"]["root"]
        == cluster.status("site-a")["checkpoint"]["root"]
    )


def test_sites_reconnect_when_the_hub_restarts(cluster: Cluster) -> None:
    # Well inside libp2p's 60-second dial blacklist: only the client's unblock_peer before
    # each re-dial lets the sites reach the restarted hub this quickly.
    _start(cluster, ["site-a", "site-b"])
    first = cluster.add_entries(3)[-1] + 1
    cluster.wait_synced(["site-a", "site-b"], first)
    assert cluster.stop("hub") == 0
    wait_for("site-a to notice the hub is gone", lambda: not cluster.status("site-a")["hub_up"])
    cluster.start_hub()
    last = cluster.add_entries(4)[-1] + 1
    cluster.wait_synced(["site-a", "site-b"], last, timeout=40)
    for name in ("site-a", "site-b"):
        wait_for(f"{name} to follow the hub again", lambda n=name: cluster.status(n)["hub_up"])
        assert audit(cluster.path(name)) == last


def test_a_second_daemon_on_the_same_home_is_refused(cluster: Cluster) -> None:
    import subprocess

    from harness import PTM

    cluster.start_hub()
    cluster.start_site("site-a")
    second = subprocess.run(
        [
            *PTM,
            "node",
            "--home",
            str(cluster.path("site-a")),
            "--join",
            str(cluster.invitation_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1
    assert "another daemon already runs on" in second.stderr
    assert cluster.alive("site-a")  # the first one is untouched
