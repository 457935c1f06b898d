"""The one exception tree of ptm_p2p.

Every error the package raises on purpose is a ``PtmError``. Messages say what happened,
where, and what to do next, because they end up in front of site operators and auditors.
Parsers never leak ``ValueError`` or msgpack exceptions: they wrap them in one of these.

Each error also says how ``ptm`` exits on it (``exit_code`` below, the one table of exit
codes; ``ptm --help`` and the README show it), so a script can tell a refusal from an
unreachable peer from a bad file without reading the message.
"""

from __future__ import annotations

from typing import Any

# --- exit codes of `ptm` (the one table; documented in `ptm --help` and the README) ---------

EXIT_OK = 0
EXIT_DOMAIN = 1  # a domain error: bad input file, damaged ledger, verification failure, …
EXIT_USAGE = 2  # a usage error (click's own code: unknown option, bad argument)
EXIT_REFUSED = 3  # the hub or a peer refused the request (not admitted, revoked, a rule)
EXIT_NOT_DONE = 4  # `ptm wait` / `ptm publish --wait`: the deadline passed first
EXIT_UNREACHABLE = 5  # no connection to the peer, or no answer in time: retrying may help

EXIT_CODES = {
    EXIT_OK: "ok",
    EXIT_DOMAIN: "error: a bad input file, a damaged ledger, a failed verification, a task "
    "no site answered ok, …",
    EXIT_USAGE: "usage error: an unknown option, a missing or bad argument",
    EXIT_REFUSED: "refused: the hub or a peer said no (not admitted, revoked, a log rule, "
    "every site refused the task)",
    EXIT_NOT_DONE: "not done: `ptm wait` reached its --timeout before every site answered",
    EXIT_UNREACHABLE: "unreachable: no connection to the hub or peer, or no answer in time",
}


class PtmError(Exception):
    """Root of every domain error in ptm_p2p."""

    exit_code: int = EXIT_DOMAIN


# --- ledger -------------------------------------------------------------------------------


class LedgerError(PtmError):
    """Something about the ledger's bytes, signatures, proofs or rules is wrong."""


class DecodeError(LedgerError):
    """Bytes that do not parse as a canonical, well-formed, size-limited ledger object."""


class SignatureError(LedgerError):
    """A signature does not verify under the key it claims."""


class ChainError(LedgerError):
    """A per-author chain is broken: wrong sequence number or previous-entry link."""


class ProofError(LedgerError):
    """A Merkle inclusion or consistency proof is malformed or does not verify."""


class CheckpointError(LedgerError):
    """A checkpoint or cosignature note is malformed or its signature fails."""


class RuleError(LedgerError):
    """An entry breaks a replay rule (membership, roles, targets, revocation...)."""


class UnknownTaskError(RuleError):
    """A result names a task that is not an earlier entry of the log."""


class InputRefused(LedgerError):
    """A site cannot act on a format-2 input: it was not boxed by the task's publisher for
    this site, or it is bound to another task. ``public_reason`` is what the site signs in
    its ``refused`` result: it reveals nothing of the input."""

    def __init__(self, message: str, public_reason: str) -> None:
        super().__init__(message)
        self.public_reason = public_reason


class FaultyOutput(LedgerError):
    """A format-2 result does not open as its site signed it: evidence against that site.

    ``check`` names the check that failed: ``key box`` (does not open with the researcher's
    key and the site's, or holds no {k, n, l}), ``blob`` (the ciphertext does not hash to
    ``output.blob`` or has another size), ``decrypt`` (secretstream refuses it) or
    ``commitment`` (the plaintext and nonce do not give ``output.commit``)."""

    def __init__(self, message: str, check: str) -> None:
        super().__init__(message)
        self.check = check


class EquivocationError(LedgerError):
    """One author signed two different entries with the same sequence number.

    Both entries are kept as evidence: ``first`` and ``second`` are their encoded bytes.
    """

    def __init__(self, message: str, first: bytes, second: bytes) -> None:
        super().__init__(message)
        self.first = first
        self.second = second


class SplitViewError(LedgerError):
    """Two validly signed checkpoints of the same log that are not consistent.

    ``first`` and ``second`` are the two checkpoint notes (text), kept as evidence.
    """

    def __init__(self, message: str, first: str, second: str) -> None:
        super().__init__(message)
        self.first = first
        self.second = second


class ReplayError(LedgerError):
    """The first rule broken while folding a log; names the entry index and author."""

    def __init__(
        self,
        message: str,
        index: int | None = None,
        author: str | None = None,
        cause: LedgerError | None = None,
    ) -> None:
        super().__init__(message)
        self.index = index
        self.author = author
        self.cause = cause


# --- storage, configuration -----------------------------------------------------------------


class StoreError(PtmError):
    """The durable store cannot be opened, read or written."""


class DamagedLedger(StoreError):
    """Our own ledger file does not match itself (entries, tree nodes): stop, repair.

    ``path`` is the file; daemons add the fix for their role (a site resyncs, a hub restores).
    """

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class ConfigError(PtmError):
    """A home folder, key file or config.toml is missing or invalid."""


# --- network --------------------------------------------------------------------------------


class NetworkError(PtmError):
    """A peer could not be reached or answered badly."""


class BlobUnavailable(NetworkError):
    """A format-2 output whose ciphertext is not in the result entry (``output.inline`` is
    absent) and cannot be fetched from here: the blob store is not reachable (or not yet
    wired in). Not the site's fault; try again later."""


class ProtocolError(NetworkError):
    """A sync-protocol message is malformed, oversized or not allowed."""

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.detail = detail


class MalformedAnswer(ProtocolError):
    """A peer's answer does not match the reply type of what we asked (a missing field, a
    wrong type, an unknown field): the peer does not speak the protocol, or lies."""


class FrameTooLarge(ProtocolError):
    """The peer announced a frame over the limit; the stream cannot be resynchronised."""


class StreamClosed(ProtocolError):
    """The stream ended (cleanly between frames, or in the middle of one).

    ``between_frames`` is true when not one byte of the frame being read had arrived: the
    peer closed or reset the stream before it started to answer (e.g. it gave up on a stream
    that had been idle), as opposed to a frame cut in the middle.
    """

    def __init__(self, message: str, *, between_frames: bool = False) -> None:
        super().__init__(message)
        self.between_frames = between_frames


class StreamIdle(StreamClosed):
    """No frame started within the idle timeout; the reader gives up on the stream."""


class RemoteError(ProtocolError):
    """The peer answered with an error response."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"peer refused: {code}: {message}", detail=code)
        self.code = code
        self.reason = message  # the peer's own words, for messages that name the peer
        # The codes of network/protocol.py: REFUSED is a "no"; UNAVAILABLE a busy peer that
        # asks to be asked again; the others (bad-request, internal…) are errors.
        self.exit_code = {"refused": EXIT_REFUSED, "unavailable": EXIT_UNREACHABLE}.get(
            code, EXIT_DOMAIN
        )


class NotAMember(RemoteError):
    """The peer serves the log's entries to admitted members only, and our key is none (never
    admitted, or revoked). Its message names our key and what to do; on the wire it is a
    ``refused`` error (``protocol.NOT_MEMBER``), so peers of the first version see a refusal."""

    def __init__(self, code: str, message: str, revoked_at: int | None = None) -> None:
        super().__init__(code, message)
        self.revoked_at = revoked_at  # the log index that revoked our key, when it was
        self.args = (f"not a member: {message}",)


class BadRange(ProtocolError):
    """A peer served entries that do not verify; names the peer and what was wrong."""

    index: int = -1  # the first entry that failed to decode, when known


class RootMismatch(BadRange):
    """Well-signed entries that, appended to our log, do not give the signed root.

    Either the peer altered, dropped or reordered entries, or the hub signed a checkpoint
    that does not extend ours (a split view): ``Site`` tells the two apart by rehashing the
    peer's whole log.
    """


class PeerUnreachable(NetworkError):
    """No connection to the peer could be opened; ``why`` says so in a few plain words."""

    exit_code = EXIT_UNREACHABLE

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


class StepTooLarge(NetworkError):
    """The range up to the chosen checkpoint is too large to hold before verifying it.

    Control flow inside the site's replicator: it then tries a nearer checkpoint, or says
    which peer offers none (a ``NetworkError`` with the limits).
    """


# --- execution ------------------------------------------------------------------------------


class PolicyError(PtmError):
    """The site's policy refuses a task (image, publisher, data label or limits)."""


class ExecutorError(PtmError):
    """The container engine or registry failed while running a task."""


# --- studies (multi-round algorithms driven by the researcher) ------------------------------


class StudyError(PtmError):
    """A federated study cannot go on: bad input, a site refused or failed, no convergence.

    ``sites`` maps each site that did not compute to its reason (empty when the problem is
    not any one site's, e.g. a covariate that is constant everywhere). ``answers`` holds the
    answers that did come in and opened (``Client.run_round``: site name -> ``SiteAnswer``
    of every honest ``ok`` site), so one bad site never hides the others' work.
    """

    def __init__(
        self,
        message: str,
        sites: dict[str, str] | None = None,
        answers: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.sites = dict(sites or {})
        self.answers = dict(answers or {})


class TaskLookupError(PtmError):
    """A task id, site name or key that the researcher's verified copy of the log lacks."""


class ImageResolveError(PtmError):
    """An image tag that cannot be resolved to a digest through its registry at publish time."""


# --- refusals -------------------------------------------------------------------------------


class Refused(PtmError):
    """The hub, a peer or the log's rules refuse what was asked, though it was well formed:
    a key that is not (or no longer) a member, a member admitted twice, a revoked author."""

    exit_code = EXIT_REFUSED


# --- blobs (payloads outside the log) ---------------------------------------------------------


class BlobError(PtmError):
    """A blob cannot be stored, sent or fetched (a local disk fault, a transfer that gave up)."""


class BlobRefused(BlobError):
    """The blob store said no: not a member, over the quota or the size limit, no room."""

    exit_code = EXIT_REFUSED


class BlobBusy(BlobError):
    """The same uploader's upload of this blob is still being written (its old stream not yet
    torn down): ask again in a moment."""


class BlobMismatch(BlobError):
    """Bytes that do not hash to the blob id they were sent or served as."""


# --- how `ptm` exits ------------------------------------------------------------------------

# Timeouts raised below the error tree: the builtin one, and trio's (named, not imported:
# this module imports nothing, so the ledger can use it).
_TIMEOUTS = ("TooSlowError",)


def exit_code_of(exc: BaseException) -> int:
    """The exit code ``ptm`` ends with on ``exc``: the first specific kind along the chain of
    explicit causes (``raise … from``), so a "cannot reach the hub" ``NetworkError`` raised
    from a ``PeerUnreachable`` or from a timeout is "unreachable", and a message that wraps a
    hub's refusal without saying so stays a refusal; otherwise a domain error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PtmError) and current.exit_code != EXIT_DOMAIN:
            return current.exit_code
        if isinstance(current, TimeoutError) or type(current).__name__ in _TIMEOUTS:
            return EXIT_UNREACHABLE
        current = current.__cause__
    return EXIT_DOMAIN
