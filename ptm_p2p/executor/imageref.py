"""Image references: a task names its image by digest, ``repository@sha256:<64 hex>``.

Tags are mutable (anyone with push rights can move them), digests are not: a site only ever
runs the content whose digest was signed into the task.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ptm_p2p.errors import PolicyError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?)"
_REF = re.compile(
    rf"^(?P<repo>(?:{_HOST}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageRef:
    """A parsed ``repository[:tag][@sha256:…]``."""

    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        match = _REF.match(text or "")
        if not match:
            raise PolicyError(
                f"image {text!r} is not a valid reference; write REPOSITORY@sha256:<64 hex>, "
                "e.g. 127.0.0.1:5000/ptm/summary@sha256:…"
            )
        return cls(match.group("repo"), match.group("tag"), match.group("digest"))

    @classmethod
    def pinned(cls, text: str) -> ImageRef:
        """Parse a reference that must carry a digest (what a task may name)."""
        ref = cls.parse(text)
        if ref.digest is None:
            raise PolicyError(
                f"image {text!r} is not pinned by digest; tasks must name "
                "REPOSITORY@sha256:<digest> (tags can be moved to other content)"
            )
        return ref

    @property
    def registry(self) -> str:
        """The registry host the engine would pull from (Docker's rule: the first path
        component is a host if it has a '.' or ':' or is ``localhost``; else Docker Hub)."""
        first, sep, _ = self.repository.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            return first.lower()
        return "docker.io"

    @property
    def by_digest(self) -> str:
        """``repository@sha256:…`` (the tag, if any, is dropped: the digest decides)."""
        if self.digest is None:
            raise PolicyError(f"{self.repository} has no digest")
        return f"{self.repository}@{self.digest}"

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text
