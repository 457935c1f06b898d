"""Canonical msgpack: the one byte encoding of everything the ledger signs or hashes.

msgpack by itself lets one value have many encodings (an integer in a wider slot than needed,
a map in any key order, a string as ``str`` or ``bin``). A signature over bytes only means
something if every reader agrees on *which* bytes, so the ledger uses a canonical subset:

* types: nil, bool, int (-2**63 .. 2**64-1), str (valid UTF-8), bin, array, map; nothing else.
  No floats: nothing in the ledger needs them, and they bring NaN payloads, -0.0 and
  float32/float64 choices that have no single canonical form. No ext types (including the
  msgpack timestamp): times are integer milliseconds.
* every integer and every length uses the shortest msgpack form (what ``msgpack.packb``
  emits); text is always ``str`` and bytes always ``bin`` (``use_bin_type=True``).
* map keys are ``str`` or ``bin``, unique, and ordered by their own canonical encoding
  compared as unsigned bytes (memcmp); this is the order ``pack`` emits.
* one value per buffer: no trailing bytes.

``unpack_canonical`` decodes with hard size limits, checks the types, depth and key order,
re-encodes and requires the result to equal the input byte for byte. Every failure is a
``DecodeError`` saying what was wrong; no msgpack, Unicode or recursion error escapes.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ptm_p2p.errors import DecodeError

DEFAULT_MAX_DEPTH = 8
"""Arrays/maps nested deeper than this are refused (the ledger needs at most 3 levels)."""

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def key_bytes(key: str | bytes) -> bytes:
    """The canonical encoding of a map key: the bytes map keys are sorted by."""
    cached = _KEY_CACHE.get(key)
    if cached is not None:
        return cached
    if type(key) is str or type(key) is bytes:
        encoded: bytes = msgpack.packb(key, use_bin_type=True)
        # Schema field names and site keys repeat in every entry: remember a bounded number
        # of short keys, so the key-order check on the decode hot path is a lookup per key.
        if len(key) <= 64 and len(_KEY_CACHE) < _KEY_CACHE_MAX:
            _KEY_CACHE[key] = encoded
        return encoded
    raise DecodeError(f"map key {key!r} is a {type(key).__name__}: only str or bin keys")


_KEY_CACHE: dict[str | bytes, bytes] = {}
_KEY_CACHE_MAX = 4096


def _normalise(obj: Any, path: str) -> Any:
    """A copy of ``obj`` with maps in canonical key order and tuples as lists."""
    kind = type(obj)
    if kind is dict:
        items = []
        for key, value in obj.items():
            items.append((key_bytes(key), key, _normalise(value, f"{path}.{key!r}")))
        items.sort(key=lambda item: item[0])
        return {key: value for _, key, value in items}
    if kind is list or kind is tuple:
        return [_normalise(value, f"{path}[{i}]") for i, value in enumerate(obj)]
    if kind is int:
        if not _INT_MIN <= obj <= _INT_MAX:
            raise DecodeError(f"cannot encode {path}: integer {obj} is outside msgpack's range")
        return obj
    if obj is None or kind is bool or kind is str or kind is bytes:
        return obj
    raise DecodeError(
        f"cannot encode {path}: {kind.__name__} is not a ledger type "
        "(allowed: None, bool, int, str, bytes, list, dict; no floats)"
    )


def pack(obj: Any) -> bytes:
    """Encode ``obj`` canonically (maps sorted by encoded key; str as str, bytes as bin)."""
    return msgpack.packb(_normalise(obj, "value"), use_bin_type=True)  # type: ignore[no-any-return]


def _check_tree(obj: Any, depth: int, max_depth: int) -> None:
    """Allowed types only, nesting within ``max_depth``, map keys strictly increasing.

    Key order has to be checked here: msgpack keeps the wire order in the decoded dict, so a
    re-encode would faithfully reproduce an unsorted map and the byte comparison alone would
    pass it. (Duplicate keys collapse while decoding; the byte comparison catches those.)
    This walk runs for every entry replayed, hence the C-level ``map``/``sorted`` calls.
    """
    if depth >= max_depth:
        raise DecodeError(f"nesting deeper than {max_depth} levels")
    if type(obj) is dict:
        if len(obj) > 1:
            cached: list[bytes | None] = list(map(_KEY_CACHE.get, obj))
            encoded: list[bytes] = (
                list(map(key_bytes, obj)) if None in cached else cached  # type: ignore[assignment]
            )
            # Distinct keys have distinct encodings, so "equal to its sorted copy" means
            # strictly increasing.
            if encoded != sorted(encoded):
                keys = ", ".join(repr(key) for key in list(obj)[:8])
                raise DecodeError(
                    "map keys are not in canonical order (sorted by their encoded bytes): "
                    f"{keys}{', …' if len(obj) > 8 else ''}"
                )
        values: Any = obj.values()
    else:
        values = obj
    for value in values:
        kind = type(value)
        if kind is dict or kind is list:
            _check_tree(value, depth + 1, max_depth)
        elif kind is float:
            raise DecodeError("a float: the ledger encoding has no floats")
    # int, str, bytes, bool and None are all the unpacker can return besides containers and
    # floats, given max_ext_len=0 (ext types, timestamps included, are refused by it).


def unpack_canonical(data: bytes, max_size: int, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode one canonical msgpack value of at most ``max_size`` bytes, or raise DecodeError."""
    if type(data) is not bytes:
        if not isinstance(data, (bytearray, memoryview)):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
    size = len(data)
    if size > max_size:
        raise DecodeError(f"{size} bytes is over the limit of {max_size}")
    if size == 0:
        raise DecodeError("empty input: expected one msgpack value")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=size,
            max_bin_len=size,
            max_array_len=size,
            max_map_len=size,
            max_ext_len=0,
        )
    except msgpack.ExtraData as exc:
        raise DecodeError(
            f"trailing bytes: one value ends before the end of the {size}-byte input"
        ) from exc
    except msgpack.StackError as exc:
        raise DecodeError("nesting too deep for the decoder") from exc
    except UnicodeDecodeError as exc:
        raise DecodeError(f"a str is not valid UTF-8 (at its byte {exc.start})") from exc
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        # FormatError, truncated input, reserved byte 0xc1, ext types, non-str/bin map keys.
        raise DecodeError(f"not well-formed msgpack: {exc}") from exc
    if type(obj) is dict or type(obj) is list:
        if max_depth < 1:
            raise DecodeError("nesting deeper than 0 levels")
        _check_tree(obj, 0, max_depth)
    elif type(obj) is float:
        raise DecodeError("a float: floats are not allowed")
    again = msgpack.packb(obj, use_bin_type=True)
    if again != data:
        raise DecodeError(_why_not_canonical(data, again))
    return obj


def _why_not_canonical(data: bytes, again: bytes) -> str:
    offset = next(
        (i for i, (a, b) in enumerate(zip(data, again, strict=False)) if a != b),
        min(len(data), len(again)),
    )
    return (
        f"not canonical msgpack: re-encoding differs from byte {offset} on (a non-minimal "
        "integer or length, a duplicate map key, or str/bin confusion); encode with "
        "ptm_p2p.ledger.encoding.pack"
    )
