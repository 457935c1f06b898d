"""The whole development stack in one call: engine, registry, base image, algorithm images.

Used by ``ptm dev up``, by ``scripts/dev-up.sh`` (CI) and by the executor test fixtures, so
that a bare ``pytest`` on a fresh machine sets everything up itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import docker

from ptm_p2p.dev.baseimage import ensure_base_image, image_exists, tarball_path
from ptm_p2p.dev.engine import engine_client, ensure_engine
from ptm_p2p.dev.images import build_and_push_all
from ptm_p2p.dev.registry import ensure_registry, registry_up
from ptm_p2p.dev.settings import DevSettings


def stderr_log(message: str) -> None:
    print(f"[ptm dev] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Stack:
    settings: DevSettings
    client: docker.DockerClient
    registry: str
    base_image: str
    images: dict[str, str]  # algorithm name → repo@sha256:…


def ensure_stack(
    settings: DevSettings | None = None,
    build_images: bool = True,
    log: Callable[[str], None] = stderr_log,
) -> Stack:
    """Bring everything up (idempotent) and return handles to it."""
    settings = settings or DevSettings.from_env()
    client = ensure_engine(settings, log)
    registry = ensure_registry(settings, log)
    base = ensure_base_image(settings, client, log)
    images = build_and_push_all(settings, client, log) if build_images else {}
    return Stack(settings, client, registry, base, images)


def status(settings: DevSettings | None = None) -> dict[str, object]:
    """What is up, without starting anything."""
    settings = settings or DevSettings.from_env()
    client = engine_client(timeout=10)
    info: dict[str, object] = {
        "engine": bool(client),
        "engine_version": client.version().get("Version") if client else None,
        "registry": settings.registry,
        "registry_up": registry_up(settings.registry),
        "base_image": settings.base_image,
        "base_image_present": bool(client) and image_exists(client, settings.base_image),
        "base_tarball_cached": tarball_path(settings).exists(),
        "state_dir": str(settings.state_dir),
        "cache_dir": str(settings.cache_dir),
    }
    if client:
        containers = client.containers.list(all=True, filters={"label": "ptm_p2p"})
        info["task_containers_left"] = len(containers)
    return info
