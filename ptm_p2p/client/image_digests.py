"""Resolve an image reference to ``REPOSITORY@sha256:…`` at publish time.

Sites run exactly the digest a task names, so the digest is what the researcher signs. A
tag (``…/summary:latest``) is looked up once, here, through the registry's v2 API
(``HEAD /v2/<repo>/manifests/<tag>`` → ``Docker-Content-Digest``); moving the tag later
changes nothing for a published task. Registries on loopback are spoken to over plain HTTP
(as Docker does for them); others over HTTPS.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from ptm_p2p.errors import ImageResolveError, PtmError
from ptm_p2p.executor.imageref import ImageRef

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
LOOPBACK = ("127.", "localhost", "[::1]")


def resolve_image(reference: str, timeout: float = 10.0) -> str:
    """``REPOSITORY@sha256:…`` for ``reference`` (a tag is resolved through its registry)."""
    try:
        ref = ImageRef.parse(reference)
    except PtmError as exc:
        raise ImageResolveError(str(exc)) from exc
    if ref.digest is not None:
        return ref.by_digest
    registry = ref.registry
    if registry == "docker.io":
        raise ImageResolveError(
            f"{reference}: name the registry (e.g. 127.0.0.1:5000/ptm/summary:latest) or "
            "give the digest (REPOSITORY@sha256:…); sites only pull from registries their "
            "policy names"
        )
    path = ref.repository[len(registry) + 1 :]
    scheme = "http" if registry.startswith(LOOPBACK) else "https"
    url = f"{scheme}://{registry}/v2/{path}/manifests/{ref.tag or 'latest'}"
    request = urllib.request.Request(
        url, method="HEAD", headers={"Accept": ", ".join(MANIFEST_TYPES)}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            digest = response.headers.get("Docker-Content-Digest")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise ImageResolveError(
                f"{reference}: the registry {registry} has no such tag; push the image first "
                "(`ptm dev up` builds and pushes the algorithms in algorithms/)"
            ) from exc
        raise ImageResolveError(
            f"{reference}: the registry answered {exc.code} {exc.reason}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ImageResolveError(
            f"{reference}: cannot reach the registry {registry} ({exc}); is it running? "
            "Or give the digest yourself: REPOSITORY@sha256:…"
        ) from exc
    if not digest:
        raise ImageResolveError(f"{reference}: the registry {registry} sent no digest")
    return f"{ref.repository}@{digest}"
