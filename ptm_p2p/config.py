"""A home's ``config.toml`` as typed, validated data: one schema, checked before anything runs.

The whole file, every section a daemon reads::

    name = "hospital-a"            # required: 1-64 letters, digits, '.', '_' or '-'

    [policy]                       # a site's policy (ptm_p2p.executor.policy); deny by default
    images = ["127.0.0.1:5000/ptm/summary"]
    publishers = ["uni-research"]
    min_group_size = 5
    [policy.data]
    registry = "/srv/ptm-data/registry.csv"
    [policy.limits]
    memory = "512m"

    [tasks]
    parallel = 1                   # tasks this site runs at once (1-64)

    [hub]                          # read by ``ptm hub`` only
    public_log = false             # true: serve the log's entries to anyone, not members only
    blob_quota = "20g"             # bytes of blobs each member may hold at the hub's blob store
    blob_retention = 90            # days a blob is kept (a number > 0; fractions allowed)

Anything else is refused: an unknown key or section (``[polcy]``, with the closest known name
suggested), a value of the wrong type (``images = "a string"``, ``min_group_size = "five"``).
Every error is a ``ConfigError`` that names the file, the key and the form expected, so a
site operator's mistake is caught by ``ptm config check`` or when ``ptm node`` starts, not
months later when a task is refused. ``check_data`` goes further and looks at the data
paths themselves (exist, are files or folders of the site's own, readable by the task user).

Nothing here reads the environment or imports Docker; ``load_config`` reads one file.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import msgspec

from ptm_p2p.errors import ConfigError, PtmError
from ptm_p2p.executor.limits import parse_size
from ptm_p2p.executor.policy import SitePolicy, check_data_path
from ptm_p2p.home import CONFIG_FILE, NAME_PATTERN
from ptm_p2p.strict_decode import Problem, convert, field_names

DEFAULT_BLOB_QUOTA = 20 * 1024**3
DEFAULT_BLOB_RETENTION_DAYS = 90.0
# A retention of more than a century is a typo, not a policy (and would overflow time sums).
MAX_BLOB_RETENTION_DAYS = 36_500
MAX_PARALLEL = 64
DEFAULT_PARALLEL = 1


@dataclass(frozen=True)
class HomeConfig:
    """A validated config.toml. ``policy`` is deny-by-default when ``[policy]`` is absent."""

    path: Path  # the config.toml it came from
    name: str
    policy: SitePolicy = field(default_factory=SitePolicy)
    tasks_parallel: int = DEFAULT_PARALLEL
    # The hub serves entries to admitted members only unless the collaboration wants a public
    # log (the entries are metadata: who ran which image on which data label, and when).
    hub_public_log: bool = False
    blob_quota: int = DEFAULT_BLOB_QUOTA  # [hub] blob_quota, bytes per member
    blob_retention_days: float = DEFAULT_BLOB_RETENTION_DAYS  # [hub] blob_retention

    def check_data(self) -> list[str]:
        """Problems with the data paths of ``[policy.data]``, one message each (empty when
        every path exists, is a file or folder the site owns, and the task user can read
        it). Not part of ``parse``: the data may live on a disk that is mounted later."""
        problems = []
        for label, path in sorted(self.policy.data.items()):
            try:
                check_data_path(path, f"[policy.data] {label}")
            except PtmError as exc:
                problems.append(f"{self.path}: {exc}")
        return problems

    def check_publishers(self, members: Mapping[str, str]) -> list[str]:
        """Warnings for ``[policy] publishers`` entries that name no researcher among
        ``members`` (organisation or lower-case key hex -> role, of the unrevoked members
        this home's log copy knows): a misspelt or never-admitted name refuses every task
        of the one it was meant for, and nothing else says so."""
        known = sorted(
            name for name, role in members.items() if role == "researcher" and not _is_key_hex(name)
        )
        warnings = []
        for entry in sorted(self.policy.publishers):
            if entry == "*":
                continue
            role = members.get(entry)
            if role is None:
                # "uni" for "uni-research": a shared prefix is as telling as a typo
                close = [k for k in known if k.startswith(entry) or entry.startswith(k)]
                close += difflib.get_close_matches(entry, known, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                what = "key" if _is_key_hex(entry) else "organisation"
                warnings.append(
                    f"{self.path}: [policy] publishers names {entry!r}, but no admitted member "
                    f"has that {what}{hint} (researchers: {', '.join(known) or 'none yet'}); "
                    "tasks are matched by the --org the admin gave `ptm collab admit`"
                )
            elif role != "researcher":
                warnings.append(
                    f"{self.path}: [policy] publishers names {entry!r}, a {role}: only "
                    "researchers publish tasks"
                )
        return warnings


def _is_key_hex(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def load_config(home: str | Path) -> HomeConfig:
    """Read and validate ``HOME/config.toml``; ``ConfigError`` naming the file and the key."""
    path = Path(home) / CONFIG_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"{path} is missing: is {home} a home folder? make one with "
            f"`ptm init --home {home} --name NAME`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read: {exc}") from exc
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> HomeConfig:
    """Validate the text of a config.toml that lives at ``path`` (named in every error)."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    config = convert(table, ConfigFile, lambda problem: ConfigError(f"{path}: {_explain(problem)}"))
    _check_bare_sizes(config.policy.get("limits"), path)
    try:
        policy = SitePolicy.from_table(config.policy)
    except PtmError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return HomeConfig(
        path=path,
        name=config.name,
        policy=policy,
        tasks_parallel=_parallel(config.tasks.parallel, path),
        hub_public_log=config.hub.public_log,
        blob_quota=_blob_quota(config.hub.blob_quota, path),
        blob_retention_days=config.hub.blob_retention,
    )


class TasksTable(msgspec.Struct, forbid_unknown_fields=True):
    parallel: int = DEFAULT_PARALLEL


class HubTable(msgspec.Struct, forbid_unknown_fields=True):
    public_log: bool = False
    blob_quota: Any = DEFAULT_BLOB_QUOTA  # a size: bytes, or a string such as "20g"
    blob_retention: Annotated[float, msgspec.Meta(gt=0, le=MAX_BLOB_RETENTION_DAYS)] = (
        DEFAULT_BLOB_RETENTION_DAYS
    )


class ConfigFile(msgspec.Struct, forbid_unknown_fields=True):
    """config.toml as written; the ``[policy]`` table is ``SitePolicy.from_table``'s."""

    name: Annotated[str, msgspec.Meta(pattern=NAME_PATTERN.pattern)]
    policy: dict[str, Any] = {}
    tasks: TasksTable = msgspec.field(default_factory=TasksTable)
    hub: HubTable = msgspec.field(default_factory=HubTable)


TOP_LEVEL = field_names(ConfigFile)
# The struct of each table, for the keys an unknown one is compared with.
TABLES: dict[tuple[str, ...], Any] = {(): ConfigFile, ("tasks",): TasksTable, ("hub",): HubTable}
# What each key must hold, with an example: the message that refuses a value of another form.
FORMS = {
    ("name",): "name must be a string of 1-64 letters, digits, '.', '_' or '-' starting with "
    'a letter or digit, e.g. name = "hospital-a"',
    ("policy",): "policy must be a table ([policy] with images, publishers, …)",
    ("tasks",): "tasks must be a table ([tasks] with parallel = N)",
    ("tasks", "parallel"): f"[tasks] parallel must be a whole number from 1 to {MAX_PARALLEL} "
    "(how many tasks this site runs at once), e.g. parallel = 2",
    ("hub",): "hub must be a table ([hub] with public_log, blob_quota, blob_retention)",
    ("hub", "public_log"): "[hub] public_log must be true or false (true serves the log's "
    "entries to anyone, false to admitted members only), e.g. public_log = true",
    ("hub", "blob_retention"): "[hub] blob_retention must be a number of days above 0 and at "
    f"most {MAX_BLOB_RETENTION_DAYS} (how long the hub keeps a blob), e.g. blob_retention = 90",
}


def _explain(problem: Problem) -> str:
    """The first mistake in config.toml, in the words of its schema."""
    if problem.kind == "missing":  # only name is required
        return 'name is missing; add a line such as name = "hospital-a"'
    if problem.kind == "unknown":
        where = f"[{problem.where[0]}]" if problem.where else ""
        allowed = field_names(TABLES[problem.where])
        return _unknown(problem.key, problem.value, allowed, where)
    return f"{FORMS[problem.field]}; got {problem.value!r}"


# [policy.limits] memory must be at least 16 MiB: a bare number below that is a size whose
# unit was left out (a bare number counts bytes), not a tiny memory limit.
MIN_MEMORY = 16 * 1024**2


def _check_bare_sizes(limits: Any, path: Path) -> None:
    """``memory = 512`` is 512 bytes, not 512 MiB: say which string to write, not only
    "at least 16m"."""
    if not isinstance(limits, dict):
        return
    value = limits.get("memory")
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < MIN_MEMORY:
        raise ConfigError(
            f"{path}: [policy.limits] memory = {value} means {value} bytes (a bare number "
            f'counts bytes) and a task needs at least 16m; write memory = "{value}m" for '
            f'{value} MiB (or "{value}g")'
        )


def _blob_quota(quota: Any, path: Path) -> int:
    try:
        return parse_size(quota, "[hub] blob_quota")
    except PtmError as exc:
        raise ConfigError(
            f"{path}: {exc} (the bytes of blobs each member may keep at the hub, e.g. "
            'blob_quota = "20g")'
        ) from exc


def _parallel(parallel: int, path: Path) -> int:
    if not 1 <= parallel <= MAX_PARALLEL:
        raise ConfigError(
            f"{path}: [tasks] parallel must be from 1 to {MAX_PARALLEL}, got {parallel}"
        )
    return parallel


def _unknown(key: str, value: Any, allowed: tuple[str, ...], where: str = "") -> str:
    """``unknown section [polcy]; did you mean [policy]? …`` for an unexpected key."""
    table = isinstance(value, dict)
    shown = f"[{key}]" if table and not where else f"{where} {key}".strip()
    kind = "section" if table and not where else "key"
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = ""
    if close:
        suggestion = f"[{close[0]}]" if table and not where else close[0]
        hint = f"; did you mean {suggestion}?"
    known = ", ".join(f"[{k}]" if k != "name" and not where else k for k in allowed)
    return f"unknown {kind} {shown}{hint} (allowed{' in ' + where if where else ''}: {known})"
