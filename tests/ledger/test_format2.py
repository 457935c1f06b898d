"""Format 2 of tasks and results (issue 14): the crypto, the schemas, the builders and
openers, replay and audit of logs that mix both formats, and proofs of opened outputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptm_p2p.errors import (
    DecodeError,
    FaultyOutput,
    InputRefused,
    LedgerError,
    ReplayError,
    RuleError,
    SignatureError,
)
from ptm_p2p.ledger import crypto
from ptm_p2p.ledger import entry as E
from ptm_p2p.ledger.audit import audit
from ptm_p2p.ledger.encoding import pack
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.ledger.proof import check_proof, write_proof
from ptm_p2p.ledger.replay import replay
from ptm_p2p.ledger.store import SqliteStore

from .test_entry import DIGEST, IMAGE, LIMITS, RESEARCHER, SITES, sign_body
from .test_replay import DIGEST as REPLAY_DIGEST
from .test_replay import IMAGE as REPLAY_IMAGE
from .test_replay import Collab

OTHER = crypto.Signer(hashlib.sha256(b"ptm-test-key/other researcher").digest())


def task_v2(
    seq: int = 1, sites: int = 2, data: tuple[str, ...] = ("gbsg2",), by: crypto.Signer = RESEARCHER
) -> Entry:
    inputs = {s.public_key: f"input {i}".encode() for i, s in enumerate(SITES[:sites])}
    payload = E.task_payload_v2(by, seq, IMAGE, inputs, LIMITS, algorithm="cox/1", data=data)
    prev = E.ZERO_HASH if seq == 1 else b"\x33" * 32
    return Entry.create(by, E.TASK, seq, prev, 2_000 + seq, payload)


def result_v2(
    task: Entry, plaintext: bytes = b'{"rows": 360}', inline: bool = True, status: str = "ok"
) -> tuple[Entry, E.SealedOutput]:
    sealed = E.sealed_output(SITES[0], task.author, plaintext, b"container log")
    payload = E.result_payload_v2(
        task, status, sealed.output_map(inline), sealed.log_commit, DIGEST, timings={"run_ms": 5}
    )
    return Entry.create(SITES[0], E.RESULT, 1, E.ZERO_HASH, 3_000, payload), sealed


# --- crypto -----------------------------------------------------------------------------------


def test_the_domain_strings_are_the_documented_ones() -> None:
    assert crypto.BIND_DOMAIN == b"ptm/input-bind/v2\n"
    assert crypto.COMMIT_DOMAIN == b"ptm/commit/v2\n"
    assert crypto.LOG_DOMAIN == b"ptm/log/v2\n"
    n = bytes(range(32))
    assert crypto.commit(n, b"out") == hashlib.sha256(b"ptm/commit/v2\n" + n + b"out").digest()
    assert crypto.log_commit(n, b"log") == hashlib.sha256(b"ptm/log/v2\n" + n + b"log").digest()
    assert crypto.commit(n, b"out") != crypto.sha256(b"out")
    fields = [b"p" * 32, 7, b"s" * 32, IMAGE, ["gbsg2"], [b"s" * 32]]
    assert (
        crypto.input_bind(b"p" * 32, 7, b"s" * 32, IMAGE, ["gbsg2"], [b"s" * 32])
        == hashlib.sha256(b"ptm/input-bind/v2\n" + pack(fields)).digest()
    )


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=3000))
def test_a_box_opens_only_between_its_two_identities(plaintext: bytes) -> None:
    boxed = RESEARCHER.box_to(SITES[0].public_key, plaintext)
    assert len(boxed) == len(plaintext) + crypto.BOX_OVERHEAD
    assert SITES[0].box_open(RESEARCHER.public_key, boxed) == plaintext
    with pytest.raises(SignatureError):  # claimed to come from someone else
        SITES[0].box_open(OTHER.public_key, boxed)
    with pytest.raises(SignatureError):  # a third party
        SITES[1].box_open(RESEARCHER.public_key, boxed)
    altered = bytearray(boxed)
    altered[-1] ^= 1
    with pytest.raises(SignatureError):
        SITES[0].box_open(RESEARCHER.public_key, bytes(altered))


def test_box_errors_are_domain_errors() -> None:
    with pytest.raises(SignatureError, match="at least 40 bytes"):
        SITES[0].box_open(RESEARCHER.public_key, b"short")
    with pytest.raises(DecodeError, match="not a valid Ed25519"):
        RESEARCHER.box_to(bytes(32), b"x")
    with pytest.raises(DecodeError):
        RESEARCHER.box_to(b"short", b"x")


SIZES = [0, 1, crypto.STREAM_CHUNK - 1, crypto.STREAM_CHUNK, crypto.STREAM_CHUNK + 1]


@pytest.mark.parametrize("size", [*SIZES, 3 * crypto.STREAM_CHUNK + 7])
def test_secretstream_round_trips_in_chunks_of_one_mib(size: int) -> None:
    key = crypto.random_key()
    plaintext = bytes(i % 251 for i in range(size))
    ciphertext = crypto.stream_encrypt(key, plaintext)
    assert len(ciphertext) == crypto.stream_size(size)
    assert crypto.stream_decrypt(key, ciphertext) == plaintext
    if size == 0:
        assert len(ciphertext) == crypto.STREAM_MIN_SIZE == 41


@settings(max_examples=40, deadline=None)
@given(plaintext=st.binary(max_size=2000), data=st.data())
def test_secretstream_refuses_a_wrong_key_and_any_change(
    plaintext: bytes, data: st.DataObject
) -> None:
    key = crypto.random_key()
    ciphertext = crypto.stream_encrypt(key, plaintext)
    assert crypto.stream_decrypt(key, ciphertext) == plaintext
    with pytest.raises(SignatureError):
        crypto.stream_decrypt(crypto.random_key(), ciphertext)
    at = data.draw(st.integers(0, len(ciphertext) - 1))
    altered = bytearray(ciphertext)
    altered[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(SignatureError):
        crypto.stream_decrypt(key, bytes(altered))
    with pytest.raises(SignatureError):
        crypto.stream_decrypt(key, ciphertext + b"\x00")
    with pytest.raises(SignatureError):
        crypto.stream_decrypt(key, ciphertext[: data.draw(st.integers(0, len(ciphertext) - 1))])


def test_secretstream_detects_a_dropped_last_chunk() -> None:
    key = crypto.random_key()
    ciphertext = crypto.stream_encrypt(key, b"x" * (2 * crypto.STREAM_CHUNK + 10))
    whole_chunks = crypto.STREAM_HEADER_SIZE + 2 * (crypto.STREAM_CHUNK + crypto.STREAM_ABYTES)
    with pytest.raises(SignatureError, match="truncated"):
        crypto.stream_decrypt(key, ciphertext[:whole_chunks])
    with pytest.raises(DecodeError):
        crypto.stream_decrypt(b"short", ciphertext)


# --- schemas ----------------------------------------------------------------------------------


def test_v2_entries_take_the_typed_path_and_round_trip() -> None:
    task = task_v2()
    result, _ = result_v2(task)
    for made, kind in ((task, E.TaskPayloadV2), (result, E.ResultPayloadV2)):
        assert E._decode_typed(made.body) is not None
        assert E._decode_by_hand(made.body)[6] == msgpack.unpackb(made.body)[6]
        again = Entry.from_bytes(made.raw)
        assert isinstance(again.typed_payload, kind) and again == made
        assert again.payload["format"] == 2
    assert E.task_format(task) == E.task_format(result) == 2
    assert set(result.payload) == {
        "format",
        "task",
        "status",
        "output",
        "image_digest",
        "log_commit",
        "timings",
    }
    assert "output_digest" not in result.payload and "log_digest" not in result.payload


def test_a_blob_result_has_no_inline_ciphertext() -> None:
    result, sealed = result_v2(task_v2(), inline=False)
    assert set(result.payload["output"]) == {"key", "commit", "size", "blob"}
    assert result.payload["output"]["size"] == sealed.size
    assert result.payload["output"]["blob"] == crypto.sha256(sealed.ciphertext)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.update(format=1), "format 1 is not supported"),
        (lambda p: p.update(format=3), "format 3 is not supported"),
        (lambda p: p.update(output_digest=bytes(32)), "unknown field 'output_digest'"),
        (lambda p: p.pop("log_commit"), "missing log_commit"),
        (lambda p: p.update(log_digest=p.pop("log_commit")), "missing log_commit"),
        (lambda p: p["output"].pop("commit"), "result output payload: missing commit"),
        (lambda p: p["output"].update(size=10), "output.size 10 is not a ciphertext size"),
        (lambda p: p["output"].update(inline=b"x" * 50), "exactly output.size bytes"),
        (lambda p: p["output"].update(key=b"k" * 10), "output.key must be a box"),
        (lambda p: p.update(output=b"sealed" * 10), "output must be a map"),
    ],
)
def test_malformed_v2_results_are_refused_with_a_precise_message(mutate, message) -> None:  # type: ignore[no-untyped-def]
    result, _ = result_v2(task_v2())
    body = msgpack.unpackb(result.body)
    mutate(body[6])
    with pytest.raises(DecodeError, match=message.replace("(", r"\(")):
        Entry.from_bytes(sign_body(SITES[0], body))


def test_a_v2_task_needs_boxes_and_a_v1_task_keeps_sealed_boxes() -> None:
    body = msgpack.unpackb(task_v2().body)
    body[6]["inputs"] = {k: b"x" * 39 for k in body[6]["inputs"]}
    with pytest.raises(DecodeError, match="each input must be a box"):
        Entry.from_bytes(sign_body(RESEARCHER, body))
    v1 = msgpack.unpackb(task_v2().body)
    del v1[6]["format"]
    v1[6]["inputs"] = {k: b"x" * 40 for k in v1[6]["inputs"]}  # a box is too short to be sealed
    with pytest.raises(DecodeError, match="each input must be a sealed box"):
        Entry.from_bytes(sign_body(RESEARCHER, v1))


# --- inputs bound to their task ---------------------------------------------------------------


def test_a_site_opens_its_input_and_only_its_own() -> None:
    task = task_v2(sites=3)
    for i in range(3):
        assert E.open_input_v2(SITES[i], task) == f"input {i}".encode()
    with pytest.raises(InputRefused) as refused:
        E.open_input_v2(SITES[3], task)
    assert refused.value.public_reason == E.INPUT_NOT_OURS


def copied_into(task: Entry, site: crypto.Signer, by: crypto.Signer, **change: object) -> Entry:
    """A task of ``by`` that carries ``task``'s box for ``site``, changed as asked."""
    seq = int(change.get("seq", 5))  # type: ignore[call-overload]
    image = str(change.get("image", IMAGE))
    data = list(change.get("data", ["gbsg2"]))  # type: ignore[call-overload]
    targets = list(change.get("targets", [site.public_key]))  # type: ignore[call-overload]
    payload = E.task_payload_v2(by, seq, image, {t: b"other" for t in targets}, LIMITS, data=data)
    payload["inputs"][site.public_key] = task.payload["inputs"][site.public_key]
    return Entry.create(by, E.TASK, seq, b"\x44" * 32, 9_000, payload)


def test_a_copied_input_is_refused_by_anyone_else_and_in_any_other_task() -> None:
    original = task_v2(seq=5, sites=1)
    site = SITES[0]
    assert E.open_input_v2(site, original) == b"input 0"
    # Another publisher, same everything else: the box was not made by it.
    with pytest.raises(InputRefused) as other:
        E.open_input_v2(site, copied_into(original, site, OTHER))
    assert other.value.public_reason == E.INPUT_NOT_OURS
    # The same publisher, any one bound field changed: bound to another task.
    changes = [
        {"seq": 6},
        {"image": "127.0.0.1:5000/ptm/other@" + DIGEST},
        {"data": ["lab.v2"]},
        {"data": []},
        {"targets": [site.public_key, SITES[1].public_key]},
    ]
    for change in changes:
        with pytest.raises(InputRefused) as bound:
            E.open_input_v2(site, copied_into(original, site, RESEARCHER, **change))
        assert bound.value.public_reason == E.INPUT_BOUND_ELSEWHERE, change
    # Neither public reason says anything about the input.
    for reason in (E.INPUT_NOT_OURS, E.INPUT_BOUND_ELSEWHERE):
        assert "input 0" not in reason and "nothing was run" in reason


def test_a_box_without_a_binding_is_refused() -> None:
    task = task_v2(sites=1)
    body = msgpack.unpackb(task.body)
    body[6]["inputs"][SITES[0].public_key] = RESEARCHER.box_to(SITES[0].public_key, b"raw")
    forged = Entry.from_bytes(sign_body(RESEARCHER, body))
    with pytest.raises(InputRefused) as refused:
        E.open_input_v2(SITES[0], forged)
    assert refused.value.public_reason == E.INPUT_MALFORMED


# --- outputs behind commitments ---------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(plaintext=st.binary(max_size=5000))
def test_an_output_opens_for_its_publisher_with_its_nonces(plaintext: bytes) -> None:
    result, sealed = result_v2(task_v2(), plaintext)
    output = result.typed_payload.output  # type: ignore[union-attr]
    opened = E.open_output_v2(RESEARCHER, SITES[0].public_key, output, output.inline)
    assert opened.plaintext == plaintext
    assert crypto.commit(opened.nonce, plaintext) == output.commit
    assert crypto.log_commit(opened.log_nonce, b"container log") == result.payload["log_commit"]
    assert opened.log_nonce == sealed.log_nonce
    # No digest of the plaintext anywhere in the signed bytes.
    assert crypto.sha256(plaintext) not in result.raw


def faulty(output: E.OutputV2, ciphertext: bytes, researcher: crypto.Signer = RESEARCHER) -> str:
    with pytest.raises(FaultyOutput) as caught:
        E.open_output_v2(researcher, SITES[0].public_key, output, ciphertext)
    return caught.value.check


def test_each_fault_of_an_output_is_named() -> None:
    task = task_v2()
    result, sealed = result_v2(task)
    good = result.typed_payload.output  # type: ignore[union-attr]
    ct = sealed.ciphertext
    # Sealed to another key (the key box does not open for the publisher).
    elsewhere = E.sealed_output(SITES[0], OTHER.public_key, b"x", b"")
    other_key = E.OutputV2(**{**_fields(good), "key": elsewhere.key})
    assert faulty(other_key, ct) == "key box"
    assert faulty(good, ct, researcher=OTHER) == "key box"
    # A key box that opens but holds no {k, n, l}.
    junk = SITES[0].box_to(RESEARCHER.public_key, pack({"k": b"short"}))
    assert faulty(E.OutputV2(**{**_fields(good), "key": junk}), ct) == "key box"
    # A ciphertext that is not the blob the site named.
    assert faulty(good, ct[:-1] + bytes([ct[-1] ^ 1])) == "blob"
    # A blob id and size that match bytes the key does not decrypt.
    other = E.sealed_output(SITES[0], RESEARCHER.public_key, b"y", b"").ciphertext
    moved = E.OutputV2(**{**_fields(good), "blob": crypto.sha256(other), "size": len(other)})
    assert faulty(moved, other) == "decrypt"
    # A wrong commitment.
    wrong = E.OutputV2(**{**_fields(good), "commit": crypto.commit(bytes(32), b"other")})
    assert faulty(wrong, ct) == "commitment"


def _fields(output: E.OutputV2) -> dict[str, object]:
    return {name: getattr(output, name) for name in output.__struct_fields__}


# --- replay and audit read both formats -------------------------------------------------------


def collab_with_both_formats() -> tuple[Collab, Entry, Entry]:
    c = Collab().start()
    old = c.task(["site-a"])
    c.result("site-a", old)
    chain = c.chains[c.researcher.public_key]
    targets = {c.sites[s].public_key: b"{}" for s in ("site-a", "site-b")}
    payload = E.task_payload_v2(c.researcher, chain.seq + 1, REPLAY_IMAGE, targets, LIMITS)
    new = c.add(c.researcher, E.TASK, payload)
    return c, old, new


def v2_answer(c: Collab, site: str, task: Entry, status: str = "ok", digest: str = "") -> Entry:
    sealed = E.sealed_output(c.sites[site], task.author, b"sums", b"log")
    digest = digest or E.digest_of_image(task.payload["image"])
    payload = E.result_payload_v2(task, status, sealed.output_map(True), sealed.log_commit, digest)
    return c.add(c.sites[site], E.RESULT, payload)


def test_a_log_mixing_both_formats_replays_and_audits(tmp_path: Path) -> None:
    c, old, new = collab_with_both_formats()
    v2_answer(c, "site-a", new)
    v2_answer(c, "site-b", new, status="refused")
    state = replay(c.log)
    assert state.tasks[old.hash].format == 1 and state.tasks[new.hash].format == 2
    assert {r.format for r in state.tasks[new.hash].results.values()} == {2}
    store = SqliteStore(tmp_path / "ledger.db")
    store.append(c.log)
    report = audit(store)
    store.close()
    assert report.ok, report.problems
    tasks = {t["task"]: t for t in report.to_json()["tasks"]}
    assert tasks[old.hash.hex()]["format"] == 1 and tasks[new.hash.hex()]["format"] == 2


def test_a_v2_ok_result_must_carry_the_tasks_image_digest() -> None:
    c, _, new = collab_with_both_formats()
    v2_answer(c, "site-a", new, digest="sha256:" + "00" * 32)
    with pytest.raises(ReplayError, match="status ok with image") as info:
        replay(c.log)
    assert isinstance(info.value.cause, RuleError)


def test_an_inline_ciphertext_that_is_not_its_blob_breaks_a_rule() -> None:
    c, _, new = collab_with_both_formats()
    sealed = E.sealed_output(c.sites["site-a"], new.author, b"sums", b"log")
    output = sealed.output_map(True)
    output["blob"] = crypto.sha256(b"something else")
    payload = E.result_payload_v2(new, "ok", output, sealed.log_commit, REPLAY_DIGEST)
    c.add(c.sites["site-a"], E.RESULT, payload)
    with pytest.raises(ReplayError, match="inline output does not hash to the blob id"):
        replay(c.log)


# --- proofs -----------------------------------------------------------------------------------


def test_a_proof_of_an_opened_output_checks_and_any_change_fails(tmp_path: Path) -> None:
    task = task_v2()
    result, _ = result_v2(task, b'{"rows": 360}')
    output = result.typed_payload.output  # type: ignore[union-attr]
    opened = E.open_output_v2(RESEARCHER, SITES[0].public_key, output, output.inline)
    folder = tmp_path / "proof"
    write_proof(
        folder, "hospital-a", SITES[0].public_key, result, 7, opened.plaintext, opened.nonce
    )
    assert (folder / "README.txt").exists()
    record = json.loads((folder / "hospital-a" / "proof.json").read_text())
    assert record["nonce"] == opened.nonce.hex() and record["entry"] == 7
    assert "k" not in record and "log_nonce" not in record  # nothing more is revealed
    (verdict,) = check_proof(folder)
    assert verdict.ok and verdict.in_log is None, verdict.detail
    # Against a log: it must hold this very entry at the index named.
    store = SqliteStore(tmp_path / "ledger.db")
    c, _, _ = collab_with_both_formats()
    store.append(c.log)
    (elsewhere,) = check_proof(folder, store)
    assert not elsewhere.ok and "does not hold this result" in elsewhere.detail
    store.close()
    # Another output, or another nonce: refused.
    (folder / "hospital-a" / "output").write_bytes(b'{"rows": 361}')
    (changed,) = check_proof(folder)
    assert not changed.ok and "commitment" in changed.detail
    with pytest.raises(LedgerError, match="do not match"):
        write_proof(folder, "x", SITES[0].public_key, result, 7, b"other", opened.nonce)
    with pytest.raises(DecodeError, match="no SITE/proof.json"):
        check_proof(tmp_path)
