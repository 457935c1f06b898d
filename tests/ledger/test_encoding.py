"""Canonical msgpack: round trips, and every non-canonical or out-of-profile input refused."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptm_p2p.errors import DecodeError
from ptm_p2p.ledger.encoding import key_bytes, pack, unpack_canonical

MAX = 1 << 20

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
scalars = st.none() | st.booleans() | ints | st.text(max_size=40) | st.binary(max_size=40)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=40) | st.binary(max_size=40), children, max_size=5)
    ),
    max_leaves=25,
)


@given(values)
def test_pack_then_unpack_round_trips(value: object) -> None:
    data = pack(value)
    assert unpack_canonical(data, MAX) == value
    assert pack(unpack_canonical(data, MAX)) == data


@given(st.dictionaries(st.text(max_size=40) | st.binary(max_size=300), st.integers(0, 9)))
def test_pack_orders_map_keys_by_their_encoded_bytes(mapping: dict[object, int]) -> None:
    decoded = msgpack.unpackb(pack(mapping), raw=False, strict_map_key=False)
    encoded = [key_bytes(key) for key in decoded]  # type: ignore[arg-type]
    assert encoded == sorted(encoded)


def test_key_order_is_by_encoded_bytes_not_by_text() -> None:
    # "b" (fixstr a1 62) sorts before "aa" (fixstr a2 61 61): shorter first, as encoded.
    assert list(msgpack.unpackb(pack({"aa": 1, "b": 2}))) == ["b", "aa"]


def test_any_wider_integer_encoding_is_refused() -> None:
    for number, wide in [
        (5, b"\xcc\x05"),
        (5, b"\xd0\x05"),
        (200, b"\xcd\x00\xc8"),
        (-1, b"\xd0\xff"),
        (70000, b"\xcf" + (70000).to_bytes(8, "big")),
    ]:
        assert unpack_canonical(pack(number), MAX) == number
        with pytest.raises(DecodeError, match="not canonical"):
            unpack_canonical(wide, MAX)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x82\xa1b\x01\xa1a\x02", "canonical order"),  # {"b":1,"a":2}
        (b"\x82\xa1a\x01\xa1a\x02", "not canonical"),  # duplicate key "a"
        (b"\x82\xa2aa\x01\xa1b\x02", "canonical order"),  # "aa" before "b"
        (b"\x01\x02", "trailing bytes"),
        (b"\xd9\x01a", "not canonical"),  # str8 for a 1-byte string
        (b"\xc5\x00\x01a", "not canonical"),  # bin16 for a 1-byte bin
        (b"\xdc\x00\x01\x01", "not canonical"),  # array16 for a 1-element array
        (b"\xcb" + b"\x00" * 8, "float"),
        (b"\xca" + b"\x00" * 4, "float"),
        (b"\x91\xcb" + b"\x00" * 8, "float"),
        (b"\x81\xa1a\xcb" + b"\x00" * 8, "float"),
        (b"\xd6\xff\x00\x00\x00\x01", "not well-formed"),  # msgpack timestamp ext
        (b"\xd4\x01\x00", "not well-formed"),  # fixext1
        (b"\xc1", "not well-formed"),  # reserved byte
        (b"\x92\x01", "not well-formed"),  # truncated array
        (b"\xa1\xff", "UTF-8"),
        (b"\x81\x01\x02", "not well-formed"),  # int map key
        (b"\x81\xc0\x02", "not well-formed"),  # nil map key
        (b"", "empty"),
    ],
)
def test_non_canonical_and_out_of_profile_inputs_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError, match=why):
        unpack_canonical(data, MAX)


def test_str_and_bin_are_not_interchangeable() -> None:
    assert unpack_canonical(pack("ab"), MAX) == "ab"
    assert unpack_canonical(pack(b"ab"), MAX) == b"ab"
    assert pack("ab") != pack(b"ab")


def test_size_limit() -> None:
    data = pack(b"x" * 100)
    assert unpack_canonical(data, len(data)) == b"x" * 100
    with pytest.raises(DecodeError, match="over the limit"):
        unpack_canonical(data, len(data) - 1)


def test_depth_limit_and_deep_nesting_never_leak_other_errors() -> None:
    assert unpack_canonical(pack([[[1]]]), MAX, max_depth=3) == [[[1]]]
    with pytest.raises(DecodeError, match="deeper"):
        unpack_canonical(pack([[[[1]]]]), MAX, max_depth=3)
    for depth in (100, 5000, 100_000):
        with pytest.raises(DecodeError):
            unpack_canonical(b"\x91" * depth + b"\x00", MAX)
        with pytest.raises(DecodeError):
            unpack_canonical(b"\x81\xa1a" * depth + b"\x00", MAX)


def test_huge_declared_lengths_are_refused_without_allocating() -> None:
    for data in (
        b"\xdd\xff\xff\xff\xff",
        b"\xdf\xff\xff\xff\xff",
        b"\xc6\xff\xff\xff\xff",
        b"\xdb\xff\xff\xff\xff",
    ):
        with pytest.raises(DecodeError):
            unpack_canonical(data, MAX)


@given(st.binary(max_size=64))
def test_arbitrary_bytes_give_a_value_or_a_decode_error(data: bytes) -> None:
    try:
        value = unpack_canonical(data, MAX)
    except DecodeError:
        return
    assert pack(value) == data


def test_pack_refuses_values_outside_the_profile() -> None:
    for bad in (1.5, {"a": 0.0}, [object()], {1: "int key"}, 2**64, -(2**63) - 1):
        with pytest.raises(DecodeError):
            pack(bad)
    assert pack((1, 2)) == pack([1, 2])
