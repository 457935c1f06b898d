"""Length-prefixed msgpack frames: the byte layer of the sync protocol, independent of libp2p.

A frame is a 4-byte big-endian length followed by that many bytes of msgpack. Works over any
object with ``async read(n) -> bytes`` (may return fewer bytes; ``b""`` at end of stream) and
``async write(data)``: a libp2p stream today, a TCP socket or a test pipe tomorrow.

Limits are checked *before* anything is allocated or decoded, so a hostile peer announcing a
4 GiB frame costs us four bytes of reading, not four gigabytes of memory.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Protocol

import msgpack
import trio

from ptm_p2p.errors import FrameTooLarge as FrameTooLarge
from ptm_p2p.errors import ProtocolError
from ptm_p2p.errors import StreamClosed as StreamClosed
from ptm_p2p.errors import StreamIdle as StreamIdle

HEADER = struct.Struct(">I")
# 8 MiB: large enough for a few thousand entries per response, small enough that a peer
# cannot make us buffer much. Entries responses are built to stay under RESPONSE_BUDGET.
MAX_FRAME = 8 * 1024 * 1024
RESPONSE_BUDGET = 4 * 1024 * 1024
# Once a frame's header has arrived, its body must follow within this time: a peer that
# announces a large frame and trickles it would otherwise pin a buffer and a task for ever.
# (Waiting for the *next* frame is bounded separately, by the server's idle timeout.)
BODY_TIMEOUT_S = 30.0


class ByteStream(Protocol):
    async def read(self, n: int | None = None) -> bytes: ...

    async def write(self, data: bytes) -> None: ...


async def read_exactly(stream: ByteStream, n: int, *, frame_started: bool = False) -> bytes:
    """Read exactly ``n`` bytes or raise ``StreamClosed``.

    ``frame_started`` says that earlier bytes of the same frame were already read, so that
    an end of stream here is reported as the middle of a frame.
    """
    chunks: list[bytes] = []
    remaining = n
    while remaining:
        try:
            chunk = await stream.read(remaining)
        except Exception as exc:  # libp2p raises StreamEOF/StreamReset/StreamError
            raise StreamClosed(
                f"stream closed while reading: {type(exc).__name__}",
                between_frames=not (chunks or frame_started),
            ) from exc
        if not chunk:
            between = not (chunks or frame_started)
            where = "between frames" if between else "in the middle of a frame"
            raise StreamClosed(f"stream ended {where}", between_frames=between)
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


async def read_frame(
    stream: ByteStream,
    max_size: int = MAX_FRAME,
    body_timeout: float = BODY_TIMEOUT_S,
    idle_timeout: float = math.inf,
) -> bytes:
    """One frame's payload bytes.

    ``StreamIdle`` if the frame's header is not complete within ``idle_timeout`` (by default
    a reader waits for ever), ``StreamClosed`` if the body is not complete within
    ``body_timeout`` of its header.
    """
    length = await read_header(stream, max_size, idle_timeout)
    return await read_body(stream, length, body_timeout)


async def read_header(
    stream: ByteStream, max_size: int = MAX_FRAME, idle_timeout: float = math.inf
) -> int:
    """The announced length of the next frame (checked against ``max_size``)."""
    header = b""
    with trio.move_on_after(idle_timeout):
        header = await read_exactly(stream, HEADER.size)
    if not header:
        raise StreamIdle(
            f"no frame started within {idle_timeout:g} s; giving up on the idle stream",
            between_frames=True,
        )
    (length,) = HEADER.unpack(header)
    if length > max_size:
        raise FrameTooLarge(f"frame of {length} bytes announced, limit is {max_size}")
    return int(length)


async def read_body(stream: ByteStream, length: int, body_timeout: float = BODY_TIMEOUT_S) -> bytes:
    """The ``length`` bytes of a frame whose header was read, within ``body_timeout``."""
    if length == 0:
        return b""
    with trio.move_on_after(body_timeout):
        return await read_exactly(stream, length, frame_started=True)
    raise StreamClosed(
        f"a {length}-byte frame did not arrive within {body_timeout:.0f} s of its header"
    )


class FrameBudget:
    """Bytes of frame bodies a server holds at once, in all and per peer.

    A frame is held from its header until its request is answered; a peer that announces
    large frames and sends them slowly (or never finishes) pins that memory for up to
    ``BODY_TIMEOUT_S`` per frame. Charging every large frame against a per-peer and a total
    budget bounds what any number of such frames can hold: a frame that does not fit is
    refused at its header, before one byte of its body is read. Small frames (ordinary
    requests) are not charged, so a flood of large ones never starves them; their memory is
    bounded by the streams a peer may keep open (``rpc.MAX_STREAMS_PER_PEER``).
    """

    def __init__(self, total: int, per_peer: int, free_below: int = 64 * 1024) -> None:
        self.total = total
        self.per_peer = per_peer
        self.free_below = free_below
        self.held = 0
        self.by_peer: dict[str, int] = {}

    def charge(self, length: int) -> int:
        return 0 if length < self.free_below else length

    def take(self, peer: str, length: int) -> bool:
        """Reserve ``charge(length)`` bytes for ``peer``; False if it does not fit."""
        cost = self.charge(length)
        if not cost:
            return True
        mine = self.by_peer.get(peer, 0)
        if mine + cost > self.per_peer or self.held + cost > self.total:
            return False
        self.by_peer[peer] = mine + cost
        self.held += cost
        return True

    def give(self, peer: str, length: int) -> None:
        cost = self.charge(length)
        if not cost:
            return
        self.held -= cost
        left = self.by_peer.get(peer, 0) - cost
        if left > 0:
            self.by_peer[peer] = left
        else:
            self.by_peer.pop(peer, None)


async def write_frame(stream: ByteStream, payload: bytes, max_size: int = MAX_FRAME) -> None:
    if len(payload) > max_size:
        raise FrameTooLarge(f"refusing to send a {len(payload)}-byte frame (limit {max_size})")
    await stream.write(HEADER.pack(len(payload)) + payload)


def encode(message: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb(message, use_bin_type=True)
    return data


def decode(payload: bytes) -> dict[str, Any]:
    """Decode one message: a msgpack map with string keys, else ``ProtocolError``."""
    try:
        # strict_map_key keeps keys to str/bytes; the limits stop a tiny frame from
        # declaring a billion-element array (msgpack's default limits follow buffer size).
        value = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            max_array_len=100_000,
            max_map_len=1_000,
        )
    except Exception as exc:  # msgpack raises many unrelated types (ValueError, ExtraData...)
        raise ProtocolError(f"message is not valid msgpack: {type(exc).__name__}") from exc
    if not isinstance(value, dict):
        raise ProtocolError(f"message must be a msgpack map, got {type(value).__name__}")
    return value
