"""Checkpoint notes: C2SP signed-note / tlog-checkpoint / tlog-cosignature, real Ed25519 keys."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptm_p2p.errors import CheckpointError, SplitViewError
from ptm_p2p.ledger import checkpoint as cp
from ptm_p2p.ledger import merkle
from ptm_p2p.ledger.crypto import Signer

ORIGIN = "hub.example/ptm-study"
HUB = Signer(bytes(range(32)))
W1 = Signer(bytes(range(1, 33)))
W2 = Signer(bytes(range(2, 34)))
LOG = cp.Verifier.log(ORIGIN, HUB.public_key)
WIT1 = cp.Verifier.witness("site-a.example", W1.public_key)
WIT2 = cp.Verifier.witness("site-b.example", W2.public_key)

LEAVES = [merkle.leaf_hash(f"e{i}".encode()) for i in range(20)]


def signed_at(size: int, leaves: list[bytes] = LEAVES) -> cp.SignedCheckpoint:
    return cp.sign_checkpoint(cp.Checkpoint(ORIGIN, size, merkle.root(leaves[:size])), HUB)


def test_round_trip_and_exact_format() -> None:
    s = signed_at(7)
    text = s.text
    lines = text.split("\n")
    assert lines[0] == ORIGIN
    assert lines[1] == "7"
    assert base64.b64decode(lines[2]) == merkle.root(LEAVES[:7])
    assert lines[3] == ""
    assert lines[4].startswith("\u2014 " + ORIGIN + " ")
    assert text.endswith("\n")
    raw = base64.b64decode(lines[4].split(" ")[2])
    # key id = SHA-256(name || 0x0A || 0x01 || pubkey)[:4]
    assert raw[:4] == hashlib.sha256(ORIGIN.encode() + b"\n\x01" + HUB.public_key).digest()[:4]
    assert len(raw) == 68
    parsed = cp.parse_checkpoint(text)
    assert parsed == s
    assert cp.parse_checkpoint(text.encode()) == s
    assert cp.verify_checkpoint(text, LOG) == s.checkpoint


def test_extensions_round_trip() -> None:
    c = cp.Checkpoint(ORIGIN, 3, merkle.root(LEAVES[:3]), ("ext one", "ext-two"))
    s = cp.sign_checkpoint(c, HUB)
    assert cp.verify_checkpoint(s.text, LOG).extensions == ("ext one", "ext-two")


def test_empty_tree_checkpoint() -> None:
    s = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 0, merkle.root([])), HUB)
    assert s.text.split("\n")[1] == "0"
    assert cp.verify_checkpoint(s.text, LOG).size == 0


GOOD = signed_at(5).text
_ROOT_B64 = GOOD.split("\n")[2]
_SIG_LINE = GOOD.split("\n")[4]


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (GOOD.replace("\n\n", "\n"), "blank line"),
        (GOOD[:-1], "newline"),
        (GOOD.split("\n\n")[0] + "\n\n", "no signature"),
        (GOOD.replace("\n5\n", "\n05\n"), "leading zeros"),
        (GOOD.replace("\n5\n", "\n+5\n"), "decimal"),
        (GOOD.replace("\n5\n", "\n5.0\n"), "decimal"),
        (GOOD.replace("\n5\n", "\n\u0665\n"), "decimal"),  # Arabic-Indic digit five
        (GOOD.replace("\n5\n", "\n\n"), "decimal"),
        (GOOD.replace("\n5\n", "\n99999999999999999999\n"), "out of range"),
        (GOOD.replace(_ROOT_B64, _ROOT_B64[:-4]), "expected 32"),
        (GOOD.replace(_ROOT_B64, "!" + _ROOT_B64[1:]), "base64"),
        (GOOD.replace(_ROOT_B64, _ROOT_B64[:-2] + "B="), "canonical"),
        (GOOD.replace(_ROOT_B64, base64.b64encode(b"\x00" * 33).decode()), "expected 32"),
        (GOOD.replace(ORIGIN + "\n", "\n", 1), "empty|lines"),
        (GOOD.replace("\n", "\r\n"), "control"),
        (GOOD.replace(ORIGIN, ORIGIN + "\t", 1), "control"),
        (GOOD.replace("\u2014 ", "- "), "start"),
        (GOOD.replace("\u2014 ", "\u2014"), "start"),
        (
            GOOD.replace(_SIG_LINE, "\u2014 nosignature"),
            "no space",
        ),
        (GOOD.replace(_SIG_LINE, "\u2014 a+b " + _SIG_LINE.split(" ")[2]), "'\\+'"),
        (GOOD.replace(_SIG_LINE, "\u2014  " + _SIG_LINE.split(" ")[2]), "empty"),
        (GOOD.replace(_SIG_LINE, "\u2014 x AAAA"), "key id"),
        (GOOD.replace(_SIG_LINE, _SIG_LINE + "=="), "base64"),
        (GOOD + "\u2014 x " + _SIG_LINE.split(" ")[2], "newline"),
        (GOOD.replace(ORIGIN, "o" * 17000, 1), "at most"),
        (GOOD + (_SIG_LINE + "\n") * 100, "at most 100"),
        (GOOD.replace("\n\n", "\n" + "x\n" * 17 + "\n"), "extension"),
    ],
)
def test_malformed_notes_rejected(bad: str, why: str) -> None:
    with pytest.raises(CheckpointError, match=why):
        cp.parse_checkpoint(bad)


def test_non_utf8_rejected() -> None:
    with pytest.raises(CheckpointError, match="UTF-8"):
        cp.parse_checkpoint(GOOD.encode().replace(b"hub", b"h\xffb"))
    with pytest.raises(CheckpointError, match="at most"):
        cp.parse_checkpoint(b"x" * (cp.MAX_NOTE_BYTES + 1))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_byte_change_is_rejected_or_fails_verification(data: st.DataObject) -> None:
    raw = bytearray(GOOD.encode())
    i = data.draw(st.integers(0, len(raw) - 1))
    b = data.draw(st.integers(0, 255).filter(lambda v: v != raw[i]))
    raw[i] = b
    with pytest.raises(CheckpointError):
        cp.verify_checkpoint(bytes(raw), LOG)


def test_unknown_keys_ignored_known_failing_rejected() -> None:
    s = signed_at(5)
    stranger = Signer(b"\x07" * 32)
    # same name as the log but another key: a different key id, so it is ignored
    impostor = cp.sign_checkpoint(s.checkpoint, stranger, ORIGIN).signatures[0]
    other = cp.sign_checkpoint(s.checkpoint, stranger, "someone.else").signatures[0]
    garbage = cp.NoteSignature("unknown.example", b"\x01\x02\x03\x04", b"\x00" * 64)
    noisy = cp.SignedCheckpoint(s.checkpoint, (impostor, other, garbage, *s.signatures))
    assert cp.verify_checkpoint(cp.parse_checkpoint(noisy.text), LOG) == s.checkpoint
    # only unknown signatures: the log's is required
    with pytest.raises(CheckpointError, match="no signature by the log key"):
        cp.verify_checkpoint(cp.SignedCheckpoint(s.checkpoint, (impostor, other)), LOG)
    # a known key (name and key id match) whose signature fails rejects the whole note
    bad = cp.NoteSignature(ORIGIN, LOG.key_id, bytes(64))
    with pytest.raises(CheckpointError, match="does not verify"):
        cp.verify_checkpoint(cp.SignedCheckpoint(s.checkpoint, (*s.signatures, bad)), LOG)
    # the log's signature over another checkpoint does not carry over
    moved = cp.SignedCheckpoint(signed_at(6).checkpoint, s.signatures)
    with pytest.raises(CheckpointError, match="does not verify"):
        cp.verify_checkpoint(moved.text, LOG)


def test_cosignature_round_trip() -> None:
    s = signed_at(9)
    c1 = cp.cosign(s, W1, WIT1.name, 1_700_000_000)
    c2 = cp.cosign(cp.parse_checkpoint(c1.text), W2, WIT2.name, 1_700_000_005)
    parsed = cp.parse_checkpoint(c2.text)
    assert cp.verify_checkpoint(parsed, LOG, [WIT1, WIT2]) == s.checkpoint
    assert cp.verify_cosignatures(parsed, [WIT1, WIT2]) == [
        cp.Cosignature(WIT1.name, 1_700_000_000),
        cp.Cosignature(WIT2.name, 1_700_000_005),
    ]
    assert cp.verify_cosignatures(parsed, [WIT2]) == [cp.Cosignature(WIT2.name, 1_700_000_005)]
    # exact bytes of the cosignature line: key id (alg 0x04) || u64 BE time || signature
    raw = base64.b64decode(parsed.text.rstrip("\n").split("\n")[-1].split(" ")[2])
    assert raw[:4] == hashlib.sha256(WIT2.name.encode() + b"\n\x04" + W2.public_key).digest()[:4]
    assert int.from_bytes(raw[4:12], "big") == 1_700_000_005
    msg = f"cosignature/v1\ntime 1700000005\n{s.body}".encode()
    import nacl.signing

    nacl.signing.VerifyKey(W2.public_key).verify(msg, raw[12:])
    # re-cosigning replaces the witness's line instead of adding a second one
    again = cp.cosign(parsed, W1, WIT1.name, 1_700_000_100)
    assert cp.verify_cosignatures(again, [WIT1]) == [cp.Cosignature(WIT1.name, 1_700_000_100)]
    assert len(again.signatures) == 3


def test_cosignature_tampering_rejected() -> None:
    s = cp.cosign(signed_at(9), W1, WIT1.name, 1_700_000_000)
    sig = s.signatures[-1]
    # change the timestamp: the signed message changes
    moved = cp.NoteSignature(
        sig.name, sig.key_id, (1_700_000_001).to_bytes(8, "big") + sig.signature[8:]
    )
    forged = cp.SignedCheckpoint(s.checkpoint, (s.signatures[0], moved))
    with pytest.raises(CheckpointError, match="cosignature"):
        cp.verify_cosignatures(forged, [WIT1])
    with pytest.raises(CheckpointError, match="cosignature"):
        cp.verify_checkpoint(forged, LOG, [WIT1])
    # a plain Ed25519 signature by the witness over the body is not a cosignature
    plain = cp.sign_checkpoint(s.checkpoint, W1, WIT1.name).signatures[0]
    assert cp.verify_cosignatures(cp.SignedCheckpoint(s.checkpoint, (plain,)), [WIT1]) == []
    # wrong length for a cosignature
    short = cp.NoteSignature(sig.name, sig.key_id, sig.signature[8:])
    with pytest.raises(CheckpointError, match="expected 72"):
        cp.verify_cosignatures(cp.SignedCheckpoint(s.checkpoint, (short,)), [WIT1])
    # unknown witness ignored
    assert cp.verify_cosignatures(s, [WIT2]) == []


def test_verifier_validation() -> None:
    with pytest.raises(CheckpointError, match="0x05"):
        cp.Verifier("x", 5, HUB.public_key)
    with pytest.raises(CheckpointError, match="32"):
        cp.Verifier.log("x", b"short")
    with pytest.raises(CheckpointError, match="space"):
        cp.Verifier.log("a b", HUB.public_key)
    assert cp.verifiers_from_mapping({ORIGIN: (1, HUB.public_key)}) == [LOG]
    with pytest.raises(CheckpointError, match="0x01"):
        cp.verify_checkpoint(GOOD, WIT1)


def test_consistent_checkpoints_pass() -> None:
    a, b = signed_at(6), signed_at(15)
    proof = merkle.consistency_proof(LEAVES[:15], 6)
    cp.check_consistent(a, b, proof, LOG)
    cp.check_consistent(b, a, proof, LOG)  # order does not matter
    cp.check_consistent(a, signed_at(6), [], LOG)


def test_split_view_detected() -> None:
    forked = list(LEAVES)
    forked[3] = merkle.leaf_hash(b"rewritten history")
    a = signed_at(6)
    b = signed_at(15, forked)
    proof = merkle.consistency_proof(forked[:15], 6)
    with pytest.raises(SplitViewError) as info:
        cp.check_consistent(a, b, proof, LOG)
    assert info.value.first == a.text and info.value.second == b.text
    # same size, different roots
    c = signed_at(6, forked)
    with pytest.raises(SplitViewError) as info2:
        cp.check_consistent(a, c, [], LOG)
    assert {info2.value.first, info2.value.second} == {a.text, c.text}


def test_consistency_check_needs_valid_signatures() -> None:
    a = signed_at(6)
    fake = cp.sign_checkpoint(cp.Checkpoint(ORIGIN, 6, merkle.leaf_hash(b"x")), W1)
    with pytest.raises(CheckpointError):
        cp.check_consistent(a, fake, [], LOG)
    other_log = cp.sign_checkpoint(
        cp.Checkpoint("other.example", 6, a.checkpoint.root), HUB, ORIGIN
    )
    with pytest.raises(CheckpointError, match="different logs"):
        cp.check_consistent(a, other_log, [], LOG)


@pytest.mark.parametrize("origin", [" log.example", "log.example ", "\ufefflog.example"])
def test_origin_has_one_spelling(origin: str) -> None:
    with pytest.raises(CheckpointError):
        cp.Checkpoint(origin, 1, bytes(32))


@pytest.mark.parametrize("size", [True, "5", 1.0])
def test_size_must_be_an_int(size: object) -> None:
    with pytest.raises(CheckpointError):
        cp.Checkpoint("log.example", size, bytes(32))  # type: ignore[arg-type]
