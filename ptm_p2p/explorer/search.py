"""The explorer's search box: what a query finds in an ``Explorer``'s indexes.

A query of 4+ hex digits is a prefix of task ids, entry hashes, member keys and study ids; a
number is also an entry index; any text matches organisations, images and data labels by
substring (case-insensitive). Results come as groups, each a kind (tasks, entries, members,
studies), a title that says why they matched, a total and at most ``limit`` items.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Protocol

HEX_DIGITS = frozenset("0123456789abcdef")
MIN_HEX_PREFIX = 4
MAX_ORGS = 10  # organisations listed for one query, each with its members and their tasks


class Indexed(Protocol):
    """What a search reads of the explorer's indexes (``explorer.index.Explorer``)."""

    rows: list[Any]  # by entry index
    tasks: list[dict[str, Any]]  # the report's tasks, oldest first
    task_pos: dict[str, int]  # task id -> position in tasks
    task_ids: list[str]  # sorted
    by_hash: dict[str, int]  # entry hash -> index
    entry_hashes: list[str]  # sorted
    members: dict[str, dict[str, Any]]  # key -> the report's member
    member_keys: list[str]  # sorted
    studies: dict[str, dict[str, Any]]
    orgs: dict[str, list[str]]  # organisation (lower case) -> member keys
    by_publisher: dict[str, list[int]]  # key -> positions in tasks, and so on
    by_site: dict[str, list[int]]
    by_image: dict[str, list[int]]
    by_label: dict[str, list[int]]

    def entry_row(self, index: int) -> dict[str, Any]: ...

    def study_row(self, s: dict[str, Any]) -> dict[str, Any]: ...


def search(ex: Indexed, query: str, limit: int) -> dict[str, Any]:
    """Every group ``query`` matches (module docstring), in a fixed order."""
    q = query.strip().lower()
    found = _Groups(ex, limit)
    if q:
        if len(q) >= MIN_HEX_PREFIX and set(q) <= HEX_DIGITS:
            found.by_hex_prefix(q)
        if q.isdigit() and int(q) < len(ex.rows):
            found.add("entries", f"entry {int(q)}", 1, [ex.entry_row(int(q))])
        found.by_text(q)
    return {"query": query, "groups": found.groups}


def prefixed(sorted_keys: list[str], prefix: str, limit: int) -> tuple[int, list[str]]:
    """(how many, the first ``limit``) of the sorted strings starting with ``prefix``."""
    start = bisect_left(sorted_keys, prefix)
    end = bisect_left(sorted_keys, prefix + "\uffff")
    return end - start, sorted_keys[start : min(end, start + limit)]


def task_hit(t: dict[str, Any]) -> dict[str, Any]:
    """A task as one search result line: what ran where, and each site's answer."""
    return {
        "task": t["task"],
        "index": t["index"],
        "time": t["time"],
        "algorithm": t["algorithm_name"],
        "image_repository": t["image_repository"],
        "publisher": t["publisher"],
        "data": t["data"],
        "statuses": {a["site"]["name"]: a["status"] for a in t["answers"]},
    }


class _Groups:
    """The groups of one search, in the order they are found."""

    def __init__(self, ex: Indexed, limit: int) -> None:
        self.ex = ex
        self.limit = limit
        self.groups: list[dict[str, Any]] = []

    def add(self, kind: str, title: str, total: int, items: list[dict[str, Any]]) -> None:
        self.groups.append({"kind": kind, "title": title, "total": total, "items": items})

    def tasks(self, title: str, positions: list[int], total: int | None = None) -> None:
        """The newest ``limit`` of the tasks at ``positions`` (oldest first), if any."""
        if positions:
            items = [task_hit(self.ex.tasks[i]) for i in positions[-self.limit :][::-1]]
            self.add("tasks", title, len(positions) if total is None else total, items)

    def members(self, title: str, keys: list[str], sent_unless_published: bool = False) -> None:
        """The members with ``keys``, then for each the tasks it published and was sent
        (with ``sent_unless_published``, those sent only to a member that published none)."""
        ex = self.ex
        self.add("members", title, len(keys), [ex.members[k] for k in keys])
        for key in keys:
            name = ex.members[key]["name"]
            published = ex.by_publisher.get(key, [])
            only_sent = not (sent_unless_published and key in ex.by_publisher)
            sent = ex.by_site.get(key, []) if only_sent else []
            self.tasks(f"tasks published by {name}", published)
            self.tasks(f"tasks sent to {name}", sent)

    def by_hex_prefix(self, q: str) -> None:
        ex, limit = self.ex, self.limit
        total, ids = prefixed(ex.task_ids, q, limit)
        if total:
            positions = sorted(ex.task_pos[i] for i in ids)
            self.tasks(f"tasks whose id starts with {q}", positions, total)
        total, hashes = prefixed(ex.entry_hashes, q, limit)
        if total:
            rows = [ex.entry_row(ex.by_hash[h]) for h in hashes]
            self.add("entries", f"entries whose hash starts with {q}", total, rows)
        total, keys = prefixed(ex.member_keys, q, limit)
        if total:
            self.members(f"members whose key starts with {q}", keys, sent_unless_published=True)
        studies = [s for s in ex.studies if s.startswith(q)]
        if studies:
            rows = [ex.study_row(ex.studies[s]) for s in studies[:limit]]
            self.add("studies", f"studies whose id starts with {q}", len(studies), rows)

    def by_text(self, q: str) -> None:
        ex = self.ex
        for org in [org for org in ex.orgs if q in org][:MAX_ORGS]:
            self.members(f"members of organisation {org}", ex.orgs[org])
        for image, positions in ex.by_image.items():
            if q in image:
                self.tasks(f"tasks running image {image}", positions)
        for label, positions in ex.by_label.items():
            if q in label:
                self.tasks(f"tasks reading data label {label}", positions)


__all__ = ["prefixed", "search", "task_hit"]
