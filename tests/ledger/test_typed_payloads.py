"""Typed payloads: the msgspec Structs agree with the hand-written checks, verdict for verdict.

``Entry.from_bytes`` decodes through the Structs (``entry._decode_typed``) and falls back to
the hand-written checks (``entry._decode_by_hand``) only to explain a refusal. So the two must
accept exactly the same bodies and read the same payloads: anything only the Structs accept
would skip a rule, anything only the hand-written checks accept would be read slowly. These
tests hold them to that on valid entries of every kind and on hypothesis-mutated ones.
"""

from __future__ import annotations

import pickle
import typing
from collections.abc import Callable
from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptm_p2p.errors import DecodeError
from ptm_p2p.ledger import entry as E
from ptm_p2p.ledger.crypto import sha256
from ptm_p2p.ledger.encoding import key_bytes, pack
from ptm_p2p.ledger.entry import Entry

from .test_entry import DIGEST, IMAGE, LIMITS, MAKERS, RESEARCHER, SITES, sign_body


def cancel() -> Entry:
    payload = E.cancel_payload(sha256(b"some task"), reason="wrong cohort")
    return Entry.create(RESEARCHER, E.CANCEL, 2, b"\x22" * 32, 2_500, payload)


def full_task() -> Entry:
    """A task with every optional field."""
    inputs = {site.public_key: b"input" for site in SITES[:2]}
    payload = E.task_payload(
        IMAGE, inputs, LIMITS, algorithm="cox/1", description="é" * 10, data=["gbsg2", "lab.v2"]
    )
    return Entry.create(RESEARCHER, E.TASK, 1, E.ZERO_HASH, 2_000, payload)


def full_result() -> Entry:
    """A result with every optional field."""
    made = E.task_payload(IMAGE, {SITES[0].public_key: b"x"}, LIMITS)
    task = Entry.create(RESEARCHER, E.TASK, 1, E.ZERO_HASH, 2_000, made)
    payload = E.result_payload(
        task,
        "failed",
        b"",
        DIGEST,
        sha256(b"log"),
        reason="out of memory",
        timings={"prepare_ms": 5, "run_ms": 7, "total_ms": 12},
    )
    return Entry.create(SITES[0], E.RESULT, 1, E.ZERO_HASH, 3_000, payload)


def task_v2() -> Entry:
    """A format-2 task with every optional field."""
    inputs = {site.public_key: b"input" for site in SITES[:2]}
    payload = E.task_payload_v2(
        RESEARCHER, 1, IMAGE, inputs, LIMITS, algorithm="cox/1", description="é", data=["gbsg2"]
    )
    return Entry.create(RESEARCHER, E.TASK, 1, E.ZERO_HASH, 2_000, payload)


def result_v2(inline: bool = True) -> Entry:
    """A format-2 result with every optional field (inline) or its output as a blob."""
    sealed = E.sealed_output(SITES[0], RESEARCHER.public_key, b'{"rows": 3}', b"log")
    payload = E.result_payload_v2(
        task_v2(),
        "refused",
        sealed.output_map(inline),
        sealed.log_commit,
        DIGEST,
        reason="not allowed",
        timings={"prepare_ms": 5, "run_ms": 7, "total_ms": 12},
    )
    return Entry.create(SITES[0], E.RESULT, 1, E.ZERO_HASH, 3_000, payload)


ALL_MAKERS: dict[str, Callable[[], Entry]] = {
    **MAKERS,
    "cancel": cancel,
    "full task": full_task,
    "full result": full_result,
    "task v2": task_v2,
    "result v2": result_v2,
    "result v2 blob": lambda: result_v2(inline=False),
}

REQUIRED_AND_OPTIONAL = {
    E.GenesisPayload: (E._GENESIS_FIELDS, E._GENESIS_OPTIONAL),
    E.MembershipPayload: (E._MEMBERSHIP_FIELDS, E._MEMBERSHIP_OPTIONAL),
    E.TaskPayload: (E._TASK_FIELDS, E._TASK_OPTIONAL),
    E.TaskLimits: (E._LIMIT_FIELDS, frozenset()),
    E.ResultPayload: (E._RESULT_FIELDS, E._RESULT_OPTIONAL),
    E.ResultTimings: (frozenset(), E.TIMING_FIELDS),
    E.CancelPayload: (E._CANCEL_FIELDS, E._CANCEL_OPTIONAL),
    E.TaskPayloadV2: (E._TASK_FIELDS | {"format"}, E._TASK_V2_OPTIONAL),
    E.ResultPayloadV2: (E._RESULT_V2_FIELDS, E._RESULT_V2_OPTIONAL),
    E.OutputV2: (E._OUTPUT_V2_FIELDS, E._OUTPUT_V2_OPTIONAL),
}


def verdicts(body: bytes) -> dict[str, Any] | None:
    """Both decoders' verdict on ``body``, asserted equal; the payload if accepted."""
    fast = E._decode_typed(body)
    try:
        by_hand: dict[str, Any] | None = E._decode_by_hand(body)[6]
    except DecodeError:
        by_hand = None
    assert (fast is None) == (by_hand is None), f"typed {fast!r}, by hand {by_hand!r}"
    if fast is None:
        return None
    payload = msgspec.to_builtins(fast.payload, builtin_types=(bytes,))
    # Same values, same types, same key order.
    assert payload == by_hand and list(payload) == list(by_hand or ())
    assert pack(payload) == pack(by_hand)
    return payload


# --- the Structs are the schema --------------------------------------------------------------


@pytest.mark.parametrize("struct", list(REQUIRED_AND_OPTIONAL), ids=lambda s: s.__name__)
def test_struct_fields_are_the_schema_in_canonical_order(struct: type[msgspec.Struct]) -> None:
    required, optional = REQUIRED_AND_OPTIONAL[struct]
    fields = msgspec.structs.fields(struct)
    assert {f.name for f in fields if f.required} == required
    assert {f.name for f in fields if not f.required} == optional
    names = [f.name for f in fields]
    # Declared in the order pack() writes map keys, so a re-encode is canonical.
    assert names == sorted(names, key=key_bytes)


def test_struct_choices_and_ranges_are_the_constants() -> None:
    hints = typing.get_type_hints(E.MembershipPayload)
    assert typing.get_args(hints["role"]) == E.ROLES
    assert typing.get_args(hints["action"]) == E.ACTIONS
    assert typing.get_args(typing.get_type_hints(E.ResultPayload)["status"]) == E.STATUSES
    assert typing.get_args(typing.get_type_hints(E.ResultPayloadV2)["status"]) == E.STATUSES
    limits = typing.get_type_hints(E.TaskLimits, include_extras=True)
    for name, (low, high) in E.LIMIT_RANGES.items():
        meta = typing.get_args(limits[name])[1]
        assert (meta.ge, meta.le) == (low, high), name
    assert set(E.PAYLOAD_TYPES) == set(E.KINDS)


# --- valid entries take the fast path --------------------------------------------------------


@pytest.mark.parametrize("kind", list(ALL_MAKERS))
def test_valid_entries_decode_typed_with_the_same_payload(kind: str) -> None:
    made = ALL_MAKERS[kind]()
    assert E._decode_typed(made.body) is not None, "a valid entry fell back to the slow path"
    assert verdicts(made.body) == msgpack.unpackb(made.body)[6]
    again = Entry.from_bytes(made.raw)
    versions = (E.PAYLOAD_TYPES[again.kind], E.PAYLOAD_TYPES_V2.get(again.kind, type(None)))
    assert isinstance(again.typed_payload, versions)
    assert again.payload == msgpack.unpackb(made.body)[6]
    assert again.payload is again.payload  # built once, then cached
    assert E.claimed_author(made.body) == made.author


def test_entries_pickle() -> None:
    made = full_task()
    made.payload  # noqa: B018 - fill the cache: it must survive too
    again = pickle.loads(pickle.dumps(made))
    assert again == made and again.payload == made.payload
    assert again.typed_payload == made.typed_payload


def test_an_explicit_nil_for_an_optional_field_keeps_its_message() -> None:
    body = msgpack.unpackb(cancel().body)
    body[6]["reason"] = None
    with pytest.raises(DecodeError, match="cancel payload: reason must be a non-empty string"):
        Entry.from_bytes(sign_body(RESEARCHER, body))


def test_unsorted_maps_inside_payloads_are_refused() -> None:
    body = msgpack.unpackb(full_task().body)
    inputs = body[6]["inputs"]
    body[6]["inputs"] = dict(reversed(list(inputs.items())))
    raw_body = msgpack.packb(body, use_bin_type=True)  # as is: not sorted
    assert E._decode_typed(raw_body) is None
    with pytest.raises(DecodeError, match="canonical order"):
        E._decode_by_hand(raw_body)


def test_text_limits_count_utf8_bytes_not_characters() -> None:
    body = msgpack.unpackb(cancel().body)
    body[6]["reason"] = "é" * (E.MAX_TEXT_LEN // 2 + 1)  # fewer chars than the limit, more bytes
    with pytest.raises(DecodeError, match="reason is over 4096 bytes"):
        Entry.from_bytes(sign_body(RESEARCHER, body))


def test_claimed_author_is_none_for_bodies_that_do_not_start_canonically() -> None:
    for bad in (b"", b"\x97", bytes(64), b"\x97\x02" + bytes(62)):
        assert E.claimed_author(bad) is None
    body = msgpack.unpackb(MAKERS["membership"]().body)
    body[1] = "x" * 40  # a kind too long for a fixstr
    assert E.claimed_author(msgpack.packb(body, use_bin_type=True)) is None


# --- mutated bodies: same verdict, same payload ----------------------------------------------

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([0, 1, 9, 10, 16, 600, 1500, 7 * 24 * 3600 + 1, 2**63 - 1, 2**63]),
    st.text(max_size=70),
    st.sampled_from(["", "ok", "admit", "site", "hospital-b", "a b", "x\n", DIGEST, IMAGE]),
    st.binary(max_size=70),
    st.binary(min_size=32, max_size=32),
    st.binary(min_size=47, max_size=49),
    st.binary(min_size=39, max_size=42),
    st.sampled_from([1, 2, 3, 40, 41, 42, 300]),
    st.lists(st.binary(min_size=32, max_size=32) | st.text(max_size=4), max_size=3),
    st.dictionaries(st.text(max_size=10), st.integers(-1, 2000), max_size=3),
    st.dictionaries(st.binary(min_size=32, max_size=32), st.binary(max_size=60), max_size=2),
)


def _fields_of(payload: dict[Any, Any]) -> list[Any]:
    return [*payload, "unknown", SITES[3].public_key]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(list(ALL_MAKERS)), data=st.data())
def test_mutated_payloads_get_the_same_verdict_from_both_decoders(
    kind: str, data: st.DataObject
) -> None:
    body = msgpack.unpackb(ALL_MAKERS[kind]().body)
    payload = body[6]
    for _ in range(data.draw(st.integers(1, 2))):
        target = payload
        nested = [
            k for k in ("limits", "timings", "inputs", "output") if isinstance(payload.get(k), dict)
        ]
        if nested and data.draw(st.booleans()):
            target = payload[data.draw(st.sampled_from(nested))]
        name = data.draw(st.sampled_from(_fields_of(target)))
        if name in target and data.draw(st.integers(0, 4)) == 0:
            del target[name]
        else:
            target[name] = data.draw(VALUES)
    if data.draw(st.integers(0, 5)) == 0:
        body[data.draw(st.integers(0, 5))] = data.draw(VALUES)
    sort = data.draw(st.integers(0, 5)) != 0
    encoded = msgpack.packb(_sorted(body) if sort else body, use_bin_type=True)
    verdicts(encoded)


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        try:
            order = sorted(value, key=key_bytes)
        except DecodeError:  # a key pack() refuses: leave the map as it is
            order = list(value)
        return {k: _sorted(value[k]) for k in order}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(list(ALL_MAKERS)), data=st.data())
def test_any_changed_byte_gets_the_same_verdict_and_author(kind: str, data: st.DataObject) -> None:
    body = bytearray(ALL_MAKERS[kind]().body)
    position = data.draw(st.integers(0, len(body) - 1))
    body[position] = data.draw(st.integers(0, 255))
    if verdicts(bytes(body)) is not None:
        # A body that decodes has its author where the audit's workers read it.
        assert E.claimed_author(bytes(body)) == E._decode_by_hand(bytes(body))[2]
