"""Members only (issue 14, break 9): the log's entries are metadata — who ran which image on
which data label, when, and how every result went — so a real hub process, and a site serving
anti-entropy, give them only to admitted, unrevoked members. Anyone else gets the genesis
entry and the signed checkpoints (enough to check the log stays consistent) and a refusal
that names its key and the admin's command. ``[hub] public_log = true`` serves everyone.

Every peer here is a real daemon process (``ptm hub``, ``ptm node``); the one asking is a
real libp2p host with its own key, as an outsider would be.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import trio
from harness import PTM, Cluster, wait_for

from ptm_p2p.errors import EXIT_REFUSED, NotAMember, PtmError
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.entry import GENESIS, Entry
from ptm_p2p.network import protocol
from ptm_p2p.network.host import make_host, parse_peer_addr
from ptm_p2p.network.hub_requests import check_consistency, fetch_log
from ptm_p2p.network.rpc import PeerClient

pytestmark = [pytest.mark.network, pytest.mark.slow]


def ask(signer: Signer, address: str, *requests: protocol.Request[Any]) -> list[Any]:
    """Each request's typed answer (or the ``PtmError`` it raised), asked as ``signer``."""

    async def main() -> list[Any]:
        host = make_host(signer.seed)
        info = parse_peer_addr(address)
        async with host.run([]):
            peer = PeerClient(host, info.peer_id, info.addrs)
            answers: list[Any] = []
            try:
                for request in requests:
                    try:
                        answers.append(await peer.ask(request, timeout=15))
                    except PtmError as exc:
                        answers.append(exc)
            finally:
                await peer.close()
            return answers

    return trio.run(main)


def check_outsider_view(cluster: Cluster, signer: Signer, address: str, refused: str) -> None:
    """What a non-member gets from ``address``: the refusal (containing ``refused``), and
    still the signed checkpoints and the genesis entry."""
    checkpoint, entries, genesis, peers = ask(
        signer,
        address,
        protocol.CheckpointRequest(),
        protocol.EntriesRequest(start=0, end=2, old_size=0),
        protocol.EntriesRequest(start=0, end=1, old_size=0),
        protocol.PeersRequest(),
    )
    # The checkpoint: signed by the hub, verifiable by anyone holding the invitation.
    verifier = cp.Verifier.log(cluster.invitation.origin, cluster.invitation.hub_key)
    signed = cp.parse_checkpoint(checkpoint.note)
    cp.verify_checkpoint(signed, verifier)
    assert signed.checkpoint.size >= 2
    # The entries: refused, saying which key and what to do.
    assert isinstance(entries, NotAMember), entries
    assert signer.public_key.hex() in str(entries)
    assert refused in str(entries)
    assert entries.exit_code == EXIT_REFUSED
    # The genesis entry: it names origin, admin and hub, so anyone can check the invitation.
    assert not isinstance(genesis, Exception), genesis
    assert Entry.from_bytes(genesis.entries[0]).kind == GENESIS
    assert len(genesis.entries) == 1
    # Who takes part is not for outsiders either.
    assert peers.peers == []


def admit_cli(cluster: Cluster, key: bytes, role: str, org: str, action: str = "admit") -> None:
    args = ["collab", action, "--home", str(cluster.path("admin"))]
    args += ["--invitation", str(cluster.invitation_path)]
    if action == "admit":
        args += ["--role", role, "--org", org]
    cluster._ptm(*args, key.hex())


def test_a_key_never_admitted_gets_checkpoints_and_genesis_not_entries(cluster: Cluster) -> None:
    cluster.start_hub()
    cluster.admit("site-a")
    wait_for("checkpoint 2", lambda: cluster.status("hub")["checkpoint"]["size"] == 2)
    outsider = Signer.generate()
    hub = cluster.invitation.hub_addr
    check_outsider_view(
        cluster, outsider, hub, f"admit key {outsider.public_key.hex()} (`ptm collab admit"
    )
    # The one-shot reader every command uses: a refusal, not a log.
    with pytest.raises(NotAMember, match="ptm collab admit"):
        fetch_log(outsider, cluster.invitation)
    # The CLI of an outsider auditor: a clear line and the "refused" exit code.
    cluster.home("outsider")
    proc = subprocess.run(
        [
            *PTM, "collab", "members", "--home", str(cluster.path("outsider")),
            "--invitation", str(cluster.invitation_path),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == EXIT_REFUSED, proc.stderr
    assert "ptm collab admit" in proc.stderr
    assert cluster.home("outsider").public_key.hex() in proc.stderr
    # An admitted member reads the whole log through the same path.
    entries = fetch_log(cluster.home("admin").signer, cluster.invitation)
    assert len(entries) == 2
    # What the outsider can check: the hub's later checkpoints extend the one it saw.
    (seen,) = ask(outsider, hub, protocol.CheckpointRequest())
    cluster.admit("site-b")
    cluster.admit("site-c")
    wait_for("checkpoint 4", lambda: cluster.status("hub")["checkpoint"]["size"] == 4)
    latest = check_consistency(outsider, cluster.invitation, seen.note)
    assert (cp.parse_checkpoint(seen.note).checkpoint.size, latest.checkpoint.size) == (2, 4)
    assert cluster.status("hub")["refused_non_members"] >= 2


def test_a_revoked_member_is_refused_after_revocation(cluster: Cluster) -> None:
    cluster.start_hub()
    researcher = cluster.home("lab")
    admit_cli(cluster, researcher.public_key, "researcher", "lab")
    assert len(fetch_log(researcher.signer, cluster.invitation)) == 2
    # A researcher's own client (the verified copy it keeps) syncs.
    run = [*PTM, "tasks", "--home", str(researcher.path)]
    run += ["--invitation", str(cluster.invitation_path)]
    assert subprocess.run(run, capture_output=True, text=True).returncode == 0
    admit_cli(cluster, researcher.public_key, "", "", action="revoke")
    with pytest.raises(NotAMember, match="was revoked at log index 2"):
        fetch_log(researcher.signer, cluster.invitation)
    # The researcher's next sync is refused (its copy already holds 2 entries: it asks
    # for the new ones, the revocation among them).
    proc = subprocess.run(run, capture_output=True, text=True)
    assert proc.returncode == EXIT_REFUSED, proc.stderr
    assert "revoked" in proc.stderr


def test_public_log_serves_everyone(cluster: Cluster) -> None:
    hub_config = cluster.home("hub").config_path
    hub_config.write_text(hub_config.read_text() + "\n[hub]\npublic_log = true\n")
    cluster.start_hub()
    cluster.admit("site-a")
    outsider = Signer.generate()
    assert len(fetch_log(outsider, cluster.invitation)) == 2
    (peers,) = ask(outsider, cluster.invitation.hub_addr, protocol.PeersRequest())
    assert not isinstance(peers, Exception)
    assert cluster.status("hub")["public_log"] is True


def test_a_site_waits_for_admission_then_syncs_and_serves_members_only(
    cluster: Cluster,
) -> None:
    cluster.start_hub()
    lab = cluster.home("lab")
    admit_cli(cluster, lab.public_key, "researcher", "lab")
    # Started before its admission (as the demo does): it gets the genesis entry (public),
    # is refused the rest, says so, and waits.
    cluster.start_site("site-a")
    key = cluster.home("site-a").public_key.hex()
    wait_for(
        "site-a to report that it waits for admission",
        lambda: key in (cluster.status("site-a").get("not_admitted") or ""),
    )
    assert cluster.status("site-a")["size"] <= 1
    assert "ptm collab admit --role site" in cluster.logs("site-a")
    # Admission is the admin's permission to replicate: it starts on its own.
    cluster.admit("site-a")
    cluster.wait_synced(["site-a"], 3)
    wait_for("site-a to clear its waiting", lambda: not cluster.status("site-a")["not_admitted"])
    # The site serves anti-entropy: to a member the entries, to an outsider a refusal.
    site = cluster.address("site-a")
    (member_view,) = ask(lab.signer, site, protocol.EntriesRequest(start=0, end=3, old_size=0))
    assert not isinstance(member_view, Exception), member_view
    assert len(member_view.entries) == 3
    outsider = Signer.generate()
    check_outsider_view(cluster, outsider, site, "(`ptm collab admit")
