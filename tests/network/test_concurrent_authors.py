"""One identity, several processes: the home's author lock keeps them from equivocating.

Before the lock, two `ptm collab admit` runs started together each read the admin's chain
head, signed the same seq and submitted: the hub recorded equivocation and refused the
admin's key for good. Now each holds ``HOME/author.lock`` from reading the head until the
hub answers, so the runs take turns.
"""

from __future__ import annotations

import subprocess

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
