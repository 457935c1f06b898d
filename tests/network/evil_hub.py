"""Test harness: a malicious hub that shows two different logs (a split view).

Run as its own process: ``python evil_hub.py HUB_HOME ADMIN_HOME PORT INVITATION VICTIM_ID
EXTRA SITE_KEY=ORG...``. It holds the real hub key and the real admin key. Both views start
with the same genesis and site admissions; then view X (served only to the peer VICTIM_ID)
admits one researcher, and view Y (served to everyone else) admits ``1 + EXTRA`` others.
Every checkpoint of both views is validly signed by the hub key, so only comparing
checkpoints across sites can reveal the fork.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from evil_daemon import serve

from ptm_p2p.home import Home
from ptm_p2p.hub.sequencer import Sequencer
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.entry import AuthorChain, genesis_payload, membership_payload
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.network import protocol
from ptm_p2p.network.daemon_runner import setup_logging
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.network.sync_server import Answer, SyncServer

ORIGIN = "evil.example/study"


def build_view(
    path: Path, hub: Home, admin: Home, sites: list[tuple[bytes, str]], researchers: int
) -> SyncServer:
    view = SyncServer(SqliteStore(path), f"view-{path.stem}")
    chain = AuthorChain(admin.signer)
    now = int(time.time() * 1000)
    genesis = chain.append(
        "genesis", genesis_payload(ORIGIN, admin.public_key, "uni", hub.public_key, "hub"), now
    )
    view.log.append_genesis(genesis.raw)
    entries = [
        chain.append("membership", membership_payload("admit", key, org, "site"), now)
        for key, org in sites
    ]
    entries += [
        chain.append(
            "membership",
            membership_payload("admit", Signer.generate().public_key, f"lab-{i}", "researcher"),
            now,
        )
        for i in range(researchers)
    ]
    for i, entry in enumerate(entries, start=1):
        view.log.state.apply(entry, i)
    view.log.append_local(entries)
    Sequencer(view.log, view.book, view.trust, hub.signer).sign_head()
    return view


def main() -> None:
    hub, admin = Home.load(Path(sys.argv[1])), Home.load(Path(sys.argv[2]))
    port, invitation_path, victim = int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
    extra = int(sys.argv[6])
    sites = [(bytes.fromhex(k), org) for k, org in (a.split("=") for a in sys.argv[7:])]
    setup_logging()
    x = build_view(hub.path / "x.db", hub, admin, sites, 1)
    y = build_view(hub.path / "y.db", hub, admin, sites, 1 + extra)
    y.peers = x.peers  # one address book, so the sites find each other

    async def handle(request: protocol.Request, peer: Any) -> Answer:
        view = x if str(peer) == victim else y
        return await view.answer(request, peer)

    async def invite(host: Any, me: str) -> None:
        Invitation(me, hub.public_key, ORIGIN).save(invitation_path)

    serve(hub, port, handle, lambda host: x.status(), "evil-hub", tasks=[invite])


if __name__ == "__main__":
    main()
