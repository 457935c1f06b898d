"""The record of one task run: what ran, how it ended, what it produced.

Statuses: ``ok`` (exit 0, output within its cap), ``failed`` (non-zero exit, memory limit,
output over its cap), ``timeout`` (killed at the wall-clock limit), ``refused`` (the site's
policy said no, or the pinned image could not be obtained: nothing ran).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ptm_p2p.executor.limits import Limits

STATUSES = ("ok", "failed", "timeout", "refused")
OUTPUT_FILE = "output.json"


@dataclass(frozen=True)
class Timings:
    """Seconds spent in each phase (wall clock)."""

    prepare_s: float = 0.0  # policy check, pull/lookup of the image, staging input
    create_s: float = 0.0  # container create + attach
    run_s: float = 0.0  # start until exit (or kill)
    collect_s: float = 0.0  # reading output and logs, removal
    total_s: float = 0.0


@dataclass(frozen=True)
class RunResult:
    """Outcome of one task; ``output`` is the file /ptm/output/output.json (empty if none)."""

    status: str
    reason: str
    image: str  # as asked for (REPO@sha256:… for tasks, a tag or id for run-local)
    digest: str | None = None  # REPO@sha256:… that ran, when the image has one
    image_id: str | None = None  # the engine's image id (config digest) that ran
    exit_code: int | None = None
    files: dict[str, bytes] = field(default_factory=dict, repr=False)  # the output folder
    output_bytes: int = 0  # total size the output folder reached
    logs: bytes = field(default=b"", repr=False)  # stdout+stderr, at most limits.log_bytes
    log_bytes: int = 0  # total the container wrote (kept or not)
    logs_truncated: bool = False
    limits: Limits | None = None
    timings: Timings = field(default_factory=Timings)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def output(self) -> bytes:
        return self.files.get(OUTPUT_FILE, b"")

    @property
    def output_digest(self) -> str:
        return hashlib.sha256(self.output).hexdigest()

    @property
    def logs_digest(self) -> str:
        """SHA-256 of the kept logs: what a result entry on the ledger commits to."""
        return hashlib.sha256(self.logs).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (no output bytes; logs as text, replacing bad UTF-8)."""
        what_ran = ("status", "reason", "image", "digest", "image_id", "exit_code")
        sizes = ("output_bytes", "output_digest", "log_bytes", "logs_truncated", "logs_digest")
        return {
            **{name: getattr(self, name) for name in what_ran},
            "output_files": sorted(self.files),
            **{name: getattr(self, name) for name in sizes},
            "logs": self.logs.decode("utf-8", "replace"),
            "limits": self.limits.to_dict() if self.limits else None,
            "timings": vars(self.timings).copy(),
        }

    @classmethod
    def refused(cls, image: str, reason: str, timings: Timings | None = None) -> RunResult:
        return cls(status="refused", reason=reason, image=image, timings=timings or Timings())
