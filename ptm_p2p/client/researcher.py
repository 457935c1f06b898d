"""The researcher's client: publish tasks, follow them, open their results.

Everything it reports comes from the researcher's own verified copy of the log
(``LogFollower``): a result is shown or decrypted only once its entry is under a hub-signed
checkpoint and has passed the replay rules, exactly as a site checks tasks before running
them. Entries are signed with the home's key under a lock in the home (``author.lock``), so
two processes of one researcher never sign two different entries with one sequence number
(which the hub would record as equivocation, locking the key out).

    with Client("researcher-home", "invite.json") as client:
        task = client.publish("127.0.0.1:5000/ptm/summary:latest", to="all",
                              input=b'{"data": "gbsg2"}', data=["gbsg2"])
        client.wait(task.id, timeout=120)
        for site, answer in client.results(task.id).items():
            print(site, answer.status, answer.json())

Tasks are published in format 2 (``docs/ledger.md``, "Format 2"): each input is boxed from
this researcher to its site and bound to the very task entry being signed. Results are
opened site by site: a site whose output does not open as it signed it (key box, blob id,
decryption, commitment) is reported ``faulty`` with the evidence, and every other site's
answer is still returned.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptm_p2p.client.follower import LogFollower
from ptm_p2p.client.images import resolve_image
from ptm_p2p.client.session import Session
from ptm_p2p.errors import (
    BlobError,
    BlobUnavailable,
    ConfigError,
    FaultyOutput,
    LedgerError,
    NetworkError,
    ProtocolError,
    PtmError,
    StudyError,
    TaskLookupError,
)
from ptm_p2p.home import Home, author_lock, resolve_home
from ptm_p2p.ledger.crypto import sha256
from ptm_p2p.ledger.entry import (
    CANCEL,
    TASK,
    AuthorChain,
    Entry,
    OpenedOutput,
    OutputV2,
    ResultPayloadV2,
    cancel_payload,
    open_output_v2,
    task_payload_v2,
)
from ptm_p2p.ledger.replay import Task
from ptm_p2p.ledger.secagg import (
    SECURE_SUM,
    SecAggError,
    SecureSum,
    read_masked,
    unmask_by_sum,
)
from ptm_p2p.network import protocol
from ptm_p2p.network.invitation import Invitation

INVITATION_FILE = "invitation.json"
DEFAULT_LIMITS = {"timeout_s": 600, "memory_mb": 512, "cpu_millis": 1000}
# The largest answer ciphertext ``results`` fetches: a site's default output limit (1 GiB)
# plus the secretstream overhead, with room.
MAX_ANSWER_BYTES = 1024**3 + 64 * 1024**2
FINAL = ("ok", "failed", "timeout", "refused", "cancelled")
FAULTY = "faulty"
"""``SiteAnswer.status`` of a site whose signed output does not open as signed."""
UNAVAILABLE = "unavailable"
"""``SiteAnswer.status`` of an output whose ciphertext cannot be fetched right now."""

PayloadSource = Mapping[str, Any] | Callable[[int], Mapping[str, Any]]
"""A payload, or a function of the seq the entry will be signed with that makes it (a
format-2 task binds its inputs to that seq)."""


@dataclass(frozen=True)
class SiteAnswer:
    """One site's verified result, opened with the researcher's key.

    ``status`` is what the site signed, except ``faulty`` (the output does not open as the
    site signed it: ``fault`` names the failed check, ``reason`` the evidence, and
    ``signed_status`` what the site claimed) and ``unavailable`` (the ciphertext is outside
    the log and cannot be fetched now). Neither has an output."""

    site: str
    key: bytes
    status: str
    reason: str | None
    image_digest: str
    timings: dict[str, int]
    index: int
    output: bytes = field(repr=False)
    fault: str | None = None
    signed_status: str | None = None
    nonce: bytes = field(default=b"", repr=False)
    """Format 2: the commitment nonce ``n`` (reveal it with the output to prove it)."""
    log_nonce: bytes = field(default=b"", repr=False)
    """Format 2: the log nonce ``l`` (checks the site's container log, if it hands it over)."""
    format: int = 2

    def json(self) -> Any:
        """The output parsed as JSON (what ``ptm_p2p.algorithm`` writes)."""
        try:
            return json.loads(self.output) if self.output else None
        except ValueError as exc:
            raise StudyError(f"{self.site}: the output is not JSON ({exc})") from exc

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "key": self.key.hex(),
            "status": self.status,
            "reason": self.reason,
            "image_digest": self.image_digest,
            "timings_ms": self.timings,
            "entry": self.index,
            "output_bytes": len(self.output),
            "fault": self.fault,
            "signed_status": self.signed_status,
            "format": self.format,
        }


@dataclass(frozen=True)
class TaskView:
    """A task as the verified log shows it, with each target's progress."""

    id: str
    index: int
    image: str
    publisher: str
    algorithm: str | None
    progress: dict[str, str]  # site -> not seen | received | ok | failed | …
    cancelled: bool

    @property
    def done(self) -> bool:
        return all(state in FINAL for state in self.progress.values())

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for state in self.progress.values():
            out[state] = out.get(state, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.id,
            "entry": self.index,
            "image": self.image,
            "publisher": self.publisher,
            "algorithm": self.algorithm,
            "cancelled": self.cancelled,
            "done": self.done,
            "sites": self.progress,
        }


def find_invitation(home: Path, invitation: str | Path | None) -> Invitation:
    """The invitation: the given file, else ``HOME/invitation.json``, else ``PTM_INVITATION``."""
    candidates = [invitation, home / INVITATION_FILE, os.environ.get("PTM_INVITATION")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return Invitation.load(Path(candidate))
    if invitation:
        raise ConfigError(f"invitation file {invitation} does not exist")
    raise ConfigError(
        f"no invitation: pass --invitation FILE (the file the hub operator gave you), copy it "
        f"to {home / INVITATION_FILE}, or set PTM_INVITATION"
    )


class Client:
    """A researcher's connection to a collaboration; keep one open across rounds."""

    def __init__(self, home: str | Path | None = None, invitation: str | Path | None = None):
        self.home = Home.load(resolve_home(home))
        self.invitation = find_invitation(self.home.path, invitation)
        self.follower = LogFollower(self.home, self.invitation)
        try:
            self.session = Session(self.home.signer.seed, self.invitation.hub_addr)
        except BaseException:
            self.follower.close()
            raise

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()
        self.follower.close()

    # --- the verified log ------------------------------------------------------------------

    def sync(self) -> int:
        """Catch the verified copy up with the hub; returns its size."""
        return self.session.call(self._sync)

    async def _sync(self) -> int:
        assert self.session.hub is not None
        return await self.follower.sync(self.session.hub)

    @property
    def state(self) -> Any:
        return self.follower.state

    def sites(self) -> dict[str, bytes]:
        """Active sites of the collaboration: organisation -> key."""
        return {m.org: m.key for m in self.state.active_members("site")}

    def _site_keys(self, to: str | Sequence[str]) -> list[bytes]:
        sites = self.sites()
        if to == "all":
            if not sites:
                raise TaskLookupError("the collaboration has no admitted sites yet")
            return list(sites.values())
        names = [to] if isinstance(to, str) else list(to)
        keys: list[bytes] = []
        by_key = {key.hex(): key for key in sites.values()}
        for name in names:
            key = sites.get(name) or by_key.get(name.lower())
            if key is None:
                known = ", ".join(sorted(sites)) or "none yet"
                raise TaskLookupError(
                    f"no admitted site named {name!r} (by organisation or key); sites: {known}"
                )
            if key not in keys:
                keys.append(key)
        return keys

    def _task(self, task_id: str) -> Task:
        """The task with this id (or unique prefix, or #index); syncs once if it is unknown."""
        try:
            return self._task_in_copy(task_id)
        except TaskLookupError:
            self.sync()
            return self._task_in_copy(task_id)

    def _task_in_copy(self, task_id: str) -> Task:
        text = task_id.strip().lower().lstrip("#")
        tasks = self.state.tasks
        if text.isdigit() and len(text) < 16:
            found = [t for t in tasks.values() if t.index == int(text)]
        else:
            found = [t for h, t in tasks.items() if h.hex().startswith(text)] if text else []
        if len(found) != 1:
            what = "no task" if not found else f"{len(found)} tasks"
            raise TaskLookupError(
                f"{what} with id {task_id!r} in this home's verified copy of the log "
                f"({len(tasks)} tasks); give the id `ptm publish` printed (or `ptm tasks`)"
            )
        task: Task = found[0]
        return task

    # --- signing ---------------------------------------------------------------------------

    def _submit(self, kind: str, payload: PayloadSource) -> tuple[Entry, int]:
        """Sign ``payload`` as our next entry and submit it; the entry and its log index.

        The entry is signed once, after asking the hub for our chain's head. If the submit
        fails on the way (the hub restarting), the session's reconnect sends the *same*
        signed bytes again: the hub answers a resubmission with the index it gave the first
        time, so a submit that did reach the hub is neither published twice nor followed by a
        second, different entry with the same sequence number (equivocation).

        ``payload`` may be a function of the entry's seq (known only once the hub has told
        us our head, under the author lock): a format-2 task binds its inputs to it.
        """
        with author_lock(self.home.path):
            head = self.session.call(self._head)
            chain = AuthorChain(self.home.signer, head.seq, head.hash)
            made = payload(head.seq + 1) if callable(payload) else payload
            entry = chain.append(kind, made, int(time.time() * 1000))
            return entry, self.session.call(self._submit_entry, entry)

    async def _head(self) -> protocol.HeadReply:
        hub = self.session.hub
        assert hub is not None
        return await hub.ask(protocol.HeadRequest(author=self.home.public_key), timeout=15)

    async def _submit_entry(self, entry: Entry) -> int:
        hub = self.session.hub
        assert hub is not None
        answer = await hub.ask(protocol.SubmitRequest(entries=[entry.raw]), timeout=30)
        if len(answer.indexes) != 1:
            raise ProtocolError(f"the hub answered one submitted entry with {answer.indexes}")
        return answer.indexes[0]

    # --- tasks -----------------------------------------------------------------------------

    def publish(
        self,
        image: str,
        to: str | Sequence[str] = "all",
        input: bytes = b"",
        inputs: Mapping[str, bytes] | None = None,
        data: Sequence[str] = (),
        timeout_s: int = DEFAULT_LIMITS["timeout_s"],
        memory_mb: int = DEFAULT_LIMITS["memory_mb"],
        cpu_millis: int = DEFAULT_LIMITS["cpu_millis"],
        algorithm: str | None = None,
        description: str | None = None,
        aggregate: str | None = None,
    ) -> TaskView:
        """Sign and publish a task; returns it once the hub has durably sequenced it.

        ``image`` may be a tag: it is resolved to its digest now, and the digest is signed.
        ``to`` is "all" or site organisations (or keys); ``input`` goes to every target,
        sealed separately to each; ``inputs`` gives each site (by name) its own input.
        ``aggregate="secure-sum"`` asks every target to mask its answer so that only the
        sum over all targets opens (``sum_round`` does the rest).
        """
        pinned = resolve_image(image)
        if inputs is not None:
            keys = self._site_keys_synced(list(inputs))
            if len(keys) != len(inputs):
                raise TaskLookupError(
                    f"inputs name one site twice (by organisation and by key): {list(inputs)}"
                )
            plain = dict(zip(keys, inputs.values(), strict=True))
        else:
            plain = {key: input for key in self._site_keys_synced(to)}
        limits = {"timeout_s": timeout_s, "memory_mb": memory_mb, "cpu_millis": cpu_millis}
        signer = self.home.signer

        def payload(seq: int) -> dict[str, Any]:
            return task_payload_v2(
                signer, seq, pinned, plain, limits, algorithm, description, data, aggregate
            )

        entry, index = self._submit(TASK, payload)
        return self._view_of_entry(entry, index, pinned)

    def _site_keys_synced(self, to: str | Sequence[str]) -> list[bytes]:
        try:
            return self._site_keys(to)
        except TaskLookupError:
            self.sync()  # admitted since our last look?
            return self._site_keys(to)

    def _view_of_entry(self, entry: Entry, index: int, image: str) -> TaskView:
        targets = entry.payload["targets"]
        names = {m.key: m.org for m in self.state.members.values()}
        return TaskView(
            id=entry.hash.hex(),
            index=index,
            image=image,
            # the form every other view uses (``state.describe``): key prefix (organisation)
            publisher=self.state.describe(self.home.public_key),
            algorithm=entry.payload.get("algorithm"),
            progress={names.get(k, k.hex()[:16]): "not seen" for k in targets},
            cancelled=False,
        )

    def task(self, task_id: str) -> TaskView:
        """A task's state, from the verified copy brought up to date."""
        self.sync()
        return self._view(self._task(task_id))

    def _view(self, task: Task) -> TaskView:
        state = self.state
        vouched = self.follower.vouched
        progress: dict[str, str] = {}
        for key in task.targets:
            name = state.members[key].org if key in state.members else key.hex()[:16]
            result = task.results.get(key)
            if result is not None:
                progress[name] = result.status
            elif vouched.get(key, 0) > task.index:
                progress[name] = "received"
            else:
                progress[name] = "not seen"
        return TaskView(
            id=task.hash.hex(),
            index=task.index,
            image=task.image,
            publisher=state.describe(task.publisher),
            algorithm=task.algorithm,
            progress=progress,
            cancelled=task.cancelled_at is not None,
        )

    def tasks(self, mine: bool = False) -> list[TaskView]:
        self.sync()
        me = self.home.public_key
        return [
            self._view(t)
            for t in sorted(self.state.tasks.values(), key=lambda t: t.index)
            if not mine or t.publisher == me
        ]

    def wait(
        self,
        task_id: str,
        timeout: float | None = None,
        on_progress: Callable[[TaskView], None] | None = None,
    ) -> TaskView:
        """Follow a task until every target answered or ``timeout`` seconds pass.

        Returns the last view either way (``view.done`` tells which); ``on_progress`` sees
        every view, for progress displays.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            size = self.sync()
            view = self._view(self._task(task_id))
            if on_progress is not None:
                on_progress(view)
            if view.done:
                return view
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return view
            poll = 1.0 if remaining is None else max(0.05, min(1.0, remaining))
            self.session.call(self._long_poll, size, poll)

    def silent_sites(self, view: TaskView) -> dict[str, str]:
        """Why each target still ``not seen`` has not received the task, as far as the
        verified copy tells: the largest log size the site cosigned (its node verifies and
        cosigns every checkpoint it receives), against the task's entry and the log now. A
        site far behind, or never heard from, has a daemon that is down or cut off."""
        names = {m.org: m.key for m in self.state.members.values()}
        size = self.state.size
        out: dict[str, str] = {}
        for site, state in view.progress.items():
            if state != "not seen":
                continue
            key = names.get(site)
            cosigned = self.follower.vouched.get(key, 0) if key is not None else 0
            if cosigned:
                seen = f"its node last cosigned the log at size {cosigned}"
            else:
                seen = "its node has cosigned no checkpoint this client has seen"
            out[site] = (
                f"{seen} (the task is entry {view.index}, the log has {size} entries): its "
                "daemon seems down or cut off from the hub; its operator can check with "
                "`ptm status`"
            )
        return out

    async def _long_poll(self, size: int, seconds: float) -> None:
        """Return when the hub signs a checkpoint beyond ``size``, or after ``seconds``."""
        assert self.session.hub is not None
        await self.session.hub.ask(
            protocol.WaitRequest(after=size, timeout_ms=int(seconds * 1000)),
            channel="wait",
            timeout=seconds + 10,
        )

    def results(self, task_id: str) -> dict[str, SiteAnswer]:
        """Each answered site's verified result, its output opened with our key.

        Sites are opened independently: a site whose output does not open as it signed it
        is returned with status ``faulty`` (and the evidence), never raised, so one bad
        site cannot hide the others' answers."""
        task = self._task(task_id)
        if task.publisher != self.home.public_key:
            raise TaskLookupError(
                f"task {task.hash.hex()[:16]}… was published by "
                f"{self.state.describe(task.publisher)}: its outputs are sealed to that key"
            )
        answers: dict[str, SiteAnswer] = {}
        for site, result in task.results.items():
            entry = self.result_entry(result.index, result.hash)
            name = self.state.members[site].org if site in self.state.members else site.hex()
            answers[name] = self._open_answer(name, site, entry, result.index)
        return answers

    def result_entry(self, index: int, expected_hash: bytes) -> Entry:
        """The result entry at ``index`` of the verified copy, checked against replay."""
        (raw,) = self.follower.store.raw_range(index, index + 1)
        entry = Entry.from_bytes(raw)
        if entry.hash != expected_hash:
            raise LedgerError(
                f"entry {index} of {self.home.ledger_path} differs from the verified "
                "result: the copy was altered on disk; move it away and sync again"
            )
        return entry

    def _open_answer(self, name: str, site: bytes, entry: Entry, index: int) -> SiteAnswer:
        """One site's answer; ``faulty`` or ``unavailable`` instead of an exception."""
        payload = entry.payload
        base = {
            "site": name,
            "key": site,
            "image_digest": payload["image_digest"],
            "timings": dict(payload.get("timings", {})),
            "index": index,
        }
        typed = entry.typed_payload
        try:
            if isinstance(typed, ResultPayloadV2):
                opened = open_output_v2(
                    self.home.signer, site, typed.output, self.ciphertext_of(site, typed.output)
                )
            else:
                opened = OpenedOutput(self._open_format_1(payload), b"", b"")
        except FaultyOutput as exc:
            return SiteAnswer(
                **base,
                status=FAULTY,
                reason=f"{exc} (result entry {index}, signed by {site.hex()})",
                output=b"",
                fault=exc.check,
                signed_status=payload["status"],
            )
        except BlobUnavailable as exc:
            return SiteAnswer(
                **base,
                status=UNAVAILABLE,
                reason=str(exc),
                output=b"",
                signed_status=payload["status"],
            )
        return SiteAnswer(
            **base,
            status=payload["status"],
            reason=payload.get("reason"),
            output=opened.plaintext,
            nonce=opened.nonce,
            log_nonce=opened.log_nonce,
            format=2 if isinstance(typed, ResultPayloadV2) else 1,
        )

    def _open_format_1(self, payload: Mapping[str, Any]) -> bytes:
        """A format-1 output (old logs): a sealed box and an optional plaintext digest."""
        try:
            output = self.home.signer.open_sealed(payload["output"])
        except LedgerError as exc:
            raise FaultyOutput(f"the sealed output does not open: {exc}", "key box") from exc
        digest = payload.get("output_digest")
        if digest is not None and digest != sha256(output):
            raise FaultyOutput("the output does not match the digest the site signed", "commitment")
        return output

    def ciphertext_of(self, site: bytes, output: OutputV2) -> bytes:
        """A format-2 output's ciphertext: ``output.inline`` when the entry carries it, else
        the blob ``output.blob`` fetched from the hub's blob store (resumable, its SHA-256
        and size checked on arrival). Whatever this returns is checked against ``blob`` and
        ``size`` again by the caller, so the hub is trusted for nothing but availability."""
        if output.inline is not None:
            return output.inline
        if output.size > MAX_ANSWER_BYTES:
            # The size is the site's own claim: a hostile site must not make us hold 16 GB.
            raise FaultyOutput(
                f"the output claims {output.size} bytes, over the {MAX_ANSWER_BYTES} this "
                "client opens (a site's output is capped at its [policy.limits] output)",
                "blob",
            )
        try:
            return self.session.call(self._fetch_blob, output.blob, output.size)
        except (BlobError, NetworkError) as exc:
            raise BlobUnavailable(
                f"the output of {self.state.describe(site)} is a blob at the hub "
                f"({output.blob.hex()[:16]}…, {output.size} bytes) that could not be fetched: "
                f"{exc}; try again (`ptm results`) once the hub is reachable"
            ) from exc

    async def _fetch_blob(self, blob: bytes, size: int) -> bytes:
        from ptm_p2p.network import blobs  # libp2p streams: only for outputs held as blobs

        assert self.session.hub is not None
        return await blobs.get(self.session.hub, blob, size)

    def cancel(self, task_id: str, reason: str | None = None) -> TaskView:
        """Withdraw a task of ours: sites that have not answered answer ``cancelled``."""
        self.sync()
        task = self._task(task_id)
        if task.publisher != self.home.public_key:
            raise TaskLookupError("only the task's publisher may cancel it")
        self._submit(CANCEL, cancel_payload(task.hash, reason))
        self.sync()
        return self._view(self._task(task_id))

    def run_round(
        self,
        image: str,
        inputs: Mapping[str, Any],
        data: Sequence[str] = (),
        timeout: float = 600,
        algorithm: str | None = None,
        on_progress: Callable[[TaskView], None] | None = None,
        memory_mb: int = DEFAULT_LIMITS["memory_mb"],
        cpu_millis: int = DEFAULT_LIMITS["cpu_millis"],
    ) -> dict[str, Any]:
        """One round over many sites: publish (one JSON input per site), wait, open.

        Returns each site's output parsed as JSON, keyed by the names used in ``inputs``.
        Raises ``StudyError`` naming every site that failed, refused, timed out, is faulty
        (its output does not open as it signed it) or did not answer within ``timeout``
        seconds, and only those; the error's ``answers`` holds every other site's answer.
        """
        task = self._publish_round(
            image, inputs, data, timeout, algorithm, memory_mb, cpu_millis, aggregate=None
        )
        view = self.wait(task.id, timeout=timeout + 30, on_progress=on_progress)
        answers = self.results(task.id)
        failures = {
            site: f"{a.status}: {why_not_ok(a)}" for site, a in answers.items() if a.status != "ok"
        }
        for site, state in view.progress.items():
            if state not in FINAL:
                failures[site] = f"no answer within {timeout:g} s ({state})"
        by_key = {a.key: a for a in answers.values()}
        keys = self._site_keys(list(inputs))
        if failures:
            detail = "; ".join(f"{site}: {why}" for site, why in sorted(failures.items()))
            honest = {
                site: by_key[key]
                for site, key in zip(inputs, keys, strict=True)
                if key in by_key and by_key[key].status == "ok"
            }
            raise StudyError(f"round {task.id[:16]}… did not complete: {detail}", failures, honest)
        return {site: by_key[key].json() for site, key in zip(inputs, keys, strict=True)}

    def _publish_round(
        self,
        image: str,
        inputs: Mapping[str, Any],
        data: Sequence[str],
        timeout: float,
        algorithm: str | None,
        memory_mb: int,
        cpu_millis: int,
        aggregate: str | None,
    ) -> TaskView:
        """Publish one round's task: each site's input as compact JSON, the round's
        ``timeout`` as the task's own (capped at a week)."""
        encoded = {
            site: json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
            for site, value in inputs.items()
        }
        return self.publish(
            image,
            inputs=encoded,
            data=data,
            timeout_s=min(int(timeout), 7 * 24 * 3600),
            algorithm=algorithm,
            memory_mb=memory_mb,
            cpu_millis=cpu_millis,
            aggregate=aggregate,
        )

    def sum_round(
        self,
        image: str,
        inputs: Mapping[str, Any],
        data: Sequence[str] = (),
        timeout: float = 600,
        algorithm: str | None = None,
        on_progress: Callable[[TaskView], None] | None = None,
        memory_mb: int = DEFAULT_LIMITS["memory_mb"],
        cpu_millis: int = DEFAULT_LIMITS["cpu_millis"],
        min_sites: int = 2,
    ) -> SecureSum:
        """One secure-aggregation round: only the sum over the sites opens.

        Publishes the task with ``aggregate="secure-sum"`` (one JSON input per site, as
        ``run_round``), waits, opens every answer and adds the masked vectors
        (``ledger/secagg.py``). A site that does not answer ``ok`` in time leaves masks in
        the others' vectors that cannot cancel: the round is published again without it (a
        new task, so fresh masks) until every remaining target answers, or fewer than
        ``min_sites`` remain (``StudyError``). Nothing is ever unmasked; ``dropped`` names
        each site left out and why, ``tasks`` every task published.
        """
        if min_sites < 2:
            raise StudyError("secure aggregation needs at least two sites (min_sites >= 2)")
        remaining = dict(inputs)
        dropped: dict[str, str] = {}
        tasks: list[str] = []
        while True:
            if len(remaining) < min_sites:
                detail = "; ".join(f"{site}: {why}" for site, why in sorted(dropped.items()))
                raise StudyError(
                    f"secure aggregation: only {len(remaining)} site(s) left of {len(inputs)} "
                    f"(at least {min_sites} needed); dropped: {detail}",
                    dropped,
                )
            task = self._publish_round(
                image, remaining, data, timeout, algorithm, memory_mb, cpu_millis, SECURE_SUM
            )
            tasks.append(task.id)
            view = self.wait(task.id, timeout=timeout + 30, on_progress=on_progress)
            answers = self.results(task.id)
            by_key = {a.key: a for a in answers.values()}
            keys = self._site_keys(list(remaining))
            failed: dict[str, str] = {}
            for site, key in zip(remaining, keys, strict=True):
                answer = by_key.get(key)
                if answer is None:
                    state = view.progress.get(site, "no answer")
                    failed[site] = f"no answer within {timeout:g} s ({state})"
                elif answer.status != "ok":
                    failed[site] = f"{answer.status}: {why_not_ok(answer)}"
            failed.update(_malformed_masked(remaining, keys, by_key))
            if failed:
                if not view.done:
                    # a silent site must not run this round later: its masks are useless now
                    with contextlib.suppress(PtmError):
                        self.cancel(task.id, "secure-sum round published again without it")
                dropped.update(failed)
                for site in failed:
                    remaining.pop(site)
                continue
            opened = {site: by_key[key].json() for site, key in zip(remaining, keys, strict=True)}
            try:
                total, public = unmask_by_sum(opened)
            except SecAggError as exc:
                raise StudyError(f"secure aggregation, task {task.id[:16]}…: {exc}") from exc
            return SecureSum(
                total,
                public,
                tuple(remaining),
                dropped,
                tuple(tasks),
                {site: len(by_key[key].output) for site, key in zip(remaining, keys, strict=True)},
            )


def _malformed_masked(
    sites: Mapping[str, Any], keys: Sequence[bytes], by_key: Mapping[bytes, SiteAnswer]
) -> dict[str, str]:
    """Sites whose ``ok`` answer is not a masked answer of the round's shape (the fields and
    lengths most sites sent): such a site would stop every rerun from summing, so it is
    dropped like a site that did not answer."""
    shapes: dict[str, tuple[tuple[str, int], ...] | None] = {}
    for site, key in zip(sites, keys, strict=True):
        answer = by_key.get(key)
        if answer is None or answer.status != "ok":
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


def why_not_ok(answer: SiteAnswer) -> str:
    """Why a site did not compute: the failed check of a faulty answer, else the algorithm's
    own sealed reason, else the public one."""
    if answer.status == FAULTY:
        return f"{answer.fault} check failed: {answer.reason}"
    return _sealed_reason(answer) or answer.reason or "no reason given"


def _sealed_reason(answer: SiteAnswer) -> str | None:
    """The algorithm's own reason, from the sealed output (``{"refused": …}`` or
    ``{"error": …}``): only the researcher reads it, so it may be more specific than the
    public reason on the ledger."""
    try:
        output = answer.json()
    except StudyError:
        return None
    if isinstance(output, dict):
        for key in ("refused", "error"):
            if isinstance(output.get(key), str):
                return str(output[key])
    return None


__all__ = ["Client", "SiteAnswer", "TaskView", "PtmError"]
