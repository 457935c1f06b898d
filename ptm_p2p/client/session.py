"""One dial-only libp2p connection to the hub, kept open on a background trio thread.

The researcher's client is synchronous (notebooks, scripts, multi-round algorithms), while
py-libp2p is trio. A ``Session`` runs one trio loop in a daemon thread, holding one host that
never listens (a client only dials) and one ``PeerClient`` to the hub; ``call`` runs an
``async`` function on that loop and returns its value (or raises its exception) in the
caller's thread. Rounds of a study therefore pay the ~250 ms connection set-up once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

from ptm_p2p.errors import NetworkError
from ptm_p2p.network.host import make_host, parse_peer_addr
from ptm_p2p.network.rpc import PeerClient, PeerUnreachable

T = TypeVar("T")
START_TIMEOUT = 30.0


class Session:
    """A background trio loop with a dial-only host and a client of the hub."""

    def __init__(self, seed: bytes, hub_addr: str) -> None:
        self.hub_addr = hub_addr
        self._seed = seed
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self.hub: PeerClient | None = None
        self._thread = threading.Thread(target=self._thread_main, name="ptm-client", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise NetworkError(f"the client's network loop did not start in {START_TIMEOUT:g} s")
        if self._failure is not None:
            raise NetworkError(f"the client's network loop failed: {self._failure}")

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the constructor or logged by close()
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        host = make_host(self._seed)
        info = parse_peer_addr(self.hub_addr)
        async with host.run([]):  # no listen address: a client only dials
            self.hub = PeerClient(host, info.peer_id, info.addrs)
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            self._ready.set()
            try:
                await self._stop.wait()
            finally:
                await self.hub.close()

    def call(self, work: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await work(*args)`` on the session's loop; its result or its exception."""
        if self._token is None or not self._thread.is_alive():
            raise NetworkError("the client is closed; open a new one")
        try:
            return trio.from_thread.run(work, *args, trio_token=self._token)
        except PeerUnreachable as exc:
            raise NetworkError(
                f"cannot reach the hub at {self.hub_addr}: is `ptm hub` running? ({exc.why})"
            ) from exc

    def close(self) -> None:
        if self._token is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(timeout=10)
        self._token = None
