"""In-process tests of the byte layers: frames, messages, frontier, invitation, Noise-only."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import PeerInfo
from request_fields import REQUEST_FIELDS

from ptm_p2p.errors import ConfigError, NetworkError, ProtocolError
from ptm_p2p.ledger import merkle
from ptm_p2p.ledger.crypto import Signer
from ptm_p2p.ledger.merkle import CompactRange
from ptm_p2p.network import protocol
from ptm_p2p.network.framing import (
    FrameTooLarge,
    StreamClosed,
    StreamIdle,
    decode,
    encode,
    read_frame,
    write_frame,
)
from ptm_p2p.network.host import free_port, listen_addr, make_host, peer_id_of, public_key_of
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.network.rpc import PeerClient, RpcServer


class Pipe:
    """An in-memory byte stream that hands out at most ``chunk`` bytes per read."""

    def __init__(self, data: bytes = b"", chunk: int = 3) -> None:
        self.data = bytearray(data)
        self.chunk = chunk

    async def read(self, n: int | None = None) -> bytes:
        size = min(n or self.chunk, self.chunk)
        out, self.data = bytes(self.data[:size]), self.data[size:]
        return out

    async def write(self, data: bytes) -> None:
        self.data += data


def test_frames_round_trip_across_short_reads() -> None:
    async def main() -> None:
        payload = os.urandom(1000)
        pipe = Pipe()
        for message in (b"", b"x", payload):
            await write_frame(pipe, message)
        assert [await read_frame(pipe) for _ in range(3)] == [b"", b"x", payload]
        assert decode(encode({"a": 1})) == {"a": 1}

    trio.run(main)


class Trickle(Pipe):
    """Sends a frame header announcing 100 bytes, then one byte and then nothing, for ever."""

    def __init__(self) -> None:
        super().__init__(b"\x00\x00\x00\x64" + b"a", chunk=4)

    async def read(self, n: int | None = None) -> bytes:
        if not self.data:
            await trio.sleep_forever()
        return await super().read(n)


def test_a_trickled_frame_body_is_given_up_on() -> None:
    async def main() -> None:
        with pytest.raises(StreamClosed, match="did not arrive within"):
            await read_frame(Trickle(), body_timeout=0.2)

    trio.run(main)


class Silent(Pipe):
    """A stream that stays open and never sends a byte."""

    async def read(self, n: int | None = None) -> bytes:
        await trio.sleep_forever()
        return b""


def test_an_idle_stream_is_given_up_on_and_told_apart_from_a_cut_frame() -> None:
    async def main() -> None:
        with pytest.raises(StreamIdle, match="no frame started within") as idle:
            await read_frame(Silent(), idle_timeout=0.2)
        assert idle.value.between_frames
        with pytest.raises(StreamClosed) as clean:
            await read_frame(Pipe(b""))
        assert clean.value.between_frames  # nothing of the answer came: safe to resend
        with pytest.raises(StreamClosed) as cut:
            await read_frame(Pipe(b"\x00\x00\x00\x10abc"))
        assert not cut.value.between_frames
        with pytest.raises(StreamClosed) as cut_header:
            await read_frame(Pipe(b"\x00\x00"))
        assert not cut_header.value.between_frames
        # Without an idle timeout a reader waits as long as it takes.
        assert await read_frame(Pipe(b"\x00\x00\x00\x01x")) == b"x"

    trio.run(main)


def test_oversized_and_truncated_frames_are_refused() -> None:
    async def main() -> None:
        with pytest.raises(FrameTooLarge):
            await read_frame(Pipe(b"\xff\xff\xff\xff"), max_size=1024)
        with pytest.raises(StreamClosed, match="middle"):
            await read_frame(Pipe(b"\x00\x00\x00\x10abc"))
        with pytest.raises(FrameTooLarge):
            await write_frame(Pipe(), b"x" * 2000, max_size=1024)

    trio.run(main)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoding_random_bytes_only_raises_protocol_error(data: bytes) -> None:
    try:
        message = decode(data)
    except ProtocolError:
        return
    with contextlib.suppress(ProtocolError):
        protocol.validate_request(message)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(protocol.OPS)),
    st.dictionaries(
        st.sampled_from([*REQUEST_FIELDS, "x"]),
        values,
        max_size=6,
    ),
)
def test_any_request_shape_is_validated_or_refused(op: str, fields: dict) -> None:
    message = decode(msgpack.packb({"v": 1, "op": op, **fields}, use_bin_type=True))
    try:
        got_op, got = protocol.validate_request(message)
    except ProtocolError:
        return
    assert got_op == op
    for value in got.values():
        assert not isinstance(value, bool)
        if isinstance(value, int):
            assert 0 <= value <= protocol.MAX_INT


def test_request_validation_examples() -> None:
    op, fields = protocol.validate_request(protocol.request("entries", start=0, end=5, old_size=0))
    assert (op, fields) == ("entries", {"start": 0, "end": 5, "old_size": 0})
    for bad in (
        {"v": 2, "op": "peers"},
        {"v": 1, "op": "nope"},
        {"v": 1, "op": "entries", "start": 0, "end": 1},
        {"v": 1, "op": "wait", "after": True, "timeout_ms": 5},
        {"v": 1, "op": "peers", "extra": 1},
    ):
        with pytest.raises(ProtocolError):
            protocol.validate_request(bad)
    with pytest.raises(protocol.RemoteError, match="refused"):
        protocol.check_response(protocol.error(protocol.REFUSED, "no"))


@given(st.lists(st.binary(max_size=8), max_size=70), st.integers(0, 70))
def test_frontier_matches_the_rfc_9162_root(leaves: list[bytes], cut: int) -> None:
    hashes = [merkle.leaf_hash(b) for b in leaves]
    frontier = CompactRange()
    frontier.extend(hashes[:cut])
    frontier.extend(hashes[cut:])
    assert frontier.root() == merkle.root(hashes)
    assert frontier.size == len(hashes)


def test_peer_id_is_the_ledger_key() -> None:
    signer = Signer.generate()
    host = make_host(signer.seed)
    assert host.get_id() == peer_id_of(signer.public_key)
    assert public_key_of(host.get_id()) == signer.public_key


def test_invitation_binds_address_to_key(tmp_path) -> None:
    hub = Signer.generate()
    addr = f"/ip4/127.0.0.1/tcp/4001/p2p/{peer_id_of(hub.public_key)}"
    Invitation(addr, hub.public_key, "x.example/log").save(tmp_path / "i.json")
    assert Invitation.load(tmp_path / "i.json").hub_key == hub.public_key
    with pytest.raises(ConfigError, match="does not belong"):
        Invitation(addr, Signer.generate().public_key, "x.example/log")


@pytest.mark.network
def test_rpc_round_trip_and_noise_only() -> None:
    """Two real hosts: requests work; a plaintext-only peer cannot even connect."""
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

    async def main() -> None:
        server_signer = Signer.generate()
        server = make_host(server_signer.seed)
        client_host = make_host(Signer.generate().seed)
        port = free_port()
        seen = []

        async def handler(request, peer):
            seen.append(peer)
            if request.op == "peers":
                return protocol.ok(peers=[])
            raise ProtocolError("not here")

        async with (
            server.run([listen_addr(port=port)]),
            client_host.run([listen_addr(port=free_port())]),
        ):
            RpcServer(server, handler).install()
            client = PeerClient(client_host, server.get_id(), [listen_addr(port=port)])
            assert (await client.call("peers"))["peers"] == []
            assert seen == [client_host.get_id()]  # the server knows who asked (Noise)
            with pytest.raises(protocol.RemoteError, match="bad-request"):
                await client.call("checkpoint")
            assert (await client.call("peers"))["ok"] is True  # the stream survived

            kp = create_new_key_pair()
            plain = new_host(key_pair=kp, sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(kp)})
            async with plain.run([listen_addr(port=free_port())]):
                intruder = PeerClient(plain, server.get_id(), [listen_addr(port=port)])
                with pytest.raises(NetworkError):
                    await intruder.call("peers", timeout=5)
            await client.close()

    trio.run(main)


async def _read_until_closed(stream: Any) -> None:
    """Return when the peer ends or resets ``stream`` (libp2p raises on a reset)."""
    try:
        while await stream.read(1024):
            pass
    except Exception:  # StreamReset / StreamEOF: the server gave up on the stream
        pass


@pytest.mark.network
def test_idle_streams_are_closed_and_clients_reopen_them_transparently() -> None:
    """Real hosts, a 1 s idle timeout: an idle stream is cut, everyone else is served, a
    long-poll longer than the idle timeout is not cut, and a client whose stream was cut
    gets its next answer without seeing an error."""

    async def main() -> None:
        server = make_host(Signer.generate().seed)
        idler_host = make_host(Signer.generate().seed)
        client_host = make_host(Signer.generate().seed)
        port = free_port()

        async def handler(request: protocol.Request, peer: Any) -> dict:
            if isinstance(request, protocol.WaitRequest):  # a long-poll outlasting the timeout
                await trio.sleep(request.timeout_ms / 1000)
            return protocol.ok(peers=[])

        async with (
            server.run([listen_addr(port=port)]),
            idler_host.run([listen_addr(port=free_port())]),
            client_host.run([listen_addr(port=free_port())]),
        ):
            rpc = RpcServer(server, handler, idle_timeout=1.0)
            rpc.install()
            server_addrs = [listen_addr(port=port)]
            await idler_host.connect(PeerInfo(server.get_id(), server_addrs))
            idle = await idler_host.new_stream(server.get_id(), [TProtocol(protocol.PROTOCOL_ID)])
            client = PeerClient(client_host, server.get_id(), server_addrs)
            answered = 0
            started = trio.current_time()
            async with trio.open_nursery() as nursery:

                async def keep_asking() -> None:
                    nonlocal answered
                    # Before, while and after the idler is cut; busy streams are never cut.
                    while rpc.idle_closed == 0 or answered < 12:
                        assert (await client.call("peers", timeout=5))["ok"] is True
                        answered += 1
                        await trio.sleep(0.1)

                nursery.start_soon(keep_asking)
                with trio.fail_after(10):
                    await _read_until_closed(idle)
                cut_after = trio.current_time() - started
            assert 0.9 <= cut_after < 5, cut_after
            assert rpc.idle_closed == 1  # the idler's stream only

            # A long-poll longer than the idle timeout runs inside a request: never cut. (The
            # stream is new, so a cut would surface as an error rather than a resend.)
            resp = await client.call("wait", channel="wait", after=0, timeout_ms=1500, timeout=10)
            assert resp["ok"] is True

            # Both of the client's streams sit idle past the timeout and are cut (the main
            # one possibly during the long-poll)...
            before = dict(client._streams)
            with trio.fail_after(10):
                while rpc.idle_closed < 3:
                    await trio.sleep(0.05)
            # ...yet the next calls on them are answered, on fresh streams, with no error.
            assert (await client.call("peers", timeout=5))["ok"] is True
            assert (await client.call("wait", channel="wait", after=0, timeout_ms=0))["ok"]
            assert client._streams["main"] is not before["main"]
            assert client._streams["wait"] is not before["wait"]
            assert rpc.bad_requests == 0
            await client.close()

    trio.run(main)
