"""Build the project's algorithm images on the local base, push them, name them by digest.

Each folder ``algorithms/<name>/`` (and ``algorithms/testing/<name>/``) with a Dockerfile is
an image. Its build context is assembled in a temporary folder: the algorithm's own files
plus ``ptm_p2p/algorithm.py``, the stdlib-only helper every image imports. Dockerfiles take
the base as ``ARG BASE`` (default ``python:3.12-slim`` for real users); here it is the
locally built ``ptm-base-python:bookworm``. Builds hit the engine's layer cache and pushes
of unchanged images are no-ops, so running this twice is cheap.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

from ptm_p2p.dev.settings import DevSettings
from ptm_p2p.errors import ExecutorError

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PROJECT_DIR = PACKAGE_DIR.parent
ALGORITHMS_DIR = PROJECT_DIR / "algorithms"
TAG = "latest"


def algorithm_dirs(root: Path = ALGORITHMS_DIR) -> dict[str, Path]:
    """Image name (``summary``, ``testing/probe``) → its folder."""
    if not root.is_dir():
        raise ExecutorError(
            f"{root} not found: algorithm images are built from a source checkout "
            "(pip install -e .)"
        )
    found = {}
    for dockerfile in sorted(root.glob("**/Dockerfile")):
        found[str(dockerfile.parent.relative_to(root))] = dockerfile.parent
    return found


def repository(settings: DevSettings, name: str) -> str:
    return f"{settings.registry}/ptm/{name}"


def build_image(
    client: docker.DockerClient,
    folder: Path,
    tag: str,
    base: str,
    log: Callable[[str], None] = print,
) -> str:
    """Build ``folder`` (with the helper modules) as ``tag``; return the image id.

    The context gets the stdlib-only ``ptm_p2p/algorithm.py`` and the NumPy-only site code
    of the survival images, ``ptm_p2p/algorithms/survival_site.py``; a Dockerfile copies
    what it needs (files it does not COPY leave its layer cache alone).
    """
    with tempfile.TemporaryDirectory(prefix="ptm-build-") as tmp:
        context = Path(tmp) / "context"
        shutil.copytree(folder, context)
        for module in ("algorithm.py", "algorithms/survival_site.py"):
            target = context / "ptm_p2p" / module
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PACKAGE_DIR / module, target)
        try:
            image, _ = client.images.build(
                path=str(context), tag=tag, buildargs={"BASE": base}, rm=True, pull=False
            )
        except docker.errors.BuildError as exc:
            lines = "".join(str(c.get("stream", c.get("error", ""))) for c in exc.build_log)
            raise ExecutorError(f"building {folder} failed: {exc}\n{lines[-2000:]}") from exc
        except docker.errors.APIError as exc:
            raise ExecutorError(f"building {folder} failed: {exc}") from exc
    log(f"built {tag} ({image.short_id})")
    return str(image.id)


def push(client: docker.DockerClient, repo: str, tag: str = TAG) -> str:
    """Push ``repo:tag``; return ``repo@sha256:…`` as the registry names it."""
    digest = None
    try:
        for event in client.images.push(repo, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise ExecutorError(f"pushing {repo}:{tag} failed: {event['error']}")
            aux = event.get("aux") or {}
            digest = aux.get("Digest", digest)
    except docker.errors.APIError as exc:
        raise ExecutorError(
            f"pushing {repo}:{tag} failed: {exc}; is the registry up (`ptm dev up`)?"
        ) from exc
    if not digest:
        raise ExecutorError(f"pushing {repo}:{tag}: the engine reported no digest")
    return f"{repo}@{digest}"


def build_and_push_all(
    settings: DevSettings, client: docker.DockerClient, log: Callable[[str], None] = print
) -> dict[str, str]:
    """Build and push every algorithm image; name → ``repo@sha256:…``."""
    refs = {}
    for name, folder in algorithm_dirs().items():
        repo = repository(settings, name)
        build_image(client, folder, f"{repo}:{TAG}", settings.base_image, log)
        refs[name] = push(client, repo)
    return refs
