"""Request/response over libp2p streams: a server that never dies of a bad message, a client.

Server: one handler for PROTOCOL_ID. Each inbound stream carries any number of
request → response exchanges in order (opening a stream per request would cost a multistream
negotiation each time; a connection costs ~250 ms in py-libp2p 0.8.1, a round trip on an
open stream ~0.5 ms). A malformed request gets an error response and a log line; an
oversized frame gets an error response and a reset, since the stream cannot be resynchronised.
No exception from a handler ever reaches libp2p. A stream on which no new request starts
within ``idle_timeout`` (5 minutes by default) is reset, so a peer cannot hold a server task
and a stream for ever by opening streams and sending nothing.

Bounds against hostile peers: at most ``MAX_STREAMS_PER_PEER`` streams of one peer are served
at once (further ones are reset at once); large frame bodies are charged to a ``FrameBudget``
(per peer and in all) before they are read; every log line quotes at most a few hundred
characters of what a peer sent, and each kind of complaint is logged at most
``LOG_BURST`` times per ``LOG_WINDOW_S`` (then one line says how many were suppressed), so no
peer can fill the log disk or the memory of a daemon.

Client: ``PeerClient`` keeps one stream per *channel* to one peer (the long-poll ``wait`` uses
its own channel so it never blocks ordinary requests), re-dials on failure, and clears
libp2p's 60-second dial blacklist before each dial so a restarted peer is reachable at once.
When a reused stream turns out to have been closed by the peer (the server's idle timeout)
before any byte of the answer came back, the request is sent again once on a fresh stream:
callers never see an idle stream being cut.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import multiaddr
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from ptm_p2p.errors import (
    FrameTooLarge,
    NetworkError,
    ProtocolError,
    PtmError,
    StreamClosed,
    StreamIdle,
)
from ptm_p2p.errors import PeerUnreachable as PeerUnreachable
from ptm_p2p.network import protocol
from ptm_p2p.network.framing import (
    MAX_FRAME,
    FrameBudget,
    decode,
    read_body,
    read_frame,
    read_header,
    write_frame,
)

log = logging.getLogger(__name__)
R = TypeVar("R", bound=protocol.Reply)

# A handler gets a checked, typed request and answers with a typed reply or an error map.
Handler = Callable[[protocol.Request[Any], ID], Awaitable[protocol.Reply | dict[str, Any]]]
PROTOCOL = TProtocol(protocol.PROTOCOL_ID)
# How long a server waits for the first bytes of the next request on an open stream. Clients
# keep streams open between requests (and a site's ``wait`` channel asks again as soon as a
# long-poll, at most MAX_WAIT_MS, is answered; the wait itself runs *inside* a request), so
# this only cuts streams nobody uses: far above the long-poll plus margin, and harmless when
# it does cut, since PeerClient reopens a cut stream transparently.
IDLE_TIMEOUT_S = 300.0
MIN_IDLE_TIMEOUT_S = protocol.MAX_WAIT_MS / 1000 + 30
# An honest client keeps one stream per channel (three at most: main, wait, cosign) and a
# handful of one-shot ones; beyond this, a peer's new streams are reset at once.
MAX_STREAMS_PER_PEER = 32
# Frame bodies of 64 KiB and more held at once (from header to answer): two full frames per
# peer (a submit and an evidence report may overlap), eight in all.
PEER_FRAME_BUDGET = 2 * MAX_FRAME
TOTAL_FRAME_BUDGET = 8 * MAX_FRAME
# Each kind of complaint about peers is logged at most LOG_BURST times per LOG_WINDOW_S.
LOG_BURST = 20
LOG_WINDOW_S = 60.0
# Characters of a peer-controlled message (an error naming what it sent) put in one log line.
LOG_QUOTE = 300


def clip(text: object, limit: int = LOG_QUOTE) -> str:
    """``str(text)`` cut to ``limit`` characters, saying how long it was."""
    value = str(text)
    return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} characters)"


class LogLimiter:
    """At most ``burst`` lines per ``window`` seconds for each kind of message.

    Kinds are a fixed set of names chosen by the caller (never a peer id, which would let a
    peer with many identities grow the table). Once a kind goes quiet for a window, the next
    line of that kind first says how many were suppressed.
    """

    def __init__(
        self,
        burst: int = LOG_BURST,
        window: float = LOG_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window = window
        self.clock = clock
        self._kinds: dict[str, list[float]] = {}  # kind -> [window start, lines, suppressed]
        self.suppressed = 0

    def log(
        self,
        logger: logging.Logger,
        level: int,
        kind: str,
        msg: str,
        *args: Any,
        exc_info: bool = False,
    ) -> bool:
        """Log ``msg % args`` unless ``kind`` used up its lines; True if it was logged."""
        now = self.clock()
        state = self._kinds.setdefault(kind, [now, 0, 0])
        if now - state[0] >= self.window:
            if state[2]:
                logger.log(
                    level,
                    "%d more %r messages suppressed in the last %.0f s",
                    state[2],
                    kind,
                    now - state[0],
                )
            state[:] = [now, 0, 0]
        if state[1] < self.burst:
            state[1] += 1
            logger.log(level, msg, *args, exc_info=exc_info)
            return True
        if state[2] == 0:
            logger.log(
                level,
                "more than %d %r messages in %.0f s; suppressing them for the rest of the minute",
                self.burst,
                kind,
                self.window,
            )
        state[2] += 1
        self.suppressed += 1
        return False


class RpcServer:
    """Serve the sync protocol on ``host`` with ``handler(request, peer_id) -> reply``.

    ``idle_timeout`` (seconds) bounds the wait for the next request on a stream; daemons use
    the default, tests may shorten it.
    """

    def __init__(
        self,
        host: Any,
        handler: Handler,
        max_frame: int = MAX_FRAME,
        idle_timeout: float = IDLE_TIMEOUT_S,
        max_streams_per_peer: int = MAX_STREAMS_PER_PEER,
        budget: FrameBudget | None = None,
    ) -> None:
        if not idle_timeout > 0:
            raise ValueError(
                f"idle_timeout must be a positive number of seconds, not {idle_timeout}"
            )
        if idle_timeout < MIN_IDLE_TIMEOUT_S:
            # Allowed (tests use ~1 s), but such a server cuts streams between long-polls.
            log.warning(
                "idle timeout %g s is shorter than a long-poll plus margin (%g s): clients "
                "will reopen streams often",
                idle_timeout,
                MIN_IDLE_TIMEOUT_S,
            )
        self.host = host
        self.handler = handler
        self.max_frame = max_frame
        self.idle_timeout = idle_timeout
        self.max_streams_per_peer = max_streams_per_peer
        self.budget = budget or FrameBudget(TOTAL_FRAME_BUDGET, PEER_FRAME_BUDGET)
        self.limiter = LogLimiter()
        self.streams: dict[str, int] = {}  # peer -> streams being served now
        self.bad_requests = 0
        self.idle_closed = 0
        self.refused_streams = 0
        self.refused_frames = 0

    def install(self) -> None:
        self.host.set_stream_handler(PROTOCOL, self._serve_stream)

    async def _serve_stream(self, stream: Any) -> None:
        peer = stream_peer(stream)
        key = str(peer)
        if self.streams.get(key, 0) >= self.max_streams_per_peer:
            self.refused_streams += 1
            self._warn(
                "too-many-streams",
                "peer %s: more than %d streams open at once; resetting its new ones",
                peer,
                self.max_streams_per_peer,
            )
            await reset_quietly(stream)
            return
        self.streams[key] = self.streams.get(key, 0) + 1
        try:
            await self._serve_requests(stream, peer, key)
        finally:
            left = self.streams.get(key, 1) - 1
            if left > 0:
                self.streams[key] = left
            else:
                self.streams.pop(key, None)

    async def _serve_requests(self, stream: Any, peer: Any, key: str) -> None:
        try:
            while True:
                try:
                    length = await read_header(
                        stream, self.max_frame, idle_timeout=self.idle_timeout
                    )
                except StreamIdle:
                    # Normal for a channel a client stopped using; a reset frees both ends
                    # at once, and the client reopens a stream if it needs one again.
                    self.idle_closed += 1
                    log.debug(
                        "peer %s: no request for %g s; closing the stream", peer, self.idle_timeout
                    )
                    await reset_quietly(stream)
                    return
                except StreamClosed:
                    return
                except FrameTooLarge as exc:
                    self.bad_requests += 1
                    self._warn("too-large", "peer %s: %s; resetting the stream", peer, exc)
                    await _send_quietly(stream, protocol.error(protocol.BAD_REQUEST, str(exc)))
                    await reset_quietly(stream)
                    return
                if not self.budget.take(key, length):
                    self.refused_frames += 1
                    self._warn(
                        "frame-budget",
                        "peer %s: a %d-byte frame does not fit the bytes held for large frames "
                        "(%d of %d in all, %d of %d for this peer); refused",
                        peer,
                        length,
                        self.budget.held,
                        self.budget.total,
                        self.budget.by_peer.get(key, 0),
                        self.budget.per_peer,
                    )
                    await _send_quietly(
                        stream,
                        protocol.error(
                            protocol.UNAVAILABLE,
                            "too many large requests in flight; send it again in a moment",
                        ),
                    )
                    await reset_quietly(stream)
                    return
                try:
                    payload = await read_body(stream, length)
                    response = await self._answer(payload, peer)
                    del payload
                finally:
                    self.budget.give(key, length)
                await write_frame(stream, protocol.encode_message(response), self.max_frame)
        except StreamClosed:
            return
        except trio.Cancelled:
            raise
        except Exception as exc:  # the stream broke under us: drop it, keep the daemon
            self._info(
                "dropped", "peer %s: stream dropped: %s: %s", peer, type(exc).__name__, clip(exc)
            )
            await reset_quietly(stream)
        finally:
            await close_quietly(stream)

    def _warn(self, kind: str, msg: str, *args: Any) -> None:
        self.limiter.log(log, logging.WARNING, kind, msg, *args)

    def _info(self, kind: str, msg: str, *args: Any) -> None:
        self.limiter.log(log, logging.INFO, kind, msg, *args)

    async def _answer(self, payload: bytes, peer: Any) -> protocol.Reply | dict[str, Any]:
        op = "?"
        try:
            request = protocol.parse_request(decode(payload))
            op = request.op
            return await self.handler(request, peer)
        except ProtocolError as exc:
            self.bad_requests += 1
            self._warn("bad-request", "peer %s: bad request (%s): %s", peer, op, clip(exc))
            code = protocol.UNKNOWN_OP if exc.detail == protocol.UNKNOWN_OP else "bad-request"
            return protocol.error(code, str(exc))
        except PtmError as exc:
            self._info("refused", "peer %s: %s refused: %s", peer, op, clip(exc))
            return protocol.error(protocol.REFUSED, str(exc))
        except trio.Cancelled:
            raise
        except Exception:  # a bug must cost one request, not the daemon
            # The traceback goes to our log; the peer gets a clear line, not our internals.
            self.limiter.log(
                log,
                logging.ERROR,
                "internal",
                "peer %s: internal error answering %s",
                peer,
                op,
                exc_info=True,
            )
            return protocol.error(
                protocol.INTERNAL,
                f"{op}: this peer hit an internal error answering the request; its operator "
                "will find the details in the daemon's log",
            )


async def _send_and_receive(stream: Any, request: bytes) -> bytes:
    await write_frame(stream, request)
    return await read_frame(stream)


async def quietly(action: Callable[[], Awaitable[Any]]) -> None:
    """A last word on a stream whose peer may be gone: at most 2 s, any failure ignored."""
    with contextlib.suppress(Exception), trio.move_on_after(2):
        await action()


async def _send_quietly(stream: Any, message: dict[str, Any]) -> None:
    await quietly(lambda: write_frame(stream, protocol.encode_message(message)))


async def reset_quietly(stream: Any) -> None:
    await quietly(stream.reset)


async def close_quietly(stream: Any) -> None:
    await quietly(stream.close)


def stream_peer(stream: Any) -> Any:
    """The peer id at the other end of an incoming stream, or None if it cannot be told."""
    try:
        return stream.muxed_conn.peer_id
    except Exception:
        return None


def _tcp_target(addr: multiaddr.Multiaddr) -> str:
    try:
        ip = addr.value_for_protocol("ip4") or addr.value_for_protocol("ip6")
        return f"{ip} port {addr.value_for_protocol('tcp')}"
    except Exception:  # multiaddr raises assorted errors for a missing protocol
        return str(addr)


class PeerClient:
    """Requests to one peer, over reused streams, re-dialing when they break."""

    def __init__(self, host: Any, peer_id: ID, addrs: Sequence[multiaddr.Multiaddr] = ()) -> None:
        self.host = host
        self.peer_id = peer_id
        self.addrs = list(addrs)
        self._streams: dict[str, Any] = {}
        self._locks: dict[str, trio.Lock] = {}

    def __repr__(self) -> str:
        return f"PeerClient({str(self.peer_id)[-8:]})"

    async def connect(self, timeout: float = 10.0) -> None:
        """Dial the peer unless a connection is already open."""
        network = self.host.get_network()
        if self.peer_id in self.host.get_connected_peers():
            return
        # libp2p remembers a failed dial for 60 s and refuses to retry; our retries are
        # deliberate (the peer restarts), so clear that memory first.
        with contextlib.suppress(Exception):
            network.unblock_peer(self.peer_id)
        try:
            with trio.fail_after(timeout):
                await self.host.connect(PeerInfo(self.peer_id, self.addrs))
        except trio.TooSlowError as exc:
            raise PeerUnreachable(
                f"peer {self.peer_id} did not answer within {timeout:g} s",
                f"no answer within {timeout:g} s",
            ) from exc
        except Exception as exc:
            raise PeerUnreachable(
                f"cannot reach peer {self.peer_id}: {exc}",
                "no connection could be opened to " + ", ".join(_tcp_target(a) for a in self.addrs),
            ) from exc

    async def ask(
        self, request: protocol.Request[R], *, channel: str = "main", timeout: float = 30.0
    ) -> R:
        """Send one typed request; its typed answer, or ``RemoteError``/``ProtocolError``."""
        message = await self._round_trip(
            request.op, protocol.encode_message(request), channel, timeout
        )
        return protocol.parse_reply(request, message)

    async def call(
        self, op: str, *, channel: str = "main", timeout: float = 30.0, **fields: Any
    ) -> dict[str, Any]:
        """Send one request built from keywords; the successful answer as a map (tests and
        tools that speak the protocol loosely; daemons use ``ask``)."""
        request = protocol.encode_message(protocol.request(op, **fields))
        return protocol.check_response(await self._round_trip(op, request, channel, timeout))

    async def _round_trip(
        self, op: str, request: bytes, channel: str, timeout: float
    ) -> dict[str, Any]:
        lock = self._locks.setdefault(channel, trio.Lock())
        async with lock:
            try:
                with trio.fail_after(timeout):
                    payload = await self._exchange(channel, request, timeout)
            except trio.TooSlowError as exc:
                await self._drop(channel)
                raise NetworkError(f"{op} to {self.peer_id}: no answer in {timeout} s") from exc
            except (NetworkError, ProtocolError):
                await self._drop(channel)
                raise
            except trio.Cancelled:
                await self._drop(channel)
                raise
            except Exception as exc:
                await self._drop(channel)
                raise NetworkError(f"{op} to {self.peer_id}: {type(exc).__name__}: {exc}") from exc
        return decode(payload)

    async def _exchange(self, channel: str, request: bytes, timeout: float) -> bytes:
        """Send ``request`` on the channel's stream and return the answer's payload.

        A stream kept from an earlier call may have been closed by the peer in the meantime
        (servers reset streams idle for minutes). If it fails before any byte of the answer
        arrived, the request goes once more on a fresh stream. A server that cut the stream
        for idleness never read the request, so this repeats nothing; in the rare other case
        the hub's replay rules refuse a repeated submission rather than apply it twice.
        """
        stream = self._streams.get(channel)
        if stream is not None:
            try:
                return await _send_and_receive(stream, request)
            except StreamClosed as exc:
                if not exc.between_frames:
                    raise
            except ProtocolError:
                raise  # an oversized frame: sending it again would not help
            except Exception as exc:  # libp2p's StreamReset/StreamClosed from the write
                log.debug("%s: write on the %s stream failed: %s", self, channel, exc)
            log.debug("%s: the %s stream was closed by the peer; reopening it", self, channel)
            await self._drop(channel)
        stream = await self._open(channel, timeout)
        return await _send_and_receive(stream, request)

    async def _open(self, channel: str, timeout: float) -> Any:
        """A new stream on the channel, re-dialing once over a connection that went stale.

        After the peer restarts, libp2p may still list the dead connection: ``connect``
        then sees the peer as connected and ``new_stream`` fails ("No valid connections
        available"). Closing what is left of it and dialing again reaches the new process;
        a failure after that is ``PeerUnreachable`` (libp2p's own exceptions never leak).
        """
        for attempt in (1, 2):
            await self.connect(timeout)
            try:
                stream = await self.host.new_stream(self.peer_id, [PROTOCOL])
            except trio.Cancelled:
                raise
            except Exception as exc:
                if attempt == 2:
                    raise PeerUnreachable(
                        f"cannot open a stream to peer {self.peer_id}: {type(exc).__name__}: {exc}",
                        "a connection opened but no stream could be started on it",
                    ) from exc
                log.debug("%s: no stream over the open connection (%s); re-dialing", self, exc)
                with trio.CancelScope(shield=True), contextlib.suppress(Exception):
                    with trio.move_on_after(2):
                        await self.host.disconnect(self.peer_id)
                continue
            self._streams[channel] = stream
            return stream
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _drop(self, channel: str) -> None:
        stream = self._streams.pop(channel, None)
        if stream is not None:
            with trio.CancelScope(shield=True):
                await reset_quietly(stream)

    async def close(self) -> None:
        for channel in list(self._streams):
            await self._drop(channel)
