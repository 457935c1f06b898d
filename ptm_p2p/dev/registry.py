"""Make sure a Docker registry (v2 API) listens on loopback, starting Debian's one if not.

Debian's ``docker-registry`` (distribution 2.8) is a real registry. Ours gets its own config
file and storage folder in the state folder, listens on 127.0.0.1 only, and allows manifest
deletion so tests can simulate a registry whose tag was moved to other content.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from ptm_p2p.dev.process import pid_alive, stop_pidfile
from ptm_p2p.dev.settings import DevSettings
from ptm_p2p.errors import ExecutorError

READY_TIMEOUT_S = 30.0

CONFIG_TEMPLATE = """\
# written by ptm_p2p.dev.registry: a loopback-only development registry
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: {addr}
"""


def registry_up(addr: str, timeout: float = 2.0) -> bool:
    """True when a v2 registry answers on ``addr``."""
    try:
        with urllib.request.urlopen(f"http://{addr}/v2/", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def ensure_registry(settings: DevSettings, log: Callable[[str], None] = print) -> str:
    """Return the registry address, starting our registry in the background if needed."""
    if registry_up(settings.registry):
        return settings.registry
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.path.exists(binary):
        raise ExecutorError(
            "no registry answers on "
            f"{settings.registry} and docker-registry is not installed; "
            "run `apt-get install -y docker-registry` (Debian) or start a v2 registry there"
        )
    folder = settings.state_dir / "registry"
    (folder / "storage").mkdir(parents=True, exist_ok=True)
    config = folder / "config.yml"
    config.write_text(CONFIG_TEMPLATE.format(storage=folder / "storage", addr=settings.registry))
    log_path = folder / "registry.log"
    log(f"starting docker-registry on {settings.registry} (log: {log_path})")
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [binary, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    (folder / "registry.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if registry_up(settings.registry):
            return settings.registry
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    raise ExecutorError(
        f"docker-registry did not answer on {settings.registry}; see {log_path} "
        "(is the port taken? set PTM_REGISTRY=127.0.0.1:PORT)"
    )


def registry_pid(settings: DevSettings) -> int | None:
    return pid_alive(settings.state_dir / "registry" / "registry.pid", "docker-registry")


def stop_registry(settings: DevSettings) -> bool:
    return stop_pidfile(settings.state_dir / "registry" / "registry.pid", "docker-registry")


def manifest_digest(addr: str, repository: str, reference: str) -> str | None:
    """The digest the registry serves for ``repository:reference`` (tag or digest), or None."""
    request = urllib.request.Request(
        f"http://{addr}/v2/{repository}/manifests/{reference}",
        method="HEAD",
        headers={"Accept": ", ".join(MANIFEST_TYPES)},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            digest = response.headers.get("Docker-Content-Digest")
            return str(digest) if digest else None
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise ExecutorError(
            f"registry {addr}: HEAD manifest {repository}:{reference}: {exc}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ExecutorError(f"registry {addr} unreachable: {exc}") from exc


def repositories(addr: str) -> list[str]:
    """The repositories the registry holds (its catalog)."""
    try:
        with urllib.request.urlopen(f"http://{addr}/v2/_catalog?n=1000", timeout=10) as resp:
            return list(json.load(resp).get("repositories") or [])
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ExecutorError(f"registry {addr}: cannot list repositories: {exc}") from exc


MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
