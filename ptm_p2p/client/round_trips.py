"""Rounds of a study: one task over many sites, published, followed and opened as one step.

``run_round`` gives each site's JSON answer, or a ``StudyError`` naming every site that did
not compute (with the honest sites' answers). ``sum_round`` is the secure-aggregation round:
each site masks its answer so that only the sum over the sites opens (``ledger/secagg.py``);
a site that drops out is left out of a fresh round, since its masks can no longer cancel.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from ptm_p2p.client.opener import ResultOpener
from ptm_p2p.client.publisher import DEFAULT_LIMITS, Publisher, TaskSpec
from ptm_p2p.client.task_book import TaskBook
from ptm_p2p.client.views import FINAL, SiteAnswer, TaskView, why_not_ok
from ptm_p2p.errors import PtmError, StudyError
from ptm_p2p.ledger.secagg import SECURE_SUM, SecAggError, SecureSum, read_masked, unmask_by_sum

MAX_ROUND_TIMEOUT_S = 7 * 24 * 3600  # a round's timeout becomes its task's, capped at a week
WAIT_GRACE_S = 30  # how much longer than the task's own timeout a round waits for answers
RERUN_REASON = "secure-sum round published again without it"  # a cancelled round's reason


class RoundOptions(TypedDict, total=False):
    """The keyword options of ``Client.run_round`` and ``Client.sum_round``: the data labels
    the sites read, the round's timeout in seconds, the algorithm's name in the log, a
    callback for each new view of the task, and the container's memory and CPU limits
    (defaults: ``RoundLimits``)."""

    data: Sequence[str]
    timeout: float
    algorithm: str | None
    on_progress: Callable[[TaskView], None] | None
    memory_mb: int
    cpu_millis: int


@dataclass(frozen=True)
class RoundLimits:
    """What every round of a call shares (``RoundOptions``, with their defaults)."""

    data: Sequence[str] = ()
    timeout: float = 600
    algorithm: str | None = None
    on_progress: Callable[[TaskView], None] | None = None
    memory_mb: int = DEFAULT_LIMITS["memory_mb"]
    cpu_millis: int = DEFAULT_LIMITS["cpu_millis"]


@dataclass(frozen=True)
class Answered:
    """A round's task once followed: its last view and the answers that came in."""

    task: TaskView
    view: TaskView
    answers: dict[str, SiteAnswer]  # by the name the log gives each site (its organisation)
    by_input: dict[str, SiteAnswer]  # by the name the round's inputs give it; answered only


class Rounds:
    """Runs rounds with the client's publisher, task book and result opener."""

    def __init__(self, publisher: Publisher, book: TaskBook, opener: ResultOpener) -> None:
        self.publisher = publisher
        self.book = book
        self.opener = opener

    def run(self, image: str, inputs: Mapping[str, Any], limits: RoundLimits) -> dict[str, Any]:
        """One round (``Client.run_round``): each site's answer as JSON, or ``StudyError``."""
        round_ = self._round(image, inputs, limits, aggregate=None)
        failures = {
            site: f"{a.status}: {why_not_ok(a)}"
            for site, a in round_.answers.items()
            if a.status != "ok"
        }
        for site, state in round_.view.progress.items():
            if state not in FINAL:
                failures[site] = f"no answer within {limits.timeout:g} s ({state})"
        if failures:
            honest = {site: a for site, a in round_.by_input.items() if a.status == "ok"}
            raise StudyError(
                f"round {round_.task.id[:16]}… did not complete: {_listed(failures)}",
                failures,
                honest,
            )
        return {site: round_.by_input[site].json() for site in inputs}

    def sum(
        self, image: str, inputs: Mapping[str, Any], limits: RoundLimits, min_sites: int
    ) -> SecureSum:
        """A secure-aggregation round (``Client.sum_round``), published again without the
        sites that dropped out until every remaining one answers."""
        if min_sites < 2:
            raise StudyError("secure aggregation needs at least two sites (min_sites >= 2)")
        remaining = dict(inputs)
        dropped: dict[str, str] = {}
        tasks: list[str] = []
        while True:
            if len(remaining) < min_sites:
                raise StudyError(
                    f"secure aggregation: only {len(remaining)} site(s) left of {len(inputs)} "
                    f"(at least {min_sites} needed); dropped: {_listed(dropped)}",
                    dropped,
                )
            round_ = self._round(image, remaining, limits, SECURE_SUM)
            tasks.append(round_.task.id)
            failed = _not_summable(remaining, round_, limits.timeout)
            if not failed:
                return _secure_sum(round_, dropped, tasks)
            if not round_.view.done:
                # a silent site must not run this round later: its masks are useless now
                with contextlib.suppress(PtmError):
                    self.publisher.cancel(round_.task.id, RERUN_REASON)
            dropped.update(failed)
            for site in failed:
                remaining.pop(site)

    def _round(
        self, image: str, inputs: Mapping[str, Any], limits: RoundLimits, aggregate: str | None
    ) -> Answered:
        """Publish one round's task (each site's input as compact JSON, the round's timeout
        as the task's own), follow it and open what came in."""
        encoded = {
            site: json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
            for site, value in inputs.items()
        }
        spec = TaskSpec(
            data=limits.data,
            timeout_s=min(int(limits.timeout), MAX_ROUND_TIMEOUT_S),
            memory_mb=limits.memory_mb,
            cpu_millis=limits.cpu_millis,
            algorithm=limits.algorithm,
            aggregate=aggregate,
        )
        task = self.publisher.publish(image, "all", b"", encoded, spec)
        deadline = time.monotonic() + limits.timeout + WAIT_GRACE_S
        view = self.book.follow(task.id, deadline, limits.on_progress)
        answers = self.opener.results(self.book.task(task.id))
        by_key = {a.key: a for a in answers.values()}
        keys = self.book.site_keys(list(inputs))
        by_input = {
            site: by_key[key] for site, key in zip(inputs, keys, strict=True) if key in by_key
        }
        return Answered(task, view, answers, by_input)


def _listed(reasons: Mapping[str, str]) -> str:
    return "; ".join(f"{site}: {why}" for site, why in sorted(reasons.items()))


def _not_summable(sites: Mapping[str, Any], round_: Answered, timeout: float) -> dict[str, str]:
    """Why each site that cannot be summed this round cannot: no answer, not ``ok``, or not
    a masked answer of the round's shape."""
    failed: dict[str, str] = {}
    for site in sites:
        answer = round_.by_input.get(site)
        if answer is None:
            state = round_.view.progress.get(site, "no answer")
            failed[site] = f"no answer within {timeout:g} s ({state})"
        elif answer.status != "ok":
            failed[site] = f"{answer.status}: {why_not_ok(answer)}"
    failed.update(_malformed_masked(round_.by_input))
    return failed


def _malformed_masked(answers: Mapping[str, SiteAnswer]) -> dict[str, str]:
    """Sites whose ``ok`` answer is not a masked answer of the round's shape (the fields and
    lengths most sites sent): such a site would stop every rerun from summing, so it is
    dropped like a site that did not answer."""
    shapes: dict[str, tuple[tuple[str, int], ...] | None] = {}
    for site, answer in answers.items():
        if answer.status != "ok":
            continue
        try:
            fields, _ = read_masked(answer.json())
            shapes[site] = tuple(sorted((name, len(v)) for name, v in fields.items()))
        except (StudyError, SecAggError):
            shapes[site] = None
    counts = Counter(shape for shape in shapes.values() if shape is not None)
    usual = counts.most_common(1)[0][0] if counts else None
    return {
        site: "faulty: its answer is not a masked answer of the round's fields and lengths"
        for site, shape in shapes.items()
        if shape is None or shape != usual
    }


def _secure_sum(round_: Answered, dropped: dict[str, str], tasks: list[str]) -> SecureSum:
    """The sum of a round every remaining site answered: only the total opens."""
    answers = round_.by_input
    try:
        total, public = unmask_by_sum({site: a.json() for site, a in answers.items()})
    except SecAggError as exc:
        raise StudyError(f"secure aggregation, task {round_.task.id[:16]}…: {exc}") from exc
    sizes = {site: len(a.output) for site, a in answers.items()}
    return SecureSum(total, public, tuple(answers), dropped, tuple(tasks), sizes)
