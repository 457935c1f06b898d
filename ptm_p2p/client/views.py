"""What the researcher is shown: a task's progress (``TaskView``) and one site's opened answer
(``SiteAnswer``), with why a site did not compute (``why_not_ok``).

Both are plain values made from the verified copy of the log; they carry no connection, so
the CLI, the study runner and the tests can pass them around and print them freely.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ptm_p2p.errors import StudyError

FINAL = ("ok", "failed", "timeout", "refused", "cancelled")
FAULTY = "faulty"
"""``SiteAnswer.status`` of a site whose signed output does not open as signed."""
UNAVAILABLE = "unavailable"
"""``SiteAnswer.status`` of an output whose ciphertext cannot be fetched right now."""


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
            **_fields(self, "status", "reason", "image_digest"),
            "timings_ms": self.timings,
            "entry": self.index,
            "output_bytes": len(self.output),
            **_fields(self, "fault", "signed_status", "format"),
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
            **_fields(self, "image", "publisher", "algorithm", "cancelled", "done"),
            "sites": self.progress,
        }


def _fields(value: object, *names: str) -> dict[str, Any]:
    """``name -> value.name`` for the fields a JSON view prints under their own names."""
    return {name: getattr(value, name) for name in names}


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
