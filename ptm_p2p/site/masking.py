"""The site daemon's part of secure aggregation (``ledger/secagg.py``): check, then mask.

The container runs without the site's keys, so masking happens here, in the daemon, after
the container wrote its answer and before the answer is sealed to the researcher:

* ``refusal`` (before anything runs): a site whose policy says
  ``require_secure_aggregation = true`` refuses every task whose signed payload does not
  ask for ``aggregate = "secure-sum"``; the entry's schema already refuses a secure-sum
  task with fewer than two targets.
* ``masked`` (after the run): for a secure-sum task, an ``ok`` answer is replaced by its
  masked form (``secagg.mask_output``: fixed point, range-checked, pairwise masks with
  every other target of the signed task). An answer that does not follow the convention,
  or a value out of range, becomes ``failed`` with an empty output and a public reason
  saying what was wrong: nothing unmasked ever leaves the site for such a task. Refusals
  and failures of the algorithm itself (``{"refused": …}``, ``{"error": …}``) pass as
  they are: they carry a reason, not data.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from ptm_p2p.ledger import secagg
from ptm_p2p.ledger.entry import TaskPayloadV2

if TYPE_CHECKING:
    from ptm_p2p.executor.policy import SitePolicy
    from ptm_p2p.ledger.crypto import Signer
    from ptm_p2p.ledger.entry import Entry

log = logging.getLogger(__name__)

REQUIRED = (
    "this site's policy requires secure aggregation (require_secure_aggregation = true) "
    "and the task does not ask for it; publish it again with aggregate secure-sum "
    "(Client.sum_round, or secure=True in the survival coordinators); nothing was run"
)

NOT_MASKABLE = (
    "secure aggregation: the algorithm's answer is not a secure_sum answer or holds a value "
    "outside the fixed-point range (the site's log says which); nothing was sent"
)


def aggregate_of(task: Entry) -> str | None:
    """The signed ``aggregate`` of a format-2 task entry (None: plain answers)."""
    payload = task.typed_payload
    return payload.aggregate if isinstance(payload, TaskPayloadV2) else None


def refusal(policy: SitePolicy, task: Entry) -> str | None:
    """The public reason to refuse ``task`` before running it, or None."""
    if policy.require_secure_aggregation and aggregate_of(task) != secagg.SECURE_SUM:
        return REQUIRED
    return None


def masked(
    signer: Signer, task: Entry, status: str, output: bytes, reason: str
) -> tuple[str, bytes, str]:
    """(status, output, reason) to answer with: for a secure-sum task's ``ok`` answer, the
    masked output; otherwise what the run gave."""
    if aggregate_of(task) != secagg.SECURE_SUM:
        return status, output, reason
    if status != "ok":
        # A run that failed, timed out or was refused may still have written its answer
        # (output.json is read whatever the exit): never pass that on unmasked. Only the
        # algorithm's own one-line reason survives.
        return status, _reason_only(output), reason
    targets = list(task.payload["targets"])
    try:
        return status, secagg.mask_output(signer, targets, task.hash, output), reason
    except secagg.SecAggError as exc:
        # The detail may quote a value: it goes to the site's own log, never the ledger.
        log.warning("task %s: secure aggregation failed: %s", task.describe(), exc)
        return "failed", b"", NOT_MASKABLE


def _reason_only(output: bytes) -> bytes:
    """The ``{"refused": …}`` or ``{"error": …}`` text of an output, and nothing else."""
    try:
        value = json.loads(output) if output else None
    except ValueError:
        return b""
    if not isinstance(value, dict):
        return b""
    kept = {k: value[k] for k in ("refused", "error") if isinstance(value.get(k), str)}
    return json.dumps(kept, sort_keys=True).encode() if kept else b""
