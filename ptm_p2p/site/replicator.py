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
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

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
    SplitViewError,
    StoreError,
)
from ptm_p2p.home import Home
from ptm_p2p.home_files import DISTRUST_FILE, PEERS_FILE
from ptm_p2p.ledger.store import SqliteStore, is_local_fault
from ptm_p2p.network import protocol
from ptm_p2p.network.host import parse_peer_addr
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.network.peer_pool import PeerPool
from ptm_p2p.network.rpc import PeerClient
from ptm_p2p.network.sync_server import SyncServer
from ptm_p2p.network.trust import Party
from ptm_p2p.network.verified_log import BUSY_TIMEOUT_MS
from ptm_p2p.site.decide import halted_reason, self_revoked
from ptm_p2p.site.faults import LocalFaults
from ptm_p2p.site.node_status import node_status
from ptm_p2p.site.opening import check_covered, wrong_origin
from ptm_p2p.site.witness import WITNESS_FILE, Witness

if TYPE_CHECKING:
    from ptm_p2p.ledger.replay import State

log = logging.getLogger(__name__)

EXCHANGE_INTERVAL = 0.5
PEERS_REFRESH = 2.0
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
        self.tracker = self.server.tracker  # catch-up, and our store's own faults
        self.log.expect(invitation.origin, invitation.hub_key)
        check_covered(self.log, home, self.store)
        hub = parse_peer_addr(invitation.hub_addr)
        self.hub_id = hub.peer_id
        self.hub_addrs = hub.addrs
        self.me = ""
        self.host: Any = None
        self.pool = PeerPool(self.peers, self.hub_id, self.hub_addrs)  # one client per peer
        self.hub_up = False
        self._hub_reported_down = False
        self.hub_size = 0
        self.pool.load(self.home.path / PEERS_FILE, extra_peers)
        # Small files of ours failing to write (witness.json): back off, show in status.
        self.file_faults = LocalFaults()
        try:
            self.witness = Witness(home, self.log, self.trust, self.file_faults)
        except ConfigError:
            self.store.close()
            raise
        self._unverified_warned = False  # see on_note, before the genesis entry arrives
        # The hub's refusal while this site's key is not (or no longer) an active member:
        # entries are served to members only (issue 14), so the site waits for admission.
        self.not_admitted: str | None = None
        self.hub_says_revoked: int | None = None  # the hub's refusal: our key's revocation

    # --- persistence of small things -----------------------------------------------------

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
        return self.pool.client(host, peer_id)

    @property
    def witness_size(self) -> int:
        """The log size this site last cosigned (vouched for) as a witness."""
        return self.witness.size

    def cosign(self) -> None:
        """Cosign our newest checkpoint if it extends the one we cosigned last."""
        self.witness.cosign()

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
                    raise wrong_origin(self.invitation, hello.origin)
                if not self.hub_up:
                    if self._hub_reported_down:
                        log.info("reconnected to the hub at %s", self.invitation.hub_addr)
                    else:
                        log.info("connected to the hub at %s", self.invitation.hub_addr)
                self._hub_reported_down = False
                self.hub_up = True
                await self._refresh_peers(hub)
                while self.trust.hub_trusted:
                    await self.tracker.wait_out_pause()
                    after = self.book.latest_size
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

    async def _refresh_peers(self, hub: PeerClient) -> None:
        await self.pool.refresh(hub, self.me, self.home.path / PEERS_FILE)

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
                raise wrong_origin(self.invitation, origin) from exc
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
            await self.tracker.update(client, signed, source)
            self.cosign()  # whoever caught up: vouch for what we hold (else a no-op)
        except SplitViewError as exc:
            await self.broadcast_evidence(
                "split-view", exc.first.encode(), exc.second.encode(), str(exc)
            )
        except StoreError as exc:
            if not is_local_fault(exc):
                raise  # a damaged ledger stops the daemon (see _fatal)
            # A local fault: the tracker logged it and pauses before the next try.
        except BadRange as exc:
            await self._refuse(source, str(exc))
        except LedgerError as exc:
            await self._refuse(source, f"{type(exc).__name__}: {exc}")

    async def _refuse(self, source: str, reason: str) -> None:
        if source == "hub":
            log.error("hub: %s", reason)
            return
        self.trust.distrust(Party.peer(source), reason)  # recorded in DISTRUST_FILE
        await self.pool.forget(source)

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
                await self.pool.forget(pid)

    async def push_cosignatures(self, host: Any, me: str) -> None:
        """Hand each new cosignature of ours to the hub (``witness.Witness.push``)."""
        await self.witness.push(self.client(host, str(self.hub_id)), lambda: self.hub_up)

    async def broadcast_evidence(self, kind: str, first: bytes, second: bytes, detail: str) -> None:
        """Tell every known peer (and the hub) what we found; they check it themselves."""
        targets = [str(self.hub_id), *self._candidates()]
        await self.pool.broadcast_evidence(self.host, targets, kind, first, second, detail)

    # --- status --------------------------------------------------------------------------

    def status(self, host: Any, tasks: dict[str, Any] | None = None) -> dict[str, Any]:
        """What ``ptm status`` shows of this site; ``tasks``: its task worker's status."""
        return node_status(
            self.server,
            hub_up=self.hub_up,
            hub_size=self.hub_size,
            witness_size=self.witness_size,
            not_admitted=self.not_admitted,
            faults=[self.tracker.local_fault, self.file_faults.describe()],
            tasks=tasks,
        )


def _fatal(exc: BaseException) -> bool:
    """Errors that stop the daemon: our configuration or our ledger file is wrong, and no
    retry can help (a transient store failure is a local fault, retried)."""
    if isinstance(exc, ConfigError | DamagedLedger):
        return True
    return isinstance(exc, StoreError) and not is_local_fault(exc)


__all__ = ["Site", "Path"]
