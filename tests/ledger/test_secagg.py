"""Secure aggregation (ledger/secagg.py): fixed point, pairwise masks, sum-only opening.

Real keys (Ed25519 converted to X25519 by libsodium), real masks; no mock. Properties:
the masks cancel for any number of sites; the fixed-point sum stays within the stated
error; a single masked vector looks uniform and does not depend on the value; any proper
subset of the answers leaves masks in (its sum is not the subset's true sum).
"""

from __future__ import annotations

import json
import math
import secrets
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ptm_p2p.errors import DecodeError
from ptm_p2p.ledger import crypto, secagg
from ptm_p2p.ledger import entry as E

finite = st.floats(
    min_value=-1e20, max_value=1e20, allow_nan=False, allow_infinity=False, allow_subnormal=True
)
KEYS = [crypto.Signer.generate() for _ in range(6)]


def _answer(fields: dict[str, list[float]], public: object = None) -> bytes:
    return json.dumps({"secure_sum": fields, "public": public or {"k": 5}}).encode()


def _masked(signers: list[crypto.Signer], values: list[dict[str, list[float]]], task: bytes):
    targets = [s.public_key for s in signers]
    return {
        f"site-{i}": json.loads(secagg.mask_output(s, targets, task, _answer(v)))
        for i, (s, v) in enumerate(zip(signers, values, strict=True))
    }


@settings(max_examples=40, deadline=None)
@given(
    n_sites=st.integers(min_value=2, max_value=6),
    length=st.integers(min_value=1, max_value=8),
    data=st.data(),
)
def test_masks_cancel_for_any_number_of_sites(n_sites: int, length: int, data) -> None:
    values = [
        {"a": data.draw(st.lists(finite, min_size=length, max_size=length)), "b": [1.0, 2.0]}
        for _ in range(n_sites)
    ]
    answers = _masked(KEYS[:n_sites], values, secrets.token_bytes(32))
    total, public = secagg.unmask_by_sum(answers)
    assert set(public) == set(answers)
    for j in range(length):
        exact = sum(Fraction(v["a"][j]) for v in values)
        # the stated bound: half an ulp of the result plus n_sites * 2^-97 absolute
        got = Fraction(total["a"][j])
        bound = Fraction(abs(float(exact))) * Fraction(1, 2**53) + Fraction(n_sites, 2**97)
        assert abs(got - exact) <= bound
        if exact != 0:
            assert abs(got - exact) / abs(exact) < Fraction(1, 10**9) or abs(exact) < 1e-19
    assert total["b"] == [float(n_sites), 2.0 * n_sites]


def test_counts_and_typical_statistics_are_exact() -> None:
    values = [{"x": [3.0, 0.0, 1234.5678, -0.1, 1e-12, 123456789.123]} for _ in range(3)]
    total, _ = secagg.unmask_by_sum(_masked(KEYS[:3], values, b"t" * 32))
    for j, v in enumerate(values[0]["x"]):
        assert total["x"][j] == float(Fraction(v) * 3)  # exact, then one rounding


@settings(max_examples=30, deadline=None)
@given(value=finite, other=finite)
def test_a_single_masked_vector_does_not_depend_on_the_value(value: float, other: float) -> None:
    """Site 0's masked answer for ``value`` and for ``other`` under two tasks: neither is
    the encoding of its value, and their masks are what differ, not anything structured."""
    targets = [k.public_key for k in KEYS[:3]]
    y1, _ = secagg.read_masked(
        json.loads(secagg.mask_output(KEYS[0], targets, b"1" * 32, _answer({"v": [value]})))
    )
    y2, _ = secagg.read_masked(
        json.loads(secagg.mask_output(KEYS[0], targets, b"2" * 32, _answer({"v": [other]})))
    )
    assert y1["v"][0] != secagg.encode([value])[0]
    assert y2["v"][0] != secagg.encode([other])[0]
    # subtracting the researcher's guess of the value leaves the mask: uniform-looking
    assert (y1["v"][0] - secagg.encode([value])[0]) % secagg.MODULUS != 0


def test_a_masked_vector_looks_uniform_whatever_the_values() -> None:
    """4096 masked values of an all-zero vector and of an all-1e6 vector: each bit of the
    192 is set about half of the time (4 sigma), and the two are not correlated with the
    values (the byte histograms of both pass the same test)."""
    targets = [k.public_key for k in KEYS[:3]]
    for fill in (0.0, 1e6):
        out = secagg.mask_output(KEYS[1], targets, b"u" * 32, _answer({"v": [fill] * 4096}))
        (values,), _ = zip(*[secagg.read_masked(json.loads(out))], strict=True)
        ys = values["v"]
        n = len(ys)
        for bit in range(0, 192, 7):
            ones = sum((y >> bit) & 1 for y in ys)
            assert abs(ones - n / 2) < 4 * math.sqrt(n / 4), (fill, bit, ones)
        top = [y >> 184 for y in ys]  # top byte: chi-square over 256 bins
        counts = [0] * 256
        for t in top:
            counts[t] += 1
        chi2 = sum((c - n / 256) ** 2 / (n / 256) for c in counts)
        assert chi2 < 255 + 5 * math.sqrt(2 * 255)


def test_any_proper_subset_keeps_its_masks() -> None:
    """From n - 1 answers (a dropped site) the researcher's sum is not the true partial sum:
    the masks shared with the missing site remain. Nothing is unmasked."""
    values = [{"v": [float(i + 1)] * 4} for i in range(4)]
    answers = _masked(KEYS[:4], values, b"d" * 32)
    names = list(answers)
    for drop in names:
        partial = {s: a for s, a in answers.items() if s != drop}
        total, _ = secagg.unmask_by_sum(partial)
        true = sum(v["v"][0] for s, v in zip(names, values, strict=True) if s != drop)
        assert all(abs(t - true) > 1e6 for t in total["v"])


def test_masks_are_fresh_per_task_and_agree_between_the_two_sites() -> None:
    a, b = KEYS[0], KEYS[1]
    assert secagg.pair_seed(a, b.public_key, b"x" * 32) == secagg.pair_seed(
        b, a.public_key, b"x" * 32
    )
    assert secagg.pair_seed(a, b.public_key, b"x" * 32) != secagg.pair_seed(
        a, b.public_key, b"y" * 32
    )
    assert secagg.mask_stream(b"s" * 32, "events", 3) != secagg.mask_stream(b"s" * 32, "n", 3)


@pytest.mark.parametrize(
    "bad",
    [float("nan"), float("inf"), -float("inf"), 2.0**81, "1", True, None],
)
def test_values_out_of_range_are_refused_before_masking(bad) -> None:
    with pytest.raises(secagg.SecAggError, match=r"v\[1\]"):
        secagg.encode([1.0, bad], "v")


@pytest.mark.parametrize(
    "answer, why",
    [
        (b"not json", "not JSON"),
        (b'{"counts": [1]}', 'no "secure_sum"'),
        (b'{"secure_sum": {"a": [1]}, "extra": 1}', "besides"),
        (b'{"secure_sum": {}}', "no field"),
        (b'{"secure_sum": {"a": []}}', "non-empty"),
        (b'{"secure_sum": {"bad name": [1]}}', "field name"),
    ],
)
def test_answers_outside_the_convention_are_refused(answer: bytes, why: str) -> None:
    targets = [k.public_key for k in KEYS[:2]]
    with pytest.raises(secagg.SecAggError, match=why):
        secagg.mask_output(KEYS[0], targets, b"t" * 32, answer)


def test_a_site_alone_or_outside_the_targets_cannot_mask() -> None:
    with pytest.raises(secagg.SecAggError, match="two target"):
        secagg.mask(KEYS[0], [KEYS[0].public_key], b"t" * 32, {"a": [1]})
    with pytest.raises(secagg.SecAggError, match="not a target"):
        secagg.mask(KEYS[0], [KEYS[1].public_key, KEYS[2].public_key], b"t" * 32, {"a": [1]})


def test_key_agreement_refuses_a_small_order_key() -> None:
    with pytest.raises(DecodeError):
        KEYS[0].agree(bytes(32))


# --- the signed field ------------------------------------------------------------------------

IMAGE = "127.0.0.1:5000/ptm/km@sha256:" + "a" * 64
LIMITS = {"timeout_s": 60, "memory_mb": 64, "cpu_millis": 100}


def _task(aggregate: object, n_targets: int = 2) -> dict:
    inputs = {k.public_key: b"{}" for k in KEYS[1 : 1 + n_targets]}
    payload = E.task_payload_v2(KEYS[0], 1, IMAGE, inputs, LIMITS, "km")
    payload["aggregate"] = aggregate
    return payload


def test_a_secure_sum_task_round_trips_through_both_decoders() -> None:
    entry = E.AuthorChain(KEYS[0]).append(E.TASK, _task("secure-sum"), 1)
    typed = E.Entry.from_bytes(entry.raw).typed_payload
    assert isinstance(typed, E.TaskPayloadV2) and typed.aggregate == "secure-sum"
    assert E._decode_typed(entry.body) is not None  # the fast path accepts it too


@pytest.mark.parametrize(
    "aggregate, n_targets, why",
    [("secure-mean", 2, "not one of"), (1, 2, "not one of"), ("secure-sum", 1, "two targets")],
)
def test_bad_aggregates_are_refused_by_the_schema(aggregate, n_targets, why) -> None:
    with pytest.raises(E.DecodeError, match=why):
        E.AuthorChain(KEYS[0]).append(E.TASK, _task(aggregate, n_targets), 1)


def test_format_1_tasks_have_no_aggregate() -> None:
    payload = E.task_payload(IMAGE, {KEYS[1].public_key: b"{}", KEYS[2].public_key: b"{}"}, LIMITS)
    payload["aggregate"] = "secure-sum"
    with pytest.raises(E.DecodeError, match="unknown field"):
        E.AuthorChain(KEYS[0]).append(E.TASK, payload, 1)
