"""``ptm node``, replication side: follow the hub, verify, cosign, and talk to other sites.

Three tasks run side by side:

* ``follow_hub``: a long-poll ``wait`` to the hub (answered as soon as the hub signs a new
  checkpoint: the announcement path, with no gossip), then catch-up over ``entries``.
* ``anti_entropy``: every half second ask one other site for its checkpoint and hand it ours
  (``cosign``). This is how checkpoints are exchanged between witnesses (split views are seen
  here), how a site catches up from another site when the hub is down, and how cosignatures
  spread.
* ``push_cosignatures``: after each verified catch-up the site cosigns the newest checkpoint
  (C2SP tlog-cosignature) once it has checked consistency with the last one it cosigned, and
  hands it to the hub.

A peer that serves a range that does not verify is named in the log and no longer used, also
after a restart (``HOME/distrusted.json``); a hub that shows two inconsistent checkpoints is
no longer followed, the evidence is stored and sent to every known peer.

Our own faults are never blamed on others. A verified batch that cannot be stored (a full
disk, another process holding the ledger's write lock) is a *local fault*: logged once,
retried with a growing pause, never evidence and never a reason to distrust the hub or a
peer. An invitation naming the wrong origin stops the daemon with that error (it would make
every honest checkpoint fail to verify), and a damaged ledger file stops it with the fix.

Peer addresses come from ``--peer`` (authoritative for that peer id), the hub's ``peers``
answer and ``HOME/peers.json``; the hub's answer adds peers and addresses but never drops
or replaces the operator's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ptm_p2p.atomic_file import write_json_atomic
from ptm_p2p.backoff import Backoff
from ptm_p2p.errors import (
    BadRange,
    CheckpointError,
    ConfigError,
    DamagedLedger,
    LedgerError,
    MalformedAnswer,
    NetworkError,
    NotAMember,
    PtmError,
    RootMismatch,
    SplitViewError,
    StepTooLarge,
    StoreError,
)
from ptm_p2p.home import Home
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger import merkle
from ptm_p2p.ledger.crypto import short
from ptm_p2p.ledger.store import SqliteStore, is_local_fault
from ptm_p2p.network import protocol
from ptm_p2p.network.fetch import VerifiedRange, fetch_range, pages
from ptm_p2p.network.host import parse_peer_addr
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.network.peer_book import MAX_PEERS
from ptm_p2p.network.rpc import PeerClient
from ptm_p2p.network.sync_server import SyncServer
from ptm_p2p.network.trust import Party
from ptm_p2p.network.verified_log import BUSY_TIMEOUT_MS
from ptm_p2p.site.decide import halted_reason, self_revoked
from ptm_p2p.site.faults import LocalFaults

if TYPE_CHECKING:
    from ptm_p2p.ledger.replay import State

log = logging.getLogger(__name__)

CHUNK = 5_000  # entries verified and committed per step of a catch-up
# A step's entries are held in memory until they are proven against one signed root: when
# the step is larger than this, the site falls back to the peer's next checkpoint, and a peer
# with no checkpoint closer than this is skipped rather than buffered without bound. Generous,
# because sites keep only the checkpoints they stepped through, so the gaps between the
# checkpoints a site can serve grow by up to CHUNK per generation of site-to-site catch-up.
MAX_STEP_ENTRIES = 20 * CHUNK
MAX_STEP_BYTES = 256 * 1024 * 1024
PEERS_FILE = "peers.json"
DISTRUST_FILE = "distrusted.json"
WITNESS_FILE = "witness.json"
EXCHANGE_INTERVAL = 0.5
PEERS_REFRESH = 2.0
# Pauses after our own store failed a write (busy, locked, full): doubled up to the maximum,
# jittered (ptm_p2p/backoff.py).
LOCAL_FAULT_PAUSE = 0.5
LOCAL_FAULT_MAX_PAUSE = 10.0
# Pauses between tries to reach the hub (down, or not admitting us yet): short, since a
# restarted hub listens again within seconds; reset once it answers.
HUB_RETRY_FIRST, HUB_RETRY_MAX = 0.2, 2.0


class Site:
    def __init__(self, home: Home, invitation: Invitation, extra_peers: list[str]) -> None:
        self.home = home
        self.invitation = invitation
        self.store = SqliteStore(home.ledger_path, busy_timeout_ms=BUSY_TIMEOUT_MS)
        try:
            self.server = SyncServer(self.store, home.name, home.path / DISTRUST_FILE)
        except DamagedLedger as exc:
            self.store.close()
            raise DamagedLedger(
                f"{exc}. Stop this site, move {exc.path} away (keep it for an inquiry) and "
                "start it again: it resyncs the log from the hub and other sites "
                f"({WITNESS_FILE} keeps what it cosigned)",
                exc.path,
            ) from exc
        self.log = self.server.log  # the verified copy of the log
        self.book = self.server.book  # its hub-signed checkpoints
        self.peers = self.server.peers  # where other sites listen
        self.trust = self.server.trust  # whom we no longer believe (and the evidence)
        self.log.expect(invitation.origin, invitation.hub_key)
        self._check_covered()
        hub = parse_peer_addr(invitation.hub_addr)
        self.hub_id = hub.peer_id
        self.hub_addrs = hub.addrs
        self.me = ""
        self.host: Any = None
        self.clients: dict[str, PeerClient] = {}
        self.sync_lock = trio.Lock()
        self.hub_up = False
        self._hub_reported_down = False
        self.hub_size = 0
        self.last_synced = 0.0
        self._cosigned = trio.Event()
        self._load_peers(extra_peers)
        self.witness_size, self.witness_root = self._load_witness()
        # Our own store failing to write (see LOCAL_FAULT_PAUSE): what, and until when to wait.
        self.local_fault: str | None = None
        self._fault_pause = Backoff(LOCAL_FAULT_PAUSE, LOCAL_FAULT_MAX_PAUSE)
        self._fault_until = 0.0
        self._unverified_warned = False  # see on_note, before the genesis entry arrives
        # The hub's refusal while this site's key is not (or no longer) an active member:
        # entries are served to members only (issue 14), so the site waits for admission.
        self.not_admitted: str | None = None
        self.hub_says_revoked: int | None = None  # the hub's refusal: our key's revocation
        self.worker: Any = None  # the TaskWorker, when this daemon executes tasks
        # Small files of ours failing to write (witness.json): back off, show in status.
        self.file_faults = LocalFaults()

    def _check_covered(self) -> None:
        """Refuse a store whose entries no stored hub-signed checkpoint covers.

        A site stores a checkpoint with every batch it verified (``VerifiedLog.commit``), so its
        whole log always sits under one. Entries beyond that were never verified (the home
        was used for something else, e.g. a ``ptm hub`` start that failed): comparing them
        with the hub's checkpoints would raise false split-view evidence against an honest hub.
        """
        size = self.log.size
        if size == 0:
            return
        note = self.book.note_of(size)
        problem = None
        if note is None:
            held = [s for s in self.book.sizes if s <= size]
            problem = (
                f"its last checkpoint covers only {held[-1]} of them"
                if held
                else "it holds no checkpoint signed by the hub"
            )
        else:
            try:
                signed = self.log.parse_signed(note)
            except LedgerError as exc:
                problem = f"its checkpoint of size {size} does not verify: {exc}"
            else:
                if signed.checkpoint.root != self.log.frontier.root():
                    problem = f"its checkpoint of size {size} has another root than its entries"
        if problem is not None:
            self.store.close()
            raise ConfigError(
                f"{self.home.path} holds {size} log entries that were never verified against "
                f"the hub ({problem}): this home was used for something else (a failed "
                "`ptm hub` start?). Give this site a fresh --home, or move "
                f"{self.home.ledger_path} away to resync the log from the hub"
            )

    # --- persistence of small things -----------------------------------------------------

    def _load_peers(self, extra: list[str]) -> None:
        self.peers.load(self.home.path / PEERS_FILE)
        for addr in extra:
            info = parse_peer_addr(addr)
            self.peers.pin(str(info.peer_id), addr.split("/p2p/")[0])

    def _load_witness(self) -> tuple[int, bytes]:
        path = self.home.path / WITNESS_FILE
        if path.exists():
            try:
                data = json.loads(path.read_text())
                size, root = int(data["size"]), bytes.fromhex(data["root"])
                if size < 0 or len(root) != 32:
                    raise ValueError("size or root out of range")
            except (ValueError, KeyError, TypeError) as exc:
                # Starting over would let us cosign a checkpoint inconsistent with one we
                # already vouched for: refuse to guess.
                raise ConfigError(
                    f"{path} is unreadable ({exc}); it records the last checkpoint this site "
                    "cosigned. Restore it from a backup, or delete it only if you are sure "
                    "this witness key never cosigned a checkpoint of another log view"
                ) from exc
            return size, root
        return 0, merkle.empty_root()

    def _save_witness(self, size: int, root: bytes) -> None:
        write_json_atomic(
            self.home.path / WITNESS_FILE, {"size": size, "root": root.hex()}, durable=True
        )

    # --- clients ---------------------------------------------------------------------------

    # --- what the worker sees (decide.SiteView) --------------------------------------------

    @property
    def state(self) -> State:
        """The replayed state of the verified copy."""
        return self.log.state

    def why_halted(self) -> str | None:
        """Why this site executes nothing (the hub distrusted, split view, own key revoked)."""
        revoked = self_revoked(self.log.state, self.home.public_key, self.hub_says_revoked)
        return halted_reason(self.trust.split_view, self.trust.hub_trusted, revoked, None)

    async def submit(self, entries: list[bytes]) -> None:
        """Hand signed entries to the hub; nothing while it is not reachable (retried)."""
        if self.host is None or not self.hub_up:
            return
        hub = self.client(self.host, str(self.hub_id))
        await hub.ask(protocol.SubmitRequest(entries=entries), timeout=30)

    def client(self, host: Any, peer_id: str) -> PeerClient:
        """The client for a peer; ``NetworkError`` if its recorded addresses are unusable."""
        existing = self.clients.get(peer_id)
        if existing is not None:
            return existing
        if peer_id == str(self.hub_id):
            client = PeerClient(host, self.hub_id, self.hub_addrs)
        else:
            rec = self.peers.get(peer_id)
            if rec is None or not rec.addrs:
                raise NetworkError(f"no address known for peer {peer_id}")
            infos = [parse_peer_addr(f"{r}/p2p/{peer_id}") for r in rec.addrs]
            client = PeerClient(host, infos[0].peer_id, [a for i in infos for a in i.addrs])
        self.clients[peer_id] = client
        return client

    async def _forget_client(self, peer_id: str) -> None:
        """Drop a peer's client and reset its open streams: left open, they would linger in
        libp2p's connection until the peer's idle timeout (minutes) cut them."""
        client = self.clients.pop(peer_id, None)
        if client is not None:
            await client.close()

    # --- the hub -----------------------------------------------------------------------------

    async def follow_hub(self, host: Any, me: str) -> None:
        self.me, self.host = me, host
        backoff = Backoff(HUB_RETRY_FIRST, HUB_RETRY_MAX)
        hub = self.client(host, str(self.hub_id))
        while True:
            if not self.trust.hub_trusted:
                self.hub_up = False
                await trio.sleep(1.0)
                continue
            try:
                hello = await hub.ask(self._hello(me), timeout=10)
                # The hub is authenticated (its peer id is the invited key): if it names
                # another log than the invitation, the invitation is wrong, not the hub.
                if hello.origin is not None and hello.origin != self.invitation.origin:
                    raise self._wrong_origin(hello.origin)
                if not self.hub_up:
                    if self._hub_reported_down:
                        log.info("reconnected to the hub at %s", self.invitation.hub_addr)
                    else:
                        log.info("connected to the hub at %s", self.invitation.hub_addr)
                self._hub_reported_down = False
                self.hub_up = True
                await self._refresh_peers(hub)
                while self.trust.hub_trusted:
                    await self._pause_for_local_fault()
                    after = self._checkpoint_size()
                    resp = await hub.ask(
                        protocol.WaitRequest(after=after, timeout_ms=5000),
                        channel="wait",
                        timeout=15,
                    )
                    self.hub_size = resp.size
                    if resp.note:
                        await self.on_note(resp.note, hub, "hub")
                    self._admitted()
                    backoff.reset()
            except NotAMember as exc:
                # The hub is up and answers, but serves entries to members only: wait for the
                # admin's admission (checked again after each pause), not "unreachable".
                self._waiting_for_admission(exc)
                await trio.sleep(backoff.next())
                continue
            except MalformedAnswer as exc:
                # The hub answered, but not in the protocol: say so (it is not "unreachable").
                await self._refuse("hub", f"sent a malformed answer: {exc}")
            except (NetworkError, trio.TooSlowError) as exc:
                # Once per outage, also when the hub is down from the start.
                if not self._hub_reported_down:
                    self._hub_reported_down = True
                    log.warning(
                        "hub at %s unreachable (%s); retrying (and syncing from other known peers)",
                        self.invitation.hub_addr,
                        getattr(exc, "why", None) or str(exc) or "no answer in time",
                    )
            except Exception as exc:  # never let one bad answer stop us following the hub
                if _fatal(exc):
                    raise
                log.exception("following the hub failed unexpectedly; retrying")
            else:
                continue  # the hub is no longer trusted: the loop's top waits
            # Any failure: the hub counts as down until it answers again; back off.
            self.hub_up = False
            await trio.sleep(backoff.next())

    def _waiting_for_admission(self, exc: NotAMember) -> None:
        if self.not_admitted is None:
            key = self.home.public_key.hex()
            log.warning(
                "waiting for admission: %s. Replication starts on its own once the admin "
                "admits this site (`ptm collab admit --role site --org ORG %s`)",
                exc.reason,
                key,
            )
        self.not_admitted = exc.reason
        self.hub_says_revoked = exc.revoked_at

    def _admitted(self) -> None:
        if self.not_admitted is not None:
            log.info("the hub serves this site the log now (admitted); replicating")
            self.not_admitted = None
            self.hub_says_revoked = None

    def _hello(self, me: str) -> protocol.HelloRequest:
        """Where we listen (our address without the /p2p/ suffix) and our name."""
        return protocol.HelloRequest(addrs=[me.split("/p2p/")[0]], name=self.home.name)

    def _checkpoint_size(self) -> int:
        return self.book.latest_size

    async def _refresh_peers(self, hub: PeerClient) -> None:
        resp = await hub.ask(protocol.PeersRequest(), timeout=10)
        changed = False
        for item in resp.peers[:MAX_PEERS]:
            pid = item.id
            if not pid or self.me.endswith(pid):
                continue
            if pid == str(self.hub_id):
                continue  # the invitation gives the hub's address; nobody else does
            if self.peers.offer(pid, item.addrs, item.name):
                await self._forget_client(pid)  # its addresses changed
                changed = True
        if changed:
            self.peers.save(self.home.path / PEERS_FILE)

    # --- checkpoints from anyone ---------------------------------------------------------

    async def on_note(self, note: Any, client: PeerClient, source: str) -> None:
        """A hub-signed checkpoint from ``source``: compare it with ours, or catch up."""
        try:
            if not isinstance(note, str):
                raise CheckpointError(f"the checkpoint sent is a {type(note).__name__}, not text")
            signed = self.log.parse_signed(note)
        except LedgerError as exc:
            origin = self.log.origin_mismatch(note) if isinstance(note, str) else None
            if origin is not None:
                raise self._wrong_origin(origin) from exc
            if self.log.origin is None:
                # Before the genesis entry, origin and hub key come only from the invitation:
                # a note that does not verify may be our configuration's fault, so nobody is
                # blamed for it (nothing unverified is stored either way).
                if not self._unverified_warned:
                    self._unverified_warned = True
                    log.warning(
                        "a checkpoint from %s does not verify under the invitation's hub key "
                        "and origin %r (%s); if every peer's fails, the invitation is wrong",
                        source,
                        self.invitation.origin,
                        exc,
                    )
                return
            await self._refuse(source, f"sent a checkpoint that does not verify: {exc}")
            return
        try:
            if signed.checkpoint.size <= self.log.size:
                self.server.observe(signed, source)
            else:
                try:
                    await self.sync_from(client, signed, source)
                except RootMismatch:
                    await self._diagnose(client, signed, source)
                    raise
        except SplitViewError as exc:
            await self.broadcast_evidence(
                "split-view", exc.first.encode(), exc.second.encode(), str(exc)
            )
        except StoreError as exc:
            if not is_local_fault(exc):
                raise  # a damaged ledger stops the daemon (see _fatal)
            self._local_fault(exc, source)
        except BadRange as exc:
            await self._refuse(source, str(exc))
        except LedgerError as exc:
            await self._refuse(source, f"{type(exc).__name__}: {exc}")

    async def _diagnose(self, client: PeerClient, target: cp.SignedCheckpoint, source: str) -> None:
        """After a root mismatch: is the peer lying, or did the hub fork the log?

        Rehash the peer's whole log up to the target (leaf hashes only). If it gives the
        hub-signed target root but differs from our verified root at our size, the hub
        signed two inconsistent trees: a split view (raised as ``SplitViewError``). If it
        does not give the target root, the peer serves entries the hub never signed.
        """
        n, ours = self.log.size, self.log.frontier.root()
        frontier, ours_there = merkle.CompactRange(), None
        try:
            async for page in pages(client, 0, target.checkpoint.size, old_size=0, source=source):
                for raw in page.raws:
                    frontier.extend([merkle.leaf_hash(raw)])
                    if frontier.size == n:
                        ours_there = frontier.root()
        except BadRange:
            return  # it serves no such log: its lie is the root mismatch already raised
        if frontier.root() == target.checkpoint.root and ours_there not in (None, ours):
            detail = (
                f"the hub signed size {target.checkpoint.size} over a log (served by "
                f"{source}) whose first {n} entries hash to {ours_there.hex()[:16]}…, but "
                f"it signed size {n} with root {ours.hex()[:16]}… for us"
            )
            self.trust.declare_split_view(self.book.note_at_least(n) or "", target.text, detail)

    async def _refuse(self, source: str, reason: str) -> None:
        if source == "hub":
            log.error("hub: %s", reason)
            return
        self.trust.distrust(Party.peer(source), reason)  # recorded in DISTRUST_FILE
        await self._forget_client(source)

    # --- our own faults ----------------------------------------------------------------------

    def _wrong_origin(self, served: str) -> ConfigError:
        return ConfigError(
            f"the invitation names the log {self.invitation.origin!r}, but its hub (key "
            f"{short(self.invitation.hub_key)}) signs the log {served!r}: the invitation's "
            "origin field is wrong or belongs to another collaboration. Nothing was stored and "
            "no peer was blamed; ask the hub operator for the file `ptm hub --invitation FILE` "
            "wrote and start this site again with it"
        )

    def _local_fault(self, exc: BaseException, source: str) -> None:
        """Our store could not take a verified batch: pause, retry later, blame nobody."""
        first = self.local_fault is None
        self.local_fault = str(exc)
        wait = self._fault_pause.next()
        self._fault_until = time.monotonic() + wait
        if first:
            log.warning(
                "could not store entries verified from %s: %s. This is a fault of this "
                "machine (disk full? another program holding %s?), not of any peer; "
                "retrying with pauses of up to %.0f s",
                source,
                exc,
                self.home.ledger_path,
                LOCAL_FAULT_MAX_PAUSE,
            )
        else:
            log.debug("store still failing (next try in %.1f s): %s", wait, exc)

    def _local_fault_cleared(self) -> None:
        if self.local_fault is not None:
            log.info("the ledger takes writes again; replication resumed")
        self.local_fault = None
        self._fault_pause.reset()
        self._fault_until = 0.0

    async def _pause_for_local_fault(self) -> None:
        wait = self._fault_until - time.monotonic()
        if wait > 0:
            await trio.sleep(wait)

    async def sync_from(self, client: PeerClient, target: cp.SignedCheckpoint, source: str) -> None:
        if time.monotonic() < self._fault_until:
            return  # our store failed a moment ago: the next try comes after the pause
        async with self.sync_lock:
            started, begin = time.perf_counter(), self.log.size
            while self.log.size < target.checkpoint.size:
                await self._sync_step(client, target, source)
            if self.log.size > begin:
                self.last_synced = time.time()
                took = time.perf_counter() - started
                log.info(
                    "verified %d entries from %s in %.3f s (size %d)",
                    self.log.size - begin,
                    source,
                    took,
                    self.log.size,
                )
        self.cosign()

    async def _sync_step(
        self, client: PeerClient, target: cp.SignedCheckpoint, source: str
    ) -> None:
        n = self.log.size
        step = target
        if target.checkpoint.size - n > CHUNK:
            # Walk the log checkpoint by checkpoint so memory stays bounded: each step is
            # verified against a signed root before it is stored.
            step = await self._checkpoint_between(client, n + CHUNK, target) or target
        try:
            fetched = await self._fetch(client, step, source)
        except StepTooLarge:
            # Big entries: take the very next checkpoint the peer holds instead.
            smaller = await self._checkpoint_between(client, n + 1, step)
            try:
                if smaller is None:
                    raise StepTooLarge() from None
                step = smaller
                fetched = await self._fetch(client, step, source)
            except StepTooLarge:
                # Not proof of lying (a site keeps only some checkpoints): skip, don't distrust.
                raise NetworkError(
                    f"{source} offers no checkpoint within {MAX_STEP_ENTRIES} entries or "
                    f"{MAX_STEP_BYTES >> 20} MiB after size {n}; a range that large cannot be "
                    "verified in bounded memory, so it is fetched from another peer"
                ) from None
        self.log.commit(fetched.entries, fetched.frontier, step, source)
        self._local_fault_cleared()

    async def _fetch(
        self, client: PeerClient, step: cp.SignedCheckpoint, source: str
    ) -> VerifiedRange:
        """Entries from our size up to ``step``, verified (``fetch.fetch_range``)."""
        ours = self.book.note_of(self.log.size)
        return await fetch_range(
            client,
            step,
            self.log.log_verifier(),
            source,
            base=self.log.frontier,
            base_note=cp.parse_checkpoint(ours) if ours else None,
            max_entries=MAX_STEP_ENTRIES,
            max_bytes=MAX_STEP_BYTES,
        )

    async def _checkpoint_between(
        self, client: PeerClient, at_least: int, below: cp.SignedCheckpoint
    ) -> cp.SignedCheckpoint | None:
        """A hub-signed checkpoint the peer holds with size in [at_least, below.size)."""
        resp = await client.ask(protocol.CheckpointRequest(at_least=at_least), timeout=30)
        if not resp.note:
            return None
        candidate = self.log.parse_signed(resp.note)
        if at_least <= candidate.checkpoint.size < below.checkpoint.size:
            return candidate
        return None

    # --- witnessing ------------------------------------------------------------------------

    def witness_name(self) -> str | None:
        member = self.log.state.members.get(self.home.public_key)
        if member is None or not member.active or member.role != "site":
            return None
        return member.org

    def cosign(self) -> None:
        """Cosign our newest checkpoint (C2SP tlog-cosignature) if it extends the last one."""
        name = self.witness_name()
        note = self.book.latest
        if name is None or note is None or not self.trust.hub_trusted:
            return
        signed = cp.parse_checkpoint(note)
        size = signed.checkpoint.size
        if size <= self.witness_size or size > self.log.size:
            return
        if self.witness_size:
            problem = self._not_extending_witnessed(signed)
            if problem is not None:
                log.error(
                    "refusing to cosign size %d: not consistent with the checkpoint of "
                    "size %d we cosigned: %s",
                    size,
                    self.witness_size,
                    problem,
                )
                return
        # Record what we vouch for durably *before* the cosignature exists: after a crash we
        # must never cosign a tree inconsistent with this one.
        if not self.file_faults.ready(WITNESS_FILE):
            return  # it failed a moment ago: the next try comes after the back-off step
        try:
            self._save_witness(size, signed.checkpoint.root)
        except OSError as exc:
            # No record, no cosignature; a later catch-up tries again (one line per step).
            self.file_faults.failed(WITNESS_FILE, exc, f"record the cosigned size {size} in")
            return
        self.file_faults.cleared(WITNESS_FILE)
        self.witness_size, self.witness_root = size, signed.checkpoint.root
        mine = cp.cosign(signed, self.home.signer, name, int(time.time()))
        self.book.merge_cosignatures(mine, self.log.witness_verifiers())
        self._cosigned.set()

    def _not_extending_witnessed(self, signed: cp.SignedCheckpoint) -> str | None:
        """Why ``signed`` does not extend the checkpoint we cosigned last, or None.

        The hub's note of the cosigned size and ``signed`` are checked with
        ``checkpoint.check_consistent`` and a consistency proof from our own verified store.
        """
        old_size, size = self.witness_size, signed.checkpoint.size
        held = self.book.note_of(old_size)
        witnessed = cp.parse_checkpoint(held) if held else None
        if witnessed is None or witnessed.checkpoint.root != self.witness_root:
            # We no longer hold that note (the ledger was moved away and resynced along other
            # checkpoints): the tree we vouched for must then be our verified log's prefix.
            if self.store.root(old_size) != self.witness_root:
                return f"our verified log has another root at size {old_size}"
            return None
        proof = self.store.consistency_proof(old_size, size)
        try:
            cp.check_consistent(witnessed, signed, proof, self.log.log_verifier())
        except LedgerError as exc:
            return str(exc.__cause__ or exc)
        return None

    async def push_cosignatures(self, host: Any, me: str) -> None:
        hub = self.client(host, str(self.hub_id))
        while True:
            await self._cosigned.wait()
            self._cosigned = trio.Event()
            note = self.book.note_of(self.witness_size)
            if note is None or not self.hub_up or not self.trust.hub_trusted:
                continue
            try:
                await hub.ask(protocol.CosignRequest(note=note), channel="cosign", timeout=10)
            except NetworkError as exc:
                log.debug("could not hand our cosignature to the hub: %s", exc)

    # --- other sites -------------------------------------------------------------------------

    def _candidates(self) -> list[str]:
        hub = str(self.hub_id)
        return [
            pid
            for pid, rec in self.peers.items()
            if pid != hub
            and rec.addrs
            and not self.me.endswith(pid)
            and self.trust.trusted(Party.peer(pid))
        ]

    async def anti_entropy(self, host: Any, me: str) -> None:
        self.me, self.host = me, host
        turn = 0
        last_refresh = 0.0
        while True:
            # Faster while the hub is unreachable: other sites are then the only source.
            await trio.sleep(EXCHANGE_INTERVAL if self.hub_up else EXCHANGE_INTERVAL / 2)
            if self.hub_up and time.monotonic() - last_refresh > PEERS_REFRESH:
                last_refresh = time.monotonic()
                # Say hello again: the hub lists only members, and we may have been
                # admitted since we connected.
                with contextlib.suppress(NetworkError):
                    hub = self.client(host, str(self.hub_id))
                    await hub.ask(self._hello(me), timeout=10)
                    await self._refresh_peers(hub)
            candidates = self._candidates()
            if not candidates:
                continue
            pid = candidates[turn % len(candidates)]
            turn += 1
            try:
                client = self.client(host, pid)
                with trio.fail_after(30):
                    resp = await client.ask(protocol.CheckpointRequest(), timeout=5)
                    if resp.note:
                        await self.on_note(resp.note, client, pid)
                    ours = self.book.latest
                    if ours and self.trust.trusted(Party.peer(pid)):
                        await client.ask(protocol.CosignRequest(note=ours), timeout=5)
            except MalformedAnswer as exc:
                # Not a network hiccup: the peer answered, with something no honest peer
                # sends (as a note that does not verify is refused in on_note).
                await self._refuse(pid, f"sent a malformed answer: {exc}")
            except (NetworkError, trio.TooSlowError) as exc:
                log.debug("exchange with %s failed: %s", pid[-8:], exc)
            except PtmError as exc:
                if _fatal(exc):
                    raise
                log.warning("exchange with %s: %s", pid[-8:], exc)
            except Exception:  # a bug must cost one exchange, not the daemon
                log.exception("exchange with %s failed unexpectedly", pid[-8:])
                await self._forget_client(pid)

    async def broadcast_evidence(self, kind: str, first: bytes, second: bytes, detail: str) -> None:
        """Tell every known peer (and the hub) what we found; they check it themselves."""
        targets = [str(self.hub_id), *self._candidates()]
        random.shuffle(targets)
        for pid in targets:
            try:
                client = self.clients.get(pid)
                if client is None:
                    if self.host is None:
                        continue
                    client = self.client(self.host, pid)
                report = protocol.EvidenceRequest(
                    kind=kind, first=first, second=second, detail=detail[:4000]
                )
                await client.ask(report, timeout=5)
            except (NetworkError, KeyError) as exc:
                log.debug("could not report evidence to %s: %s", pid[-8:], exc)

    # --- status --------------------------------------------------------------------------

    def status(self, host: Any) -> dict[str, Any]:
        data = self.server.status()
        data.update(
            hub_up=self.hub_up,
            hub_size=self.hub_size,
            lag=max(0, self.hub_size - self.log.size) if self.hub_up else None,
            witness_size=self.witness_size,
            local_fault=self.local_fault,
            not_admitted=self.not_admitted,
        )
        if self.worker is not None:
            data["tasks"] = self.worker.status()
        # Every file of ours that fails is this machine's fault: one line in `ptm status`.
        faults = [self.local_fault, self.file_faults.describe()]
        if self.worker is not None:
            faults.append(data["tasks"].get("local_fault"))
        data["local_fault"] = "; ".join(f for f in faults if f) or None
        return data


def _fatal(exc: BaseException) -> bool:
    """Errors that stop the daemon: our configuration or our ledger file is wrong, and no
    retry can help (a transient store failure is a local fault, retried)."""
    if isinstance(exc, ConfigError | DamagedLedger):
        return True
    return isinstance(exc, StoreError) and not is_local_fault(exc)


__all__ = ["Site", "Path"]
