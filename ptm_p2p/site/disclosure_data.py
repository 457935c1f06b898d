"""The site's data as the disclosure record reads it (``disclosure.py``): each data source's
CSV as text cells (``Table``), one 16-byte digest per patient row, and the cache of the
current version of each source (``DataTables``). The record compares these to tell whether
two answered populations differ by a few patients and how a grouping splits them."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# A covariate with at most this many distinct values at the site is categorical (as in
# ``survival_site.CATEGORICAL_LEVELS``): the pooled model's sums reveal its counts per
# interval, so it splits the patients like a grouping does.
CATEGORICAL_LEVELS = 3
MISSING = {"", "na", "nan", "null", "none"}
DIGEST_BYTES = 16


@dataclass(frozen=True)
class Table:
    """A data source's CSV as text cells: enough to compare patient sets and groupings."""

    content: bytes  # SHA-256 of the file
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    _full: Counter[bytes] = field(default_factory=Counter, compare=False, repr=False)

    def digests(self, columns: Sequence[str] | None = None) -> Counter[bytes]:
        """One digest per row over ``columns`` (all by default), as a multiset."""
        if columns is None:
            if not self._full:  # computed once per version of the file
                self._full.update(self.digests(self.header))
            return self._full
        cols = list(columns)
        at = [self.header.index(c) for c in cols]
        return Counter(_row_digest([row[i] for i in at]) for row in self.rows)

    def packed_digests(self) -> bytes:
        """The digests over all columns, sorted and joined: as the record stores them."""
        return b"".join(sorted(self.digests().elements()))

    def cells(self, columns: Sequence[str]) -> list[tuple[str, ...]]:
        at = [self.header.index(c) for c in columns]
        return [tuple(_cell(row[i]) for i in at) for row in self.rows]

    def categorical(self, name: str) -> bool:
        if name not in self.header:
            return False
        i = self.header.index(name)
        values = {_cell(row[i]) for row in self.rows} - {""}
        return 0 < len(values) <= CATEGORICAL_LEVELS


def unpack_digests(rows: bytes) -> Counter[bytes]:
    """The multiset of row digests that ``Table.packed_digests`` stored."""
    return Counter(bytes(rows[i : i + DIGEST_BYTES]) for i in range(0, len(rows), DIGEST_BYTES))


def _cell(text: str) -> str:
    value = text.strip()
    return "" if value.lower() in MISSING else value


def _row_digest(cells: Iterable[str]) -> bytes:
    text = json.dumps([_cell(c) for c in cells], separators=(",", ":"))
    return hashlib.sha256(text.encode()).digest()[:DIGEST_BYTES]


def data_file(path: Path) -> Path | None:
    """The CSV a data source's path stands for (a file, or a folder's only ``.csv``), as the
    algorithm images find it (``algorithm.data_file``); None when there is none."""
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(".csv"))
        return found[0] if len(found) == 1 else None
    return None


def read_table(path: Path) -> Table | None:
    """The data source at ``path`` as a ``Table``; None when it is not a readable CSV (the
    record then cannot compare it: docs/privacy.md names this)."""
    file = data_file(path)
    if file is None:
        return None
    try:
        raw = file.read_bytes()
        text = raw.decode("utf-8")
        reader = csv.reader(text.splitlines())
        header = tuple(h.strip() for h in next(reader, []))
        rows = tuple(
            tuple((row[i] if i < len(row) else "") for i in range(len(header)))
            for row in reader
            if row
        )
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return Table(hashlib.sha256(raw).digest(), header, rows)


class DataTables:
    """The current ``Table`` of each data label of the site (its ``[policy.data]``), read
    again only when the file's modification time or size changes."""

    def __init__(self, data: Mapping[str, Path]) -> None:
        self.data = dict(data)
        self._tables: dict[tuple[str, float, int], Table | None] = {}

    def get(self, label: str) -> Table | None:
        """The data source's current content (cached while the file is unchanged)."""
        path = self.data.get(label)
        if path is None:
            return None
        file = data_file(path)
        if file is None:
            return None
        try:
            st = file.stat()
        except OSError:
            return None
        key = (str(file), st.st_mtime, st.st_size)
        if key not in self._tables:
            self._tables = {key: read_table(file)} | {
                k: v for k, v in self._tables.items() if k[0] != str(file)
            }
        return self._tables[key]
