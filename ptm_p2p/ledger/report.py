"""The auditor's report: who asked what, where, on which data, when, for whom, and what each
site answered and why. Pure: it reads an ``AuditReport`` and the entries it judged, never a
file, so ``ptm audit`` (text, JSON, CSV) and ``ptm explore`` build the same facts.

Only entries the replay accepted contribute facts: a forged or refused entry is a problem of
the audit, never a task, answer or membership of the report.

Studies. A task carries its publisher, a free ``algorithm`` label (``cox/round-3``;
``ptm study`` writes the algorithm's short name, ``coxph-pooled``, on every round), an image,
data labels and a signed ``timestamp_ms``. The rounds of one study are grouped by this rule:

* the study's *family* is the task's ``algorithm`` with a trailing round marker removed
  (``cox/round-3``, ``cox-r3``, ``cox.iter_2``, ``km/step4`` → ``cox``, ``cox``, ``cox``,
  ``km``); a task without ``algorithm`` takes its image repository's last path component;
* tasks of the same publisher, family and data labels belong to one study while each is
  published within ``STUDY_GAP_MS`` of the study's last activity (its latest task or answer);
  a longer pause starts a new study. Rounds of an iterative fit are published as soon as the
  previous round's answers are in, so they fall in one study; the same analysis run again
  the next day is another study.

The study's id is its first task's hash; rounds are numbered in log order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ptm_p2p.errors import LedgerError
from ptm_p2p.ledger.audit import AuditReport, CheckpointReport, Problem
from ptm_p2p.ledger.entry import (
    CANCEL,
    GENESIS,
    MEMBERSHIP,
    RESULT,
    TASK,
    AnyResult,
    AnyTask,
    CancelPayload,
    Entry,
    GenesisPayload,
    MembershipPayload,
    ResultPayloadV2,
    TaskPayloadV2,
)
from ptm_p2p.ledger.replay import LoggedTask, State
from ptm_p2p.ledger.report_csv import csv_tables

STUDY_GAP_MS = 30 * 60 * 1000
"""A pause longer than this between a study's last activity and a task starts a new study."""

_ROUND_SUFFIX = re.compile(r"[/._:@+-]*(?:round|rnd|r|iter|iteration|step)[._-]?\d+$", re.I)
_CHECKPOINT_PROBLEM = re.compile(r"^checkpoint at size (\d+):")


def iso(timestamp_ms: int | None) -> str | None:
    """ISO 8601 UTC with milliseconds, ``2026-01-01T00:00:00.000Z``."""
    if timestamp_ms is None:
        return None
    seconds, millis = divmod(timestamp_ms, 1000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=millis * 1000)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"  # "+00:00" -> "Z"


def image_repository(image: str) -> str:
    """``host:5000/ptm/summary@sha256:…`` → ``host:5000/ptm/summary``."""
    return image.split("@", 1)[0]


def image_name(image: str) -> str:
    """The repository's last path component: ``summary``, ``coxph-pooled``."""
    return image_repository(image).rsplit("/", 1)[-1]


def study_family(algorithm: str | None, image: str) -> str:
    """The family label the study rule groups by (module docstring)."""
    if algorithm:
        stripped = _ROUND_SUFFIX.sub("", algorithm)
        return stripped or algorithm
    return image_name(image)


def public_fields(entry: Entry) -> dict[str, Any]:
    """An entry's public fields, JSON-ready: keys and hashes as hex, sealed or boxed bytes as
    their size only (their content is for the key holders)."""
    payload = entry.typed_payload
    out: dict[str, Any] = {}
    if isinstance(payload, GenesisPayload):
        out = {
            "origin": payload.origin,
            "admin": payload.admin.hex(),
            "admin_org": payload.admin_org,
            "hub": payload.hub.hex(),
            "hub_org": payload.hub_org,
            "description": payload.description,
        }
    elif isinstance(payload, MembershipPayload):
        out = {
            "action": payload.action,
            "key": payload.key.hex(),
            "org": payload.org,
            "role": payload.role,
            "reason": payload.reason,
        }
    elif isinstance(payload, AnyTask):
        out = {
            "format": 2 if isinstance(payload, TaskPayloadV2) else 1,
            "algorithm": payload.algorithm,
            "image": payload.image,
            "data": list(payload.data or []),
            "targets": [t.hex() for t in payload.targets],
            "inputs_bytes": {k.hex(): len(v) for k, v in payload.inputs.items()},
            "limits": {
                "timeout_s": payload.limits.timeout_s,
                "memory_mb": payload.limits.memory_mb,
                "cpu_millis": payload.limits.cpu_millis,
            },
            "description": payload.description,
        }
    elif isinstance(payload, AnyResult):
        out = {
            "format": 2 if isinstance(payload, ResultPayloadV2) else 1,
            "task": payload.task.hex(),
            "status": payload.status,
            "reason": payload.reason,
            "image_digest": payload.image_digest,
            "timings": _timings(payload),
        }
        if isinstance(payload, ResultPayloadV2):
            o = payload.output
            out["output"] = {
                "blob": o.blob.hex(),
                "size": o.size,
                "commit": o.commit.hex(),
                "inline": o.inline is not None,
                "key_box_bytes": len(o.key),
            }
            out["log_commit"] = payload.log_commit.hex()
        else:
            out["output_bytes"] = len(payload.output)
            out["log_digest"] = payload.log_digest.hex()
            out["output_digest"] = payload.output_digest.hex() if payload.output_digest else None
    elif isinstance(payload, CancelPayload):
        out = {"task": payload.task.hex(), "reason": payload.reason}
    return out


def _timings(payload: AnyResult) -> dict[str, int]:
    t = payload.timings
    if t is None:
        return {}
    return {
        name: value
        for name, value in (
            ("prepare_ms", t.prepare_ms),
            ("run_ms", t.run_ms),
            ("total_ms", t.total_ms),
        )
        if value is not None
    }


@dataclass
class _Facts:
    """What the state does not keep but the auditor asks about, per accepted entry."""

    time: dict[int, int] = field(default_factory=dict)  # index -> timestamp_ms
    task: dict[bytes, AnyTask] = field(default_factory=dict)
    result: dict[bytes, AnyResult] = field(default_factory=dict)
    reason: dict[int, str | None] = field(default_factory=dict)  # membership / cancel


def _collect(state: State, entries: Iterable[tuple[int, bytes | Entry]]) -> _Facts:
    """Decode the entries the replay accepted (their signatures were checked by the audit);
    an ``Entry`` given instead of bytes is used as it is (the explorer decodes once)."""
    facts = _Facts()
    memberships = {m.admitted_at for m in state.members.values()} | {
        m.revoked_at for m in state.members.values() if m.revoked_at is not None
    }
    cancels = {t.cancelled_at for t in state.tasks.values() if t.cancelled_at is not None}
    for index, raw in entries:
        if isinstance(raw, Entry):
            entry = raw
        else:
            try:
                entry = Entry.from_bytes_signature_checked_elsewhere(raw)
            except LedgerError:
                continue  # the audit names it; it is no fact
        kind = entry.kind
        if kind in (TASK, RESULT):
            logged = (state.tasks if kind == TASK else state.results).get(entry.hash)
            if logged is None or logged.index != index:
                continue  # not the entry the replay accepted at this index
            payload = entry.typed_payload
            if isinstance(payload, AnyTask):
                facts.task[entry.hash] = payload
            else:
                assert isinstance(payload, AnyResult)
                facts.result[entry.hash] = payload
        elif kind in (MEMBERSHIP, CANCEL):
            if index not in (memberships if kind == MEMBERSHIP else cancels):
                continue
            mp = entry.typed_payload
            assert isinstance(mp, (MembershipPayload, CancelPayload))
            facts.reason[index] = mp.reason
        elif kind == GENESIS and index != 0:
            continue
        facts.time[index] = entry.timestamp_ms
    return facts


def _who(state: State, key: bytes) -> dict[str, Any]:
    member = state.members.get(key)
    return {
        "key": key.hex(),
        "org": member.org if member else None,
        "role": member.role if member else None,
        "name": state.describe(key),
    }


def _when(facts: _Facts, index: int | None) -> dict[str, Any]:
    ms = facts.time.get(index) if index is not None else None
    return {"index": index, "timestamp_ms": ms, "time": iso(ms)}


def build_report(
    report: AuditReport,
    entries: Iterable[tuple[int, bytes | Entry]],
    pardoned: Sequence[bytes] = (),
    study_gap_ms: int = STUDY_GAP_MS,
) -> dict[str, Any]:
    """The complete audit report as JSON-ready data (``ptm audit --json``).

    ``entries`` are ``(index, raw)`` of the audited copy, in log order; ``pardoned`` the keys
    a hub's operator pardoned for an equivocation (a local file of the hub's home, not a
    signed entry).
    """
    state = report.state
    facts = _collect(state, entries)
    data: dict[str, Any] = {
        "ok": report.ok,
        "size": report.size,
        "origin": state.origin,
        "entries_by_kind": report.kind_counts,
        "entries_by_author": report.author_counts(),
        "checkpoints": [c.to_json() for c in report.checkpoints],
        "problems": [p.to_json() for p in report.problems],
        "problems_omitted": report.problems_omitted,
        "evidence": report.evidence,
    }
    names: dict[bytes, dict[str, Any]] = {}
    tasks = [_task(state, facts, t, names) for t in state.tasks.values()]
    studies = _studies(tasks, study_gap_ms)
    data["ok"] = report.ok
    data["first_time"] = iso(min(facts.time.values())) if facts.time else None
    data["last_time"] = iso(max(facts.time.values())) if facts.time else None
    data["study_rule"] = (
        "tasks of one publisher with the same algorithm family (the task's algorithm label "
        "without a trailing round marker such as /round-3, else the image name) and the same "
        f"data labels, each published within {study_gap_ms // 60000} min of the study's last "
        "task or answer"
    )
    data["tasks"] = tasks
    data["studies"] = studies
    data["members"] = _members(state, facts, pardoned)
    data["researchers"] = _researchers(state, tasks, studies)
    data["sites"] = _sites(state, tasks)
    data["data_sources"] = _data_sources(tasks)
    data["warnings"] = _warnings(state)
    data["causes"] = group_problems(report.problems, report.checkpoints)
    return data


def _task(
    state: State, facts: _Facts, task: LoggedTask, names: dict[bytes, dict[str, Any]]
) -> dict[str, Any]:
    def who(key: bytes) -> dict[str, Any]:
        found = names.get(key)
        if found is None:
            found = names[key] = _who(state, key)
        return found

    payload = facts.task.get(task.hash)
    publisher = who(task.publisher)
    answers = []
    cancel_reason = facts.reason.get(task.cancelled_at) if task.cancelled_at is not None else None
    for site, result in task.results.items():
        rp = facts.result.get(result.hash)
        reason = rp.reason if rp is not None else None
        if reason is None and result.status == "cancelled":
            # The site's answer says only "cancelled"; why is on the publisher's cancel entry.
            reason = f"cancelled by its publisher: {cancel_reason or 'no reason given'}"
        answers.append(
            {
                "site": who(site),
                "status": result.status,
                "reason": reason,
                "entry": result.hash.hex(),
                **_when(facts, result.index),
                "image_digest": result.image_digest,
                "ran_image_of_task": result.image_digest == task.image_digest,
                "timings": _timings(rp) if rp is not None else {},
                "format": result.format,
            }
        )
    answers.sort(key=lambda a: a["index"])
    algorithm = task.algorithm
    out = {
        "task": task.hash.hex(),
        **_when(facts, task.index),
        "publisher": publisher["name"],  # as before: "3f2a1b9c (org)"
        "publisher_key": publisher["key"],
        "publisher_org": publisher["org"],
        "algorithm": algorithm,
        "algorithm_name": algorithm or image_name(task.image),
        "family": study_family(algorithm, task.image),
        "image": task.image,
        "image_repository": image_repository(task.image),
        "image_name": image_name(task.image),
        "image_digest": task.image_digest,
        "description": payload.description if payload is not None else None,
        "data": list(payload.data or []) if payload is not None else [],
        "limits": task.limits,
        "format": task.format,
        "targets": [who(t)["name"] for t in task.targets],
        "target_sites": [who(t) for t in task.targets],
        # The per-site map of earlier reports, kept for the scripts that read it.
        "results": {
            a["site"]["name"]: {
                "status": a["status"],
                "index": a["index"],
                "image_digest": a["image_digest"],
                "format": a["format"],
                "reason": a["reason"],
                "time": a["time"],
            }
            for a in answers
        },
        "answers": answers,
        "pending": [who(t)["name"] for t in task.pending],
        "cancelled_at": task.cancelled_at,
        "cancelled": (
            {**_when(facts, task.cancelled_at), "reason": facts.reason.get(task.cancelled_at)}
            if task.cancelled_at is not None
            else None
        ),
        "last_activity_ms": max(
            [facts.time.get(task.index, 0)] + [a["timestamp_ms"] or 0 for a in answers]
        ),
    }
    return out


def _status_counts(answers: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in answers:
        counts[a["status"]] = counts.get(a["status"], 0) + 1
    return counts


def _studies(tasks: list[dict[str, Any]], gap_ms: int) -> list[dict[str, Any]]:
    open_by_key: dict[tuple[str, str, tuple[str, ...]], dict[str, Any]] = {}
    studies: list[dict[str, Any]] = []
    for task in sorted(tasks, key=lambda t: t["index"]):
        key = (task["publisher_key"], task["family"], tuple(task["data"]))
        study = open_by_key.get(key)
        published = task["timestamp_ms"] or 0
        if study is None or published - study["_last"] > gap_ms:
            study = {
                "study": task["task"],
                "family": task["family"],
                "publisher": task["publisher"],
                "publisher_key": task["publisher_key"],
                "publisher_org": task["publisher_org"],
                "data": task["data"],
                "tasks": [],
                "_last": published,
            }
            open_by_key[key] = study
            studies.append(study)
        study["tasks"].append(task)
        study["_last"] = max(study["_last"], task["last_activity_ms"])
    out = []
    for study in studies:
        members = study.pop("tasks")
        study.pop("_last")
        for number, task in enumerate(members, 1):
            task["study"] = study["study"]
            task["round"] = number
        answers = [a for t in members for a in t["answers"]]
        sites = sorted({s["name"] for t in members for s in t["target_sites"]})
        study.update(
            rounds=len(members),
            task_ids=[t["task"] for t in members],
            algorithms=sorted({t["algorithm_name"] for t in members}),
            images=sorted({t["image"] for t in members}),
            sites=sites,
            first_time=members[0]["time"],
            last_time=iso(max(t["last_activity_ms"] for t in members) or None),
            statuses=_status_counts(answers),
            not_ok=[
                {
                    "task": t["task"],
                    "round": t["round"],
                    "site": a["site"]["name"],
                    "status": a["status"],
                    "reason": a["reason"],
                }
                for t in members
                for a in t["answers"]
                if a["status"] != "ok"
            ],
        )
        out.append(study)
    return out


def _members(state: State, facts: _Facts, pardoned: Sequence[bytes]) -> list[dict[str, Any]]:
    out = []
    pardons = set(pardoned)
    for m in state.members.values():
        events = [
            {
                "event": "admitted" if m.admitted_at else "named in genesis",
                **_when(facts, m.admitted_at),
                "reason": facts.reason.get(m.admitted_at),
            }
        ]
        if m.revoked_at is not None:
            events.append(
                {
                    "event": "revoked",
                    **_when(facts, m.revoked_at),
                    "reason": facts.reason.get(m.revoked_at),
                }
            )
        if m.key in pardons:
            events.append(
                {
                    "event": "pardoned",
                    "index": None,
                    "timestamp_ms": None,
                    "time": None,
                    "reason": "the hub operator pardoned an equivocation (recorded in the hub's "
                    "home, pardoned.json; not a signed entry)",
                }
            )
        out.append(
            {
                "key": m.key.hex(),
                "org": m.org,
                "role": m.role,
                "name": state.describe(m.key),
                "admitted_at": m.admitted_at,
                "revoked_at": m.revoked_at,
                "admitted_time": iso(facts.time.get(m.admitted_at)),
                "revoked_time": iso(facts.time.get(m.revoked_at))
                if m.revoked_at is not None
                else None,
                "entries": state.author_counts.get(m.key, 0),
                "timeline": events,
            }
        )
    return out


def _researchers(
    state: State, tasks: list[dict[str, Any]], studies: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    by_key: dict[str, list[dict[str, Any]]] = {}
    for t in tasks:
        by_key.setdefault(t["publisher_key"], []).append(t)
    out = []
    for key_hex, own in by_key.items():
        key = bytes.fromhex(key_hex)
        answers = [a for t in own for a in t["answers"]]
        out.append(
            {
                **_who(state, key),
                "tasks": len(own),
                "studies": sum(1 for s in studies if s["publisher_key"] == key_hex),
                "algorithms": sorted({t["algorithm_name"] for t in own}),
                "images": sorted({t["image_repository"] for t in own}),
                "sites": sorted({s["name"] for t in own for s in t["target_sites"]}),
                "data": sorted({d for t in own for d in t["data"]}),
                "statuses": _status_counts(answers),
                "first_time": own[0]["time"],
                "last_time": own[-1]["time"],
            }
        )
    return out


def _sites(state: State, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in state.members.values():
        if m.role != "site":
            continue
        key_hex = m.key.hex()
        targeted = [t for t in tasks if any(s["key"] == key_hex for s in t["target_sites"])]
        answers = [(t, a) for t in targeted for a in t["answers"] if a["site"]["key"] == key_hex]
        out.append(
            {
                **_who(state, m.key),
                "targeted": len(targeted),
                "answered": len(answers),
                "statuses": _status_counts(a for _, a in answers),
                "ran": sorted({t["algorithm_name"] for t, a in answers if a["status"] == "ok"}),
                "data": sorted({d for t in targeted for d in t["data"]}),
                "not_ok": [
                    {
                        "task": t["task"],
                        "algorithm": t["algorithm_name"],
                        "publisher": t["publisher"],
                        "status": a["status"],
                        "reason": a["reason"],
                        "index": a["index"],
                        "time": a["time"],
                    }
                    for t, a in answers
                    if a["status"] != "ok"
                ],
                "pending": [
                    t["task"] for t in targeted if m.org and state.describe(m.key) in t["pending"]
                ],
            }
        )
    return out


def _data_sources(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    labels: dict[str, list[dict[str, Any]]] = {}
    for t in tasks:
        for label in t["data"] or ["(none named)"]:
            labels.setdefault(label, []).append(t)
    return [
        {
            "label": label,
            "tasks": len(own),
            "researchers": sorted({t["publisher"] for t in own}),
            "sites": sorted({s["name"] for t in own for s in t["target_sites"]}),
            "algorithms": sorted({t["algorithm_name"] for t in own}),
            "statuses": _status_counts(a for t in own for a in t["answers"]),
            "first_time": own[0]["time"],
            "last_time": own[-1]["time"],
        }
        for label, own in sorted(labels.items())
    ]


def _warnings(state: State) -> list[str]:
    """Facts an auditor should look at although no rule forbids them."""
    orgs: dict[str, list[str]] = {}
    for m in state.members.values():
        orgs.setdefault(m.org, []).append(f"{m.role} {m.key.hex()[:8]}")
    return [
        f"organisation {org!r} is held by {len(holders)} keys ({', '.join(holders)}): a task "
        f"'for {org}' does not say which of them asked"
        for org, holders in orgs.items()
        if len(holders) > 1
    ]


def group_problems(
    problems: Sequence[Problem], checkpoints: Sequence[CheckpointReport]
) -> list[dict[str, Any]]:
    """Problems as causes, each with its consequences counted under it.

    A cause is a problem located at an entry (or one that no entry explains). A bad
    checkpoint at size N is a consequence of the last cause before index N; the replay's
    count of an author's later refused entries belongs to that author's first cause.
    """
    causes: list[dict[str, Any]] = []
    located = [p for p in problems if p.index is not None]
    for p in problems:
        if p.index is not None:
            causes.append({**p.to_json(), "consequences": [], "consequence_count": 0})
    for p in problems:
        if p.index is not None:
            continue
        owner: dict[str, Any] | None = None
        match = _CHECKPOINT_PROBLEM.match(p.message)
        if match is not None:
            size = int(match.group(1))
            before = [c for c in causes if c["index"] < size]
            owner = before[-1] if before else None
        elif "later entries by" in p.message:
            mine = [c for c in causes if c["author"] == p.author]
            owner = mine[0] if mine else (causes[0] if causes and located else None)
        if owner is None:
            causes.append({**p.to_json(), "consequences": [], "consequence_count": 0})
            continue
        owner["consequences"].append(p.message)
        count = re.match(r"^(\d+) later entries", p.message)
        owner["consequence_count"] += int(count.group(1)) if count else 1
    return causes


__all__ = [
    "csv_tables",
    "STUDY_GAP_MS",
    "build_report",
    "group_problems",
    "image_name",
    "image_repository",
    "iso",
    "public_fields",
    "study_family",
]
