"""What the explorer's pages show, built once at start from a verified snapshot of a ledger.

``Explorer.open`` copies the ledger (SQLite online backup, so a live daemon's file is read
consistently), audits the copy (``ptm_p2p.ledger.audit``), builds the auditor's report
(``ptm_p2p.ledger.report``) and indexes what searches need in memory: entry hashes and task
ids sorted for prefix search, organisations, keys, images and data labels mapped to tasks.
Everything afterwards is a dictionary lookup, a bisect or a slice; only an entry's own page
and its proofs read the snapshot (one row, O(log n) tree nodes).

Nothing here writes to the ledger: the snapshot is opened read-only and lives in a
temporary folder that ``close`` removes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptm_p2p.errors import LedgerError, StoreError
from ptm_p2p.explorer.search import search
from ptm_p2p.ledger import merkle
from ptm_p2p.ledger.audit import AuditReport, audit, default_workers
from ptm_p2p.ledger.checkpoint import Verifier, parse_checkpoint, verify_cosignatures
from ptm_p2p.ledger.entry import Entry
from ptm_p2p.ledger.report import build_report, iso, public_fields
from ptm_p2p.ledger.store import SqliteStore
from ptm_p2p.ledger_copy import ledger_file, read_only_copy

PAGE = 50
MAX_PAGE = 500

# What to give instead of a path with no ledger file (`ptm explore` on a wrong path).
EXPLORE_INSTEAD = (
    "give a ledger copy or a home folder that holds ledger.db (make one with "
    "`ptm ledger simulate` to try the explorer)"
)


@dataclass(frozen=True, slots=True)
class Row:
    """One entry as the entry list shows it."""

    index: int
    hash: str
    kind: str
    author: str  # key hex
    seq: int
    timestamp_ms: int


def _page(items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    offset = max(0, offset)
    limit = max(1, min(limit, MAX_PAGE))
    return {
        "total": len(items),
        "offset": offset,
        "limit": limit,
        "items": items[offset : offset + limit],
    }


class Explorer:
    """A verified ledger copy, indexed for the pages (module docstring)."""

    def __init__(
        self,
        source: Path,
        snapshot: Path,
        store: SqliteStore,
        report: AuditReport,
        accepted: list[tuple[int, Entry]] | None = None,
    ) -> None:
        self.source = source
        self.snapshot = snapshot
        self.store = store
        self.audit = report
        # The snapshot is read from the server's threads; SQLite connections are not shared.
        self._lock = threading.Lock()
        self._build(dict(accepted or []))

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, workdir: Path | None = None) -> Explorer:
        """Snapshot, audit and index the ledger at ``path`` (a file or a home folder)."""
        ledger = ledger_file(path)
        folder = Path(tempfile.mkdtemp(prefix="ptm-explore-", dir=workdir))
        snapshot = folder / "ledger.db"
        try:
            with read_only_copy(ledger, EXPLORE_INSTEAD) as source:
                source.copy_to(snapshot)
            store = SqliteStore(snapshot, read_only=True)
            if store.size() == 0:
                store.close()
                raise StoreError(
                    f"{ledger} holds no entries: this home never replicated the log (an "
                    "admin's home never does). Explore a site's or the hub's copy instead "
                    "(`ptm ledger copy SITE_HOME /tmp/l.db && ptm explore /tmp/l.db`)"
                )
            accepted: list[tuple[int, Entry]] = []
            report = audit(
                store,
                workers=default_workers(store.size(), os.cpu_count()),
                observe=lambda i, e: accepted.append((i, e)),
            )
            return cls(ledger, snapshot, store, report, accepted)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def close(self) -> None:
        self.store.close()
        shutil.rmtree(self.snapshot.parent, ignore_errors=True)

    def _raws(self) -> Iterator[tuple[int, bytes]]:
        size, step = self.store.size(), 4096
        for start in range(0, size, step):
            end = min(size, start + step)
            try:
                yield from enumerate(self.store.raw_range(start, end), start)
            except StoreError:
                for index in range(start, end):
                    try:
                        yield index, self.store.raw(index)
                    except StoreError:
                        continue

    def _build(self, seen: dict[int, Entry]) -> None:
        """Index every entry; ``seen`` holds those the audit decoded and accepted (the
        others, refused or forged, are decoded here when they still decode)."""
        state = self.audit.state
        rows: list[Row | None] = [None] * self.store.size()
        decoded: list[tuple[int, bytes | Entry]] = []
        for index, raw in self._raws():
            e = seen.get(index)
            if e is None:
                try:
                    e = Entry.from_bytes_signature_checked_elsewhere(raw)
                except LedgerError:
                    continue
            decoded.append((index, e))
            rows[index] = Row(index, e.hash.hex(), e.kind, e.author.hex(), e.seq, e.timestamp_ms)
        self.rows = rows
        self.data = build_report(self.audit, decoded)  # decoded once, for both
        del decoded
        # Which entries the replay accepted; every other one is shown as refused (red).
        accepted = {0} if state.origin is not None else set()
        for m in state.members.values():
            accepted.add(m.admitted_at)
            if m.revoked_at is not None:
                accepted.add(m.revoked_at)
        for t in state.tasks.values():
            accepted.add(t.index)
            if t.cancelled_at is not None:
                accepted.add(t.cancelled_at)
        accepted.update(r.index for r in state.results.values())
        self.accepted = accepted
        self.causes = {c["index"]: c for c in self.data["causes"] if c["index"] is not None}
        self.by_hash = {row.hash: row.index for row in rows if row is not None}
        self.entry_hashes = sorted(self.by_hash)
        self.tasks = self.data["tasks"]
        self.task_pos = {t["task"]: i for i, t in enumerate(self.tasks)}
        self.task_ids = sorted(self.task_pos)
        self.studies = {s["study"]: s for s in self.data["studies"]}
        self.members = {m["key"]: m for m in self.data["members"]}
        self.member_keys = sorted(self.members)
        self.sites = {s["key"]: s for s in self.data["sites"]}
        by_publisher: dict[str, list[int]] = {}
        by_site: dict[str, list[int]] = {}
        by_label: dict[str, list[int]] = {}
        by_image: dict[str, list[int]] = {}
        for i, t in enumerate(self.tasks):
            by_publisher.setdefault(t["publisher_key"], []).append(i)
            for s in t["target_sites"]:
                by_site.setdefault(s["key"], []).append(i)
            for label in t["data"]:
                by_label.setdefault(label.lower(), []).append(i)
            by_image.setdefault(t["image"].lower(), []).append(i)
        self.by_publisher, self.by_site, self.by_label, self.by_image = (
            by_publisher,
            by_site,
            by_label,
            by_image,
        )
        self.orgs: dict[str, list[str]] = {}
        for m in self.data["members"]:
            self.orgs.setdefault(m["org"].lower(), []).append(m["key"])
        self._checkpoints()

    def _checkpoints(self) -> None:
        """One row per checkpoint (size, root), with every witness cosignature and its time,
        and the note with the most signatures for the browser to check."""
        state = self.audit.state
        witnesses = [
            Verifier.witness(m.org, m.key) for m in state.members.values() if m.role == "site"
        ]
        verdicts = {(c.size, c.root): c for c in self.audit.checkpoints}
        rows: dict[tuple[int, str], dict[str, Any]] = {}
        for size, note in self.store.checkpoints():
            try:
                signed = parse_checkpoint(note)
            except LedgerError:
                continue
            root = signed.checkpoint.root.hex()
            row = rows.setdefault(
                (size, root),
                {"size": size, "root": root, "note": note, "cosignatures": {}, "signatures": 0},
            )
            try:
                cosigs = verify_cosignatures(signed, witnesses)
            except LedgerError:
                cosigs = []
            for c in cosigs:
                row["cosignatures"][c.name] = {
                    "name": c.name,
                    "timestamp": c.timestamp,
                    "time": iso(c.timestamp * 1000),
                }
            if len(signed.signatures) > row["signatures"]:
                row["note"], row["signatures"] = note, len(signed.signatures)
        out = []
        for (size, root), row in sorted(rows.items()):
            verdict = verdicts.get((size, root))
            out.append(
                {
                    "size": size,
                    "root": root,
                    "note": row["note"],
                    "cosignatures": sorted(row["cosignatures"].values(), key=lambda c: c["name"]),
                    "ok": bool(verdict and verdict.ok),
                    "signed_by_hub": bool(verdict and verdict.signed_by_hub),
                    "matches_entries": bool(verdict and verdict.matches_entries),
                    "consistent_with_previous": verdict.consistent_with_previous
                    if verdict
                    else None,
                }
            )
        self.checkpoint_rows = out
        self.checkpoint_sizes = [c["size"] for c in out]

    # --- pages ----------------------------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        d = self.data
        state = self.audit.state
        return {
            "ledger": str(self.source),
            "ok": d["ok"],
            "size": d["size"],
            "origin": d["origin"],
            "hub_key": state.hub.hex() if state.hub else None,
            "first_time": d["first_time"],
            "last_time": d["last_time"],
            "entries_by_kind": d["entries_by_kind"],
            "counts": {
                "tasks": len(self.tasks),
                "studies": len(self.studies),
                "members": len(self.members),
                "sites": len(self.sites),
                "checkpoints": len(self.checkpoint_rows),
                "refused_entries": d["size"] - len(self.accepted),
            },
            "causes": d["causes"],
            "problems_omitted": d["problems_omitted"],
            "evidence": d["evidence"],
            "warnings": d["warnings"],
            "study_rule": d["study_rule"],
            "latest_checkpoint": self.checkpoint_rows[-1] if self.checkpoint_rows else None,
            "recent_studies": [self.study_row(s) for s in list(self.studies.values())[-10:]],
        }

    @staticmethod
    def study_row(s: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in s.items() if k not in ("task_ids", "not_ok")}

    def study_list(self, offset: int, limit: int) -> dict[str, Any]:
        rows = [self.study_row(s) for s in self.studies.values()]
        return _page(rows, offset, limit)

    def study(self, study_id: str, offset: int = 0, limit: int = 200) -> dict[str, Any] | None:
        s = self.studies.get(study_id)
        if s is None:
            return None
        tasks = [self.tasks[self.task_pos[t]] for t in s["task_ids"]]
        return {**self.study_row(s), "not_ok": s["not_ok"], "tasks": _page(tasks, offset, limit)}

    def task_list(self, offset: int, limit: int) -> dict[str, Any]:
        return _page(self.tasks, offset, limit)

    def task(self, task_id: str) -> dict[str, Any] | None:
        pos = self.task_pos.get(task_id)
        return self.tasks[pos] if pos is not None else None

    def member_list(self) -> list[dict[str, Any]]:
        return list(self.members.values())

    def site_list(self) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in s.items() if k != "not_ok"} | {"not_ok_count": len(s["not_ok"])}
            for s in self.data["sites"]
        ]

    def site(self, key: str, offset: int = 0, limit: int = PAGE) -> dict[str, Any] | None:
        s = self.sites.get(key)
        if s is None:
            return None
        tasks = [self.tasks[i] for i in reversed(self.by_site.get(key, []))]
        return {**s, "member": self.members.get(key), "tasks": _page(tasks, offset, limit)}

    def checkpoint_list(self) -> list[dict[str, Any]]:
        return self.checkpoint_rows

    def entry_row(self, index: int) -> dict[str, Any]:
        row = self.rows[index] if 0 <= index < len(self.rows) else None
        verdict = self._verdict(index)
        if row is None:
            return {"index": index, "hash": None, "kind": None, "author": None, **verdict}
        member = self.members.get(row.author)
        return {
            "index": index,
            "hash": row.hash,
            "kind": row.kind,
            "author": row.author,
            "author_name": member["name"] if member else row.author[:8],
            "seq": row.seq,
            "timestamp_ms": row.timestamp_ms,
            "time": iso(row.timestamp_ms),
            **verdict,
        }

    def _verdict(self, index: int) -> dict[str, Any]:
        if index in self.accepted:
            return {"status": "accepted", "problem": None}
        cause = self.causes.get(index)
        if cause is not None:
            return {"status": "forged", "problem": cause["message"]}
        return {
            "status": "refused",
            "problem": "the replay refused this entry (a consequence of an earlier problem, "
            "or beyond the problems kept); see the audit's causes",
        }

    def entry_list(self, offset: int, limit: int, bad_only: bool = False) -> dict[str, Any]:
        if bad_only:
            bad = [i for i in range(len(self.rows)) if i not in self.accepted]
            page = _page(bad, offset, limit)
            page["items"] = [self.entry_row(i) for i in page["items"]]
            return page
        total = len(self.rows)
        offset = max(0, offset)
        limit = max(1, min(limit, MAX_PAGE))
        items = [self.entry_row(i) for i in range(offset, min(total, offset + limit))]
        return {"total": total, "offset": offset, "limit": limit, "items": items}

    def resolve(self, ref: str) -> int | None:
        """An entry index from an index or a full entry hash."""
        if ref.isdigit():
            index = int(ref)
            return index if index < len(self.rows) else None
        return self.by_hash.get(ref.lower())

    def entry(self, index: int) -> dict[str, Any] | None:
        if not 0 <= index < len(self.rows):
            return None
        with self._lock:
            try:
                raw = self.store.raw(index)
                stored_leaf = self.store.leaf_hash(index).hex()
            except StoreError as exc:
                return {**self.entry_row(index), "missing": str(exc)}
        out = self.entry_row(index)
        out["raw"] = raw.hex()
        out["leaf_hash"] = merkle.leaf_hash(raw).hex()
        out["stored_leaf_hash"] = stored_leaf
        try:
            entry = Entry.from_bytes_signature_checked_elsewhere(raw)
            out["fields"] = public_fields(entry)
            out["prev"] = entry.prev.hex()
        except LedgerError as exc:
            out["fields"] = None
            out["decode_error"] = str(exc)
        out["covering_checkpoints"] = [s for s in self.checkpoint_sizes if s > index]
        return out

    # --- proofs ---------------------------------------------------------------------------

    def _checkpoint(self, size: int) -> dict[str, Any] | None:
        for c in self.checkpoint_rows:
            if c["size"] == size:
                return c
        return None

    def _verifier(self) -> dict[str, Any]:
        state = self.audit.state
        return {"origin": state.origin, "hub_key": state.hub.hex() if state.hub else None}

    def proof(self, index: int, size: int | None = None) -> dict[str, Any]:
        """What the browser needs to check that entry ``index`` is in a hub-signed tree: the
        entry's bytes, the inclusion proof from this copy's tree nodes, and the checkpoint
        note (the browser checks its hub signature and compares the root itself)."""
        covering = [s for s in self.checkpoint_sizes if s > index]
        if size is None:
            if not covering:
                raise LookupError(f"no checkpoint covers entry {index} yet")
            size = covering[-1]
        cp = self._checkpoint(size)
        if cp is None or size <= index:
            raise LookupError(f"no checkpoint of size {size} covers entry {index}")
        with self._lock:
            raw = self.store.raw(index)
            path = self.store.inclusion_proof(index, size)
        return {
            "index": index,
            "size": size,
            "raw": raw.hex(),
            "proof": [p.hex() for p in path],
            "note": cp["note"],
            **self._verifier(),
        }

    def consistency(self, old: int, new: int) -> dict[str, Any]:
        a, b = self._checkpoint(old), self._checkpoint(new)
        if a is None or b is None or old > new:
            raise LookupError(
                f"pick two checkpoints of this copy, the older first (got {old}, {new})"
            )
        with self._lock:
            path = self.store.consistency_proof(old, new)
        return {
            "old": old,
            "new": new,
            "proof": [p.hex() for p in path],
            "old_note": a["note"],
            "new_note": b["note"],
            **self._verifier(),
        }

    # --- search ---------------------------------------------------------------------------

    def search(self, query: str, limit: int = PAGE) -> dict[str, Any]:
        """Tasks, entries, members, studies matching ``query``: a task id, entry hash or key
        (any prefix of 4+ hex digits), an entry index, an organisation, an image or a data
        label (case-insensitive; images and labels match a substring)."""
        return search(self, query, limit)


__all__ = ["Explorer", "Row"]
