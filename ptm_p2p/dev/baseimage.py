"""Build the Python base image locally, because no public registry can be reached.

``debootstrap --variant=minbase --include=python3-minimal,python3-numpy bookworm`` from the
Debian mirror this machine already uses, then ``docker import`` of the root filesystem. The
tarball is cached (``PTM_CACHE_DIR``), so only the first set-up on a machine pays for the
debootstrap (about a minute); later ones import the tarball in seconds, and when the image
is already in the engine nothing is done at all.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

from ptm_p2p.dev.settings import DevSettings, run
from ptm_p2p.errors import ExecutorError

SUITE = "bookworm"
PACKAGES = "python3-minimal,python3-numpy"
FALLBACK_MIRROR = "http://deb.debian.org/debian"
# What `docker import` cannot know from a bare root filesystem.
IMAGE_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    "ENV PYTHONDONTWRITEBYTECODE=1",
    'CMD ["python3"]',
]
# Removed before packing: never needed at run time, and they make the image larger.
PRUNE = [
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
    "usr/share/info",
]


def debian_mirror(sources_dir: Path = Path("/etc/apt/sources.list.d")) -> str:
    """The main Debian mirror configured for apt (deb822 or one-line format)."""
    for path in sorted(sources_dir.glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
    for path in [Path("/etc/apt/sources.list"), *sorted(sources_dir.glob("*.list"))]:
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                    return parts[1] if not parts[1].startswith("[") else parts[2]
    return FALLBACK_MIRROR


def tarball_path(settings: DevSettings) -> Path:
    return settings.cache_dir / f"ptm-base-python-{SUITE}.tar"


def image_exists(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_rootfs_tarball(settings: DevSettings, log: Callable[[str], None] = print) -> Path:
    """Debootstrap a minimal Debian with Python + NumPy and pack it as a tar (cached)."""
    tarball = tarball_path(settings)
    if tarball.exists():
        return tarball
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        raise ExecutorError(
            f"cannot build {settings.base_image}: debootstrap needs root and the debootstrap "
            "package (`apt-get install -y debootstrap`); or put a cached tarball at "
            f"{tarball}"
        )
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ptm-rootfs-", dir=settings.cache_dir) as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap {SUITE} from {mirror} (about a minute, once per machine)")
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={PACKAGES}",
                SUITE,
                str(rootfs),
                mirror,
            ],
            "debootstrap of the base image",
            timeout=1800,
        )
        for rel in PRUNE:
            target = rootfs / rel
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir()
        partial = tarball.with_suffix(".tar.partial")
        run(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."],
            "packing the base root filesystem",
        )
        partial.rename(tarball)  # atomic: a crash never leaves a half tarball in the cache
    log(f"base root filesystem ready in {time.monotonic() - started:.0f} s: {tarball}")
    return tarball


def ensure_base_image(
    settings: DevSettings, client: docker.DockerClient, log: Callable[[str], None] = print
) -> str:
    """Return the base image name, building or importing it only when it is missing."""
    name = settings.base_image
    if image_exists(client, name):
        return name
    tarball = build_rootfs_tarball(settings, log)
    repository, tag = name.rsplit(":", 1)
    log(f"importing {tarball} as {name}")
    try:
        client.api.import_image_from_file(
            str(tarball), repository=repository, tag=tag, changes=IMAGE_CHANGES
        )
    except docker.errors.DockerException as exc:
        raise ExecutorError(f"docker import of {tarball} as {name} failed: {exc}") from exc
    if not image_exists(client, name):
        raise ExecutorError(f"docker import of {tarball} did not produce {name}")
    return name
