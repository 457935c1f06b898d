"""The audit report (``ledger/report.py``) as flat tables for a spreadsheet.

Each table is a list of columns, a column a header and how to read its cell from one row
of the report. Most cells are a field of the same name, so columns are declared a few
names at a time; lists are joined with ``"; "`` and status counts written ``ok=2; error=1``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from operator import itemgetter
from typing import Any

Row = Mapping[str, Any]
Column = tuple[str, Callable[[Row], Any]]
Table = tuple[list[str], list[list[Any]]]


def _join(values: Iterable[Any]) -> str:
    return "; ".join(str(v) for v in values)


def _plain(names: str) -> list[Column]:
    """Columns holding the row's field of the same name; a missing field is an error."""
    return [(n, itemgetter(n)) for n in names.split()]


def _optional(names: str) -> list[Column]:
    """Columns for fields a row may lack (empty cell)."""
    return [(n, partial(_get, n)) for n in names.split()]


def _text(names: str) -> list[Column]:
    """Columns for text fields that may be null: an empty string instead."""
    return [(n, partial(_text_of, n)) for n in names.split()]


def _joined(names: str) -> list[Column]:
    """Columns for list fields, joined into one cell."""
    return [(n, partial(_joined_of, n)) for n in names.split()]


def _counted(names: str) -> list[Column]:
    """Columns for status counts, ``name=count`` sorted by name."""
    return [(n, partial(_counts_of, n)) for n in names.split()]


def _get(name: str, row: Row) -> Any:
    return row.get(name)


def _text_of(name: str, row: Row) -> str:
    return row[name] or ""


def _joined_of(name: str, row: Row) -> str:
    return _join(row[name])


def _counts_of(name: str, row: Row) -> str:
    return _join(f"{k}={v}" for k, v in sorted(row[name].items()))


def _renamed(header: str, key: str) -> Column:
    return (header, itemgetter(key))


_TASKS = [
    *_plain("task index time timestamp_ms"),
    *_optional("study round"),
    _renamed("publisher", "publisher_key"),
    *_plain("publisher_org"),
    _renamed("algorithm", "algorithm_name"),
    *_plain("image_repository image_digest"),
    *_joined("data"),
    ("targets", lambda t: _join(s["name"] for s in t["target_sites"])),
    *_joined("pending"),
    *_plain("cancelled_at"),
    *_text("description"),
]
_ANSWERS = [
    *_plain("task study round algorithm publisher_org site site_org status"),
    *_text("reason"),
    *_plain("index time timestamp_ms image_digest run_ms total_ms"),
]
_STUDIES = [
    *_plain("study family"),
    _renamed("publisher", "publisher_key"),
    *_plain("publisher_org rounds"),
    *_joined("algorithms images data sites"),
    *_plain("first_time last_time"),
    *_counted("statuses"),
]
_MEMBERS = [*_plain("key org role event index time"), *_text("reason")]
_RESEARCHERS = [
    *_plain("key org tasks studies"),
    *_joined("algorithms images sites data"),
    *_counted("statuses"),
    *_plain("first_time last_time"),
]
_SITES = [
    *_plain("key org targeted answered"),
    *_counted("statuses"),
    *_joined("ran data"),
    ("pending", lambda s: len(s["pending"])),
]
_DATA_SOURCES = [
    *_plain("label tasks"),
    *_joined("researchers sites algorithms"),
    *_counted("statuses"),
    *_plain("first_time last_time"),
]
_CHECKPOINTS = [
    *_plain("size root ok signed_by_hub matches_entries consistent_with_previous"),
    *_joined("cosigners"),
]
_PROBLEMS = [
    *_plain("index"),
    *_text("author"),
    *_plain("message consequence_count"),
    *_joined("consequences"),
]


def _answer_rows(tasks: Iterable[Row]) -> Iterator[Row]:
    """One row per site's answer, with the fields of its task it is read beside."""
    for t in tasks:
        for a in t["answers"]:
            yield {
                **a,
                "task": t["task"],
                "study": t.get("study"),
                "round": t.get("round"),
                "algorithm": t["algorithm_name"],
                "publisher_org": t["publisher_org"],
                "site": a["site"]["key"],
                "site_org": a["site"]["org"],
                "run_ms": a["timings"].get("run_ms"),
                "total_ms": a["timings"].get("total_ms"),
            }


def _member_events(members: Iterable[Row]) -> Iterator[Row]:
    """One row per event of a member's timeline, with the member's key, org and role."""
    for m in members:
        for e in m["timeline"]:
            yield {**e, "key": m["key"], "org": m["org"], "role": m["role"]}


def csv_tables(data: Mapping[str, Any]) -> dict[str, Table]:
    """The report as flat tables for a spreadsheet: name -> (header, rows)."""
    sources: dict[str, tuple[list[Column], Iterable[Row]]] = {
        "tasks": (_TASKS, data["tasks"]),
        "answers": (_ANSWERS, _answer_rows(data["tasks"])),
        "studies": (_STUDIES, data["studies"]),
        "members": (_MEMBERS, _member_events(data["members"])),
        "researchers": (_RESEARCHERS, data["researchers"]),
        "sites": (_SITES, data["sites"]),
        "data_sources": (_DATA_SOURCES, data["data_sources"]),
        "checkpoints": (_CHECKPOINTS, data["checkpoints"]),
        "problems": (_PROBLEMS, data["causes"]),
    }
    return {
        name: ([header for header, _ in columns], [[cell(r) for _, cell in columns] for r in rows])
        for name, (columns, rows) in sources.items()
    }


__all__ = ["csv_tables"]
