"""What a multi-round study has done so far, in a small file of the researcher's home.

A federated fit is many rounds, each one signed task. When a study stops half-way (the hub
out of reach past a round's deadline, the researcher's laptop closed), its completed rounds
are in the log already: running the study again with ``resume`` reads their answers back
from the verified copy instead of publishing them again, and only the rounds after the last
completed one are published. The study driver is deterministic (the same answers give the
same next request), so a resumed study asks exactly what the first run asked.

``HOME/studies/<study id>.json`` records, per study (an id derived from everything that
decides its requests: algorithm, images, sites, data label and options):

* each completed round: its number, algorithm, a digest of the requests, the task id and a
  digest of the decoded outputs (so a resumed study checks it reads back what it used);
* the round in flight: its task id once published, so a resumed study waits for that task
  instead of publishing the round a second time;
* a completed **secure-sum** round (``secure = true``): every task it published (a dropped
  site makes it publish again, with fresh masks), the sites of the last one, those dropped
  and why, and a digest of the decoded total and public parts. A resumed study opens the
  last task's masked answers from the log and sums them again (``algorithms/
  secure_study.py``); a secure round that was in flight is simply run again (a new task,
  fresh masks: its earlier task's total never opened, or opened to the same sites).

The file is JSON, parsed into typed records (anything else is a ``StudyError`` naming the
file), and written atomically (a temporary file, fsync, rename, fsync of the folder): a crash
leaves the old state or the new one, never half of either.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptm_p2p.errors import StudyError

VERSION = 1
FOLDER = "studies"


def canonical(value: Any) -> bytes:
    """JSON with sorted keys and no spaces: what the client seals and the images write."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def digest(value: Any) -> str:
    """SHA-256 (hex) of ``value``'s canonical JSON."""
    return hashlib.sha256(canonical(value)).hexdigest()


def study_id(definition: Mapping[str, Any]) -> str:
    """A short, stable id for a study from what decides its requests."""
    return digest(dict(definition))[:16]


@dataclass(frozen=True)
class CompletedRound:
    """A round whose every site answered and whose answers the study used."""

    number: int
    image: str  # the algorithm's short name (coxph-pooled, km, …)
    label: str
    requests: str  # digest of the requests, site -> request
    task: str  # task id (hex); of a secure-sum round: its last task, answered by ``sites``
    outputs: str  # digest of the decoded outputs, site -> output (secure: total and public)
    # a secure-sum round only: every task it published, its sites, those dropped and why
    tasks: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def secure(self) -> bool:
        return bool(self.tasks)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "number": self.number,
            "image": self.image,
            "label": self.label,
            "requests": self.requests,
            "task": self.task,
            "outputs": self.outputs,
        }
        if self.secure:
            out.update(
                secure=True, tasks=list(self.tasks), sites=list(self.sites), dropped=self.dropped
            )
        return out

    @classmethod
    def from_dict(cls, r: Mapping[str, Any]) -> CompletedRound:
        secure = bool(r.get("secure"))
        return cls(
            int(r["number"]),
            str(r["image"]),
            str(r["label"]),
            str(r["requests"]),
            str(r["task"]),
            str(r["outputs"]),
            tuple(str(t) for t in r["tasks"]) if secure else (),
            tuple(str(t) for t in r["sites"]) if secure else (),
            {str(k): str(v) for k, v in dict(r["dropped"]).items()} if secure else {},
        )


@dataclass(frozen=True)
class PendingRound:
    """A round being published or answered.

    Recorded *before* the task is signed, with ``after_seq``, the researcher's last sequence
    number in the log then, and again with ``task`` once the hub acknowledged it. A run that
    stopped in between (the hub gone while the submit was on the way) left ``task`` empty: a
    resumed study then looks in the log for our entry ``after_seq + 1``: if it is this
    round's task, the submit did reach the hub and the round waits for it instead of signing
    a second task.
    """

    number: int
    image: str
    requests: str
    after_seq: int
    task: str = ""  # task id (hex) once the hub acknowledged it

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "image": self.image,
            "requests": self.requests,
            "after_seq": self.after_seq,
            "task": self.task,
        }


@dataclass
class StudyState:
    """One study's progress; ``save`` writes it to ``path`` atomically."""

    path: Path
    study: str
    definition: dict[str, Any]
    images: dict[str, str]  # short name -> repo@sha256:… used by every round
    rounds: list[CompletedRound] = field(default_factory=list)
    pending: PendingRound | None = None

    @property
    def last_completed(self) -> int:
        return self.rounds[-1].number if self.rounds else 0

    @classmethod
    def path_for(cls, home: Path, study: str) -> Path:
        return Path(home) / FOLDER / f"{study}.json"

    @classmethod
    def new(
        cls, home: Path, definition: Mapping[str, Any], images: Mapping[str, str]
    ) -> StudyState:
        study = study_id(definition)
        return cls(cls.path_for(home, study), study, dict(definition), dict(images))

    @classmethod
    def load(cls, path: Path) -> StudyState:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise StudyError(f"cannot read the study state {path}: {exc}") from exc
        try:
            if data["version"] != VERSION:
                raise StudyError(
                    f"{path} is a study state of version {data['version']!r}; this ptm reads "
                    f"version {VERSION}"
                )
            rounds = [CompletedRound.from_dict(r) for r in data["rounds"]]
            p = data.get("pending")
            pending = (
                None
                if p is None
                else PendingRound(
                    int(p["number"]),
                    str(p["image"]),
                    str(p["requests"]),
                    int(p["after_seq"]),
                    str(p["task"]),
                )
            )
            state = cls(
                Path(path),
                str(data["study"]),
                dict(data["definition"]),
                {str(k): str(v) for k, v in dict(data["images"]).items()},
                rounds,
                pending,
            )
        except StudyError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StudyError(
                f"{path} is not a study state ({type(exc).__name__}: {exc}); move it away to "
                "start the study afresh"
            ) from exc
        if [r.number for r in rounds] != list(range(1, len(rounds) + 1)):
            raise StudyError(f"{path}: the completed rounds are not numbered 1, 2, …")
        return state

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "study": self.study,
            "definition": self.definition,
            "images": self.images,
            "rounds": [r.to_dict() for r in self.rounds],
            "pending": None if self.pending is None else self.pending.to_dict(),
        }

    def save(self) -> None:
        """Write the state atomically: a crash leaves the previous file or this one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        data = json.dumps(self.to_dict(), indent=1, sort_keys=True).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        folder = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def complete(self, entry: CompletedRound) -> None:
        if entry.number != len(self.rounds) + 1:
            raise StudyError(
                f"round {entry.number} completed after round {len(self.rounds)}: the study "
                "driver skipped or repeated a round"
            )
        self.rounds.append(entry)
        self.pending = None
        self.save()

    def publish(self, pending: PendingRound) -> None:
        self.pending = pending
        self.save()
