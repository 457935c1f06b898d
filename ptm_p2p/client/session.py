"""One dial-only libp2p connection to the hub, kept open on a background trio thread.

The researcher's client is synchronous (notebooks, scripts, multi-round algorithms), while
py-libp2p is trio. A ``Session`` runs one trio loop in a daemon thread, holding one host that
never listens (a client only dials) and one ``PeerClient`` to the hub; ``call`` runs an
``async`` function on that loop and returns its value (or raises its exception) in the
caller's thread. Rounds of a study therefore pay the ~250 ms connection set-up once.

A hub may restart under a running study. Inside ``with session.reconnecting(deadline):`` a
call that fails for want of the hub (no connection, a stream cut, no answer in time, the hub
busy) is made again after a pause that doubles up to ``BACKOFF_CAP`` seconds, with jitter so
many clients do not return in step, until ``deadline`` passes; only then does the last error
reach the caller, as a ``HubUnreachable`` (exit code 5) saying for how long the hub was
away. Outside it (``ptm publish``, ``ptm tasks``…) a call fails at once, as before. Whatever
is made again must be safe to repeat: reads are, and the client submits one signed entry
again byte for byte (the hub answers a resubmission with the index it already gave).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import trio

from ptm_p2p.backoff import Backoff
from ptm_p2p.errors import (
    EXIT_UNREACHABLE,
    MalformedAnswer,
    NetworkError,
    ProtocolError,
    RemoteError,
    StreamClosed,
)
from ptm_p2p.network.host import make_host, parse_peer_addr
from ptm_p2p.network.rpc import PeerClient, PeerUnreachable

log = logging.getLogger(__name__)
T = TypeVar("T")
START_TIMEOUT = 30.0
# Pauses between attempts while reconnecting: the first one short (a restarted hub listens
# again within seconds), doubling up to the cap, each drawn from [½, 1] of its nominal value.
BACKOFF_FIRST = 0.25
BACKOFF_CAP = 5.0
RECONNECT = Backoff(BACKOFF_FIRST, BACKOFF_CAP, jitter=(0.5, 1.0))  # ``RECONNECT.at(attempt)``


class HubUnreachable(NetworkError):
    """The hub could not be reached (or did not answer) until the caller's deadline passed."""

    exit_code = EXIT_UNREACHABLE


def is_transient(exc: BaseException) -> bool:
    """True for a failure that reaching the hub again may cure: no connection, a stream cut
    before the answer was complete, no answer in time, a hub asking to be asked again. A
    refusal, a malformed answer or a log that does not verify is not cured by asking again."""
    if isinstance(exc, PeerUnreachable | StreamClosed):
        return True
    if isinstance(exc, RemoteError):
        return exc.code == "unavailable"
    if isinstance(exc, MalformedAnswer | ProtocolError):
        return False
    return isinstance(exc, NetworkError)


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
        self._deadline: float | None = None  # time.monotonic() until which calls retry
        self.reconnects = 0  # calls that succeeded after at least one failed attempt
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

    @contextlib.contextmanager
    def reconnecting(self, deadline: float | None) -> Iterator[None]:
        """Within the block, calls that fail for want of the hub are made again with back-off
        until ``deadline`` (a ``time.monotonic()`` value; None: fail at once)."""
        outer, self._deadline = self._deadline, deadline
        try:
            yield
        finally:
            self._deadline = outer

    def call(self, work: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await work(*args)`` on the session's loop; its result or its exception.

        Inside ``reconnecting(deadline)``, a transient failure (``is_transient``) is tried
        again after a back-off until the deadline; ``work`` must then be safe to repeat.
        """
        attempt = 0
        first_failure: float | None = None
        while True:
            try:
                value = self._call_once(work, *args)
            except NetworkError as exc:
                deadline = self._deadline
                closed = self._token is None or not self._thread.is_alive()
                if deadline is None or closed or not is_transient(exc):
                    raise
                now = time.monotonic()
                first_failure = now if first_failure is None else first_failure
                if now >= deadline:
                    raise HubUnreachable(
                        f"the hub at {self.hub_addr} was out of reach for "
                        f"{now - first_failure:.0f} s, until the deadline passed; last error: "
                        f"{exc}"
                    ) from exc
                pause = min(RECONNECT.at(attempt), max(0.0, deadline - now))
                attempt += 1
                if attempt == 1 or attempt % 5 == 0:
                    log.warning(
                        "lost the hub (%s); trying again in %.1f s (attempt %d)",
                        exc,
                        pause,
                        attempt + 1,
                    )
                time.sleep(pause)
                continue
            if attempt:
                self.reconnects += 1
                log.warning("reached the hub again after %d attempt(s)", attempt + 1)
            return value

    def _call_once(self, work: Callable[..., Awaitable[T]], *args: Any) -> T:
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
