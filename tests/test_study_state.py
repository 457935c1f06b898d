"""The study state file (typed, atomic) and the client's reconnect rules, without a network.

The live behaviour (a hub SIGKILLed under ``ptm study``, ``--resume``) is in
tests/workflow/test_study_hub_restart.py; these pin the file format and the pure pieces.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ptm_p2p.backoff import Backoff
from ptm_p2p.client.session import BACKOFF_CAP, BACKOFF_FIRST, RECONNECT, is_transient
from ptm_p2p.client.study_state import (
    CompletedRound,
    PendingRound,
    StudyState,
    digest,
    study_id,
)
from ptm_p2p.errors import (
    MalformedAnswer,
    NetworkError,
    PeerUnreachable,
    RemoteError,
    StreamClosed,
    StudyError,
)

DEFINITION = {"study": "coxph", "sites": ["a", "b"], "data": "gbsg2", "covariates": ["age"]}
IMAGES = {"coxph-pooled": "127.0.0.1:5000/ptm/coxph-pooled@sha256:" + "0" * 64}


def test_round_trip_through_the_file(tmp_path: Path) -> None:
    state = StudyState.new(tmp_path, DEFINITION, IMAGES)
    assert state.path == tmp_path / "studies" / f"{study_id(DEFINITION)}.json"
    state.save()
    state.publish(PendingRound(1, "coxph-pooled", digest({"a": {}}), after_seq=3))
    state.complete(CompletedRound(1, "coxph-pooled", "describe", "r1", "t1", "o1"))
    state.publish(PendingRound(2, "coxph-pooled", "r2", after_seq=4, task="t2"))
    loaded = StudyState.load(state.path)
    assert loaded.to_dict() == state.to_dict()
    assert loaded.last_completed == 1 and loaded.pending == state.pending
    assert loaded.images == IMAGES and loaded.definition == DEFINITION
    # written atomically: no temporary file left beside it, and readable only by the owner
    assert [p.name for p in state.path.parent.iterdir()] == [state.path.name]
    assert state.path.stat().st_mode & 0o077 == 0


def test_the_id_follows_what_decides_the_requests() -> None:
    assert study_id(DEFINITION) == study_id(dict(reversed(DEFINITION.items())))
    assert study_id(DEFINITION) != study_id({**DEFINITION, "sites": ["a"]})


def test_rounds_complete_in_order(tmp_path: Path) -> None:
    state = StudyState.new(tmp_path, DEFINITION, IMAGES)
    with pytest.raises(StudyError, match="round 2 completed after round 0"):
        state.complete(CompletedRound(2, "coxph-pooled", "x", "r", "t", "o"))


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps({"version": 1}),
        json.dumps({"version": 1, "study": "s", "definition": {}, "images": {}, "rounds": [{}]}),
        json.dumps(
            {
                "version": 1, "study": "s", "definition": {}, "images": {}, "pending": None,
                "rounds": [{"number": 2, "image": "i", "label": "l", "requests": "r",
                            "task": "t", "outputs": "o"}],
            }
        ),
    ],
)  # fmt: skip
def test_a_damaged_state_is_a_clear_study_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "studies" / "x.json"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(StudyError, match=str(path)):
        StudyState.load(path)


def test_another_version_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"version": 99}))
    with pytest.raises(StudyError, match="version 99"):
        StudyState.load(path)


def test_what_reconnecting_may_cure() -> None:
    assert is_transient(PeerUnreachable("no", "refused"))
    assert is_transient(NetworkError("head to hub: no answer in 15 s"))
    assert is_transient(StreamClosed("cut", between_frames=False))
    assert is_transient(RemoteError("unavailable", "busy"))
    assert not is_transient(RemoteError("refused", "not a member"))
    assert not is_transient(MalformedAnswer("a wrong field"))


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    reconnect = Backoff(RECONNECT.first, RECONNECT.cap, RECONNECT.jitter, random.Random(1))
    pauses = [reconnect.at(n) for n in range(12)]
    assert BACKOFF_FIRST / 2 <= pauses[0] <= BACKOFF_FIRST
    assert all(p <= BACKOFF_CAP for p in pauses)
    assert max(pauses[-4:]) >= BACKOFF_CAP / 2  # reached the cap
    assert len({round(p, 6) for p in pauses[-4:]}) == 4  # jittered, not in step
