"""A site's policy: which images, publishers and data a task may use, and its limits.

Parsed from the ``[policy]`` table of the site's config.toml, deny by default (an empty or
missing policy allows nothing)::

    [policy]
    # a repository (any digest from it), a pinned REPO@sha256:… or a bare sha256:… digest
    images = ["127.0.0.1:5000/ptm/summary", "sha256:3f2a…"]
    # organisation names or 64-hex Ed25519 public keys; "*" allows every member
    publishers = ["uni-research", "9c1e…"]
    min_group_size = 5            # smallest group an aggregate output may report
    disclosure_control = true     # the default: answer from coarse intervals (privacy.md)
    time_resolution = 30          # its time lattice, in the data's unit (default 30)
    require_secure_aggregation = false  # true: refuse tasks that do not ask for secure-sum
    max_beta_probes = 50          # distinct Cox β answered per data source, all researchers

    [policy.data]                 # data sources by label: a file or a folder
    registry = "/srv/data/registry.csv"

    [policy.limits]               # the most a task may use (see Limits)
    memory = "512m"
    cpus = 1.0
    pids = 64
    timeout = 600
    output = "1g"
    logs = "1m"
    tmp = "64m"

Every refusal is a ``PolicyError`` that names the rule and the config key to change.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import msgspec

from ptm_p2p.errors import PolicyError
from ptm_p2p.executor.imageref import DIGEST, ImageRef
from ptm_p2p.executor.limits import Limits
from ptm_p2p.executor.outputdir import TASK_UID
from ptm_p2p.strict_decode import Problem, convert, field_names

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PUBKEY_HEX = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_MIN_GROUP_SIZE = 5
# The time lattice of disclosure control when the policy names none (days, for day data).
DEFAULT_TIME_RESOLUTION = 30.0
# Distinct Cox coefficient vectors a site answers per data source under disclosure control,
# counted across every researcher together (site/disclosure.py; a fit takes about 5-8).
DEFAULT_MAX_BETA_PROBES = 50
# Folders of the operating system, never a site's data: a data path that is or leads into one
# (a symlink to /etc/shadow, /dev/zero, /proc/…) is refused outright, with no chmod advice.
SYSTEM_FOLDERS = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib",
    "/var/log",
    "/var/run",
)
# Entries of a data folder checked for readability before a task starts (a huge folder is
# checked only this far; the rest would fail inside the container, with the task's own error).
MAX_CHECKED_ENTRIES = 10_000


def check_label(label: str, where: str = "data label") -> str:
    if not isinstance(label, str) or not LABEL.match(label):
        raise PolicyError(
            f"{where} {label!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-'"
        )
    return label


@dataclass(frozen=True)
class SitePolicy:
    """The validated ``[policy]`` table of one site."""

    repositories: frozenset[str] = frozenset()  # any digest from these repositories
    pinned: frozenset[str] = frozenset()  # exact REPO@sha256:… references
    digests: frozenset[str] = frozenset()  # sha256:… from any allowed-or-not repository
    publishers: frozenset[str] = frozenset()  # names, lower-case hex keys, or "*"
    data: dict[str, Path] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE
    # the site's time lattice under disclosure control (on unless the policy says
    # ``disclosure_control = false``); None: no control, exact answers (unsafe)
    time_resolution: float | None = DEFAULT_TIME_RESOLUTION
    # refuse every task whose signed payload does not say ``aggregate = "secure-sum"``
    # (site/masking.py): the researcher then only ever sees sums over several sites
    require_secure_aggregation: bool = False
    max_beta_probes: int = DEFAULT_MAX_BETA_PROBES

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SitePolicy:
        """The policy of a whole parsed config.toml (``Home.config``); none = allow nothing."""
        return cls.from_table(config.get("policy", {}))

    @classmethod
    def from_table(cls, table: Any) -> SitePolicy:
        """Parse the ``[policy]`` table itself."""
        fields = convert(table, PolicyTable, lambda problem: _refusal(table, problem))
        if not math.isfinite(fields.time_resolution):  # TOML has inf
            raise _refusal(table, Problem("invalid", (), "time_resolution", "", float("inf")))
        repositories, pinned, digests = _images(fields.images)
        publishers = {e.lower() if PUBKEY_HEX.match(e.lower()) else e for e in fields.publishers}
        return cls(
            repositories=frozenset(repositories),
            pinned=frozenset(pinned),
            digests=frozenset(digests),
            publishers=frozenset(publishers),
            data=_data_paths(fields.data),
            limits=Limits.from_config(fields.limits),
            min_group_size=fields.min_group_size,
            time_resolution=fields.time_resolution if fields.disclosure_control else None,
            require_secure_aggregation=fields.require_secure_aggregation,
            max_beta_probes=fields.max_beta_probes,
        )

    # --- the checks, each raising a PolicyError that says what to change ------------------

    def check_image(self, image: str) -> ImageRef:
        """The pinned reference if this site allows the image, else PolicyError."""
        ref = ImageRef.pinned(image)
        if (
            ref.repository in self.repositories
            or ref.by_digest in self.pinned
            or ref.digest in self.digests
        ):
            return ref
        raise PolicyError(
            f"image {ref.by_digest} is not allowed by this site's policy; to allow it add "
            f'"{ref.repository}" or "{ref.by_digest}" to [policy] images in config.toml'
        )

    @property
    def registries(self) -> frozenset[str]:
        """Registry hosts this policy names (through its repositories and pinned images)."""
        refs = [ImageRef.parse(r) for r in (*self.repositories, *self.pinned)]
        return frozenset(ref.registry for ref in refs)

    def may_pull(self, ref: ImageRef) -> bool:
        """Whether the site may contact ``ref``'s registry to fetch it.

        An image allowed through a repository or a pinned reference comes from a registry
        the site chose. One allowed only by a bare ``sha256:…`` digest names whatever
        registry the publisher wrote: the content is fixed by the digest, but contacting
        an arbitrary host is not, so such an image is pulled only from a registry the
        policy names elsewhere, or must already be in the engine.
        """
        if ref.repository in self.repositories or ref.by_digest in self.pinned:
            return True
        return ref.registry in self.registries

    def check_publisher(self, key_hex: str | None, name: str | None = None) -> None:
        if "*" in self.publishers:
            return
        if key_hex and key_hex.lower() in self.publishers:
            return
        if name and name in self.publishers:
            return
        who = name or (key_hex[:16] + "…" if key_hex else "an unknown publisher")
        raise PolicyError(
            f"publisher {who} is not allowed by this site's policy; add its name or public "
            "key to [policy] publishers in config.toml"
        )

    def check_data(self, labels: Iterable[str]) -> dict[str, Path]:
        """Real host paths of the requested data labels, each checked by ``check_data_path``."""
        chosen: dict[str, Path] = {}
        for label in labels:
            check_label(label)
            if label not in self.data:
                known = ", ".join(sorted(self.data)) or "none"
                raise PolicyError(
                    f"data label {label!r} is not offered by this site (labels: {known}); "
                    f'a site offers data with [policy.data] {label} = "/path"'
                )
            chosen[label] = check_data_path(self.data[label], f"[policy.data] {label}")
        return chosen


NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class PolicyTable(msgspec.Struct, forbid_unknown_fields=True):
    """The ``[policy]`` table as written; ``SitePolicy.from_table`` gives it meaning."""

    images: list[NonEmpty] = []
    publishers: list[NonEmpty] = []
    data: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    min_group_size: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_MIN_GROUP_SIZE
    disclosure_control: bool = True
    time_resolution: Annotated[float, msgspec.Meta(gt=0)] = DEFAULT_TIME_RESOLUTION
    require_secure_aggregation: bool = False
    max_beta_probes: Annotated[int, msgspec.Meta(ge=0)] = DEFAULT_MAX_BETA_PROBES


KEYS = field_names(PolicyTable)
# What each key must hold, for the message that refuses a value of the wrong form.
FORMS = {
    "images": "a list of non-empty strings",
    "publishers": "a list of non-empty strings",
    "min_group_size": "a whole number >= 1",
    "disclosure_control": "true or false",
    "time_resolution": "a positive number (in the data's time unit, e.g. 30 for days)",
    "require_secure_aggregation": "true or false",
    "max_beta_probes": (
        "a whole number >= 0 (distinct Cox coefficient vectors answered per data source)"
    ),
}


def _refusal(table: Any, problem: Problem) -> PolicyError:
    """The ``PolicyError`` for the first thing wrong with a ``[policy]`` table."""
    if problem.kind == "unknown":
        unknown = sorted(set(table) - set(KEYS))
        return PolicyError(
            f"[policy]: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(KEYS)}"
        )
    if not problem.field:
        return PolicyError("[policy] in config.toml must be a table")
    key = problem.field[0]
    if key == "data":
        return PolicyError('[policy.data] must be a table of label = "/path"')
    if key == "limits":
        return PolicyError("[policy.limits] must be a table")
    return PolicyError(f"[policy] {key} must be {FORMS[key]}, got {problem.value!r}")


def _images(entries: list[str]) -> tuple[set[str], set[str], set[str]]:
    """``[policy] images`` as repositories, pinned references and bare digests."""
    repositories, pinned, digests = set(), set(), set()
    for entry in entries:
        if DIGEST.match(entry):
            digests.add(entry)
            continue
        try:
            ref = ImageRef.parse(entry)
        except PolicyError as exc:
            raise PolicyError(f"[policy] images: {exc}") from exc
        if ref.tag is not None:
            raise PolicyError(
                f"[policy] images: {entry!r} names a tag; allow a repository "
                "(all its digests) or a REPO@sha256:… digest, never a movable tag"
            )
        if ref.digest:
            pinned.add(ref.by_digest)
        else:
            repositories.add(ref.repository)
    return repositories, pinned, digests


def _data_paths(table: dict[str, Any]) -> dict[str, Path]:
    """``[policy.data]``: labels checked, paths absolute (whether they exist: at use)."""
    data: dict[str, Path] = {}
    for label, path in table.items():
        check_label(label, "[policy.data] label")
        if not isinstance(path, str) or not path.startswith("/"):
            raise PolicyError(
                f"[policy.data] {label}: expected an absolute path string, got {path!r}"
            )
        data[label] = Path(path)
    return data


def check_data_path(path: Path, where: str) -> Path:
    """The real path to mount as data, after checking it is data the task user may read.

    ``where`` names the setting (``[policy.data] registry`` or ``--data registry``). Refused,
    each with what to do: a missing path; a path that is or leads into a system folder
    (``SYSTEM_FOLDERS``); anything but a regular file or a folder (devices such as /dev/zero,
    FIFOs, sockets); a symlink whose target belongs to someone else than the link; data the
    task's unprivileged user (uid 65534) cannot read. The advice to ``chmod`` is only ever
    given for the real target, and only when that target is the operator's own data: a link
    must never turn ``chmod o+r LINK`` into making /etc/shadow world-readable.

    The path returned is the resolved one, so what is mounted is what was checked.
    """
    given = Path(os.path.abspath(path))
    try:
        link_stat = os.lstat(given)
    except OSError:
        raise PolicyError(
            f"{where} = {str(path)!r} does not exist on this site; fix the path"
        ) from None
    real = Path(os.path.realpath(given))
    via = f" (a symlink to {real})" if real != given else ""
    for folder in SYSTEM_FOLDERS:
        if real == Path(folder) or real.is_relative_to(folder):
            raise PolicyError(
                f"{where} = {str(path)!r}{via} lies in {folder}, a system folder, not a site's "
                "data; offer only data files of your own: copy them into a data folder "
                "(e.g. /srv/ptm-data) and point the setting there"
            )
    try:
        st = os.stat(real)
    except OSError:
        raise PolicyError(
            f"{where} = {str(path)!r}{via} leads nowhere: its target does not exist; fix the "
            "link or the path"
        ) from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise PolicyError(
            f"{where} = {str(path)!r}{via} is a {_file_kind(st.st_mode)}, not a regular file "
            "or a folder; data must be a file or a folder of files"
        )
    if real != given and link_stat.st_uid != st.st_uid:
        raise PolicyError(
            f"{where} = {str(path)!r} is a symlink owned by uid {link_stat.st_uid} to {real}, "
            f"which belongs to uid {st.st_uid}: a site offers only data it owns; copy the data "
            "into the site's data folder and point the setting there"
        )
    _check_readable_by_task(where, path, real, st)
    return real


def check_readable_by_task(label: str, path: Path) -> None:
    """Raise PolicyError unless the task user can read ``path`` (see ``check_data_path``)."""
    check_data_path(path, f"data {label}")


def _check_readable_by_task(where: str, given: Path | str, real: Path, st: os.stat_result) -> None:
    """The task runs as an unprivileged user (65534) with the data mounted read-only: data
    only its owner may read would fail inside the container with a confusing traceback."""
    shown = f"{str(given)!r}" + (f" (a symlink to {real})" if Path(given) != real else "")
    if not _task_may_read(st):
        fix = "chmod o+rx" if stat.S_ISDIR(st.st_mode) else "chmod o+r"
        raise PolicyError(
            f"{where} = {shown} is not readable by the task's unprivileged user (uid "
            f"{TASK_UID}, mode {st.st_mode & 0o777:o}); tasks get the data read-only, so "
            f"`{fix} {real}` lets them read it without letting them change it"
        )
    if not stat.S_ISDIR(st.st_mode):
        return
    checked = 0
    for folder, dirs, files in os.walk(real):
        for name in [*dirs, *files]:
            checked += 1
            if checked > MAX_CHECKED_ENTRIES:
                return
            inner = Path(folder) / name
            try:
                inner_st = os.lstat(inner)
            except OSError:
                continue
            if stat.S_ISLNK(inner_st.st_mode):
                continue  # resolved inside the container, where it can reach no host file
            if not _task_may_read(inner_st):
                raise PolicyError(
                    f"{where} = {shown}: {inner} is not readable by the task's unprivileged "
                    f"user (uid {TASK_UID}, mode {inner_st.st_mode & 0o777:o}); "
                    f"`chmod -R o+rX {real}` lets tasks read the whole folder without letting "
                    "them change it"
                )


def _task_may_read(st: os.stat_result) -> bool:
    """Whether uid/gid 65534 may read (and, for a folder, enter) what ``st`` describes, by
    the POSIX rule: the owner bits if it owns it, else the group bits, else the others'."""
    if st.st_uid == TASK_UID:
        bits = (st.st_mode >> 6) & 0o7
    elif st.st_gid == TASK_UID:
        bits = (st.st_mode >> 3) & 0o7
    else:
        bits = st.st_mode & 0o7
    needed = 0o5 if stat.S_ISDIR(st.st_mode) else 0o4
    return bits & needed == needed


def _file_kind(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "special file"
