"""What the worker sees of its site: ``decide.SiteView`` (the replayed state, the size this
site vouched for, why it is halted, a way to submit) and the few things doing needs on top
(this site's home and keys, the stored bytes of a task entry, a wait for the next
checkpoint, a way to reach the hub for output blobs).

The daemon (``daemon.py``) hands the worker a ``SiteAdapter`` over its ``replicator.Site``:
the one place that reads the Site's parts (store, checkpoint book, libp2p host), so the Site
keeps to following the hub. A test passes a fake that implements ``WorkerSite`` directly
(``tests/site/site_fakes.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ptm_p2p.errors import NetworkError
from ptm_p2p.site.decide import SiteView

if TYPE_CHECKING:
    from ptm_p2p.home import Home
    from ptm_p2p.ledger.replay import State
    from ptm_p2p.site.replicator import Site


class WorkerSite(SiteView, Protocol):
    """``SiteView`` plus what the worker needs to carry its decisions out."""

    @property
    def home(self) -> Home:
        """This site's home: its key (signs results, opens inputs) and its files."""
        ...

    @property
    def hub_says_revoked(self) -> int | None:
        """The revocation of this site's key named by the hub's members-only refusal."""
        ...

    def stored_entry(self, index: int) -> bytes:
        """The bytes of log entry ``index`` as stored now (to check against replay)."""
        ...

    @property
    def checkpoint_size(self) -> int:
        """The size of the newest hub-signed checkpoint held."""
        ...

    async def wait_for_checkpoint(self, after: int, timeout: float) -> None:
        """Return once a checkpoint larger than ``after`` is held, or after ``timeout``."""
        ...

    def cosign_pending(self) -> None:
        """Vouch for entries verified but not cosigned yet (a restart between the two)."""
        ...

    def hub(self) -> Any:
        """A client of the hub (``rpc.PeerClient``); ``NetworkError`` while not connected."""
        ...


class SiteAdapter:
    """A ``replicator.Site`` seen as a ``WorkerSite``."""

    def __init__(self, site: Site) -> None:
        self._site = site

    @property
    def state(self) -> State:
        state: State = self._site.state
        return state

    @property
    def witness_size(self) -> int:
        return int(self._site.witness_size)

    def why_halted(self) -> str | None:
        reason: str | None = self._site.why_halted()
        return reason

    async def submit(self, entries: list[bytes]) -> None:
        await self._site.submit(entries)

    @property
    def home(self) -> Home:
        home: Home = self._site.home
        return home

    @property
    def hub_says_revoked(self) -> int | None:
        revoked: int | None = self._site.hub_says_revoked
        return revoked

    def stored_entry(self, index: int) -> bytes:
        (raw,) = self._site.store.raw_range(index, index + 1)
        return bytes(raw)

    @property
    def checkpoint_size(self) -> int:
        return int(self._site.book.latest_size)

    async def wait_for_checkpoint(self, after: int, timeout: float) -> None:
        await self._site.book.wait_newer(after, timeout)

    def cosign_pending(self) -> None:
        if self._site.witness_size < self._site.log.size:
            self._site.cosign()

    def hub(self) -> Any:
        site = self._site
        if site.host is None or site.hub_id is None:
            raise NetworkError("the site is not connected to the hub yet")
        return site.client(site.host, str(site.hub_id))
