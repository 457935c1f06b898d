"""Secure aggregation: each site masks its answer so the researcher learns only the sum.

A task that asks for it carries ``aggregate: "secure-sum"`` in its signed format-2 payload
(``docs/ledger.md``, section 3a). The site's container writes, as usual, one JSON object,
split in two by convention::

    {"secure_sum": {NAME: [number, …], …}, "public": {…}}

``public`` goes to the researcher as it is (nothing per patient may be in it: the policy's
minimum group size, a version); ``secure_sum`` never leaves the site in the clear. The site
daemon (which holds the site's key; the container does not) turns each vector into
fixed-point integers modulo 2^192 and adds, for every other target site of the task, a
pairwise mask::

    s_ij  = X25519(site i's key, site j's key)            (both converted from Ed25519)
    seed  = SHA-256("ptm/secagg/v1\\n" ‖ s_ij ‖ min(key_i, key_j) ‖ max(key_i, key_j)
                    ‖ task hash)
    m_ij  = SHAKE-256("ptm/secagg/v1\\n" ‖ seed ‖ u16 len(NAME) ‖ NAME), read as
            big-endian 24-byte integers, one per value
    y_i   = x_i + Σ_{j: key_i < key_j} m_ij − Σ_{j: key_j < key_i} m_ij   (mod 2^192)

Sites i and j compute the same m_ij and add it with opposite signs, so the masks cancel in
the sum of all targets' vectors; the researcher, who holds no s_ij, sees each y_i as a
uniformly random-looking number (it is x_i plus a pseudorandom value it cannot compute), and
any proper subset of the vectors still carries the masks shared with the sites outside it.
No extra round: the keys are the targets' ledger keys, the task hash makes the masks fresh
for every task. A site that does not answer leaves its masks in the others' vectors: the
round is published again, without it (a new task, so new masks). Nothing is ever unmasked.

**Fixed point and its error.** A value x is encoded as round(x · 2^96) modulo 2^192, and
must be finite with |x| ≤ 2^80 (≈ 1.2e24; else ``SecAggError``, checked before any mask).
Every float64 with |x| ≥ 2^-44 (≈ 5.7e-14) is a multiple of 2^-96, so it is encoded
*exactly*; a smaller one is off by at most 2^-97 (≈ 6.3e-30). The integer sum of up to 256
sites stays below 2^88 in size, far from the wrap at 2^191, and is exact; decoding divides
by 2^96 with one correct rounding. So the decoded total differs from the exact sum of the
sites' float64 values by at most half an ulp (relative 2^-53 ≈ 1.1e-16) plus 256 · 2^-97
absolute: below 1e-9 relative for any total whose size is over 2e-20. (Summing the same
floats in plain float64, as the unmasked path does, rounds at each addition.)

Wire form of a masked answer (what the site seals to the researcher)::

    {"secure_sum": {"scheme": "ptm/secagg/v1", "fields": {NAME: BASE64, …}},
     "public": {…}}

each field the concatenated 24-byte big-endian masked values.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ptm_p2p.errors import PtmError
from ptm_p2p.ledger import crypto

SECURE_SUM = "secure-sum"
"""The task payload's ``aggregate`` value that asks for secure aggregation."""
AGGREGATES = (SECURE_SUM,)
SCHEME = "ptm/secagg/v1"
DOMAIN = b"ptm/secagg/v1\n"
MODULUS_BITS = 192
MODULUS = 1 << MODULUS_BITS
SCALE_BITS = 96
SCALE = 1 << SCALE_BITS
VALUE_BYTES = MODULUS_BITS // 8  # 24
VALUE_BOUND = 2.0**80
"""Largest |value| a site may contribute: 256 sites sum to < 2^88, far below the wrap."""
MAX_VALUES = 1 << 16
"""Values per answer, all fields together (65 536 values are 1.5 MiB masked: too big for an
entry anyway; a real answer has at most a few thousand)."""
MAX_SITES = 256
FIELD_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
SECURE_KEY, PUBLIC_KEY = "secure_sum", "public"


class SecAggError(PtmError):
    """An answer that cannot be masked or summed; the message says what and where."""


# --- fixed point --------------------------------------------------------------------------------


def encode(values: Sequence[Any], name: str = "value") -> list[int]:
    """Each value as round(x · 2^96) mod 2^192; SecAggError if one is not a finite number
    within ±2^80 (``name`` and the position say which)."""
    out = []
    for i, x in enumerate(values):
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise SecAggError(f"{name}[{i}] is {x!r}, not a number")
        v = float(x)
        if not math.isfinite(v) or abs(v) > VALUE_BOUND:
            raise SecAggError(
                f"{name}[{i}] = {x!r} is outside the secure-sum range (finite, |x| ≤ 2^80)"
            )
        # v · 2^96 is exact in float64 (a power-of-two scale); round() to an exact int.
        out.append(round(v * SCALE) % MODULUS)
    return out


def decode(values: Sequence[int]) -> list[float]:
    """The signed fixed-point integers as floats (one correctly rounded division each)."""
    half = MODULUS >> 1
    return [(v - MODULUS if v >= half else v) / SCALE for v in values]


# --- masks --------------------------------------------------------------------------------------


def pair_seed(signer: crypto.Signer, other: bytes, task_hash: bytes) -> bytes:
    """The 32-byte seed of the masks between ``signer`` and site ``other`` for one task: the
    same on both sides, fresh per task, unknown to anyone else (the researcher, the hub)."""
    me = signer.public_key
    low, high = sorted((me, other))
    return crypto.sha256(DOMAIN + signer.agree(other) + low + high + task_hash)


def mask_stream(seed: bytes, name: str, count: int) -> list[int]:
    """``count`` pseudorandom integers mod 2^192 for field ``name`` (SHAKE-256 of the seed)."""
    label = name.encode()
    xof = hashlib.shake_256(DOMAIN + seed + len(label).to_bytes(2, "big") + label)
    raw = xof.digest(VALUE_BYTES * count)
    return [
        int.from_bytes(raw[i : i + VALUE_BYTES], "big") for i in range(0, len(raw), VALUE_BYTES)
    ]


def mask(
    signer: crypto.Signer,
    targets: Sequence[bytes],
    task_hash: bytes,
    fields: Mapping[str, Sequence[int]],
) -> dict[str, list[int]]:
    """The encoded ``fields`` of ``signer``'s site plus its pairwise masks with every other
    target (+m towards a higher key, −m towards a lower one)."""
    me = signer.public_key
    if me not in targets:
        raise SecAggError("this site is not a target of the task: it has no masks to add")
    others = [t for t in targets if t != me]
    if not others:
        raise SecAggError("secure aggregation needs at least two target sites")
    out = {name: list(values) for name, values in fields.items()}
    for other in others:
        seed = pair_seed(signer, other, task_hash)
        sign = 1 if me < other else -1
        for name, values in out.items():
            for i, m in enumerate(mask_stream(seed, name, len(values))):
                values[i] = (values[i] + sign * m) % MODULUS
    return out


def add(vectors: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, list[int]]:
    """The sum mod 2^192 of several sites' masked fields (same names, same lengths)."""
    if not vectors:
        raise SecAggError("nothing to sum")
    names = set(vectors[0])
    total = {name: [0] * len(values) for name, values in vectors[0].items()}
    for i, vector in enumerate(vectors):
        if set(vector) != names:
            raise SecAggError(
                f"answer {i + 1} has fields {sorted(vector)}, the first has {sorted(names)}"
            )
        for name, values in vector.items():
            if len(values) != len(total[name]):
                raise SecAggError(
                    f"answer {i + 1}: field {name!r} has {len(values)} values, the first "
                    f"has {len(total[name])}"
                )
            acc = total[name]
            for j, v in enumerate(values):
                acc[j] = (acc[j] + v) % MODULUS
    return total


# --- the container's answer and the masked wire form ----------------------------------------------


def split_answer(output: bytes) -> tuple[dict[str, list[Any]], Any]:
    """A container's ``{"secure_sum": {NAME: [numbers]}, "public": …}`` as (fields, public);
    SecAggError saying what is wrong otherwise."""
    try:
        answer = json.loads(output)
    except ValueError as exc:
        raise SecAggError(f"the answer is not JSON ({exc})") from exc
    if not isinstance(answer, dict) or not isinstance(answer.get(SECURE_KEY), dict):
        raise SecAggError(
            'the answer has no "secure_sum" object: a task that asks for secure aggregation '
            'must answer {"secure_sum": {NAME: [numbers]}, "public": {...}}'
        )
    extra = sorted(set(answer) - {SECURE_KEY, PUBLIC_KEY})
    if extra:
        raise SecAggError(
            f"the answer has keys {extra} besides secure_sum and public: under secure "
            "aggregation nothing else leaves the site"
        )
    fields = answer[SECURE_KEY]
    if not fields:
        raise SecAggError("secure_sum holds no field")
    total = 0
    for name, values in fields.items():
        if not FIELD_PATTERN.fullmatch(name):
            raise SecAggError(f"secure_sum field name {name!r} is not {FIELD_PATTERN.pattern}")
        if not isinstance(values, list) or not values:
            raise SecAggError(f"secure_sum field {name!r} must be a non-empty list of numbers")
        total += len(values)
    if total > MAX_VALUES:
        raise SecAggError(f"secure_sum holds {total} values, over {MAX_VALUES}")
    return fields, answer.get(PUBLIC_KEY, {})


def mask_output(
    signer: crypto.Signer, targets: Sequence[bytes], task_hash: bytes, output: bytes
) -> bytes:
    """What a site seals to the researcher for a secure-sum task: the container's answer
    with its ``secure_sum`` part encoded (range-checked) and masked, ``public`` unchanged."""
    fields, public = split_answer(output)
    encoded = {name: encode(values, name) for name, values in sorted(fields.items())}
    masked = mask(signer, targets, task_hash, encoded)
    wire = {
        SECURE_KEY: {
            "scheme": SCHEME,
            "fields": {name: _to_b64(values) for name, values in masked.items()},
        },
        PUBLIC_KEY: public,
    }
    return json.dumps(wire, sort_keys=True, separators=(",", ":")).encode()


def _to_b64(values: Sequence[int]) -> str:
    return base64.b64encode(b"".join(v.to_bytes(VALUE_BYTES, "big") for v in values)).decode()


def read_masked(answer: Any) -> tuple[dict[str, list[int]], Any]:
    """A masked answer (the wire form, parsed JSON) as (masked fields, public)."""
    part = answer.get(SECURE_KEY) if isinstance(answer, dict) else None
    if not isinstance(part, dict) or part.get("scheme") != SCHEME:
        raise SecAggError(f"not a masked answer of scheme {SCHEME}")
    fields: dict[str, list[int]] = {}
    for name, text in part.get("fields", {}).items():
        try:
            raw = base64.b64decode(text, validate=True)
        except (ValueError, TypeError) as exc:
            raise SecAggError(f"masked field {name!r} is not base64") from exc
        if not raw or len(raw) % VALUE_BYTES:
            raise SecAggError(f"masked field {name!r} is not a whole number of values")
        fields[name] = [
            int.from_bytes(raw[i : i + VALUE_BYTES], "big") for i in range(0, len(raw), VALUE_BYTES)
        ]
    return fields, answer.get(PUBLIC_KEY, {})


@dataclass(frozen=True)
class SecureSum:
    """A secure-sum round as the researcher sees it: the totals over ``sites`` and each
    site's ``public`` part; ``dropped`` names the sites left out (and why), ``tasks`` every
    task published for it (the last one answered by all of ``sites``)."""

    total: dict[str, list[float]]
    public: dict[str, Any]
    sites: tuple[str, ...]
    dropped: dict[str, str] = field(default_factory=dict)
    tasks: tuple[str, ...] = ()
    answer_bytes: dict[str, int] = field(default_factory=dict)


def unmask_by_sum(answers: Mapping[str, Any]) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """The decoded totals of every target's masked answer (parsed JSON, by site name), and
    each site's public part. Only the full set of a task's targets sums to anything: the
    masks of a missing site do not cancel."""
    masked, public = {}, {}
    for site, answer in answers.items():
        try:
            masked[site], public[site] = read_masked(answer)
        except SecAggError as exc:
            raise SecAggError(f"{site}: {exc}") from exc
    total = add(list(masked.values()))
    return {name: decode(values) for name, values in total.items()}, public
