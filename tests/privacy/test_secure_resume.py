"""A study with secure-sum rounds resumes: each completed secure round is recorded in the
study state (``client/study_state.py``) and read back from the log by a resumed study
(``algorithms/secure_study.py``): the last task's masked answers opened and summed again,
the same total, nothing published. Real site code (KM counts on a grid), real masking, a
real ``StudyState`` file on disk; the log is the researcher's opened results
(``SiteAnswer``, as ``Client.results`` returns them)."""

from __future__ import annotations

import json

import pytest

from ptm_p2p.algorithms import datasets, survival_site
from ptm_p2p.algorithms.rounds import tables_from_frames
from ptm_p2p.algorithms.secure_study import recorded_sum
from ptm_p2p.client.researcher import SiteAnswer
from ptm_p2p.client.study_state import StudyState
from ptm_p2p.errors import StudyError
from ptm_p2p.ledger import crypto, secagg
from ptm_p2p.ledger.secagg import SecureSum

NAMES = ("hospital-a", "hospital-b", "hospital-c")
GRID = [30.0 * i for i in range(1, 101)]
REQUEST = {"duration": "time", "event": "cens", "secure_sum": {"grid": GRID}}


class Log:
    """The researcher's opened results per task (what ``Client.results`` returns)."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, SiteAnswer]] = {}

    def results(self, task: str) -> dict[str, SiteAnswer]:
        return self.tasks[task]


@pytest.fixture
def published():
    frames = dict(zip(NAMES, datasets.split(datasets.load_gbsg2(), datasets.SIZES), strict=True))
    tables = tables_from_frames(frames)
    keys = {s: crypto.Signer.generate() for s in NAMES}
    targets = [k.public_key for k in keys.values()]
    log = Log()
    task = "ab" * 32
    answers = {}
    for s in NAMES:
        raw = json.dumps(survival_site.compute("km", tables[s], REQUEST, 5, 30.0)).encode()
        output = secagg.mask_output(keys[s], targets, bytes.fromhex(task), raw)
        answers[s] = SiteAnswer(s, keys[s].public_key, "ok", None, "sha256:" + "0" * 64, {}, 7,
                                output)  # fmt: skip
    log.tasks[task] = answers
    total, public = secagg.unmask_by_sum({s: a.json() for s, a in answers.items()})
    dropped = {"clinic-e": "refused: fewer than 5 patients"}
    result = SecureSum(total, public, NAMES, dropped, ("cd" * 32, task),
                       {s: len(a.output) for s, a in answers.items()})  # fmt: skip
    return log, result


def test_a_completed_secure_round_is_read_back_not_published(tmp_path, published) -> None:
    log, result = published
    requests = {s: dict(REQUEST) for s in NAMES}
    state = StudyState.new(tmp_path, {"study": "km", "secure": True}, {"km": "img@sha256:0"})
    got, replayed = recorded_sum(log, state, 1, "km", "km", requests, lambda: result)
    assert got is result and not replayed
    resumed = StudyState.load(state.path)  # a new run of the same study
    (done,) = resumed.rounds
    assert done.secure and done.tasks == result.tasks and done.sites == NAMES
    assert done.dropped == result.dropped and done.task == result.tasks[-1]

    def publish() -> SecureSum:
        raise AssertionError("a completed round must not be published again")

    again, replayed = recorded_sum(log, resumed, 1, "km", "km", requests, publish)
    assert replayed and again.total == result.total and again.public == result.public
    assert again.sites == NAMES and again.dropped == result.dropped
    # the next round is not recorded yet: it runs
    nxt, replayed = recorded_sum(log, resumed, 2, "km", "km", requests, lambda: result)
    assert not replayed and len(StudyState.load(state.path).rounds) == 2


def test_a_changed_round_or_a_changed_total_is_refused(tmp_path, published) -> None:
    log, result = published
    requests = {s: dict(REQUEST) for s in NAMES}
    state = StudyState.new(tmp_path, {"study": "km"}, {"km": "img@sha256:0"})
    recorded_sum(log, state, 1, "km", "km", requests, lambda: result)
    other = {s: {**REQUEST, "duration": "age"} for s in NAMES}
    with pytest.raises(StudyError, match="asks something else"):
        recorded_sum(log, state, 1, "km", "km", other, lambda: result)
    del log.tasks[result.tasks[-1]]["hospital-b"]
    with pytest.raises(StudyError, match="not in the log"):
        recorded_sum(log, state, 1, "km", "km", requests, lambda: result)


def test_a_plain_round_record_is_unchanged(tmp_path) -> None:
    """Rounds recorded before secure rounds were (no ``secure`` key) still load."""
    state = StudyState.new(tmp_path, {"study": "cox"}, {"coxph-pooled": "img@sha256:0"})
    state.save()
    data = json.loads(state.path.read_text())
    data["rounds"] = [{"number": 1, "image": "coxph-pooled", "label": "describe",
                       "requests": "r", "task": "t", "outputs": "o"}]  # fmt: skip
    state.path.write_text(json.dumps(data))
    (done,) = StudyState.load(state.path).rounds
    assert not done.secure and done.to_dict() == data["rounds"][0]
