"""Who this daemon no longer believes, why, and the evidence that made it so.

One registry per daemon, with typed keys (``Party``): the hub, a peer (by peer id) or an
author (by ledger key). It is the one record of distrust and has one persistence:

* the hub's and authors' distrust follows from evidence in the store (a split view or a
  rule-breaking entry the hub signed; an author's two entries with one sequence number), so
  it is rebuilt from the store at start;
* peers refused for serving bad ranges are written to ``HOME/distrusted.json`` (atomically,
  fsynced) when the registry is given that file, so a restarted site never dials them again.

Evidence is stored once per pair, at most ``MAX_EVIDENCE`` rows, and a failed write of ours
is logged, never fatal: what was found is still acted on in memory. ``declare_split_view``
is the one place a split view is declared: it stores both notes, distrusts the hub and raises
``SplitViewError``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ptm_p2p.errors import LedgerError, SplitViewError, StoreError
from ptm_p2p.home_files import DistrustedPeer, load_distrusted, save_distrusted
from ptm_p2p.ledger.crypto import short
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.ledger.store import LogStore, is_local_fault

log = logging.getLogger(__name__)

# Evidence rows are kept forever and every new report is compared with the stored ones: a
# cap keeps a lying hub that signs fork after fork from filling the disk (the first items
# are the ones that matter; one is enough to stop trusting the hub).
MAX_EVIDENCE = 1_000
MAX_REASON = 500  # characters of a refusal reason kept in the distrust file

SPLIT_VIEW = "split-view"
INVALID_ENTRY = "invalid-entry"
EQUIVOCATION = "equivocation"


@dataclass(frozen=True)
class Party:
    """Someone trust is decided about: ``HUB``, ``Party.peer(pid)`` or ``Party.author(key)``.

    ``str()`` gives the name shown in logs and ``ptm status`` ("hub", "peer ID",
    "author 1a2b3c4d").
    """

    kind: str  # "hub" | "peer" | "author"
    ident: str = ""  # the peer id, or the author's key in hex

    @classmethod
    def peer(cls, peer_id: str) -> Party:
        return cls("peer", peer_id)

    @classmethod
    def author(cls, key: bytes) -> Party:
        return cls("author", key.hex())

    def __str__(self) -> str:
        if self.kind == "hub":
            return "hub"
        if self.kind == "author":
            return f"author {short(bytes.fromhex(self.ident))}"
        return f"{self.kind} {self.ident}"


HUB = Party("hub")


class TrustRegistry:
    """The parties this daemon no longer believes (with the reason) and the evidence store."""

    def __init__(self, store: LogStore, distrust_file: Path | None = None) -> None:
        self.store = store
        self.distrust_file = distrust_file
        self._reasons: dict[Party, str] = {}
        # Refused peers as the distrust file records them, by peer id.
        self._refused: dict[str, DistrustedPeer] = {}
        self.split_view = False
        self._load_evidence()
        if distrust_file is not None:
            self._load_file(distrust_file)

    # --- decisions -------------------------------------------------------------------------

    def trusted(self, who: Party) -> bool:
        return who not in self._reasons

    @property
    def hub_trusted(self) -> bool:
        return HUB not in self._reasons

    def reason(self, who: Party) -> str | None:
        return self._reasons.get(who)

    def distrusted(self) -> dict[str, str]:
        """Every distrusted party by its shown name, with the reason (``ptm status``)."""
        return {str(who): reason for who, reason in self._reasons.items()}

    def distrust(self, who: Party, reason: str) -> None:
        """Stop believing ``who``; logged once. A refused peer is recorded durably."""
        if who not in self._reasons:
            log.error("no longer trusting %s: %s", who, reason)
        self._reasons[who] = reason
        if who.kind == "peer" and who.ident not in self._refused:
            self._refused[who.ident] = DistrustedPeer(reason[:MAX_REASON], time.time())
            self._save_file()

    def restore(self, who: Party, reason: str) -> None:
        """Distrust decided in an earlier run: no new error line, the first one said it."""
        self._reasons[who] = reason

    # --- evidence --------------------------------------------------------------------------

    def record_evidence(self, kind: str, first: bytes, second: bytes, detail: str) -> bool:
        """Store evidence once (the same pair reported twice is stored once), at most
        ``MAX_EVIDENCE`` items in all. Returns whether a row was added."""
        stored = self.store.evidence()
        for item in stored:
            if item.kind == kind and {bytes(item.first), bytes(item.second)} == {first, second}:
                return False
        if len(stored) >= MAX_EVIDENCE:
            log.error("evidence table full (%d items); not storing: %s", len(stored), detail[:300])
            return False
        try:
            self.store.add_evidence(kind, first, second, detail)
        except StoreError as exc:
            if not is_local_fault(exc):
                raise
            # What we found is still true and acted on (in memory); only its record failed.
            log.error("evidence (%s) could not be stored: %s: %s", kind, exc, detail[:300])
            return False
        log.error("evidence recorded (%s): %s", kind, detail[:300])
        return True

    def declare_split_view(
        self,
        first: str,
        second: str,
        detail: str,
        reason: str = "split view: signed two inconsistent checkpoints",
    ) -> NoReturn:
        """The hub signed two inconsistent checkpoints (notes ``first`` and ``second``):
        store both as evidence, stop trusting the hub, raise ``SplitViewError``."""
        self.record_evidence(SPLIT_VIEW, first.encode(), second.encode(), detail)
        self.split_view = True
        self.distrust(HUB, reason)
        raise SplitViewError(f"split view detected: {detail}", first, second)

    def hub_broke_rules(self, entry: Entry, note: str, problem: str) -> None:
        """The hub signed a checkpoint over ``entry``, which breaks the replay rules."""
        self.distrust(HUB, f"signed a checkpoint over a rule-breaking entry: {problem}")
        self.record_evidence(INVALID_ENTRY, entry.raw, note.encode(), problem)

    def author_equivocated(self, author: bytes, detail: str) -> None:
        self.distrust(Party.author(author), detail)

    # --- persistence -----------------------------------------------------------------------

    def _load_evidence(self) -> None:
        """Distrust survives a restart: a daemon that proved a split view (or a signed
        rule-breaking entry) must not resume following and cosigning for that hub."""
        for item in self.store.evidence():
            kind = getattr(item, "kind", "")
            if kind == SPLIT_VIEW:
                self.split_view = True
                self.distrust(HUB, "split view evidence in the store (see `ptm status`)")
            elif kind == INVALID_ENTRY:
                self.distrust(HUB, "signed a checkpoint over a rule-breaking entry")
            elif kind == EQUIVOCATION:
                with contextlib.suppress(LedgerError):
                    author = Entry.from_bytes(bytes(item.first)).author
                    self.restore(Party.author(author), str(item.detail))

    def _load_file(self, path: Path) -> None:
        """Peers refused in earlier runs, distrusted again before anything is dialed.

        A lost file costs little (a liar is caught again by the same checks, nothing it sends
        is stored), so an unreadable one is reported and ignored (``home_files.py``).
        """
        records = load_distrusted(path)
        for pid, rec in records.items():
            self.restore(Party.peer(pid), rec.reason)
        self._refused = records
        if records:
            log.info(
                "still distrusting %d peer(s) refused in earlier runs (%s): %s",
                len(records),
                path.name,
                ", ".join(sorted(records)),
            )

    def _save_file(self) -> None:
        if self.distrust_file is None:
            return
        try:
            save_distrusted(self.distrust_file, self._refused)
        except OSError as exc:
            log.error(
                "could not write %s (%s): this distrust will not survive a restart",
                self.distrust_file,
                exc,
            )


__all__ = ["HUB", "MAX_EVIDENCE", "Party", "TrustRegistry"]
