"""Audit a ledger copy: replay every entry, recompute the tree, check every checkpoint.

``audit(store)`` never stops at the first problem: an auditor wants the whole picture. It
reports every entry that fails to decode, verify or obey a replay rule (the entry is then
left out of the state, exactly as the hub would have refused it), every stored checkpoint
whose root, signature or consistency with its predecessor fails, entries missing from the
copy, and any equivocation or split-view evidence kept in the store.

Checkpoints are checked two ways: against the root recomputed from the entries themselves
(so a rewritten entry cannot hide behind stored tree nodes), and pairwise with a consistency
proof (RFC 9162 §2.1.4.2) between the roots the hub signed, so the hub's own claims are
checked against each other without trusting this copy.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ptm_p2p.errors import ChainError, LedgerError, ReplayError, StoreError, UnknownTaskError
from ptm_p2p.ledger import crypto, merkle
from ptm_p2p.ledger.checkpoint import (
    SignedCheckpoint,
    Verifier,
    check_consistent,
    parse_checkpoint,
    verify_checkpoint,
    verify_cosignatures,
)
from ptm_p2p.ledger.entry import SIGNING_PREFIX, Entry, claimed_author, split_raw
from ptm_p2p.ledger.replay import State, decode_at
from ptm_p2p.ledger.store import LogStore

BATCH = 2048
# With workers, entries go out in smaller chunks: the replay waits for the first chunk's
# signatures before it can start, and the last chunk's replay runs after every signature is
# checked, so both ends of the audit run on one core for about one chunk's time.
PARALLEL_BATCH = 256
# Below this size a worker pool costs more to start than it saves.
PARALLEL_THRESHOLD = 20_000
# Beyond this many problems the report says "and N more": a file with every entry forged
# would otherwise print a million lines.
MAX_PROBLEMS = 200

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Problem:
    """One thing found wrong, located as precisely as the evidence allows."""

    message: str
    index: int | None = None
    author: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "author": self.author, "message": self.message}


@dataclass
class CheckpointReport:
    size: int
    root: str
    signed_by_hub: bool = False
    matches_entries: bool = False
    consistent_with_previous: bool | None = None  # None for the first checkpoint
    cosigners: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.signed_by_hub
            and self.matches_entries
            and self.consistent_with_previous is not False
        )

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _CHECKPOINT_JSON}


_CHECKPOINT_JSON = (
    "size",
    "root",
    "ok",
    "signed_by_hub",
    "matches_entries",
    "consistent_with_previous",
    "cosigners",
)
"""A checkpoint report's JSON keys, in this order (``ok`` is derived from the others)."""


@dataclass
class AuditReport:
    """Everything ``ptm audit`` prints; ``ok`` decides the exit code."""

    size: int
    state: State
    checkpoints: list[CheckpointReport]
    problems: list[Problem]
    problems_omitted: int
    evidence: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.evidence

    @property
    def kind_counts(self) -> dict[str, int]:
        return dict(self.state.kind_counts)

    def author_counts(self) -> dict[str, int]:
        return {
            self.state.describe(author): count
            for author, count in sorted(self.state.author_counts.items(), key=lambda item: -item[1])
        }

    def to_json(self) -> dict[str, Any]:
        state = self.state
        return {
            "ok": self.ok,
            "size": self.size,
            "origin": state.origin,
            "entries_by_kind": self.kind_counts,
            "entries_by_author": self.author_counts(),
            "members": [
                {
                    "key": m.key.hex(),
                    "org": m.org,
                    "role": m.role,
                    "admitted_at": m.admitted_at,
                    "revoked_at": m.revoked_at,
                }
                for m in state.members.values()
            ],
            "tasks": [
                {
                    "task": task.hash.hex(),
                    "index": task.index,
                    "publisher": state.describe(task.publisher),
                    "image": task.image,
                    "image_digest": task.image_digest,
                    "format": task.format,
                    "targets": [state.describe(t) for t in task.targets],
                    "results": {
                        state.describe(site): {
                            "status": r.status,
                            "index": r.index,
                            "image_digest": r.image_digest,
                            "format": r.format,
                        }
                        for site, r in task.results.items()
                    },
                    "pending": [state.describe(t) for t in task.pending],
                    "cancelled_at": task.cancelled_at,
                }
                for task in state.tasks.values()
            ],
            "checkpoints": [c.to_json() for c in self.checkpoints],
            "problems": [p.to_json() for p in self.problems],
            "problems_omitted": self.problems_omitted,
            "evidence": self.evidence,
        }


class _Findings:
    """Collects problems, keeping the first MAX_PROBLEMS and counting the rest.

    One forged or missing entry breaks its author's chain for every later entry and leaves
    results pointing at a task that is not there. Those are consequences, not new causes:
    they are counted per author (``follow_on``) instead of listed one by one.
    """

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.omitted = 0
        self.refused_authors: set[str] = set()
        self.follow_on: dict[str, int] = {}

    def add(self, message: str, index: int | None = None, author: str | None = None) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(message, index, author))
        else:
            self.omitted += 1

    def refused(self, exc: ReplayError, index: int) -> None:
        """An entry the replay refused: a new cause, or a consequence of an earlier one."""
        who = exc.author or "unknown author"
        consequence = (isinstance(exc.cause, ChainError) and who in self.refused_authors) or (
            isinstance(exc.cause, UnknownTaskError) and bool(self.refused_authors)
        )
        # Any refused entry breaks its author's chain, cause or consequence alike.
        self.refused_authors.add(who)
        if consequence:
            self.follow_on[who] = self.follow_on.get(who, 0) + 1
            return
        self.add(str(exc), index=index, author=exc.author)

    def summarize_follow_on(self) -> None:
        for who, count in sorted(self.follow_on.items(), key=lambda item: -item[1]):
            self.add(
                f"{count} later entries by {who} were refused as consequences of the problems "
                "above (broken chain or a result for a task that is not in this copy)",
                author=who,
            )


def _read_batch(store: LogStore, start: int, end: int, findings: _Findings) -> list[bytes | None]:
    """Entries ``start..end-1``; ``None`` (and a problem) where the copy has a hole."""
    try:
        return list(store.raw_range(start, end))
    except StoreError:
        pass
    out: list[bytes | None] = []
    for index in range(start, end):
        try:
            out.append(store.raw(index))
        except StoreError:
            findings.add(
                f"entry {index} is missing from this copy (deleted or never stored); "
                "fetch the log again from the hub or another site",
                index=index,
            )
            out.append(None)
    return out


@dataclass
class _CheckpointChecker:
    """Checks each stored checkpoint when the replay reaches its tree size."""

    store: LogStore
    state: State
    findings: _Findings
    tree: merkle.CompactRange = field(default_factory=merkle.CompactRange)
    pending: list[tuple[int, str]] = field(init=False)  # (size, note), smallest size first
    reports: list[CheckpointReport] = field(default_factory=list)
    previous: list[SignedCheckpoint] = field(default_factory=list)  # hub-signed, in order
    matched: set[int] = field(default_factory=set)  # sizes whose signed root matched

    def __post_init__(self) -> None:
        self.pending = sorted(self.store.checkpoints(), key=lambda item: item[0])

    def at_current_size(self) -> None:
        """Check every stored checkpoint for the tree's current size."""
        while self.pending and self.pending[0][0] == self.tree.size:
            self._check(self.pending.pop(0)[1])

    def _check(self, note: str) -> None:
        state, findings, tree = self.state, self.findings, self.tree
        where = f"checkpoint at size {tree.size}"
        try:
            signed = parse_checkpoint(note)
        except LedgerError as exc:
            findings.add(f"{where}: not a valid checkpoint note: {exc}")
            return
        cp = signed.checkpoint
        last = self.reports[-1] if self.reports else None
        if last is not None and last.size == cp.size and last.root == cp.root.hex():
            # The same checkpoint again with more cosignatures (a copy keeps the hub's note
            # and each cosigned version of it): one checkpoint, listed and judged once.
            self._more_cosigners(signed, last)
            return
        report = CheckpointReport(size=cp.size, root=cp.root.hex())
        self.reports.append(report)
        if state.hub is None or state.origin is None:
            findings.add(f"{where}: no genesis entry to take the hub key from; cannot verify it")
            return
        hub = Verifier.log(state.origin, state.hub)
        witnesses = [
            Verifier.witness(m.org, m.key) for m in state.members.values() if m.role == "site"
        ]
        try:
            verify_checkpoint(signed, hub, witnesses)
            report.signed_by_hub = True
            report.cosigners = [c.name for c in verify_cosignatures(signed, witnesses)]
        except LedgerError as exc:
            findings.add(f"{where}: {exc}")
        if cp.origin != state.origin:
            findings.add(f"{where}: origin {cp.origin!r} is not this log's {state.origin!r}")
        recomputed = tree.root()
        report.matches_entries = cp.root == recomputed
        if not report.matches_entries:
            findings.add(
                f"{where}: the hub signed root {cp.root.hex()[:16]}… but the entries in this "
                f"copy give {recomputed.hex()[:16]}…: entries before index {cp.size} were "
                "altered, removed or reordered" + self._changed_leaves_hint()
            )
        if self.previous and report.signed_by_hub:
            self._check_consistency(self.previous[-1], signed, report, hub, where)
        if report.signed_by_hub:
            self.previous.append(signed)
            if report.matches_entries:
                self.matched.add(cp.size)

    def _more_cosigners(self, signed: SignedCheckpoint, report: CheckpointReport) -> None:
        """Add the witnesses whose cosignatures verify on another note of ``report``'s
        checkpoint; a note whose hub signature fails counts nothing."""
        if self.state.hub is None or self.state.origin is None or not report.signed_by_hub:
            return
        hub = Verifier.log(self.state.origin, self.state.hub)
        witnesses = [
            Verifier.witness(m.org, m.key) for m in self.state.members.values() if m.role == "site"
        ]
        try:
            verify_checkpoint(signed, hub, witnesses)
            names = [c.name for c in verify_cosignatures(signed, witnesses)]
        except LedgerError:
            return
        report.cosigners = sorted(set(report.cosigners) | set(names))

    def _check_consistency(
        self,
        before: SignedCheckpoint,
        signed: SignedCheckpoint,
        report: CheckpointReport,
        hub: Verifier,
        where: str,
    ) -> None:
        # The proof comes from this copy's stored tree nodes. When both checkpoints match
        # the entries themselves they are consistent by construction, so a failing proof
        # then means damaged nodes in this file, not a hub that showed two histories.
        both_match = report.matches_entries and before.checkpoint.size in self.matched
        try:
            proof = self.store.consistency_proof(before.checkpoint.size, signed.checkpoint.size)
            check_consistent(before, signed, proof, hub)
            report.consistent_with_previous = True
        except (LedgerError, StoreError) as exc:
            report.consistent_with_previous = both_match
            if both_match:
                self.findings.add(
                    f"{where}: this copy's stored tree nodes give a bad consistency proof "
                    f"although the entries match both checkpoints; the file is damaged: {exc}"
                )
            else:
                self.findings.add(f"{where}: not consistent with the checkpoint before it: {exc}")

    def _changed_leaves_hint(self) -> str:
        """Name the entries whose bytes no longer match the leaf hash stored at append time.

        Only a hint: someone who rewrote entries could rewrite the stored nodes too. The
        checkpoint mismatch itself is the proof.
        """
        start = self.previous[-1].checkpoint.size if self.previous else 0
        changed: list[int] = []
        for index in range(start, self.tree.size):
            try:
                if self.store.leaf_hash(index) != merkle.leaf_hash(self.store.raw(index)):
                    changed.append(index)
            except StoreError:
                changed.append(index)
            if len(changed) >= 10:
                break
        if not changed:
            return ""
        return f" (entries whose bytes changed since they were appended: {changed})"


def default_workers(size: int, cpus: int | None) -> int:
    """Signature-checking worker processes worth starting for a log of ``size`` entries."""
    return (cpus or 1) if size >= PARALLEL_THRESHOLD else 0


Observer = Callable[[int, Entry], None]


def audit(
    store: LogStore,
    progress: Progress | None = None,
    workers: int = 0,
    observe: Observer | None = None,
) -> AuditReport:
    """Replay and check a whole ledger copy; report every problem found.

    With ``workers`` > 0, that many processes verify signatures in parallel with the replay
    (see ``default_workers``); ``0`` keeps all the work in this process. ``observe(index,
    entry)`` is called for each entry the replay accepted, so a report can read the fields
    the state does not keep without decoding the log a second time.
    """
    size = store.size()
    findings = _Findings()
    state = State()
    checkpoints = _CheckpointChecker(store, state, findings)
    tree = checkpoints.tree
    checkpoints.at_current_size()
    # Bound once: the loop below runs for every entry.
    append_leaf, leaf_hash = tree.append, merkle.leaf_hash
    at_checkpoint = checkpoints.at_current_size
    for start, raws, bad in _batches(store, size, findings, workers):
        for index, raw in enumerate(raws, start):
            # A hole still occupies its position: the tree over this copy has no leaf there,
            # so later checkpoints fail, as they must.
            if raw is not None:
                append_leaf(leaf_hash(raw))
                verified = bad is not None and (index - start) not in bad
                _apply(raw, index, state, findings, verified, observe)
            else:
                state.size = index + 1
            at_checkpoint()
        if progress is not None:
            progress(start + len(raws), size)
    findings.summarize_follow_on()
    if state.origin is None:
        findings.add(
            "this copy holds no genesis entry, so there is nothing to verify; if it was copied "
            "from a running daemon, copy it with `ptm ledger copy` (a plain `cp` misses the "
            "entries still in the -wal file)"
        )
    for cp_size, _ in checkpoints.pending:
        findings.add(
            f"checkpoint at size {cp_size}: the hub signed a log of {cp_size} entries but this "
            f"copy has only {tree.size}; entries were removed from the end or never synced"
        )
    evidence = [f"{e.kind}: {e.detail}" for e in store.evidence()]
    return AuditReport(
        size=size,
        state=state,
        checkpoints=checkpoints.reports,
        problems=findings.problems,
        problems_omitted=findings.omitted,
        evidence=evidence,
    )


def _batches(
    store: LogStore, size: int, findings: _Findings, workers: int
) -> Iterator[tuple[int, list[bytes | None], set[int] | None]]:
    """(start, entries, offsets whose signature failed or None if not checked yet).

    With workers, signature checks of the next batches run in other processes while this
    one replays the current batch: Ed25519 verification is most of an audit's cost, and it
    needs nothing of the replay state.
    """
    if workers < 1:
        for start in range(0, size, BATCH):
            yield start, _read_batch(store, start, min(size, start + BATCH), findings), None
        return
    # fork: workers only run the pure function below, so nothing is re-imported per worker.
    context = multiprocessing.get_context("fork")
    with context.Pool(workers) as pool:
        window: list[tuple[int, list[bytes | None], Any]] = []
        for start in range(0, size, PARALLEL_BATCH):
            raws = _read_batch(store, start, min(size, start + PARALLEL_BATCH), findings)
            window.append((start, raws, pool.apply_async(_signature_failures, (raws,))))
            if len(window) > 2 * workers:
                first, first_raws, result = window.pop(0)
                yield first, first_raws, set(result.get())
        for start, raws, result in window:
            yield start, raws, set(result.get())


def _signature_failures(raws: list[bytes | None]) -> list[int]:
    """Offsets in ``raws`` whose signature does not verify (or whose author cannot be read);
    the replay then decodes those fully to say exactly what is wrong.

    The author is read at its fixed offset (``claimed_author``), not decoded: the main
    process decodes every entry anyway, and a second decode here would cost the workers a
    fifth of a signature check per entry.
    """
    failed = []
    for offset, raw in enumerate(raws):
        if raw is None:
            continue
        try:
            body, signature = split_raw(raw)
        except LedgerError:
            failed.append(offset)
            continue
        author = claimed_author(body)
        if author is None or not crypto.verify(author, SIGNING_PREFIX + body, signature):
            failed.append(offset)
    return failed


def _claimed(raw: bytes, state: State) -> str | None:
    """The author an undecodable entry claims (read at its fixed offset), so that the
    author's next entries count as consequences of this one, not as new causes."""
    try:
        author = claimed_author(split_raw(raw)[0])
    except LedgerError:
        return None
    return state.describe(author) if author is not None else None


def _apply(
    raw: bytes,
    index: int,
    state: State,
    findings: _Findings,
    verified: bool,
    observe: Observer | None = None,
) -> None:
    try:
        # A worker may have verified this exact byte string's signature; the decode still
        # checks everything else (canonical form, schema, limits), and reports a failure in
        # the same words either way.
        entry = decode_at(raw, index, state, signature_checked=verified)
        state.apply(entry, index)
    except ReplayError as exc:
        if exc.author is None:
            exc.author = _claimed(raw, state)
        findings.refused(exc, index)
    except LedgerError as exc:  # a rule error not wrapped by replay: still name the entry
        findings.add(f"entry {index}: {exc}", index=index)
    else:
        if observe is not None:
            observe(index, entry)
        return
    # ``state.apply`` leaves the state unchanged on a refusal, so the audit goes on as the
    # hub would have: without that entry's effects. It still occupies its log position, so
    # the next entry is checked as entry ``index + 1``.
    state.size = index + 1


__all__ = ["AuditReport", "CheckpointReport", "Problem", "audit"]
