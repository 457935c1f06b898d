"""Federated rounds over the real network: one round = one signed task through the hub.

``NetworkRunner`` is the ``RoundRunner`` of a live collaboration. Each call publishes one
task (the algorithm's image pinned by digest, each site's JSON request sealed to that site)
with the researcher's ``Client``, waits until every target has answered, opens the sealed
results from the researcher's own verified copy of the log and returns the decoded outputs.
Keep one ``Client`` open for all rounds of a study: it holds the connection to the hub and
the verified copy, so a round costs no reconnect and no catch-up.

    from ptm_p2p.client import Client
    from ptm_p2p.algorithms import coxph
    from ptm_p2p.algorithms.runner import NetworkRunner, images_from_registry

    images = images_from_registry()                   # short name -> repo@sha256:…
    with Client("researcher/", "invite.json") as client:
        runner = NetworkRunner(client, images, "gbsg2")
        fit = coxph.fit(runner, ["hospital-a", "hospital-b"], "time", "cens",
                        ["age", "tsize"], data="gbsg2")
    runner.rounds                                     # RoundInfo per round: bytes, seconds

A hub that restarts under a study costs it nothing: within a round's deadline the client
reconnects with back-off and goes on where the round stood (a task whose submit may or may
not have reached the hub is submitted again byte for byte, never signed anew). With a
``StudyState`` (``ptm_p2p.client.study_state``) every round is recorded in the researcher's
home as it completes; when the hub stays away past a round's deadline the runner raises
``StudyInterrupted`` naming the last completed round (exit code 5 from ``ptm study``), and a
runner given the same state again reads the completed rounds' answers back from the log and
publishes only the rest:

    state = StudyState.load(StudyState.path_for(client.home.path, study_id))
    runner = network.NetworkRunner(client, state.images, "gbsg2", state=state)

The requests and answers are exactly what local mode passes (``rounds.LocalRunner``): the
site containers run ``survival_site.compute`` on the same numbers, so a network fit equals
``fit_local`` on the same frames bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ptm_p2p.algorithms.rounds import RoundInfo, check_outputs
from ptm_p2p.errors import NetworkError, StudyError
from ptm_p2p.ledger.secagg import SecureSum

if TYPE_CHECKING:
    from ptm_p2p.client.study_state import StudyState

# The three survival algorithms, as ``ptm dev up`` pushes them (``<registry>/ptm/<name>``).
SURVIVAL_IMAGES = ("coxph-pooled", "coxph-stratified", "km")
DEFAULT_REGISTRY = "127.0.0.1:5000"
# A round's container work is well under a second; the default leaves room for a slow
# site pulling the image first. The task's own timeout (``timeout_s``) is the same.
DEFAULT_ROUND_TIMEOUT = 300.0


class StudyInterrupted(StudyError):
    """A round could not complete for want of the hub (or another network failure) before
    its deadline. ``last_round`` is the last completed round (0: none), ``state_path`` the
    study state to resume from (None when the runner kept none). ``ptm`` exits with the
    cause's code: 5 when the hub was out of reach."""

    def __init__(self, message: str, last_round: int, state_path: str | None) -> None:
        super().__init__(message)
        self.last_round = last_round
        self.state_path = state_path


def _compact(value: Any) -> bytes:
    """JSON as the client seals it and the images write it: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def images_from_registry(
    registry: str = DEFAULT_REGISTRY,
    names: tuple[str, ...] = SURVIVAL_IMAGES,
    tag: str = "latest",
    prefix: str = "ptm",
) -> dict[str, str]:
    """Resolve ``<registry>/<prefix>/<name>:<tag>`` to ``repo@sha256:…`` for each name, now.

    A round publishes the digest, never the tag, so every round of one study runs the same
    image even if the tag moves meanwhile.
    """
    from ptm_p2p.client.image_digests import resolve_image

    return {name: resolve_image(f"{registry}/{prefix}/{name}:{tag}") for name in names}


class NetworkRunner:
    """A ``RoundRunner`` over the researcher's client: one published task per round.

    ``images`` maps the algorithm's short name (``coxph-pooled``, …) to the reference to
    publish (``repo@sha256:…``; a tag is resolved at each publish, so prefer digests);
    ``data_label`` is the site data source every task reads. ``on_round(number, info)`` is
    called after each round (the CLI prints it); ``on_progress(view)`` sees each per-site
    progress view while a round waits. ``rounds`` keeps a ``RoundInfo`` per round: the JSON
    bytes sent to and received from each site, and the wall time from publish to the last
    opened result.
    """

    def __init__(
        self,
        client: Any,
        images: Mapping[str, str],
        data_label: str,
        on_round: Callable[[int, RoundInfo], None] | None = None,
        *,
        timeout: float = DEFAULT_ROUND_TIMEOUT,
        memory_mb: int = 512,
        on_progress: Callable[[Any], None] | None = None,
        state: StudyState | None = None,
    ) -> None:
        self.client = client
        self.images = dict(images)
        self.data_label = data_label
        self.on_round = on_round
        self.on_progress = on_progress
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.rounds: list[RoundInfo] = []
        # Completed rounds recorded in ``state`` are read back from the log, not published.
        self.state = state

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.rounds)

    def __call__(
        self, image: str, requests: Mapping[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        if image not in self.images:
            raise StudyError(
                f"no image for {image!r} (have: {', '.join(sorted(self.images)) or 'none'}); "
                "run `ptm dev up` or pass its repo@sha256:… reference"
            )
        if not requests:
            raise StudyError(f"{image}: a round needs at least one site")
        from ptm_p2p.client.study_state import CompletedRound, digest

        sent = {site: len(_compact(request)) for site, request in requests.items()}
        number = len(self.rounds) + 1
        asked = digest(dict(requests))
        started = time.perf_counter()
        # Within the round's deadline a lost hub is reached again (back-off, jitter, cap).
        deadline = time.monotonic() + self.timeout
        with self._round_errors(image, number), self.client.session.reconnecting(deadline):
            outputs, task, replayed = self._round(image, requests, number, asked)
        seconds = time.perf_counter() - started
        checked = check_outputs(image, outputs)
        if self.state is not None and not replayed:
            label = self._label(image, requests)
            self.state.complete(CompletedRound(number, image, label, asked, task, digest(checked)))
        info = RoundInfo(
            self._label(image, requests),
            seconds,
            sent,
            {site: len(_compact(output)) for site, output in checked.items()},
            replayed,
        )
        self.rounds.append(info)
        if self.on_round is not None:
            self.on_round(number, info)
        return checked

    @contextlib.contextmanager
    def _round_errors(self, image: str, number: int) -> Iterator[None]:
        """Name the image and round in a failure; a network failure past the round's
        deadline becomes ``StudyInterrupted`` (exit 5), naming the last completed round."""
        try:
            yield
        except StudyError as exc:
            raise StudyError(f"{image}, round {number}: {exc}{self._stopped()}", exc.sites) from exc
        except NetworkError as exc:
            raise StudyInterrupted(
                f"{image}, round {number} could not complete: {exc}{self._stopped()}",
                number - 1,
                None if self.state is None else str(self.state.path),
            ) from exc

    def secure_sum(self, image: str, requests: Mapping[str, dict[str, Any]]) -> SecureSum:
        """A secure-aggregation round (``Client.sum_round``): only the sum over the sites
        opens; a site that does not answer is dropped and the round published again
        without it. Recorded in the ``StudyState``, read back when resumed
        (``algorithms/secure_study.py``)."""
        from ptm_p2p.algorithms.secure_study import recorded_sum

        if image not in self.images:
            raise StudyError(f"no image for {image!r} (have: {', '.join(sorted(self.images))})")
        number = len(self.rounds) + 1
        started = time.perf_counter()
        deadline = time.monotonic() + self.timeout * max(1, len(requests) - 1)
        with self._round_errors(image, number), self.client.session.reconnecting(deadline):
            result, replayed = recorded_sum(
                self.client, self.state, number, image, self._label(image, requests), requests,
                lambda: self.client.sum_round(
                    self.images[image],
                    {site: dict(request) for site, request in requests.items()},
                    data=[self.data_label],
                    timeout=self.timeout,
                    algorithm=image,
                    on_progress=self.on_progress,
                    memory_mb=self.memory_mb,
                ),
            )  # fmt: skip
        info = RoundInfo(
            self._label(image, requests) + " (secure sum)",
            time.perf_counter() - started,
            {site: len(_compact(request)) for site, request in requests.items()},
            dict(result.answer_bytes),
            replayed,
        )
        self.rounds.append(info)
        if self.on_round is not None:
            self.on_round(number, info)
        return result

    @staticmethod
    def _label(image: str, requests: Mapping[str, dict[str, Any]]) -> str:
        step = next(iter(requests.values())).get("step")
        return f"{image} {step}" if isinstance(step, str) else image

    def _stopped(self) -> str:
        """What a failed round's message adds: the last completed round, how to go on."""
        done = len(self.rounds)
        last = f"round {done}" if done else "none"
        if self.state is None:
            return f"\nthe study stopped; last completed round: {last}"
        return (
            f"\nthe study stopped; last completed round: {last} (recorded in "
            f"{self.state.path}); run the same `ptm study` command with --resume (or give "
            f"NetworkRunner this StudyState again) to go on from round {done + 1} without "
            "publishing the completed rounds again"
        )

    def _round(
        self, image: str, requests: Mapping[str, dict[str, Any]], number: int, asked: str
    ) -> tuple[dict[str, Any], str, bool]:
        """The round's outputs, its task id and whether they were read back from the log."""
        from ptm_p2p.client.study_state import PendingRound, digest

        state = self.state
        if state is not None and number <= len(state.rounds):
            done = state.rounds[number - 1]
            if (done.image, done.requests) != (image, asked):
                raise StudyError(
                    f"the study asks something else in round {number} than the recorded run "
                    f"did (task {done.task[:16]}…): its options, sites or data changed; start "
                    "it afresh (without --resume)"
                )
            outputs = self._collect(done.task, requests)
            if digest(outputs) != done.outputs:
                raise StudyError(
                    f"the answers of task {done.task[:16]}… read back from the log differ from "
                    f"those recorded in {state.path}; start the study afresh (without --resume)"
                )
            return outputs, done.task, True
        pending = None if state is None else state.pending
        if pending is not None and (pending.number, pending.image, pending.requests) == (
            number,
            image,
            asked,
        ):
            # An earlier run published this round (or may have: its submit was on the way
            # when it stopped): wait for that task rather than sign a second one.
            task = pending.task or self._own_task_after(pending.after_seq, image, requests)
            if task:
                if not pending.task and state is not None:
                    state.publish(PendingRound(number, image, asked, pending.after_seq, task))
                return self._collect(task, requests, wait=True), task, False
        after_seq = 0
        if state is not None:
            self.client.sync()
            after_seq = self.client.state.heads.get(self.client.home.public_key, (0, b""))[0]
            state.publish(PendingRound(number, image, asked, after_seq))
        view = self.client.publish(
            self.images[image],
            inputs={site: _compact(request) for site, request in requests.items()},
            data=[self.data_label],
            timeout_s=min(int(self.timeout), 7 * 24 * 3600),
            algorithm=image,
            memory_mb=self.memory_mb,
        )
        if state is not None:
            state.publish(PendingRound(number, image, asked, after_seq, view.id))
        return self._collect(view.id, requests, wait=True), view.id, False

    def _own_task_after(
        self, after_seq: int, image: str, requests: Mapping[str, dict[str, Any]]
    ) -> str:
        """The id of our entry ``after_seq + 1`` if it is this round's task, else ""."""
        from ptm_p2p.ledger.entry import Entry

        client = self.client
        client.sync()
        me = client.home.public_key
        seq, _ = client.state.heads.get(me, (0, b""))
        if seq <= after_seq:
            return ""  # the submit never reached the hub
        sites = client.sites()
        targets = {sites.get(site) for site in requests}
        for task in client.state.tasks.values():
            if task.publisher != me or task.algorithm != image:
                continue
            (raw,) = client.follower.store.raw_range(task.index, task.index + 1)
            if Entry.from_bytes(raw).seq == after_seq + 1:
                same = task.image == self.images[image] and set(task.targets) == targets
                return task.hash.hex() if same else ""
        return ""

    def _collect(
        self, task: str, requests: Mapping[str, dict[str, Any]], wait: bool = False
    ) -> dict[str, Any]:
        """Each requested site's decoded answer to ``task``, from the verified log.

        With ``wait``, follows the task until every site answered (or the round's time ran
        out) first. A site that did not compute is named with its reason: the algorithm's
        own (sealed to us) where it gave one, else the public one.
        """
        failures: dict[str, str] = {}
        if wait:
            view = self.client.wait(task, timeout=self.timeout + 30, on_progress=self.on_progress)
            for site, state in view.progress.items():
                if state not in _FINAL:
                    failures[site] = f"no answer within {self.timeout:g} s ({state})"
        answers = self.client.results(task)
        by_key = {a.key.hex(): a for a in answers.values()}
        outputs: dict[str, Any] = {}
        for site in requests:
            answer = answers.get(site) or by_key.get(site.lower())
            if answer is None:
                failures.setdefault(site, "no answer in the log")
            elif answer.status != "ok":
                from ptm_p2p.client.researcher import why_not_ok  # the client only over a network

                failures[site] = f"{answer.status}: {why_not_ok(answer)}"
            else:
                outputs[site] = answer.json()
        if failures:
            detail = "; ".join(f"{site}: {why}" for site, why in sorted(failures.items()))
            raise StudyError(f"task {task[:16]}… did not complete: {detail}", failures)
        return outputs


_FINAL = ("ok", "failed", "timeout", "refused", "cancelled")


def describe_round(number: int, info: RoundInfo) -> str:
    """One progress line for a finished round (what ``ptm study`` prints on stderr)."""
    sent = sum(info.request_bytes.values())
    received = sum(info.answer_bytes.values())
    largest = max(info.answer_bytes.values(), default=0)
    if info.replayed:
        return (
            f"round {number} ({info.label}): completed by an earlier run; {len(info.answer_bytes)}"
            f" site(s)' answers read back from the log (received {_kb(received)})"
        )
    return (
        f"round {number} ({info.label}): {len(info.answer_bytes)} site(s) answered in "
        f"{info.seconds:.2f} s; sent {_kb(sent)}, received {_kb(received)} "
        f"(largest answer {_kb(largest)})"
    )


def _kb(n: int) -> str:
    return f"{n} B" if n < 1000 else f"{n / 1000:.1f} kB"
