"""Typed wire messages: every request class round-trips, and malformed answers are refused."""

from __future__ import annotations

import msgspec
import pytest

from ptm_p2p.errors import EXIT_REFUSED, NotAMember, ProtocolError, RemoteError
from ptm_p2p.network import protocol
from ptm_p2p.network.framing import decode

EXAMPLES: list[protocol.Request] = [
    protocol.HelloRequest(addrs=["/ip4/127.0.0.1/tcp/4001"], name="site-a"),
    protocol.PeersRequest(),
    protocol.CheckpointRequest(),
    protocol.CheckpointRequest(at_least=7),
    protocol.WaitRequest(after=3, timeout_ms=1000),
    protocol.EntriesRequest(start=0, end=5, old_size=0),
    protocol.SubmitRequest(entries=[b"\x01"]),
    protocol.HeadRequest(author=bytes(32)),
    protocol.CosignRequest(note="origin\n1\nroot\n"),
    protocol.EvidenceRequest(kind="split-view", first=b"a", second=b"b", detail="d"),
    protocol.ConsistencyRequest(old_size=2, new_size=9),
]


def test_every_operation_has_a_typed_request() -> None:
    assert {r.op for r in EXAMPLES} == protocol.OPS


@pytest.mark.parametrize("request_", EXAMPLES, ids=lambda r: r.op)
def test_requests_round_trip_through_the_wire_format(request_: protocol.Request) -> None:
    message = decode(protocol.encode_message(request_))
    assert message["v"] == protocol.VERSION and message["op"] == request_.op
    assert protocol.parse_request(message) == request_


def test_the_loose_request_builder_and_the_typed_one_agree() -> None:
    loose = decode(protocol.encode_message(protocol.request("wait", after=3, timeout_ms=10)))
    typed = decode(protocol.encode_message(protocol.WaitRequest(after=3, timeout_ms=10)))
    assert loose == typed


def test_replies_are_typed_and_checked() -> None:
    request = protocol.EntriesRequest(start=0, end=1, old_size=0)
    answer = protocol.ok(entries=[b"e"], note="n", proof=[])
    reply = protocol.parse_reply(request, decode(protocol.encode_message(answer)))
    assert isinstance(reply, protocol.EntriesReply)
    assert (reply.entries, reply.note, reply.proof) == ([b"e"], "n", [])
    # A typed reply encodes to the same map the loose helper builds.
    assert decode(protocol.encode_message(reply)) == answer


@pytest.mark.parametrize(
    "answer, problem",
    [
        ({"ok": True, "entries": [1], "note": "n", "proof": []}, "entries[0]"),
        ({"ok": True, "entries": [], "proof": []}, "note"),
        ({"ok": True, "entries": [], "note": "n", "proof": [], "extra": 1}, "extra"),
        ({"ok": True, "entries": [], "note": "n", "proof": True}, "proof"),
    ],
)
def test_a_malformed_answer_is_a_protocol_error_naming_the_field(
    answer: dict, problem: str
) -> None:
    with pytest.raises(ProtocolError, match="malformed entries answer") as caught:
        protocol.parse_reply(protocol.EntriesRequest(start=0, end=1, old_size=0), answer)
    assert problem in str(caught.value)


def test_an_error_answer_is_a_remote_error() -> None:
    with pytest.raises(RemoteError, match="not-found"):
        protocol.parse_reply(
            protocol.HeadRequest(author=bytes(32)), protocol.error(protocol.NOT_FOUND, "none")
        )


def test_numbers_are_never_booleans_or_out_of_range() -> None:
    for bad in (True, -1, protocol.MAX_INT + 1):
        with pytest.raises(ProtocolError, match=r"^wait: field 'after' "):
            protocol.parse_request({"v": 1, "op": "wait", "after": bad, "timeout_ms": 1})
    with pytest.raises(ProtocolError, match=r"head: field 'author' too long \(33 > 32\)"):
        protocol.parse_request({"v": 1, "op": "head", "author": bytes(33)})


def test_peer_text_in_type_errors_is_clipped() -> None:
    with pytest.raises(ProtocolError) as caught:
        protocol.parse_request({"v": 1, "op": "cosign", "note": "x" * (protocol.MAX_NOTE + 1)})
    assert len(str(caught.value)) < 400
    assert isinstance(caught.value.__cause__, msgspec.ValidationError)


def test_type_range_and_length_errors_read_as_they_always_did() -> None:
    cases = [
        ({"op": "wait", "after": True, "timeout_ms": 5}, "field 'after' must be int, got bool"),
        ({"op": "entries", "start": -1, "end": 1, "old_size": 0}, "field 'start' out of range: -1"),
        ({"op": "head", "author": bytes(33)}, "head: field 'author' too long (33 > 32)"),
        ({"op": "hello", "addrs": "x"}, "hello: field 'addrs' must be list, got str"),
    ]
    for message, expected in cases:
        with pytest.raises(ProtocolError) as caught:
            protocol.parse_request({"v": 1, **message})
        assert expected in str(caught.value)


def test_an_optional_field_not_given_is_left_out_of_the_message() -> None:
    # Peers of the first protocol version refuse a nil where they expect a number.
    assert "at_least" not in decode(protocol.encode_message(protocol.CheckpointRequest()))
    assert decode(protocol.encode_message(protocol.CheckpointRequest(at_least=4)))["at_least"] == 4


def test_a_non_member_refusal_is_a_plain_refusal_to_a_first_version_reader() -> None:
    wire = decode(protocol.encode_message(protocol.not_member("ask the admin")))
    # What a first-version peer reads: the same three fields, an ordinary "refused".
    assert (wire["ok"], wire["error"], wire["message"]) == (False, "refused", "ask the admin")
    with pytest.raises(NotAMember, match="not a member: ask the admin") as raised:
        protocol.check_response(wire)
    assert raised.value.exit_code == EXIT_REFUSED
    assert isinstance(raised.value, RemoteError)
