"""Replay: fold a log of entries into the collaboration's state, enforcing every rule.

The hub, every site and every auditor run this same code, so they agree on what the log means.
The rules (each broken rule raises ``ReplayError`` naming the entry index, kind and author):

1. Entry 0 is the genesis entry, signed by the admin it names; there is no second genesis.
2. Every later author is a member: the admin and hub from genesis, or a key the admin
   admitted. A revoked key signs nothing after the entry that revoked it, and revocation is
   final (a key is never re-admitted: issue a new key instead).
3. Per-author chains: an author's entries have seq 1, 2, 3… and each ``prev`` is the hash of
   the author's previous entry; timestamps never go backwards within a chain.
4. Only the admin admits or revokes; the admin itself cannot be revoked.
5. Only researchers publish tasks, and every target is an admitted, unrevoked site.
6. Only a site a task targets reports a result on it, once; an ``ok`` result names the image
   digest the task named (a site that ran anything else must not claim success).
7. Only a task's publisher cancels it, once, and only while some target has not answered;
   a ``cancelled`` result answers a cancelled task. Results may still follow a cancel (a
   site may have finished before it saw it), so a cancel never invalidates a result.

``State.check`` tests an entry without touching the state and ``State.apply`` checks then
commits, so a rejected entry always leaves the state as it was; the hub calls ``check`` before
sequencing. The commit step cannot fail. Replay is the auditor's hot loop (millions of
entries): each entry is decoded once (``Entry.from_bytes``) and checked with dictionary
lookups only, on its typed payload (``Entry.typed_payload``), so mypy checks every field read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import msgspec

from ptm_p2p.errors import (
    ChainError,
    DecodeError,
    LedgerError,
    ReplayError,
    RuleError,
    SignatureError,
    UnknownTaskError,
)
from ptm_p2p.ledger.crypto import sha256, short
from ptm_p2p.ledger.entry import (
    GENESIS,
    MEMBERSHIP,
    RESULT,
    TASK,
    ZERO_HASH,
    CancelPayload,
    Entry,
    GenesisPayload,
    MembershipPayload,
    ResultPayload,
    ResultPayloadV2,
    TaskPayload,
    TaskPayloadV2,
    digest_of_image,
)
from ptm_p2p.ledger.store import READ_BATCH, LogStore

ADMIN_ROLE = "admin"


@dataclass(frozen=True, slots=True)
class Member:
    """A key's membership: its organisation, role, and the log indexes that changed it."""

    key: bytes
    org: str
    role: str  # "admin" | "hub" | "site" | "researcher" | "auditor"
    admitted_at: int
    revoked_at: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class Result(msgspec.Struct, frozen=True):
    """One site's signed answer to a task.

    A frozen Struct, not a frozen dataclass, because the replay makes one for most entries
    of a log and a Struct is built in C (0.2 µs; a frozen dataclass takes 1.5 µs).
    """

    task: bytes
    site: bytes
    status: str
    image_digest: str
    log_digest: bytes  # format 2: the result's log_commit
    index: int
    hash: bytes
    format: int = 1  # 1 or 2 (docs/ledger.md, "Format 2")


@dataclass(slots=True)
class LoggedTask:
    """A published task and the results that have come in so far (site key -> Result)."""

    hash: bytes
    publisher: bytes
    image: str
    targets: tuple[bytes, ...]
    limits: dict[str, int]
    index: int
    algorithm: str | None
    results: dict[bytes, Result] = field(default_factory=dict)
    cancelled_at: int | None = None  # index of the publisher's cancel entry, if any
    format: int = 1  # 1 or 2: how its inputs are sealed (docs/ledger.md, "Format 2")

    @property
    def image_digest(self) -> str:
        return digest_of_image(self.image)  # cached: every ``ok`` result asks

    @property
    def done(self) -> bool:
        """Every targeted site has reported (with any status)."""
        return len(self.results) == len(self.targets)

    @property
    def pending(self) -> list[bytes]:
        return [site for site in self.targets if site not in self.results]


class State:
    """What a log means so far. Start empty; entry 0 must be the genesis entry."""

    def __init__(self) -> None:
        self.size = 0
        self.origin: str | None = None
        self.admin: bytes | None = None
        self.hub: bytes | None = None
        self.members: dict[bytes, Member] = {}
        self.tasks: dict[bytes, LoggedTask] = {}
        self.results: dict[bytes, Result] = {}  # result entry hash -> Result
        self.heads: dict[bytes, tuple[int, bytes]] = {}  # author -> (last seq, last hash)
        self.kind_counts: dict[str, int] = {GENESIS: 0, MEMBERSHIP: 0, TASK: 0, RESULT: 0}
        self._last_timestamp: dict[bytes, int] = {}

    # --- reading --------------------------------------------------------------------------

    def describe(self, key: bytes) -> str:
        """``3f2a1b9c (site-b)``: a key's short hex and, when known, its organisation."""
        member = self.members.get(key)
        return f"{short(key)} ({member.org})" if member else short(key)

    @property
    def author_counts(self) -> dict[bytes, int]:
        """Entries per author (an author's last seq is its entry count)."""
        return {author: seq for author, (seq, _) in self.heads.items()}

    def active_members(self, role: str | None = None) -> list[Member]:
        return [m for m in self.members.values() if m.active and (role is None or m.role == role)]

    # --- checking and applying ------------------------------------------------------------

    def check(self, entry: Entry, index: int | None = None) -> None:
        """Raise ReplayError if ``entry`` may not come next in the log; never changes state."""
        self._check(entry, self.size if index is None else index)

    def apply(self, entry: Entry, index: int | None = None) -> None:
        """Check ``entry`` as the log's next entry (at ``index``, default ``size``) and fold
        it in. On ReplayError the state is unchanged."""
        index = self.size if index is None else index
        self._check(entry, index)
        self._commit(entry, index)

    def _fail(self, entry: Entry, index: int, cause: LedgerError, hint: str = "") -> ReplayError:
        who = self.describe(entry.author)
        message = f"entry {index} ({entry.kind} #{entry.seq}) by {who}: {cause}"
        if hint:
            message += f"; {hint}"
        error = ReplayError(message, index=index, author=who, cause=cause)
        error.__cause__ = cause  # as if raised "from cause": tracebacks show the rule's error
        return error

    def _check(self, entry: Entry, index: int) -> None:
        if index != self.size:
            raise self._fail(
                entry,
                index,
                RuleError(
                    f"out of order: the state holds {self.size} entries, so the next is "
                    f"entry {self.size}"
                ),
            )
        kind = entry.kind
        if self.admin is None:
            if kind != GENESIS:
                raise self._fail(
                    entry,
                    index,
                    RuleError("the first entry of a log must be the genesis entry"),
                    "this is not the start of a ledger (or its first entry is missing)",
                )
            return  # genesis is self-contained: Entry.from_bytes checked its payload.
        if kind == GENESIS:
            raise self._fail(
                entry, index, RuleError("a second genesis entry: a log has exactly one, at index 0")
            )
        member = self._active_author(entry, index)
        self._check_chain(entry, index)

        payload = entry.typed_payload
        if isinstance(payload, (ResultPayload, ResultPayloadV2)):
            self._check_result(entry, index, payload)
        elif isinstance(payload, (TaskPayload, TaskPayloadV2)):
            self._check_task(entry, index, member, payload)
        elif isinstance(payload, MembershipPayload):
            self._check_membership(entry, index, payload)
        elif isinstance(payload, CancelPayload):
            self._check_cancel(entry, index, payload)

    def _active_author(self, entry: Entry, index: int) -> Member:
        """The entry's author, who must be a member whose key is not revoked."""
        member = self.members.get(entry.author)
        if member is None:
            raise self._fail(
                entry,
                index,
                RuleError("the author is not a member of this collaboration"),
                "the admin must admit its key first",
            )
        if member.revoked_at is not None:
            raise self._fail(
                entry,
                index,
                RuleError(
                    f"the author's key was revoked at entry {member.revoked_at} and may sign "
                    "nothing after that"
                ),
            )
        return member

    def _check_chain(self, entry: Entry, index: int) -> None:
        """The entry continues its author's chain: the next seq, the previous entry's hash,
        and a timestamp no earlier than the previous entry's."""
        author = entry.author
        head = self.heads.get(author)
        last_seq, last_hash = head if head is not None else (0, ZERO_HASH)
        if entry.seq != last_seq + 1:
            raise self._fail(
                entry,
                index,
                ChainError(
                    f"seq {entry.seq} does not follow the author's last seq {last_seq} "
                    f"(expected {last_seq + 1})"
                ),
                "an already used seq: if the two entries differ, the author equivocated; "
                "keep both as evidence"
                if entry.seq <= last_seq
                else "entries of this author are missing before this one",
            )
        if entry.prev != last_hash:
            raise self._fail(
                entry,
                index,
                ChainError(
                    f"prev {entry.prev.hex()[:16]}… is not the hash of the author's previous "
                    f"entry ({last_hash.hex()[:16]}…)"
                ),
            )
        last_ts = self._last_timestamp.get(author)
        if last_ts is not None and entry.timestamp_ms < last_ts:
            raise self._fail(
                entry,
                index,
                ChainError(
                    f"timestamp {entry.timestamp_ms} ms is before the author's previous entry "
                    f"({last_ts} ms)"
                ),
            )

    def _check_task(
        self, entry: Entry, index: int, member: Member, payload: TaskPayload | TaskPayloadV2
    ) -> None:
        if member.role != "researcher":
            raise self._fail(
                entry,
                index,
                RuleError(f"only researchers publish tasks; the author's role is {member.role}"),
            )
        for target in payload.targets:
            site = self.members.get(target)
            if site is None or site.role != "site" or site.revoked_at is not None:
                what = (
                    "not a member"
                    if site is None
                    else f"revoked at entry {site.revoked_at}"
                    if site.revoked_at is not None
                    else f"a {site.role}, not a site"
                )
                raise self._fail(
                    entry,
                    index,
                    RuleError(f"target {self.describe(target)} is {what}"),
                    "tasks may only target admitted sites",
                )

    def _earlier_task(self, entry: Entry, index: int, task_id: bytes, verb: str) -> LoggedTask:
        """The task a cancel or result entry names (``verb`` says how), which must be an
        earlier task entry of this log."""
        task = self.tasks.get(task_id)
        if task is None:
            raise self._fail(
                entry,
                index,
                UnknownTaskError(
                    f"{verb} task {task_id.hex()[:16]}…, which is not an earlier "
                    "task entry of this log"
                ),
            )
        return task

    def _check_cancel(self, entry: Entry, index: int, payload: CancelPayload) -> None:
        task = self._earlier_task(entry, index, payload.task, "cancels")
        if task.publisher != entry.author:
            raise self._fail(
                entry,
                index,
                RuleError(
                    f"cancels the task at entry {task.index}, published by "
                    f"{self.describe(task.publisher)}: only its publisher may cancel it"
                ),
            )
        if task.cancelled_at is not None:
            raise self._fail(
                entry,
                index,
                RuleError(
                    f"the task at entry {task.index} was already cancelled at entry "
                    f"{task.cancelled_at}"
                ),
            )
        if task.done:
            raise self._fail(
                entry,
                index,
                RuleError(f"the task at entry {task.index} has every result already"),
                "there is nothing left to cancel",
            )

    def _check_result(
        self, entry: Entry, index: int, payload: ResultPayload | ResultPayloadV2
    ) -> None:
        author = entry.author
        task = self._earlier_task(entry, index, payload.task, "reports on")
        if author not in task.targets:
            raise self._fail(
                entry,
                index,
                RuleError(
                    f"reports on task at entry {task.index}, which does not target this site"
                ),
            )
        if author in task.results:
            raise self._fail(
                entry,
                index,
                RuleError(
                    f"a second result on task at entry {task.index} (the first is entry "
                    f"{task.results[author].index})"
                ),
            )
        status = payload.status
        if status == "cancelled" and task.cancelled_at is None:
            raise self._fail(
                entry,
                index,
                RuleError(
                    f"status cancelled, but the task at entry {task.index} was not cancelled"
                ),
            )
        if status == "ok" and payload.image_digest != task.image_digest:
            raise self._fail(
                entry,
                index,
                RuleError(
                    f"status ok with image {payload.image_digest}, but the task (entry "
                    f"{task.index}) named {task.image_digest}"
                ),
            )
        if isinstance(payload, ResultPayloadV2):
            inline = payload.output.inline
            # The one output check that needs no key: an inline ciphertext is the blob it
            # names (a blob held outside the log is checked where it is stored and fetched).
            if inline is not None and sha256(inline) != payload.output.blob:
                raise self._fail(
                    entry,
                    index,
                    RuleError(
                        "the inline output does not hash to the blob id the result names "
                        f"({payload.output.blob.hex()[:16]}…)"
                    ),
                )

    def _check_membership(self, entry: Entry, index: int, payload: MembershipPayload) -> None:
        if entry.author != self.admin:
            raise self._fail(
                entry, index, RuleError("only the admin named in genesis admits or revokes members")
            )
        key = payload.key
        current = self.members.get(key)
        if payload.action == "admit":
            if current is not None:
                state = (
                    f"was revoked at entry {current.revoked_at}; revocation is final, "
                    "admit a new key"
                    if current.revoked_at is not None
                    else f"is already a member ({current.role} of {current.org}, "
                    f"since entry {current.admitted_at})"
                )
                raise self._fail(entry, index, RuleError(f"key {short(key)} {state}"))
            return
        # revoke
        if current is None or current.revoked_at is not None:
            raise self._fail(
                entry, index, RuleError(f"revokes {short(key)}, which is not an active member")
            )
        if current.role == ADMIN_ROLE:
            raise self._fail(entry, index, RuleError("the admin's own key cannot be revoked"))
        if current.org != payload.org or current.role != payload.role:
            raise self._fail(
                entry,
                index,
                RuleError(
                    f"revokes {short(key)} as {payload.role} of {payload.org}, but it was "
                    f"admitted as {current.role} of {current.org}"
                ),
            )

    def _commit(self, entry: Entry, index: int) -> None:
        # Only assignments from here on: every rule was checked in _check.
        author = entry.author
        payload = entry.typed_payload
        if isinstance(payload, (ResultPayload, ResultPayloadV2)):
            result = Result(
                payload.task,
                author,
                payload.status,
                payload.image_digest,
                payload.log_digest,
                index,
                entry.hash,
                2 if isinstance(payload, ResultPayloadV2) else 1,
            )
            self.tasks[payload.task].results[author] = result
            self.results[entry.hash] = result
        elif isinstance(payload, (TaskPayload, TaskPayloadV2)):
            limits = payload.limits
            self.tasks[entry.hash] = LoggedTask(
                entry.hash,
                author,
                payload.image,
                tuple(payload.targets),
                {
                    "memory_mb": limits.memory_mb,
                    "timeout_s": limits.timeout_s,
                    "cpu_millis": limits.cpu_millis,
                },
                index,
                payload.algorithm,
                format=2 if isinstance(payload, TaskPayloadV2) else 1,
            )
        elif isinstance(payload, MembershipPayload):
            key = payload.key
            if payload.action == "admit":
                self.members[key] = Member(key, payload.org, payload.role, index)
            else:
                self.members[key] = replace(self.members[key], revoked_at=index)
        elif isinstance(payload, CancelPayload):
            self.tasks[payload.task].cancelled_at = index
        elif isinstance(payload, GenesisPayload):
            self.origin = payload.origin
            self.admin = payload.admin
            self.hub = payload.hub
            self.members[payload.admin] = Member(
                payload.admin, payload.admin_org, ADMIN_ROLE, index
            )
            self.members[payload.hub] = Member(payload.hub, payload.hub_org, "hub", index)
        self.heads[author] = (entry.seq, entry.hash)
        self._last_timestamp[author] = entry.timestamp_ms
        # Kinds appear in the counts once seen (a log without cancels reports four kinds).
        kind = entry.kind
        self.kind_counts[kind] = self.kind_counts.get(kind, 0) + 1
        self.size = index + 1


def decode_at(
    raw: bytes, index: int, state: State | None = None, *, signature_checked: bool = False
) -> Entry:
    """``Entry.from_bytes`` with a decode or signature failure reported as entry ``index``.

    ``signature_checked``: the caller has verified this exact byte string's signature
    already (the audit's workers); everything else is still checked.
    """
    try:
        if signature_checked:
            return Entry.from_bytes_signature_checked_elsewhere(raw)
        return Entry.from_bytes(raw)
    except SignatureError as exc:
        # Failure path only: decode again without the signature to name the claimed author.
        claimed = Entry.from_bytes_signature_checked_elsewhere(raw)
        who = state.describe(claimed.author) if state is not None else short(claimed.author)
        raise ReplayError(
            f"entry {index} ({claimed.kind} #{claimed.seq}) by {who}: signature does not "
            f"verify (key {claimed.author.hex()}); this copy is corrupt or forged: fetch the "
            "entry again from another peer and run `ptm audit` on the hub's copy",
            index=index,
            author=who,
            cause=exc,
        ) from exc
    except DecodeError as exc:
        raise ReplayError(
            f"entry {index}: {exc}; this copy of the log is corrupt or forged: fetch the entry "
            "again from another peer and run `ptm audit` on the hub's copy",
            index=index,
            author=None,
            cause=exc,
        ) from exc


def replay(entries: Iterable[Entry | bytes], state: State | None = None) -> State:
    """Fold ``entries`` (Entry objects or raw bytes, in log order) into ``state`` (default:
    a new, empty State) and return it; ReplayError on the first broken rule."""
    state = State() if state is None else state
    apply = state.apply
    index = state.size
    for item in entries:
        apply(item if isinstance(item, Entry) else decode_at(item, index, state), index)
        index += 1
    return state


def replay_store(
    store: LogStore,
    state: State | None = None,
    batch: int = READ_BATCH,
    on_batch: Callable[[int, list[Entry]], None] | None = None,
) -> State:
    """Fold a store's entries from ``state.size`` on (all of them into a new State by
    default) into ``state`` and return it, reading ``batch`` entries at a time;
    ``on_batch(first index, entries)`` is called after each batch is applied.

    Each entry is decoded with ``Entry.from_bytes`` and checked with ``State.apply``. The
    first failure (DecodeError, SignatureError, ReplayError) is raised unchanged; a refused
    entry leaves the state as it was, so ``state.size`` is then that entry's index.
    """
    state = State() if state is None else state
    apply = state.apply
    for begin, raws in store.read_batches(state.size, batch=batch):
        entries = []
        for index, raw in enumerate(raws, begin):
            entry = Entry.from_bytes(raw)
            apply(entry, index)
            entries.append(entry)
        if on_batch is not None:
            on_batch(begin, entries)
    return state
