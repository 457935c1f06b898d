"""One identity, several processes: the home's author lock keeps them from equivocating.

Before the lock, two `ptm collab admit` runs started together each read the admin's chain
head, signed the same seq and submitted: the hub recorded equivocation and refused the
admin's key for good. Now each holds ``HOME/author.lock`` from reading the head until the
hub answers, so the runs take turns.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from harness import Cluster

from ptm_p2p.dev.cluster import PTM

pytestmark = [pytest.mark.network]


def test_concurrent_admits_by_one_admin_take_turns_and_never_equivocate(
    cluster: Cluster,
) -> None:
    cluster.start_hub()
    names = [f"lab-{i}" for i in range(6)]
    keys = {name: cluster.home(name).public_key.hex() for name in names}
    procs = [
        subprocess.Popen(
            [
                *PTM,
                "collab",
                "admit",
                "--home",
                str(cluster.path("admin")),
                "--invitation",
                str(cluster.invitation_path),
                "--role",
                "researcher",
                "--org",
                name,
                keys[name],
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name in names
    ]
    outcomes = [proc.communicate(timeout=120) for proc in procs]
    for proc, (_out, err) in zip(procs, outcomes, strict=True):
        assert proc.returncode == 0, err
    status = cluster.status("hub")
    assert status["evidence"] == [], status["evidence"]
    # The admin is still trusted: one more admission goes through.
    cluster.admit("late-site", "site")
    members = subprocess.run(
        [
            *PTM, "collab", "members", "--home", str(cluster.path("admin")),
            "--invitation", str(cluster.invitation_path), "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )  # fmt: skip
    for name in [*names, "late-site"]:
        assert name in members.stdout


def test_an_honest_self_collision_has_a_way_out_through_a_hub_pardon(cluster: Cluster) -> None:
    """Two entries with one seq (say, a copy of the home on a second machine) lock the key
    out; the hub operator's pardon lets it go on, and the evidence stays for auditors."""
    from ptm_p2p.errors import PtmError
    from ptm_p2p.ledger.entry import MEMBERSHIP, AuthorChain, membership_payload
    from ptm_p2p.network.hub_requests import submit

    cluster.start_hub()
    admin = cluster.home("admin")
    start: dict[str, tuple[int, bytes]] = {}

    def admit(name: str, chain: AuthorChain) -> list:  # type: ignore[type-arg]
        key = cluster.home(name).public_key
        payload = membership_payload("admit", key, name, "researcher")
        return [chain.append(MEMBERSHIP, payload, int(time.time() * 1000))]

    def first(chain: AuthorChain) -> list:  # type: ignore[type-arg]
        start["head"] = (chain.seq, chain.prev)
        return admit("lab-a", chain)

    submit(admin.signer, cluster.invitation, first)
    twin = AuthorChain(admin.signer, *start["head"])  # the same seq again: a collision
    with pytest.raises(PtmError, match="equivocation"):
        submit(admin.signer, cluster.invitation, lambda _chain: admit("lab-b", twin))
    with pytest.raises(PtmError, match="pardon"):
        cluster.admit("lab-c", "researcher")

    assert cluster.stop("hub") == 0
    cluster.start_hub(extra=["--pardon", admin.public_key.hex()])
    cluster.admit("lab-c", "researcher")  # the admin signs again
    assert [e["kind"] for e in cluster.status("hub")["evidence"]] == ["equivocation"]
    assert (cluster.path("hub") / "pardoned.json").exists()
