"""Differencing across secure sums: a researcher who gets the total of a query over sites
{A, B, C} and then the same query's total over {A, B} learns C's own answer by subtraction.
Each site's disclosure record refuses to join a secure sum that, with the same query's
earlier totals it took part in (those that could open), would isolate one site's answer —
and still joins the rerun after a real drop, whose first total never opened.

Real SQLite records, real CSV data (GBSG2 split 360/214/112), the real site code for the
answers (``survival_site.compute``, KM counts on a grid), the real masking and sum
(``ledger/secagg.py``), and ``LedgerView`` over real signed task entries: the attacker
subtracts every pair of totals it receives and counts the site vectors it recovers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ptm_p2p.algorithms import datasets, survival_site
from ptm_p2p.algorithms.rounds import tables_from_frames
from ptm_p2p.ledger import crypto, secagg
from ptm_p2p.ledger import entry as E
from ptm_p2p.ledger.replay import LoggedTask, Result
from ptm_p2p.site.disclosure import (
    DISCLOSURE_FILE,
    REFUSED,
    DisclosureRecord,
    LedgerView,
    isolated,
    parse_request,
)

K = 5
IMAGE = "127.0.0.1:5000/ptm/km@sha256:" + "1" * 64
GRID = [30.0 * i for i in range(1, 101)]
QUERY = {"duration": "time", "event": "cens", "data": "gbsg2", "secure_sum": {"grid": GRID}}
NAMES = ("hospital-a", "hospital-b", "hospital-c")


class Ledger:
    """The signed task entries and their results, as a site's verified copy holds them:
    what ``LedgerView`` reads (``log.state.tasks``, ``store.raw``)."""

    def __init__(self) -> None:
        self.researcher = crypto.Signer.generate()
        self.chain = E.AuthorChain(self.researcher)
        self.entries: list[bytes] = []
        self.tasks: dict[bytes, LoggedTask] = {}
        self.log = self
        self.state = self
        self.store = self

    def publish(self, keys: dict[str, crypto.Signer], names: tuple[str, ...]) -> LoggedTask:
        n = len(self.entries) + 1
        limits = {"timeout_s": 60, "memory_mb": 64, "cpu_millis": 100}
        inputs = {keys[s].public_key: json.dumps(QUERY).encode() for s in names}
        payload = E.task_payload_v2(self.researcher, n, IMAGE, inputs, limits,
                                    aggregate="secure-sum")  # fmt: skip
        entry = self.chain.append(E.TASK, payload, n)
        self.entries.append(entry.raw)
        targets = tuple(keys[s].public_key for s in names)
        task = LoggedTask(
            entry.hash, self.researcher.public_key, IMAGE, targets, limits, n - 1, "km"
        )
        self.tasks[entry.hash] = task
        return task

    def raw(self, index: int) -> bytes:
        return self.entries[index]

    def answer(self, task: LoggedTask, site: bytes, status: str) -> None:
        task.results[site] = Result(task.hash, site, status, "sha256:" + "1" * 64, b"", 0, b"")


@pytest.fixture
def world(tmp_path: Path):
    frames = dict(zip(NAMES, datasets.split(datasets.load_gbsg2(), datasets.SIZES), strict=True))
    ledger = Ledger()
    keys = {s: crypto.Signer.generate() for s in NAMES}
    records = {}
    for s, frame in frames.items():
        (tmp_path / s).mkdir()
        frame.to_csv(tmp_path / s / "gbsg2.csv", index=False)
        records[s] = DisclosureRecord(tmp_path / s / DISCLOSURE_FILE,
                                      {"gbsg2": tmp_path / s / "gbsg2.csv"}, K)  # fmt: skip
        records[s].ledger = LedgerView(ledger)
    tables = tables_from_frames(frames)
    truth = {s: survival_site.compute("km", tables[s], QUERY, K, 30.0) for s in NAMES}
    return ledger, keys, records, truth


def _round(world, names: tuple[str, ...], drop: str | None = None) -> dict | None:
    """One secure-sum task over ``names``: each site's record checks it; every site that
    agrees answers (masked), ``drop`` refuses. The total, if every target answered ok."""
    ledger, keys, records, truth = world
    task = ledger.publish(keys, names)
    request = parse_request(IMAGE, ["gbsg2"], json.dumps(QUERY).encode())
    masked = {}
    for s in names:
        refusal = None if s == drop else records[s].check(task.hash, task.index, request,
                                                          "aa" * 32, "uni")  # fmt: skip
        if s == drop or refusal is not None:
            ledger.answer(task, keys[s].public_key, "refused")
            records[s].release(task.hash)
            continue
        targets = [keys[n].public_key for n in names]
        raw = json.dumps(truth[s]).encode()
        masked[s] = json.loads(secagg.mask_output(keys[s], targets, task.hash, raw))
        ledger.answer(task, keys[s].public_key, "ok")
        records[s].settle(task.hash, True)
    if len(masked) < len(names):
        return None
    return secagg.unmask_by_sum(masked)[0]


def _recovered(totals: list[dict], truth: dict) -> int:
    """Site vectors the researcher gets by subtracting any total from another."""
    hits = 0
    for a in totals:
        for b in totals:
            if a is b:
                continue
            diff = {f: (np.array(a[f]) - np.array(b[f])).tolist() for f in a}
            for s in truth:
                mine = truth[s]["secure_sum"]
                hits += all(np.allclose(diff[f], mine[f], atol=1e-9) for f in mine)
    return hits


def test_a_subset_rerun_of_a_delivered_sum_is_refused(world) -> None:
    truth = world[3]
    full = _round(world, NAMES)
    assert full is not None
    # the same query over two of the three: both remaining sites refuse
    subset = _round(world, ("hospital-a", "hospital-b"))
    assert subset is None
    _, _, records, _ = world
    assert _recovered([full], truth) == 0
    # what the refusal says: the rule, no count
    request = parse_request(IMAGE, ["gbsg2"], json.dumps(QUERY).encode())
    task = world[0].publish(world[1], ("hospital-a", "hospital-c"))
    reason = records["hospital-a"].check(task.hash, task.index, request, "aa" * 32, "uni")
    assert reason is not None and reason.startswith(REFUSED) and "subtraction" in reason
    # without the rule the subtraction gives hospital-c's answer: that is the attack
    a_b = {f: np.sum([truth[s]["secure_sum"][f] for s in NAMES[:2]], axis=0) for f in full}
    assert _recovered([full, a_b], truth) == 1


def test_the_rerun_after_a_real_drop_is_answered(world) -> None:
    first = _round(world, NAMES, drop="hospital-c")  # hospital-c refuses: no total opens
    assert first is None
    rerun = _round(world, ("hospital-a", "hospital-b"))  # fresh masks, without it
    assert rerun is not None
    truth = world[3]
    assert _recovered([rerun], truth) == 0
    # and then the superset, once the subset's total was delivered, is refused
    assert _round(world, NAMES) is None


def test_a_different_query_or_a_plain_task_is_not_limited(world) -> None:
    assert _round(world, NAMES) is not None
    ledger, keys, records, _ = world
    other = {**QUERY, "secure_sum": {"grid": GRID[:50]}}
    task = ledger.publish(keys, ("hospital-a", "hospital-b"))
    request = parse_request(IMAGE, ["gbsg2"], json.dumps(other).encode())
    assert records["hospital-a"].check(task.hash, task.index, request, "aa" * 32, "uni") is None
    # a field the images ignore does not make the same query new
    padded = {**QUERY, "note": "again"}
    request = parse_request(IMAGE, ["gbsg2"], json.dumps(padded).encode())
    task = ledger.publish(keys, ("hospital-a", "hospital-b"))
    assert records["hospital-a"].check(task.hash, task.index, request, "aa" * 32, "uni")


def test_isolation_is_linear_algebra_over_target_sets() -> None:
    assert isolated([["a", "b", "c"], ["a", "b"]])
    assert isolated([["a", "b", "c"], ["c", "d"], ["a", "b", "d"]])  # 2c = R1 - R3 + R2
    assert not isolated([["a", "b", "c"], ["a", "b", "d"]])  # only c - d
    assert not isolated([["a", "b", "c", "d"], ["a", "b"]])  # c + d, two sites
    assert not isolated([["a", "b"], ["a", "b"]])  # the same sum again
