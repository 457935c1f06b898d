"""``ptm hub``: the bootstrap peer, sequencer and checkpoint signer of one collaboration.

On first start the hub's store is empty: it takes the genesis entry the admin made
(``ptm collab create`` writes it to ``HUB/genesis.entry`` or ``--genesis FILE``), checks that
it names this home's key as the hub, appends it and signs checkpoint 1. On later starts it
replays its own store and carries on. It writes an invitation file with its address.

Sites follow it with long-poll ``wait`` requests (a pending request per site, answered the
moment a new checkpoint is signed): no gossip needed, no polling interval to tune.

It also keeps the collaboration's blob store (``blob_store.py``, ``HOME/blobs``): members
upload and fetch ciphertext blobs over ``/ptm/blob/1.0.0`` (``network/blobs.py``), within
``[hub] blob_quota``; a task sweeps out blobs older than ``[hub] blob_retention``.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Any

import trio

from ptm_p2p.config import load_config
from ptm_p2p.errors import ConfigError, DamagedLedger, LedgerError, PtmError, ReplayError
from ptm_p2p.home import GENESIS_FILE as GENESIS_FILE
from ptm_p2p.home import Home
from ptm_p2p.home_files import add_pardons as add_pardons  # for `ptm hub --pardon`
from ptm_p2p.home_files import load_pardons
from ptm_p2p.ledger.crypto import short
from ptm_p2p.ledger.entry import GENESIS, Entry
from ptm_p2p.ledger.replay import State
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.network import protocol
from ptm_p2p.network.blobs import BlobServer
from ptm_p2p.network.daemon_runner import DaemonParts, home_lock, serve_home
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.network.sync_server import Answer, SyncServer
from ptm_p2p.network.verified_log import BUSY_TIMEOUT_MS

from .blob_store import BLOB_DIR, BlobStore
from .sequencer import Sequencer

log = logging.getLogger(__name__)

# The retention sweep runs this often (and at start), or ten times per retention period when
# that is shorter: a blob outlives its retention by at most one interval.
SWEEP_INTERVAL_S = 3600.0


class Hub:
    def __init__(
        self, home: Home, genesis: Path | None = None, *, public_log: bool | None = None
    ) -> None:
        self.home = home
        config = load_config(home.path)  # before opening anything: a bad file closes nothing
        self.store = SqliteStore(home.ledger_path, busy_timeout_ms=BUSY_TIMEOUT_MS)
        try:
            # Entries to members only, unless config.toml says ``[hub] public_log = true``.
            public = config.hub_public_log if public_log is None else public_log
            self.server = SyncServer(self.store, home.name, public=public)
        except DamagedLedger as exc:
            self.store.close()
            raise DamagedLedger(
                f"{exc}. The hub must not serve it: keep {exc.path} for an inquiry and "
                "restore the hub's ledger from a backup, or from the copy of the site that is "
                "furthest ahead (`ptm ledger copy SITE_HOME FILE`, then `ptm audit FILE`); "
                "sites refuse a hub that lost entries it signed",
                exc.path,
            ) from exc
        self.log = self.server.log
        self.book = self.server.book
        if self.log.size == 0:
            path = genesis or home.path / GENESIS_FILE
            try:
                raw = _checked_genesis(path, home)
            except PtmError:
                self.store.close()
                raise
            entry = self.log.append_genesis(raw)
            log.info("started log %s from genesis %s", self.log.origin, entry.hash.hex()[:16])
        self.sequencer = Sequencer(
            self.log, self.book, self.server.trust, home.signer, load_pardons(home.path)
        )
        if self.book.latest is None or self.book.latest_size != self.log.size:
            self.sequencer.sign_head()
        try:
            self.blobs = BlobStore(
                home.path / BLOB_DIR,
                quota=config.blob_quota,
                retention_days=config.blob_retention_days,
            )
        except (OSError, sqlite3.Error) as exc:
            self.store.close()
            raise ConfigError(
                f"the hub's blob store {home.path / BLOB_DIR} cannot be opened: {exc}; check "
                "that the disk is mounted and writable by the hub"
            ) from exc

    def close(self) -> None:
        self.book.flush()
        self.blobs.close()
        self.store.close()

    async def serve_blobs(self, host: Any, me: str) -> None:
        """Serve ``/ptm/blob/1.0.0`` to members, and sweep out blobs past their retention."""
        BlobServer(host, self.blobs, self.log.is_member).install()
        interval = min(SWEEP_INTERVAL_S, self.blobs.retention_days * 86_400 / 10)
        while True:
            try:
                self.blobs.sweep()
            except (OSError, sqlite3.Error) as exc:  # our disk: say so, try again next time
                log.error("blob retention sweep failed: %s; retrying in %.0f s", exc, interval)
            await trio.sleep(interval)

    def invitation(self, address: str) -> Invitation:
        assert self.log.origin is not None
        return Invitation(address, self.home.public_key, self.log.origin)

    async def handle(self, request: protocol.Request[Any], peer: Any) -> Answer:
        if isinstance(request, protocol.SubmitRequest):
            return await self.sequencer.submit(request.entries)
        return await self.server.answer(request, peer)

    def status(self, host: Any) -> dict[str, Any]:
        data = self.server.status()
        data["sequenced"] = self.sequencer.sequenced
        with contextlib.suppress(OSError, sqlite3.Error):  # advisory; faults show in the log
            data["blobs"] = self.blobs.stats()
        return data


def _checked_genesis(path: Path, home: Home) -> bytes:
    """The genesis entry at ``path``, checked completely before the hub writes anything.

    A home that is not the hub named in the genesis must not keep the entry: as a site it
    would later hold a log the hub never signed (and mistake it for a split view).
    """
    if not path.exists():
        raise ConfigError(
            f"the hub's ledger is empty and there is no genesis entry at {path}; run "
            "`ptm collab create --hub-home HUB ...` (or pass --genesis FILE) first"
        )
    raw = path.read_bytes()
    try:
        entry = Entry.from_bytes(raw)
        if entry.kind != GENESIS:
            raise ReplayError(f"it is a {entry.kind} entry, not a genesis entry")
        State().apply(entry, 0)  # the replay rules: origin, admin and hub keys, names
    except LedgerError as exc:
        raise ConfigError(f"{path} is not a valid genesis entry: {exc}") from exc
    named = entry.payload.get("hub")
    if named != home.public_key:
        shown = short(named) if isinstance(named, bytes) else repr(named)
        raise ConfigError(
            f"the genesis entry {path} names the hub key {shown}, but this home's key is "
            f"{short(home.public_key)}; start `ptm hub` with the home whose key the admin gave "
            "to `ptm collab create` (nothing was written to this home)"
        )
    return raw


def run_hub(
    home: Home,
    host_ip: str,
    port: int,
    genesis: Path | None = None,
    invitation_path: Path | None = None,
) -> None:
    """Run the hub until SIGTERM/SIGINT; one daemon per home (see ``home_lock``)."""
    with home_lock(home.path, "hub"):
        _serve_hub(home, host_ip, port, genesis, invitation_path)


def _serve_hub(
    home: Home, host_ip: str, port: int, genesis: Path | None, invitation_path: Path | None
) -> None:
    hub = Hub(home, genesis)  # [hub] settings come from the home's config.toml

    async def write_invitation(host: Any, me: str) -> None:
        if invitation_path is not None:
            hub.invitation(me).save(invitation_path)
            log.info("invitation written to %s", invitation_path)

    async def sequencer(host: Any, me: str) -> None:
        await hub.sequencer.run()

    try:
        tasks = [write_invitation, sequencer, hub.serve_blobs, *hub.server.tasks()]
        serve_home(home, host_ip, port, DaemonParts(hub.handle, tasks, hub.status, role="hub"))
    finally:
        hub.close()
