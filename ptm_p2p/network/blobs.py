"""``/ptm/blob/1.0.0``: content-addressed blobs moved over their own libp2p streams.

Payloads of any size travel outside the log (issue 14, FORMAT.md "Blobs"): a site uploads
the ciphertext of an answer to the hub, a researcher downloads it; the entry carries only
``blob = SHA-256(ciphertext)`` and the size. The sync protocol's frames (``rpc.py``) are
bounded at 8 MiB and carry one message at a time; a blob of a gigabyte must instead stream,
resume where a cut connection left it, and be verified at the end. So each transfer opens a
dedicated stream (Yamux allows one writer per stream; a stream per transfer also keeps a big
upload from delaying a site's ordinary requests) and speaks:

    client -> server   one frame: {"op": "stat"|"put"|"get", "blob": bin32, "size", "offset"}
    server -> client   one frame: {"ok": true, ...} or {"ok": false, "error", "message"}

* STAT: ``have`` (the hub holds the blob), ``size`` (its size, when held) and ``offset`` (how
  many bytes of it *this* uploader's unfinished upload holds: where to resume).
* PUT ``size`` from ``offset``: the server checks membership, size limit and quota, answers
  ``offset`` (or ``stored`` when it already holds the blob), then reads exactly
  ``size - offset`` raw bytes and answers a last frame: ``stored`` once the SHA-256 matched and
  the blob is on disk, or the error. A stream cut early keeps what arrived for a resume.
* GET from ``offset``: the server answers ``size``, then writes the raw bytes from ``offset`` to
  the end and closes the stream.

Raw bytes go in writes of ``CHUNK`` (1 MiB), the size at which one py-libp2p stream reaches
its full rate (DESIGN.md). Only admitted members may PUT or GET: a libp2p peer id is derived
from the same Ed25519 seed as the ledger key (``host.py``), so the server reads the member's
key out of the connection's authenticated peer id and asks the ledger; a stranger gets a
clear refusal and nothing else.

Client side: ``put_blob`` and ``get_blob``/``get_blob_to_file`` resume after a broken stream
(asking the server where it stands), retry a few times with back-off, and verify SHA-256.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO, Literal, Protocol

import msgspec
import multiaddr
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from ptm_p2p.errors import (
    BlobBusy,
    BlobError,
    BlobMismatch,
    BlobRefused,
    NetworkError,
    PeerUnreachable,
    ProtocolError,
    PtmError,
    RemoteError,
    StreamClosed,
)
from ptm_p2p.network import protocol
from ptm_p2p.network.framing import read_frame, write_frame
from ptm_p2p.network.host import public_key_of
from ptm_p2p.network.rpc import (
    LogLimiter,
    PeerClient,
    clip,
    close_quietly,
    reset_quietly,
    stream_peer,
)

log = logging.getLogger(__name__)

PROTOCOL_ID = "/ptm/blob/1.0.0"
PROTOCOL = TProtocol(PROTOCOL_ID)
CHUNK = 1024 * 1024
# The control frames are tiny; a peer announcing more is not speaking this protocol.
MAX_CONTROL_FRAME = 4096
# A transfer on which no byte moves for this long is given up (the server keeps the part).
STALL_TIMEOUT_S = 30.0
# Transfers served at once, per peer and in all (each holds a stream, a file and a task).
MAX_TRANSFERS_PER_PEER = 8
MAX_TRANSFERS = 64
NON_MEMBER_READ_S = 2.0  # how long a non-member's request is waited for, to refuse it
# Client retries after a broken transfer: ATTEMPTS tries in all, back-off doubling from
# BACKOFF_S to BACKOFF_MAX_S with jitter (a hub restart takes a few seconds).
ATTEMPTS = 5
BACKOFF_S = 0.5
BACKOFF_MAX_S = 8.0
MISMATCH = "mismatch"  # error code: the bytes do not hash to the blob id

Count = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
BlobId = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]


class BlobRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    op: Literal["stat", "put", "get"]
    blob: BlobId
    size: Count = 0
    offset: Count = 0


class BlobReply(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    ok: bool = True
    have: bool = False
    size: Count = 0
    offset: Count = 0
    stored: bool = False


@dataclass
class Transfer:
    """What one ``put_blob``/``get_blob`` did: bytes moved over the network, where it
    resumed from (the last resume), and how many streams it took."""

    size: int = 0
    sent: int = 0  # payload bytes written (put) or received (get), all attempts together
    resumed_from: int = 0
    attempts: int = 0
    already_stored: bool = False
    seconds: float = 0.0


class BlobStoreLike(Protocol):
    """What the server needs of the hub's store (``ptm_p2p.hub.blob_store.BlobStore``)."""

    def size_of(self, blob: bytes) -> int | None: ...

    def partial(self, owner: bytes, blob: bytes) -> int: ...

    def check_put(self, owner: bytes, blob: bytes, size: int, offset: int) -> None: ...

    def open_part(self, owner: bytes, blob: bytes, size: int, offset: int) -> Any: ...

    def open_blob(self, blob: bytes) -> tuple[BinaryIO, int]: ...


# --- server ---------------------------------------------------------------------------------


class Gathered:
    """Received chunks gathered to about ``CHUNK``, then written in a worker thread (writing
    and hashing release the GIL), so libp2p's reader task goes on receiving meanwhile."""

    def __init__(self, write: Callable[[bytes], Any]) -> None:
        self.write = write
        self.pending = bytearray()

    async def add(self, chunk: bytes, last: bool) -> None:
        self.pending += chunk
        if len(self.pending) >= CHUNK or last:
            data, self.pending = bytes(self.pending), bytearray()
            await trio.to_thread.run_sync(self.write, data)

    def flush(self) -> None:
        """Write what is left now (on the way out: what arrived counts for a resume)."""
        if self.pending:
            data, self.pending = bytes(self.pending), bytearray()
            self.write(data)


class BlobServer:
    """Serve ``/ptm/blob/1.0.0`` from ``store`` to peers whose key ``is_member`` accepts."""

    def __init__(
        self,
        host: Any,
        store: BlobStoreLike,
        is_member: Callable[[bytes], bool],
        stall_timeout: float = STALL_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.store = store
        self.is_member = is_member
        self.stall_timeout = stall_timeout
        self.limiter = LogLimiter()
        self.active: dict[str, int] = {}
        self.refused = 0
        self.received = 0  # payload bytes received by PUTs (all streams, for tests and status)
        self.served = 0

    def install(self) -> None:
        self.host.set_stream_handler(PROTOCOL, self._serve)

    async def _serve(self, stream: Any) -> None:
        peer = stream_peer(stream)
        key = str(peer)
        owner = public_key_of(peer) if peer is not None else None
        if owner is None or not self.is_member(owner):
            # Refused before taking a transfer slot, so keys that were never admitted (they
            # cost nothing to make) cannot hold every slot and starve the members.
            await self._refuse_non_member(stream, peer)
            return
        if self.active.get(key, 0) >= MAX_TRANSFERS_PER_PEER or sum(self.active.values()) >= (
            MAX_TRANSFERS
        ):
            await _answer(
                stream,
                protocol.error(
                    protocol.UNAVAILABLE, "too many blob transfers at once; try again shortly"
                ),
            )
            await reset_quietly(stream)
            return
        self.active[key] = self.active.get(key, 0) + 1
        try:
            await self._serve_one(stream, peer)
        except trio.Cancelled:
            raise
        except (StreamClosed, trio.TooSlowError) as exc:  # the peer went away or stalled
            self.limiter.log(
                log, logging.INFO, "dropped", "peer %s: blob transfer dropped: %s",
                peer, clip(exc),
            )  # fmt: skip
            await reset_quietly(stream)
        except OSError as exc:  # our own disk: the peer is told, the operator reads the log
            self.limiter.log(
                log, logging.ERROR, "disk", "blob store: %s: %s", type(exc).__name__, exc
            )
            await _answer_quietly(
                stream,
                protocol.error(
                    protocol.UNAVAILABLE,
                    "the hub cannot write its blob store right now (a local fault of the hub, "
                    "in its log); try again later",
                ),
            )
            await reset_quietly(stream)
        except Exception as exc:  # a broken stream (libp2p errors) or a bug: one transfer
            self.limiter.log(
                log,
                logging.INFO,
                "dropped",
                "peer %s: blob transfer dropped: %s: %s",
                peer,
                type(exc).__name__,
                clip(exc),
            )
            await reset_quietly(stream)
        finally:
            left = self.active.get(key, 1) - 1
            if left > 0:
                self.active[key] = left
            else:
                self.active.pop(key, None)
            await close_quietly(stream)

    async def _refuse_non_member(self, stream: Any, peer: Any) -> None:
        answered = False
        try:
            asked = False
            with trio.move_on_after(NON_MEMBER_READ_S):
                await read_frame(stream, MAX_CONTROL_FRAME)  # so the refusal is read as one
                asked = True
            self.refused += 1
            self.limiter.log(
                log, logging.INFO, "non-member", "peer %s: blob transfer refused: not a member",
                peer,
            )  # fmt: skip
            if asked:
                await _answer(
                    stream,
                    protocol.error(
                        protocol.REFUSED,
                        f"peer {peer} is not an admitted member of this collaboration; only "
                        "members may store or fetch blobs (ask the collaboration's admin to "
                        "admit your key)",
                    ),
                )
                answered = True
        except Exception:  # a broken stream: nothing to tell
            pass
        finally:
            # Closed after an answer (a reset could drop it before the peer reads it);
            # reset when the peer sent nothing in time.
            await (close_quietly(stream) if answered else reset_quietly(stream))

    async def _serve_one(self, stream: Any, peer: Any) -> None:
        with trio.fail_after(self.stall_timeout):
            raw = await read_frame(stream, MAX_CONTROL_FRAME)
        try:
            request = msgspec.msgpack.decode(raw, type=BlobRequest)
        except msgspec.DecodeError as exc:
            await _answer(stream, protocol.error(protocol.BAD_REQUEST, f"bad blob request: {exc}"))
            return
        owner = public_key_of(peer) if peer is not None else None
        if owner is None or not self.is_member(owner):
            self.refused += 1
            self.limiter.log(
                log, logging.INFO, "non-member", "peer %s: blob %s refused: not a member",
                peer, request.op,
            )  # fmt: skip
            await _answer(
                stream,
                protocol.error(
                    protocol.REFUSED,
                    f"peer {peer} is not an admitted member of this collaboration; only members "
                    "may store or fetch blobs (ask the collaboration's admin to admit your key)",
                ),
            )
            return
        try:
            if request.op == "stat":
                await self._stat(stream, owner, request)
            elif request.op == "put":
                await self._put(stream, owner, request)
            else:
                await self._get(stream, request)
        except BlobMismatch as exc:
            await _answer(stream, protocol.error(MISMATCH, str(exc)))
        except BlobBusy as exc:
            await _answer(stream, protocol.error(protocol.UNAVAILABLE, str(exc)))
        except BlobRefused as exc:
            self.refused += 1
            await _answer(stream, protocol.error(protocol.REFUSED, str(exc)))
        except BlobError as exc:
            await _answer(stream, protocol.error(protocol.NOT_FOUND, str(exc)))

    async def _stat(self, stream: Any, owner: bytes, request: BlobRequest) -> None:
        size = self.store.size_of(request.blob)
        partial = self.store.partial(owner, request.blob)
        reply = BlobReply(have=size is not None, size=size or 0, offset=partial)
        await _answer(stream, reply)

    async def _put(self, stream: Any, owner: bytes, request: BlobRequest) -> None:
        blob, size, offset = request.blob, request.size, request.offset
        held = self.store.size_of(blob)
        if held is not None:  # content-addressed: the same bytes are already here
            await _answer(stream, BlobReply(have=True, size=held, offset=held, stored=True))
            return
        self.store.check_put(owner, blob, size, offset)
        part = self.store.open_part(owner, blob, size, offset)
        try:
            await trio.to_thread.run_sync(part.open)
            await _answer(stream, BlobReply(size=size, offset=offset))
            if not await self._receive(stream, part, size):
                return  # the uploader went away or stalled: the part keeps what arrived
            await trio.to_thread.run_sync(part.verify)  # hash check and fsync, off the loop
            stored = part.commit()
        finally:
            part.close()
        if stored:
            log.info("stored blob %s… (%d bytes) from %s", blob.hex()[:16], size, owner.hex()[:8])
        await _answer(stream, BlobReply(have=True, size=size, offset=size, stored=True))

    async def _receive(self, stream: Any, part: Any, size: int) -> bool:
        """Read the upload's bytes into ``part``; False if the stream ended or stalled first.

        Bytes are gathered to about ``CHUNK`` and written and hashed in a worker thread
        (both release the GIL), so a large upload does not hold up the hub's event loop
        (sequencing, checkpoints) for the few milliseconds per MiB hashing takes. Whatever
        arrived is written before returning, so a resume starts after it.
        """
        gathered = Gathered(part.write)
        done = part.length
        try:
            while done < size:
                with trio.move_on_after(self.stall_timeout) as stalled:
                    chunk = await stream.read(min(CHUNK, size - done))
                if stalled.cancelled_caught:
                    log.info("upload of blob %s… stalled; keeping %d bytes for a resume",
                             part.blob.hex()[:16], done)  # fmt: skip
                    await reset_quietly(stream)
                    return False
                if not chunk:
                    return False
                done += len(chunk)
                self.received += len(chunk)
                await gathered.add(chunk, last=done == size)
            return True
        finally:
            gathered.flush()

    async def _get(self, stream: Any, request: BlobRequest) -> None:
        file, size = self.store.open_blob(request.blob)
        with file:
            if request.offset > size:
                raise BlobError(f"offset {request.offset:,} is past the blob's end ({size:,})")
            await _answer(stream, BlobReply(have=True, size=size, offset=request.offset))
            file.seek(request.offset)
            while True:
                chunk = await trio.to_thread.run_sync(file.read, CHUNK)
                if not chunk:
                    break
                with trio.fail_after(self.stall_timeout):
                    await stream.write(chunk)
                self.served += len(chunk)
        await stream.close()


async def _answer(stream: Any, message: BlobReply | dict[str, Any]) -> None:
    await write_frame(stream, msgspec.msgpack.encode(message), MAX_CONTROL_FRAME)


async def _answer_quietly(stream: Any, message: dict[str, Any]) -> None:
    with contextlib.suppress(Exception), trio.move_on_after(2):
        await _answer(stream, message)


# --- client ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _one_use(stream: Any) -> AsyncIterator[Any]:
    """Close ``stream`` once the block is done with it; reset it instead when the block
    failed or was cancelled, so the peer never reads a half-done transfer as complete."""
    try:
        yield stream
    except BaseException:
        with trio.CancelScope(shield=True):
            await reset_quietly(stream)
        raise
    await close_quietly(stream)


class _Retry(Exception):
    """A transfer broke in a way a new stream may get past."""


def _peer_name(peer_id: ID) -> str:
    return f"peer {peer_id}"


async def _open(host: Any, peer_id: ID, addrs: Sequence[multiaddr.Multiaddr]) -> Any:
    await PeerClient(host, peer_id, addrs).connect()
    return await host.new_stream(peer_id, [PROTOCOL])


async def _request(stream: Any, request: BlobRequest, who: str) -> BlobReply:
    await write_frame(stream, msgspec.msgpack.encode(request), MAX_CONTROL_FRAME)
    return await _reply(stream, request.op, who)


async def _reply(stream: Any, op: str, who: str) -> BlobReply:
    with trio.fail_after(STALL_TIMEOUT_S):
        raw = await read_frame(stream, MAX_CONTROL_FRAME)
    try:
        message = msgspec.msgpack.decode(raw)
        if isinstance(message, dict) and message.get("ok") is False:
            protocol.check_response(message)
        return msgspec.msgpack.decode(raw, type=BlobReply)
    except RemoteError as exc:
        if exc.code == protocol.REFUSED:
            raise BlobRefused(f"blob {op} refused by {who}: {exc.reason}") from None
        if exc.code == MISMATCH:
            raise BlobMismatch(f"blob {op} to {who}: {exc.reason}") from None
        if exc.code == protocol.UNAVAILABLE:
            raise _Retry(f"{who} is busy: {exc.reason}") from None
        raise BlobError(f"blob {op} at {who} failed: {exc.reason}") from None
    except (msgspec.DecodeError, ProtocolError) as exc:
        raise BlobError(f"{who} answered a blob {op} with a malformed message: {exc}") from None


async def _with_retries(
    what: str, who: str, attempts: int, once: Callable[[int], Any], stats: Transfer
) -> None:
    """Run ``once(attempt)`` until it returns; retry broken transfers with back-off."""
    delay = BACKOFF_S
    last: BaseException | None = None
    for attempt in range(attempts):
        stats.attempts = attempt + 1
        try:
            await once(attempt)
            return
        except (_Retry, NetworkError, trio.TooSlowError) as exc:
            last = exc
        except (PtmError, OSError):
            raise  # a refusal, a mismatch, a missing blob, our own disk: retrying won't help
        except Exception as exc:  # libp2p's StreamReset/StreamEOF/SwarmException…
            last = exc
        if attempt + 1 < attempts:
            log.info("%s via %s broke (%s); retrying in %.1f s", what, who, clip(last), delay)
            await trio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, BACKOFF_MAX_S)
    if isinstance(last, PeerUnreachable):
        raise last
    raise BlobError(
        f"{what} via {who} failed after {attempts} attempts: {type(last).__name__}: {clip(last)}"
    ) from last


def _blob_id(value: bytes | None, computed: bytes | None) -> bytes:
    if value is None:
        assert computed is not None
        return computed
    if len(value) != 32:
        raise BlobError(f"a blob id is 32 bytes (SHA-256), got {len(value)}")
    return bytes(value)


async def put_blob(
    host: Any,
    peer_id: ID,
    addrs: Sequence[multiaddr.Multiaddr],
    source: bytes | Path,
    blob_id: bytes | None = None,
    *,
    attempts: int = ATTEMPTS,
    progress: Callable[[int, int], None] | None = None,
) -> Transfer:
    """Upload ``source`` (bytes, or a file's path) as ``blob_id`` to the peer (the hub).

    ``blob_id`` is SHA-256(source); given, it is trusted as the id (the server checks it and
    refuses, storing nothing, when the bytes do not match: ``BlobMismatch``); omitted, it is
    computed. Resumes from the server's partial offset after a broken stream, up to
    ``attempts`` streams with back-off. ``progress(done, size)`` is called as bytes go.
    Raises ``BlobRefused`` (not a member, quota, size), ``BlobMismatch``, ``BlobError`` or
    ``PeerUnreachable``.
    """
    data: bytes | None = None
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        size = len(data)
        computed = None if blob_id is not None else hashlib.sha256(data).digest()
    else:
        size = Path(source).stat().st_size
        computed = None if blob_id is not None else await trio.to_thread.run_sync(
            _hash_file, Path(source)
        )  # fmt: skip
    blob = _blob_id(blob_id, computed)
    who = _peer_name(peer_id)
    stats = Transfer(size=size)
    started = time.perf_counter()

    async def once(attempt: int) -> None:
        stream = await _open(host, peer_id, addrs)
        try:
            stat = await _request(stream, BlobRequest(op="stat", blob=blob), who)
        finally:
            await close_quietly(stream)
        if stat.have:
            stats.already_stored = True
            return
        offset = min(stat.offset, size)
        async with _one_use(await _open(host, peer_id, addrs)) as stream:
            reply = await _request(
                stream, BlobRequest(op="put", blob=blob, size=size, offset=offset), who
            )
            if reply.stored:
                stats.already_stored = True
                return
            offset = reply.offset
            stats.resumed_from = offset
            await _send_from(stream, data, source, offset, size, stats, progress)
            final = await _reply(stream, "put", who)
            if not final.stored:
                raise _Retry(f"{who} did not confirm the blob was stored")

    await _with_retries(f"upload of blob {blob.hex()[:16]}…", who, attempts, once, stats)
    stats.seconds = time.perf_counter() - started
    return stats


async def _send_from(
    stream: Any,
    data: bytes | None,
    source: bytes | Path,
    offset: int,
    size: int,
    stats: Transfer,
    progress: Callable[[int, int], None] | None,
) -> None:
    if data is not None:
        view = memoryview(data)
        for start in range(offset, size, CHUNK):
            chunk = bytes(view[start : start + CHUNK])
            with trio.fail_after(STALL_TIMEOUT_S):
                await stream.write(chunk)
            stats.sent += len(chunk)
            if progress is not None:
                progress(start + len(chunk), size)
        return
    assert isinstance(source, Path | str)
    with open(source, "rb") as file:
        file.seek(offset)
        done = offset
        while done < size:
            chunk = file.read(min(CHUNK, size - done))
            if not chunk:
                raise BlobError(f"{source} became shorter while it was being uploaded")
            with trio.fail_after(STALL_TIMEOUT_S):
                await stream.write(chunk)
            done += len(chunk)
            stats.sent += len(chunk)
            if progress is not None:
                progress(done, size)


class _MemorySink:
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.hasher = hashlib.sha256()

    @property
    def length(self) -> int:
        return len(self.buffer)

    def add(self, chunk: bytes) -> None:
        self.buffer += chunk
        self.hasher.update(chunk)


class _FileSink:
    """Writes to ``PATH.part``, resuming from its length; renamed to PATH once verified."""

    def __init__(self, path: Path) -> None:
        self.final = path
        self.path = path.with_name(path.name + ".part")
        self.hasher = hashlib.sha256()
        self.file = open(self.path, "a+b")  # noqa: SIM115 - closed by close()
        self.file.seek(0)
        while chunk := self.file.read(CHUNK):
            self.hasher.update(chunk)
        self.length = self.file.tell()

    def add(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.hasher.update(chunk)
        self.length += len(chunk)

    def restart(self) -> None:
        self.file.truncate(0)
        self.file.seek(0)
        self.hasher = hashlib.sha256()
        self.length = 0

    def close(self) -> None:
        self.file.close()


async def _fetch(
    host: Any,
    peer_id: ID,
    addrs: Sequence[multiaddr.Multiaddr],
    blob: bytes,
    size: int | None,
    sink: _MemorySink | _FileSink,
    attempts: int,
    progress: Callable[[int, int], None] | None,
) -> Transfer:
    who = _peer_name(peer_id)
    stats = Transfer(size=size or 0)
    started = time.perf_counter()
    if size is not None and sink.length > size and isinstance(sink, _FileSink):
        sink.restart()  # a stale part of some other, larger download

    async def once(attempt: int) -> None:
        async with _one_use(await _open(host, peer_id, addrs)) as stream:
            offset = sink.length
            reply = await _request(stream, BlobRequest(op="get", blob=blob, offset=offset), who)
            if size is not None and reply.size != size:
                raise BlobMismatch(
                    f"{who} holds blob {blob.hex()[:16]}… with {reply.size:,} bytes, but the "
                    f"result entry says {size:,}: the hub's copy is not the one the site signed"
                )
            stats.size = total = reply.size
            stats.resumed_from = offset
            gathered = Gathered(sink.add)  # appended and hashed in a worker thread
            done = offset
            try:
                while done < total:
                    with trio.fail_after(STALL_TIMEOUT_S):
                        chunk = await stream.read(min(CHUNK, total - done))
                    if not chunk:
                        raise StreamClosed(
                            f"{who} ended the blob stream at byte {done:,} of {total:,}"
                        )
                    done += len(chunk)
                    stats.sent += len(chunk)
                    await gathered.add(chunk, last=done == total)
                    if progress is not None:
                        progress(done, total)
            finally:
                gathered.flush()  # what arrived counts for the resume

    await _with_retries(f"download of blob {blob.hex()[:16]}…", who, attempts, once, stats)
    digest = sink.hasher.digest()
    if digest != blob:
        raise BlobMismatch(
            f"blob {blob.hex()[:16]}… from {who} hashes to {digest.hex()[:16]}…: the bytes "
            "it served are not the blob (a damaged or dishonest copy); nothing was accepted"
        )
    stats.seconds = time.perf_counter() - started
    return stats


async def get_blob(
    host: Any,
    peer_id: ID,
    addrs: Sequence[multiaddr.Multiaddr],
    blob_id: bytes,
    size: int | None = None,
    *,
    attempts: int = ATTEMPTS,
    progress: Callable[[int, int], None] | None = None,
) -> bytes:
    """The blob's bytes, fetched from the peer and verified against ``blob_id`` (SHA-256).

    ``size`` (from the signed result entry) is checked against what the peer reports.
    Resumes after a broken stream from the bytes already received. Raises ``BlobMismatch``
    (naming the peer) when the bytes do not hash to ``blob_id``, ``BlobRefused`` when the
    peer refuses, ``BlobError`` when the blob is not held or the transfer keeps failing.
    """
    sink = _MemorySink()
    await _fetch(host, peer_id, addrs, _blob_id(blob_id, None), size, sink, attempts, progress)
    return bytes(sink.buffer)


async def get_blob_to_file(
    host: Any,
    peer_id: ID,
    addrs: Sequence[multiaddr.Multiaddr],
    blob_id: bytes,
    path: Path,
    size: int | None = None,
    *,
    attempts: int = ATTEMPTS,
    progress: Callable[[int, int], None] | None = None,
) -> Transfer:
    """Fetch the blob into ``path`` (via ``path.part``, resumed if present; renamed once
    verified). A mismatch deletes the part and raises ``BlobMismatch`` naming the peer."""
    path = Path(path)
    sink = await trio.to_thread.run_sync(_FileSink, path)
    try:
        stats = await _fetch(
            host, peer_id, addrs, _blob_id(blob_id, None), size, sink, attempts, progress
        )
    except BlobMismatch:
        sink.close()
        sink.path.unlink(missing_ok=True)
        raise
    except BaseException:
        sink.close()
        raise
    sink.file.flush()
    os.fsync(sink.file.fileno())
    sink.close()
    os.replace(sink.path, path)
    return stats


async def stat_blob(
    host: Any, peer_id: ID, addrs: Sequence[multiaddr.Multiaddr], blob_id: bytes
) -> BlobReply:
    """The peer's STAT answer: ``have``, ``size``, and ``offset`` of our unfinished upload."""
    stream = await _open(host, peer_id, addrs)
    try:
        return await _request(stream, BlobRequest(op="stat", blob=blob_id), _peer_name(peer_id))
    finally:
        await close_quietly(stream)


def _hash_file(path: Path) -> bytes:
    hasher = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            hasher.update(chunk)
    return hasher.digest()


# FORMAT.md's names, over the ``PeerClient`` a site or a researcher's session already holds
# for the hub (the transfer opens its own streams on that client's connection).


async def put(client: PeerClient, blob_id: bytes, source: bytes | Path, **options: Any) -> Transfer:
    """``put_blob`` to the peer of ``client`` (the hub): ``await blobs.put(hub, blob, data)``."""
    return await put_blob(client.host, client.peer_id, client.addrs, source, blob_id, **options)


async def get(client: PeerClient, blob_id: bytes, size: int | None = None, **options: Any) -> bytes:
    """``get_blob`` from the peer of ``client``: ``await blobs.get(hub, blob, size)``."""
    return await get_blob(client.host, client.peer_id, client.addrs, blob_id, size, **options)


async def get_to_file(
    client: PeerClient, blob_id: bytes, path: Path, size: int | None = None, **options: Any
) -> Transfer:
    """``get_blob_to_file`` from the peer of ``client``."""
    return await get_blob_to_file(
        client.host, client.peer_id, client.addrs, blob_id, path, size, **options
    )


__all__ = [
    "CHUNK",
    "PROTOCOL_ID",
    "BlobReply",
    "BlobRequest",
    "BlobServer",
    "Transfer",
    "get",
    "get_blob",
    "get_blob_to_file",
    "get_to_file",
    "put",
    "put_blob",
    "stat_blob",
]
