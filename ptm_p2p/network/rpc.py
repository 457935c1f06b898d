"""Request/response over libp2p streams: a server that never dies of a bad message, a client.

Server: one handler for PROTOCOL_ID. Each inbound stream carries any number of
request → response exchanges in order (opening a stream per request would cost a multistream
negotiation each time; a connection costs ~250 ms in py-libp2p 0.8.1, a round trip on an
open stream ~0.5 ms). A malformed request gets an error response and a log line; an
oversized frame gets an error response and a reset, since the stream cannot be resynchronised.
No exception from a handler ever reaches libp2p.

Client: ``PeerClient`` keeps one stream per *channel* to one peer (the long-poll ``wait`` uses
its own channel so it never blocks ordinary requests), re-dials on failure, and clears
libp2p's 60-second dial blacklist before each dial so a restarted peer is reachable at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import multiaddr
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from ptm_p2p.errors import NetworkError, ProtocolError, PtmError
from ptm_p2p.network import protocol
from ptm_p2p.network.framing import (
    MAX_FRAME,
    FrameTooLarge,
    StreamClosed,
    decode,
    encode,
    read_frame,
    write_frame,
)

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any], ID], Awaitable[dict[str, Any]]]
PROTOCOL = TProtocol(protocol.PROTOCOL_ID)


class RpcServer:
    """Serve the sync protocol on ``host`` with ``handler(op, fields, peer_id) -> response``."""

    def __init__(self, host: Any, handler: Handler, max_frame: int = MAX_FRAME) -> None:
        self.host = host
        self.handler = handler
        self.max_frame = max_frame
        self.bad_requests = 0

    def install(self) -> None:
        self.host.set_stream_handler(PROTOCOL, self._serve_stream)

    async def _serve_stream(self, stream: Any) -> None:
        try:
            peer = stream.muxed_conn.peer_id
        except Exception:
            peer = None
        try:
            while True:
                try:
                    payload = await read_frame(stream, self.max_frame)
                except StreamClosed:
                    return
                except FrameTooLarge as exc:
                    self.bad_requests += 1
                    log.warning("peer %s: %s; resetting the stream", peer, exc)
                    await _send_quietly(stream, protocol.error(protocol.BAD_REQUEST, str(exc)))
                    await _reset_quietly(stream)
                    return
                response = await self._answer(payload, peer)
                await write_frame(stream, encode(response), self.max_frame)
        except StreamClosed:
            return
        except trio.Cancelled:
            raise
        except Exception as exc:  # the stream broke under us: drop it, keep the daemon
            log.info("peer %s: stream dropped: %s: %s", peer, type(exc).__name__, exc)
            await _reset_quietly(stream)
        finally:
            await _close_quietly(stream)

    async def _answer(self, payload: bytes, peer: Any) -> dict[str, Any]:
        op = "?"
        try:
            op, fields = protocol.validate_request(decode(payload))
            return await self.handler(op, fields, peer)
        except ProtocolError as exc:
            self.bad_requests += 1
            log.warning("peer %s: bad request (%s): %s", peer, op, exc)
            code = protocol.UNKNOWN_OP if exc.detail == protocol.UNKNOWN_OP else "bad-request"
            return protocol.error(code, str(exc))
        except PtmError as exc:
            log.info("peer %s: %s refused: %s", peer, op, exc)
            return protocol.error(protocol.REFUSED, str(exc))
        except trio.Cancelled:
            raise
        except Exception:  # a bug must cost one request, not the daemon
            # The traceback goes to our log; the peer gets a clear line, not our internals.
            log.exception("peer %s: internal error answering %s", peer, op)
            return protocol.error(
                protocol.INTERNAL,
                f"{op}: this peer hit an internal error answering the request; its operator "
                "will find the details in the daemon's log",
            )


async def _send_quietly(stream: Any, message: dict[str, Any]) -> None:
    try:
        with trio.move_on_after(2):
            await write_frame(stream, encode(message))
    except Exception:
        pass


async def _reset_quietly(stream: Any) -> None:
    try:
        with trio.move_on_after(2):
            await stream.reset()
    except Exception:
        pass


async def _close_quietly(stream: Any) -> None:
    try:
        with trio.move_on_after(2):
            await stream.close()
    except Exception:
        pass


class PeerUnreachable(NetworkError):
    """No connection to the peer could be opened; ``why`` says so in a few plain words."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


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

    async def call(
        self, op: str, *, channel: str = "main", timeout: float = 30.0, **fields: Any
    ) -> dict[str, Any]:
        """Send one request and return the successful response (``RemoteError`` otherwise)."""
        lock = self._locks.setdefault(channel, trio.Lock())
        async with lock:
            try:
                with trio.fail_after(timeout):
                    stream = self._streams.get(channel)
                    if stream is None:
                        await self.connect(timeout)
                        stream = await self.host.new_stream(self.peer_id, [PROTOCOL])
                        self._streams[channel] = stream
                    await write_frame(stream, encode(protocol.request(op, **fields)))
                    payload = await read_frame(stream)
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
        return protocol.check_response(decode(payload))

    async def _drop(self, channel: str) -> None:
        stream = self._streams.pop(channel, None)
        if stream is not None:
            with trio.CancelScope(shield=True):
                await _reset_quietly(stream)

    async def close(self) -> None:
        for channel in list(self._streams):
            await self._drop(channel)
