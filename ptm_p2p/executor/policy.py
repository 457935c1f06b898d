"""A site's policy: which images, publishers and data a task may use, and its limits.

Parsed from the ``[policy]`` table of the site's config.toml, deny by default (an empty or
missing policy allows nothing)::

    [policy]
    # a repository (any digest from it), a pinned REPO@sha256:… or a bare sha256:… digest
    images = ["127.0.0.1:5000/ptm/summary", "sha256:3f2a…"]
    # organisation names or 64-hex Ed25519 public keys; "*" allows every member
    publishers = ["uni-research", "9c1e…"]
    min_group_size = 5            # smallest group an aggregate output may report

    [policy.data]                 # data sources by label: a file or a folder
    registry = "/srv/data/registry.csv"

    [policy.limits]               # the most a task may use (see Limits)
    memory = "512m"
    cpus = 1.0
    pids = 64
    timeout = 600
    output = "10m"
    logs = "1m"
    tmp = "64m"

Every refusal is a ``PolicyError`` that names the rule and the config key to change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptm_p2p.errors import PolicyError
from ptm_p2p.executor.imageref import DIGEST, ImageRef
from ptm_p2p.executor.limits import Limits

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PUBKEY_HEX = re.compile(r"^[0-9a-f]{64}$")
KEYS = ("images", "publishers", "data", "limits", "min_group_size")
DEFAULT_MIN_GROUP_SIZE = 5


def check_label(label: str) -> str:
    if not isinstance(label, str) or not LABEL.match(label):
        raise PolicyError(
            f"data label {label!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-'"
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

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SitePolicy:
        """The policy of a whole parsed config.toml (``Home.config``); none = allow nothing."""
        return cls.from_table(config.get("policy", {}))

    @classmethod
    def from_table(cls, table: Any) -> SitePolicy:
        """Parse the ``[policy]`` table itself."""
        if not isinstance(table, dict):
            raise PolicyError("[policy] in config.toml must be a table")
        unknown = sorted(set(table) - set(KEYS))
        if unknown:
            raise PolicyError(
                f"[policy]: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(KEYS)}"
            )
        repositories, pinned, digests = set(), set(), set()
        for entry in _strings(table.get("images", []), "[policy] images"):
            if DIGEST.match(entry):
                digests.add(entry)
                continue
            ref = ImageRef.parse(entry)
            if ref.tag is not None:
                raise PolicyError(
                    f"[policy] images: {entry!r} names a tag; allow a repository "
                    "(all its digests) or a REPO@sha256:… digest, never a movable tag"
                )
            if ref.digest:
                pinned.add(ref.by_digest)
            else:
                repositories.add(ref.repository)
        publishers = set()
        for entry in _strings(table.get("publishers", []), "[policy] publishers"):
            publishers.add(entry.lower() if PUBKEY_HEX.match(entry.lower()) else entry)
        data_table = table.get("data", {})
        if not isinstance(data_table, dict):
            raise PolicyError('[policy.data] must be a table of label = "/path"')
        data: dict[str, Path] = {}
        for label, path in data_table.items():
            check_label(label)
            if not isinstance(path, str) or not path.startswith("/"):
                raise PolicyError(
                    f"[policy.data] {label}: expected an absolute path string, got {path!r}"
                )
            data[label] = Path(path)
        min_group = table.get("min_group_size", DEFAULT_MIN_GROUP_SIZE)
        if isinstance(min_group, bool) or not isinstance(min_group, int) or min_group < 1:
            raise PolicyError(
                f"[policy] min_group_size must be a whole number >= 1, got {min_group!r}"
            )
        return cls(
            repositories=frozenset(repositories),
            pinned=frozenset(pinned),
            digests=frozenset(digests),
            publishers=frozenset(publishers),
            data=data,
            limits=Limits.from_config(table.get("limits", {})),
            min_group_size=min_group,
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
        """Host paths of the requested data labels; every one must exist."""
        chosen: dict[str, Path] = {}
        for label in labels:
            check_label(label)
            if label not in self.data:
                known = ", ".join(sorted(self.data)) or "none"
                raise PolicyError(
                    f"data label {label!r} is not offered by this site (labels: {known}); "
                    f'a site offers data with [policy.data] {label} = "/path"'
                )
            path = self.data[label]
            if not path.exists():
                raise PolicyError(
                    f"[policy.data] {label} = {str(path)!r} does not exist on this site; "
                    "fix the path in config.toml"
                )
            check_readable_by_task(label, path)
            chosen[label] = path
        return chosen


def check_readable_by_task(label: str, path: Path) -> None:
    """The task runs as an unprivileged user (65534) with the data mounted read-only: a file
    only its owner may read would fail inside the container with a confusing traceback."""
    mode = path.stat().st_mode
    needed = 0o005 if path.is_dir() else 0o004  # folders also need o+x to be entered
    if mode & needed != needed:
        fix = "chmod o+rx" if path.is_dir() else "chmod o+r"
        raise PolicyError(
            f"data {label} = {str(path)!r} is not readable by the task's unprivileged user "
            f"(mode {mode & 0o777:o}); tasks get the data read-only, so `{fix} {path}` "
            "lets them read it without letting them change it"
        )


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where} must be a list of non-empty strings, got {value!r}")
    return list(value)
