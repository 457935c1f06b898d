"""Entries: create/from_bytes round trips, tamper detection, schemas and limits."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptm_p2p.errors import DecodeError, SignatureError
from ptm_p2p.ledger import entry as E
from ptm_p2p.ledger.crypto import Signer, sha256
from ptm_p2p.ledger.encoding import key_bytes, pack
from ptm_p2p.ledger.entry import Entry


def signer_for(name: str) -> Signer:
    """A deterministic test identity (same derivation as the ``signers`` fixture)."""
    return Signer(hashlib.sha256(f"ptm-test-key/{name}".encode()).digest())


ADMIN, HUB, RESEARCHER = signer_for("admin"), signer_for("hub"), signer_for("researcher")
SITES = [signer_for(f"site-{i}") for i in range(4)]
DIGEST = "sha256:" + "ab" * 32
IMAGE = "127.0.0.1:5000/ptm/cox-round@" + DIGEST
LIMITS = {"timeout_s": 60, "memory_mb": 512, "cpu_millis": 1500}


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value, key=key_bytes)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def sign_body(signer: Signer, body: list[Any]) -> bytes:
    """Raw bytes of an entry with an arbitrary body (maps sorted, but any msgpack type, even
    floats), signed properly: lets a test reach one check with everything else valid."""
    body_bytes = msgpack.packb(_sorted(body), use_bin_type=True)
    return pack([body_bytes, signer.sign(E.SIGNING_PREFIX + body_bytes)])


def genesis() -> Entry:
    payload = E.genesis_payload(
        "ptm.example/collab-1",
        ADMIN.public_key,
        "registry-admin",
        HUB.public_key,
        "hub-org",
        description="test collaboration",
    )
    return Entry.create(ADMIN, E.GENESIS, 1, E.ZERO_HASH, 1_000, payload)


def task(n_sites: int = 3, seq: int = 1, prev: bytes = E.ZERO_HASH) -> Entry:
    inputs = {site.public_key: f"input for {i}".encode() for i, site in enumerate(SITES[:n_sites])}
    payload = E.task_payload(IMAGE, inputs, LIMITS, algorithm="cox/round-1")
    return Entry.create(RESEARCHER, E.TASK, seq, prev, 2_000, payload)


def membership() -> Entry:
    payload = E.membership_payload("admit", SITES[0].public_key, "hospital-a", "site")
    return Entry.create(ADMIN, E.MEMBERSHIP, 2, b"\x11" * 32, 1_500, payload)


def result() -> Entry:
    payload = E.result_payload(task(), "ok", b"aggregate numbers", DIGEST, sha256(b"log"))
    return Entry.create(SITES[0], E.RESULT, 1, E.ZERO_HASH, 3_000, payload)


MAKERS: dict[str, Callable[[], Entry]] = {
    make.__name__: make for make in (genesis, membership, task, result)
}


# --- round trips --------------------------------------------------------------------------

keys = st.sampled_from([s.public_key for s in SITES] + [ADMIN.public_key, HUB.public_key])
orgs = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
texts = st.text(min_size=1, max_size=50)
seqs = st.integers(1, 2**63 - 1)
times = st.integers(0, 2**63 - 1)
prevs = st.binary(min_size=32, max_size=32)
PLACE = {"seq": seqs, "prev": prevs, "ts": times}
"""Where an entry stands in its author's chain: seq, previous hash, timestamp."""


def _chain(seq: int, prev: bytes) -> bytes:
    return E.ZERO_HASH if seq == 1 else prev


@settings(max_examples=40, deadline=None)
@given(
    **PLACE,
    action=st.sampled_from(E.ACTIONS),
    key=keys,
    org=orgs,
    role=st.sampled_from(E.ROLES),
    reason=st.none() | texts,
)
def test_membership_round_trips(
    seq: int, prev: bytes, ts: int, action: str, key: bytes, org: str, role: str, reason: str | None
) -> None:
    payload = E.membership_payload(action, key, org, role, reason)
    made = Entry.create(ADMIN, E.MEMBERSHIP, seq, _chain(seq, prev), ts, payload)
    assert_round_trip(made)
    assert made.payload == payload


@settings(max_examples=40, deadline=None)
@given(
    **PLACE,
    sites=st.lists(
        st.sampled_from(SITES), min_size=1, max_size=4, unique_by=lambda s: s.public_key
    ),
    data=st.binary(max_size=100),
    limits=st.fixed_dictionaries(
        {n: st.integers(lo, hi) for n, (lo, hi) in E.LIMIT_RANGES.items()}
    ),
    algorithm=st.none() | st.from_regex(r"\A[a-z][a-z0-9/._-]{0,30}\Z"),
    description=st.none() | texts,
)
def test_task_round_trips(
    seq: int,
    prev: bytes,
    ts: int,
    sites: list[Signer],
    data: bytes,
    limits: dict[str, int],
    algorithm: str | None,
    description: str | None,
) -> None:
    payload = E.task_payload(
        IMAGE, {s.public_key: data for s in sites}, limits, algorithm, description
    )
    made = Entry.create(RESEARCHER, E.TASK, seq, _chain(seq, prev), ts, payload)
    assert_round_trip(made)
    assert made.payload["targets"] == [s.public_key for s in sites]
    for site in sites:  # each input opens for its own site only
        assert site.open_sealed(made.payload["inputs"][site.public_key]) == data


@settings(max_examples=40, deadline=None)
@given(
    **PLACE,
    status=st.sampled_from(E.STATUSES),
    output=st.binary(max_size=200),
    log=st.binary(min_size=32, max_size=32),
    reason=st.none() | texts,
)
def test_result_round_trips(
    seq: int, prev: bytes, ts: int, status: str, output: bytes, log: bytes, reason: str | None
) -> None:
    the_task = task()
    payload = E.result_payload(the_task, status, output, DIGEST, log, reason)
    made = Entry.create(SITES[1], E.RESULT, seq, _chain(seq, prev), ts, payload)
    assert_round_trip(made)
    assert RESEARCHER.open_sealed(made.payload["output"]) == output


@settings(max_examples=20, deadline=None)
@given(
    ts=times,
    origin=st.from_regex(r"\A[a-z0-9][a-z0-9.]{0,20}(/[a-z0-9-]{1,10}){0,3}\Z"),
    admin_org=orgs,
    hub_org=orgs,
    description=st.none() | texts,
)
def test_genesis_round_trips(
    ts: int, origin: str, admin_org: str, hub_org: str, description: str | None
) -> None:
    payload = E.genesis_payload(
        origin, ADMIN.public_key, admin_org, HUB.public_key, hub_org, description
    )
    assert_round_trip(Entry.create(ADMIN, E.GENESIS, 1, E.ZERO_HASH, ts, payload))


def assert_round_trip(made: Entry) -> None:
    again = Entry.from_bytes(made.raw)
    assert again == made
    for name in (
        "version",
        "kind",
        "author",
        "seq",
        "prev",
        "timestamp_ms",
        "payload",
        "signature",
        "raw",
        "hash",
    ):
        assert getattr(again, name) == getattr(made, name), name
    assert made.hash == sha256(made.raw)
    body, signature = msgpack.unpackb(made.raw)
    assert body == made.body and signature == made.signature
    assert Entry.from_bytes(bytearray(made.raw)) == made


# --- tampering --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(MAKERS))
def test_every_single_byte_change_is_rejected(kind: str) -> None:
    made = MAKERS[kind]()
    raw = bytearray(made.raw)
    for position in range(len(raw)):
        for flip in (0x01, 0x80, 0xFF):
            raw[position] ^= flip
            with pytest.raises((DecodeError, SignatureError)):
                Entry.from_bytes(bytes(raw))
            raw[position] ^= flip
    assert Entry.from_bytes(bytes(raw)) == made


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(list(MAKERS)), data=st.data())
def test_any_replaced_byte_is_rejected(kind: str, data: st.DataObject) -> None:
    raw = bytearray(_cached(kind).raw)
    position = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != raw[position]))
    raw[position] = value
    with pytest.raises((DecodeError, SignatureError)):
        Entry.from_bytes(bytes(raw))


_CACHE: dict[str, Entry] = {}


def _cached(kind: str) -> Entry:
    if kind not in _CACHE:
        _CACHE[kind] = MAKERS[kind]()
    return _CACHE[kind]


def test_truncated_and_extended_entries_are_rejected() -> None:
    raw = task().raw
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            Entry.from_bytes(raw[:cut])
    with pytest.raises(DecodeError):
        Entry.from_bytes(raw + b"\x00")


def test_a_signature_by_another_key_is_rejected_naming_the_key() -> None:
    made = membership()
    body = made.body
    forged = pack([body, SITES[0].sign(E.SIGNING_PREFIX + body)])
    with pytest.raises(SignatureError, match=ADMIN.public_key.hex()):
        Entry.from_bytes(forged)


def test_the_signature_is_domain_separated() -> None:
    made = membership()
    # A signature over the bare body (no "ptm/entry/v1\n" prefix) is not an entry signature.
    bare = pack([made.body, ADMIN.sign(made.body)])
    with pytest.raises(SignatureError):
        Entry.from_bytes(bare)


# --- canonical form, limits and schemas ---------------------------------------------------------


def body_of(made: Entry) -> list[Any]:
    body: list[Any] = msgpack.unpackb(made.body, raw=False)
    return body


def test_non_canonical_bodies_are_rejected_even_when_validly_signed() -> None:
    made = membership()
    body = made.body
    # seq 2 as uint8 (cc 02) instead of fixint 02: same value, other bytes, valid signature.
    wide = body.replace(b"\x02\xc4\x20", b"\xcc\x02\xc4\x20", 1)
    assert wide != body and msgpack.unpackb(wide, raw=False) == msgpack.unpackb(body, raw=False)
    with pytest.raises(DecodeError, match="not canonical"):
        Entry.from_bytes(pack([wide, ADMIN.sign(E.SIGNING_PREFIX + wide)]))
    # The payload map in reverse key order.
    fields = body_of(made)
    fields[6] = dict(reversed(list(fields[6].items())))
    unsorted = msgpack.packb(fields, use_bin_type=True)
    with pytest.raises(DecodeError, match="canonical order"):
        Entry.from_bytes(pack([unsorted, ADMIN.sign(E.SIGNING_PREFIX + unsorted)]))
    # Signature as bin16, and trailing bytes after the entry.
    raw = made.raw
    with pytest.raises(DecodeError):
        Entry.from_bytes(raw[:-66] + b"\xc5\x00\x40" + raw[-64:])
    with pytest.raises(DecodeError, match="nothing after it"):
        Entry.from_bytes(raw + b"\xc0")


def test_entries_over_the_size_limit_are_rejected() -> None:
    big = {SITES[0].public_key: b"x" * (E.MAX_ENTRY_SIZE - 48)}
    with pytest.raises(DecodeError, match="limit"):
        Entry.create(RESEARCHER, E.TASK, 1, E.ZERO_HASH, 0, E.task_payload(IMAGE, big, LIMITS))
    fields = body_of(task())
    fields[6]["description"] = "x" * E.MAX_ENTRY_SIZE
    raw = sign_body(RESEARCHER, fields)
    with pytest.raises(DecodeError, match="limit"):
        Entry.from_bytes(raw)


def mutated(make: Callable[[], Entry], change: Callable[[list[Any]], None]) -> bytes:
    fields = body_of(make())
    change(fields)
    signer = {e.public_key: e for e in [ADMIN, RESEARCHER, *SITES]}[fields[2]]
    return sign_body(signer, fields)


def _set(index: int, value: Any) -> Callable[[list[Any]], None]:
    def change(fields: list[Any]) -> None:
        fields[index] = value

    return change


def _payload(key: str, value: Any) -> Callable[[list[Any]], None]:
    def change(fields: list[Any]) -> None:
        fields[6][key] = value

    return change


def _drop(key: str) -> Callable[[list[Any]], None]:
    def change(fields: list[Any]) -> None:
        del fields[6][key]

    return change


BAD = [
    ("version 2", membership, _set(0, 2), "version"),
    ("version as bool", membership, _set(0, True), "version"),
    ("unknown kind", membership, _set(1, "policy"), "unknown entry kind"),
    ("kind as bin", membership, _set(1, b"membership"), "unknown entry kind"),
    ("seq 0", membership, _set(3, 0), "seq"),
    ("seq as str", membership, _set(3, "2"), "seq"),
    ("short prev", membership, _set(4, b"\x11" * 31), "prev"),
    ("seq 1 with a prev", membership, _set(3, 1), "all-zero prev"),
    ("negative timestamp", membership, _set(5, -1), "timestamp"),
    ("payload as list", membership, _set(6, []), "payload must be a map"),
    ("short body", membership, lambda f: f.pop(), "7-element"),
    ("float", membership, _set(5, 1.0), "float"),
    ("unknown payload key", membership, _payload("note", "x"), "unknown field"),
    ("missing payload key", membership, _drop("org"), "missing org"),
    ("bad action", membership, _payload("action", "promote"), "action"),
    ("bad role", membership, _payload("role", "admin"), "role"),
    ("key as str", membership, _payload("key", "ab" * 16), "32-byte key"),
    ("org with space", membership, _payload("org", "St Elsewhere"), "org"),
    ("org with newline", membership, _payload("org", "hospital\n"), "org"),
    ("empty reason", membership, _payload("reason", ""), "reason"),
    ("genesis not by admin", genesis, _payload("admin", SITES[0].public_key), "signed by"),
    ("genesis admin is hub", genesis, _payload("hub", ADMIN.public_key), "different keys"),
    ("genesis origin with +", genesis, _payload("origin", "ptm.example/a+b"), "origin"),
    ("genesis origin empty", genesis, _payload("origin", ""), "origin"),
    ("genesis created_ms", genesis, _payload("created_ms", 5), "unknown field"),
    ("image by tag", task, _payload("image", "127.0.0.1:5000/ptm/cox:latest"), "image"),
    ("image uppercase hex", task, _payload("image", "repo@sha256:" + "AB" * 32), "image"),
    ("image short digest", task, _payload("image", "repo@sha256:" + "ab" * 31), "image"),
    ("image with space", task, _payload("image", "my repo@" + DIGEST), "image"),
    ("image trailing newline", task, _payload("image", IMAGE + "\n"), "image"),
    ("no targets", task, _payload("targets", []), "targets"),
    ("duplicate target", task, lambda f: f[6].update(targets=f[6]["targets"][:1] * 2), "twice"),
    ("input missing", task, lambda f: f[6]["inputs"].popitem(), "one sealed input per target"),
    (
        "input too short",
        task,
        lambda f: f[6]["inputs"].update({SITES[0].public_key: b"short"}),
        "sealed box",
    ),
    ("limits missing one", task, lambda f: f[6]["limits"].pop("cpu_millis"), "missing cpu_millis"),
    ("limits extra", task, lambda f: f[6]["limits"].update(gpus=1), "unknown field"),
    ("timeout 0", task, lambda f: f[6]["limits"].update(timeout_s=0), "timeout_s"),
    ("memory as bool", task, lambda f: f[6]["limits"].update(memory_mb=True), "memory_mb"),
    ("result task short", result, _payload("task", b"\x00" * 31), "task"),
    ("result bad status", result, _payload("status", "success"), "status"),
    ("result digest form", result, _payload("image_digest", "sha256:xyz"), "image_digest"),
    ("result empty output", result, _payload("output", b""), "sealed box"),
    ("result log digest", result, _payload("log_digest", "00" * 32), "log_digest"),
]


@pytest.mark.parametrize(("make", "change", "why"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_bodies_are_rejected(
    make: Callable[[], Entry], change: Callable[[list[Any]], None], why: str
) -> None:
    raw = mutated(make, change)
    with pytest.raises(DecodeError, match=why):
        Entry.from_bytes(raw)


def test_create_checks_payloads_like_from_bytes() -> None:
    payload = {**membership().payload, "extra": 1}
    with pytest.raises(DecodeError, match="unknown field"):
        Entry.create(ADMIN, E.MEMBERSHIP, 1, E.ZERO_HASH, 0, payload)
    with pytest.raises(DecodeError, match="unknown entry kind"):
        Entry.create(ADMIN, "vote", 1, E.ZERO_HASH, 0, {})


def test_image_references() -> None:
    for ok in (
        "repo@",
        "library/python@",
        "registry.example.com/a/b@",
        "localhost:5000/x@",
        "127.0.0.1:5000/ptm/cox-round_2@",
        "a__b/c.d-e@",
    ):
        assert E.digest_of_image(ok + DIGEST) == DIGEST
    for bad in (
        "Repo@",
        "repo:tag@",
        "/repo@",
        "repo/@",
        "repo@sha512:" + "ab" * 32,
        "repo@" + DIGEST + "x",
        "-repo@",
        "a:99999999/b@",
    ):
        with pytest.raises(DecodeError):
            E.digest_of_image(bad + (DIGEST if bad.endswith("@") else ""))


def test_author_chain_numbers_and_links_entries() -> None:
    chain = E.AuthorChain(RESEARCHER)
    first = chain.append(E.TASK, E.task_payload(IMAGE, {SITES[0].public_key: b"1"}, LIMITS), 5)
    second = chain.append(E.TASK, E.task_payload(IMAGE, {SITES[0].public_key: b"2"}, LIMITS), 6)
    assert (first.seq, first.prev) == (1, E.ZERO_HASH)
    assert (second.seq, second.prev) == (2, first.hash)
    assert "task #2 by" in second.describe()


# --- the worked example in docs/ledger.md (Entries) ---------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "ledger.md"


def _doc_values() -> list[tuple[str, str]]:
    """``name = hex`` assignments in the doc's code blocks, hex continued over indented lines."""
    values: list[tuple[str, str]] = []
    open_value = False  # is the last assignment still being continued?
    section = DOC.read_text().split("## Entries\n", 1)[1].split("\n## Merkle tree", 1)[0]
    for line in section.splitlines():
        start = re.match(r"^(\w+)\s*=\s*([0-9a-f]+)\s*$", line)
        more = re.match(r"^\s+([0-9a-f]+)\s*$", line)
        if start:
            values.append((start[1], start[2]))
            open_value = True
        elif more and open_value:
            values[-1] = (values[-1][0], values[-1][1] + more[1])
        else:
            open_value = False
    return values


def test_the_documented_example_is_what_the_code_produces() -> None:
    admin = Signer(sha256(b"example admin"))
    hub, site = Signer(sha256(b"example hub")), Signer(sha256(b"example site"))
    first = Entry.create(
        admin,
        E.GENESIS,
        1,
        E.ZERO_HASH,
        1_700_000_000_000,
        E.genesis_payload(
            "ptm.example/collab-1", admin.public_key, "consortium", hub.public_key, "hub-org"
        ),
    )
    second = Entry.create(
        admin,
        E.MEMBERSHIP,
        2,
        first.hash,
        1_700_000_001_000,
        E.membership_payload("admit", site.public_key, "hospital-a", "site"),
    )
    documented = _doc_values()
    assert [name for name, _ in documented] == ["hash", "raw", "body", "hash", "leaf"]
    (_, hash0), (_, raw0), (_, body1), (_, hash1), (_, leaf1) = documented
    assert bytes.fromhex(raw0) == first.raw and bytes.fromhex(hash0) == first.hash
    assert Entry.from_bytes(bytes.fromhex(raw0)) == first
    assert bytes.fromhex(body1) == second.body
    assert second.raw == b"\x92\xc4\xa8" + second.body + b"\xc4\x40" + second.signature
    assert bytes.fromhex(hash1) == second.hash == sha256(second.raw)
    assert bytes.fromhex(leaf1) == sha256(b"\x00" + second.raw)
    assert second.signature.hex() in DOC.read_text().replace("\n            ", "")


@pytest.mark.parametrize(
    "key", [bytes(32), b"\x01" + bytes(31), b"\xff" * 32], ids=["zero", "one", "ff"]
)
def test_admins_cannot_admit_unusable_keys(key: bytes) -> None:
    with pytest.raises(DecodeError, match="not a usable Ed25519 public key"):
        E.membership_payload("admit", key, "nobody", "site")
