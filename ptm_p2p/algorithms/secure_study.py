"""Secure-sum rounds in a recorded study: completed ones are read back, not published again.

``NetworkRunner.secure_sum`` runs a round through ``Client.sum_round`` (publish with
``aggregate = "secure-sum"``, drop a site that does not answer and publish again, sum the
masked answers). With a ``StudyState`` (``client/study_state.py``) each completed secure
round is recorded — every task it published, the sites of the last, those dropped, a digest
of the total — and a resumed study (``ptm study --resume``, or the same ``StudyState``
given again) opens the last task's masked answers from the verified log and sums them
again instead of publishing: the same total, so the deterministic driver asks the same next
round. A secure round that was in flight when the study stopped is run again (a new task,
fresh masks; the earlier task's masks could only cancel over the same sites).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ptm_p2p.errors import StudyError
from ptm_p2p.ledger.secagg import SecAggError, SecureSum, unmask_by_sum


def _summary(result: SecureSum) -> dict[str, Any]:
    """What a recorded secure round's digest covers: what the study driver used."""
    return {"total": result.total, "public": result.public, "sites": list(result.sites)}


def recorded_sum(
    client: Any,
    state: Any,
    number: int,
    image: str,
    label: str,
    requests: Mapping[str, dict[str, Any]],
    run: Callable[[], SecureSum],
) -> tuple[SecureSum, bool]:
    """Round ``number``'s secure sum and whether it was read back from the log: from
    ``state`` when that round is recorded there, else ``run()`` (then recorded)."""
    from ptm_p2p.client.study_state import CompletedRound, digest

    asked = digest(dict(requests))
    if state is not None and number <= len(state.rounds):
        return _read_back(client, state, number, image, asked), True
    result = run()
    if state is not None:
        state.complete(
            CompletedRound(
                number,
                image,
                label,
                asked,
                result.tasks[-1],
                digest(_summary(result)),
                tuple(result.tasks),
                tuple(result.sites),
                dict(result.dropped),
            )  # fmt: skip
        )
    return result, False


def _read_back(client: Any, state: Any, number: int, image: str, asked: str) -> SecureSum:
    from ptm_p2p.client.study_state import digest

    done = state.rounds[number - 1]
    if (done.image, done.requests, done.secure) != (image, asked, True):
        raise StudyError(
            f"the study asks something else in round {number} than the recorded run did "
            f"(task {done.task[:16]}…): its options, sites or data changed; start it afresh "
            "(without --resume)"
        )
    answers = client.results(done.task)
    by_key = {a.key.hex(): a for a in answers.values()}
    opened = {}
    for site in done.sites:
        answer = answers.get(site) or by_key.get(site.lower())
        if answer is None or answer.status != "ok":
            raise StudyError(f"task {done.task[:16]}…: {site}'s answer is not in the log")
        opened[site] = answer
    try:
        total, public = unmask_by_sum({site: a.json() for site, a in opened.items()})
    except SecAggError as exc:
        raise StudyError(f"secure aggregation, task {done.task[:16]}…: {exc}") from exc
    result = SecureSum(
        total, public, done.sites, dict(done.dropped), done.tasks,
        {site: len(a.output) for site, a in opened.items()},
    )  # fmt: skip
    if digest(_summary(result)) != done.outputs:
        raise StudyError(
            f"the total of task {done.task[:16]}… read back from the log differs from the one "
            f"recorded in {state.path}; start the study afresh (without --resume)"
        )
    return result
