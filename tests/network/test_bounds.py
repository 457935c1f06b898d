"""The bounds the daemons keep against hostile peers, in isolation (no processes, no sockets)."""

from __future__ import annotations

import logging

import pytest

from ptm_p2p.errors import ProtocolError
from ptm_p2p.network import protocol
from ptm_p2p.network.framing import FrameBudget
from ptm_p2p.network.rpc import LogLimiter, clip


def test_log_limiter_allows_a_burst_per_window_then_says_how_many_it_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    limiter = LogLimiter(burst=3, window=60.0, clock=lambda: now[0])
    logger = logging.getLogger("test.limiter")
    with caplog.at_level(logging.WARNING, logger="test.limiter"):
        for i in range(1000):
            limiter.log(logger, logging.WARNING, "bad-request", "line %d", i)
        limiter.log(logger, logging.WARNING, "other", "another kind is not held back")
        now[0] = 61.0
        limiter.log(logger, logging.WARNING, "bad-request", "after the window")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == ["line 0", "line 1", "line 2"]
    assert "suppressing" in lines[3]
    assert lines[4] == "another kind is not held back"
    assert lines[5] == "997 more 'bad-request' messages suppressed in the last 61 s"
    assert lines[6] == "after the window"
    assert len(lines) == 7
    assert limiter.suppressed == 997


def test_peer_text_in_messages_is_clipped() -> None:
    with pytest.raises(ProtocolError) as exc:
        protocol.validate_request({"v": 1, "op": "x" * 8_000_000})
    assert len(str(exc.value)) < 200
    assert "8000000 long" in str(exc.value)
    with pytest.raises(ProtocolError) as exc:
        protocol.validate_request({"v": "v" * 100_000, "op": "peers"})
    assert len(str(exc.value)) < 200
    extra = {f"k{i}" + "y" * 10_000: 1 for i in range(500)}
    with pytest.raises(ProtocolError) as exc:
        protocol.validate_request({"v": 1, "op": "peers", **extra})
    assert len(str(exc.value)) < 400
    assert clip("z" * 10_000, 50).endswith("(10000 characters)")


def test_frame_budget_bounds_large_frames_per_peer_and_in_all() -> None:
    mib = 1024 * 1024
    budget = FrameBudget(total=20 * mib, per_peer=8 * mib)
    assert budget.take("a", 100)  # small frames are never charged
    assert budget.take("a", 5 * mib) and not budget.take("a", 5 * mib)  # per peer
    assert budget.take("b", 8 * mib)
    assert budget.take("c", 7 * mib) and not budget.take("d", 1 * mib)  # in all (20 MiB)
    assert budget.take("d", 1000)  # small frames still pass when the budget is spent
    budget.give("b", 8 * mib)
    assert budget.take("d", 1 * mib)
    for peer, size in (("a", 5 * mib), ("c", 7 * mib), ("d", 1 * mib)):
        budget.give(peer, size)
    assert budget.held == 0 and budget.by_peer == {}
