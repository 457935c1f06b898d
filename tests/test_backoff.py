"""The one back-off of every retry loop (``ptm_p2p/backoff.py``): doubling, capped, jittered,
reset after a success; and the loops that use it keep their pauses within their bounds."""

from __future__ import annotations

import random

import pytest

from ptm_p2p.backoff import Backoff
from ptm_p2p.site.faults import LocalFaults


def test_pauses_double_from_first_up_to_the_cap_with_jitter() -> None:
    backoff = Backoff(0.5, 4.0, (0.75, 1.25), random.Random(7))
    pauses = [backoff.next() for _ in range(8)]
    nominal = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    for pause, step in zip(pauses, nominal, strict=True):
        assert 0.75 * step <= pause <= min(1.25 * step, 4.0)
    assert backoff.nominal == 4.0 and backoff.started
    assert len({round(p, 9) for p in pauses[:3]}) == 3
    assert len({round(p, 9) for p in pauses[4:]}) > 1  # jittered at the cap, not in step


def test_never_above_the_cap_even_with_jitter() -> None:
    backoff = Backoff(1.0, 2.0, (1.0, 3.0), random.Random(1))
    assert all(backoff.next() <= 2.0 for _ in range(50))


def test_reset_starts_again_from_first() -> None:
    backoff = Backoff(0.2, 2.0, (1.0, 1.0))
    assert [backoff.next() for _ in range(5)] == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0])
    backoff.reset()
    assert not backoff.started and backoff.next() == pytest.approx(0.2)


def test_at_counts_attempts_without_state_and_survives_huge_attempts() -> None:
    backoff = Backoff(0.25, 5.0, (1.0, 1.0))
    assert [backoff.at(n) for n in range(6)] == pytest.approx([0.25, 0.5, 1, 2, 4, 5])
    assert backoff.at(10_000) == 5.0
    assert not backoff.started


def test_two_retrying_daemons_do_not_fall_in_step() -> None:
    a, b = Backoff(1.0, 60.0), Backoff(1.0, 60.0)
    assert [a.next() for _ in range(5)] != [b.next() for _ in range(5)]


@pytest.mark.parametrize(
    ("first", "cap", "jitter"), [(0.0, 1.0, (0.5, 1.0)), (2.0, 1.0, (0.5, 1.0)), (1, 2, (1, 0.5))]
)
def test_a_wrong_back_off_is_refused_at_once(
    first: float, cap: float, jitter: tuple[float, float]
) -> None:
    with pytest.raises(ValueError, match="a back-off needs"):
        Backoff(first, cap, jitter)


def test_local_faults_back_off_per_file_and_forget_it_when_cleared() -> None:
    faults = LocalFaults(first=0.5, cap=4.0)
    waits = [faults.failed("tasks.db", OSError("disk full"), "write") for _ in range(6)]
    assert 0.375 <= waits[0] <= 0.625 and all(w <= 4.0 for w in waits)
    assert max(waits[-2:]) >= 3.0  # reached the cap
    other = faults.failed("witness.json", OSError("read-only"), "write")
    assert other <= 0.625  # its own back-off
    faults.cleared("tasks.db")
    assert faults.failed("tasks.db", OSError("disk full"), "write") <= 0.625
