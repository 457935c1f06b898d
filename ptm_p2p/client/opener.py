"""Opening a task's results with the researcher's key, site by site.

A result is opened only once its entry is in the verified copy and matches what replay
recorded. A format-2 output is a key box, a ciphertext (inline in the entry or a blob at
the hub) and a commitment: a site whose output does not open as it signed it is reported
``faulty`` with the failed check and the evidence, one whose blob cannot be fetched now
``unavailable``; every other site's answer is still returned. The hub is trusted for nothing
but availability: whatever it hands over is checked against what the site signed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ptm_p2p.client.connection import Connection
from ptm_p2p.client.views import FAULTY, UNAVAILABLE, SiteAnswer
from ptm_p2p.errors import (
    BlobError,
    BlobUnavailable,
    FaultyOutput,
    LedgerError,
    NetworkError,
    TaskLookupError,
)
from ptm_p2p.ledger.crypto import sha256
from ptm_p2p.ledger.entry import (
    Entry,
    OpenedOutput,
    OutputV2,
    ResultPayloadV2,
    open_output_v2,
)
from ptm_p2p.ledger.replay import LoggedTask

# The largest answer ciphertext ``results`` fetches: a site's default output limit (1 GiB)
# plus the secretstream overhead, with room.
MAX_ANSWER_BYTES = 1024**3 + 64 * 1024**2


class ResultOpener:
    """Opens the results of the researcher's own tasks."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def results(self, task: LoggedTask) -> dict[str, SiteAnswer]:
        """Each answered site's verified result, by organisation, opened independently."""
        home, state = self.connection.home, self.connection.state
        if task.publisher != home.public_key:
            raise TaskLookupError(
                f"task {task.hash.hex()[:16]}… was published by "
                f"{state.describe(task.publisher)}: its outputs are sealed to that key"
            )
        answers: dict[str, SiteAnswer] = {}
        for site, result in task.results.items():
            entry = self.result_entry(result.index, result.hash)
            name = state.members[site].org if site in state.members else site.hex()
            answers[name] = self.open_answer(name, site, entry, result.index)
        return answers

    def result_entry(self, index: int, expected_hash: bytes) -> Entry:
        """The result entry at ``index`` of the verified copy, checked against replay."""
        (raw,) = self.connection.follower.store.raw_range(index, index + 1)
        entry = Entry.from_bytes(raw)
        if entry.hash != expected_hash:
            raise LedgerError(
                f"entry {index} of {self.connection.home.ledger_path} differs from the "
                "verified result: the copy was altered on disk; move it away and sync again"
            )
        return entry

    def open_answer(self, name: str, site: bytes, entry: Entry, index: int) -> SiteAnswer:
        """One site's answer; ``faulty`` or ``unavailable`` instead of an exception."""
        payload = entry.payload
        base = {
            "site": name,
            "key": site,
            "image_digest": payload["image_digest"],
            "timings": dict(payload.get("timings", {})),
            "index": index,
        }
        unopened = {"output": b"", "signed_status": payload["status"]}
        typed = entry.typed_payload
        try:
            if isinstance(typed, ResultPayloadV2):
                ciphertext = self.ciphertext_of(site, typed.output)
                opened = open_output_v2(self.connection.home.signer, site, typed.output, ciphertext)
            else:
                opened = OpenedOutput(self._open_format_1(payload), b"", b"")
        except FaultyOutput as exc:
            why = f"{exc} (result entry {index}, signed by {site.hex()})"
            return SiteAnswer(**base, **unopened, status=FAULTY, reason=why, fault=exc.check)
        except BlobUnavailable as exc:
            return SiteAnswer(**base, **unopened, status=UNAVAILABLE, reason=str(exc))
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
            output = self.connection.home.signer.open_sealed(payload["output"])
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
            return self.connection.fetch_blob(output.blob, output.size)
        except (BlobError, NetworkError) as exc:
            raise BlobUnavailable(
                f"the output of {self.connection.state.describe(site)} is a blob at the hub "
                f"({output.blob.hex()[:16]}…, {output.size} bytes) that could not be fetched: "
                f"{exc}; try again (`ptm results`) once the hub is reachable"
            ) from exc
