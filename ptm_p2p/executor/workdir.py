"""Where a task's decrypted input and its output live on the host: in memory only.

A task folder holds the decrypted input (bind-mounted read-only as ``/ptm/input``) and the
output folder (a size-capped tmpfs when we may mount, see ``outputdir.py``). Both are
plaintext the publisher sealed to this site alone, so they must never reach a disk: a disk
keeps them after a crash (a SIGKILLed daemon runs no ``finally``), in backups and in freed
blocks. Task folders are therefore made under a memory-backed file system (``/dev/shm``,
a tmpfs on every Linux), in one folder per owner (``ptm-tasks-<owner>``: a site uses its
key), and nothing runs where no such file system exists.

At start a site sweeps its own folder (``sweep``) before it does anything else: it
unmounts every mount left beneath it (deepest first) and removes every leftover task
folder, so nothing decrypted survives a crash longer than the next start. Other owners'
folders (other sites on the same machine) are never touched.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ptm_p2p.errors import ExecutorError

# Candidates for memory-backed storage, first match wins; each must be a tmpfs/ramfs mount.
MEMORY_ROOTS = (Path("/dev/shm"), Path("/run/shm"))
MEMORY_FS = ("tmpfs", "ramfs")
MOUNTINFO = Path("/proc/self/mountinfo")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and i + 3 < len(field):
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts() -> list[tuple[Path, str]]:
    """(mount point, file system type) of every mount this process sees, in mount order."""
    try:
        text = MOUNTINFO.read_text()
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            dash = fields.index("-")
            found.append((Path(_unescape(fields[4])), fields[dash + 1]))
        except (ValueError, IndexError):
            continue
    return found


def filesystem_of(path: Path) -> str | None:
    """The type of the file system ``path`` lies on (the deepest mount above it)."""
    resolved = path.resolve()
    best: tuple[int, str] | None = None
    for point, fstype in mounts():
        if resolved == point or point in resolved.parents:
            depth = len(point.parts)
            if best is None or depth >= best[0]:
                best = (depth, fstype)
    return best[1] if best else None


def memory_root() -> Path:
    """A memory-backed folder to hold task folders; ExecutorError if the machine has none."""
    for candidate in MEMORY_ROOTS:
        if candidate.is_dir() and filesystem_of(candidate) in MEMORY_FS:
            return candidate
    raise ExecutorError(
        "this machine has no memory-backed folder for task files (looked for a tmpfs at "
        f"{', '.join(map(str, MEMORY_ROOTS))}): decrypted inputs and outputs never go to "
        "a disk, so no task runs here. Mount one (`mount -t tmpfs tmpfs /dev/shm`)"
    )


def owner_root(owner: str) -> Path:
    """The folder holding ``owner``'s task folders (made, mode 0700, if missing)."""
    if not owner or "/" in owner or owner.startswith("."):
        raise ExecutorError(f"invalid task folder owner {owner!r}")
    root = memory_root() / f"ptm-tasks-{owner}"
    root.mkdir(mode=0o700, exist_ok=True)
    if root.is_symlink() or not root.is_dir():
        raise ExecutorError(f"{root} is not a folder; remove it and start again")
    root.chmod(0o700)
    return root


def make_task_folder(owner: str, task_id: str) -> Path:
    """A fresh, private (0700) folder for one run, in memory."""
    prefix = f"task-{task_id[:16]}-" if task_id else "task-"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=owner_root(owner)))


def remove_task_folder(folder: Path) -> None:
    """Remove a task folder whose mounts were already taken down."""
    shutil.rmtree(folder, ignore_errors=True)


def _unmount(point: Path) -> None:
    proc = subprocess.run(["umount", str(point)], capture_output=True, check=False)
    if proc.returncode == 0:
        return
    # Busy (a container of a killed daemon still holds it): detach now, freed when idle.
    lazy = subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
    if lazy.returncode != 0:
        raise ExecutorError(
            f"cannot unmount the leftover task mount {point}: "
            f"{proc.stderr.decode(errors='replace').strip()}; unmount it by hand "
            f"(`umount -l {point}`) and start the site again"
        )


def sweep(owner: str, remove_root: bool = False) -> list[str]:
    """Unmount and remove everything left in ``owner``'s task folder; the names removed.

    Called at start, before any task can run: what is there belongs to runs of an earlier
    process of this owner that ended without cleaning up (a crash, SIGKILL, power loss).
    Called again at a clean stop with ``remove_root`` (a run still going when the daemon
    stops is abandoned with its thread, and the owner's folder itself goes too).
    """
    root = memory_root() / f"ptm-tasks-{owner}"
    if not root.exists():
        return []
    resolved = root.resolve()
    beneath = [p for p, _ in mounts() if resolved in p.parents or p == resolved]
    for point in sorted(set(beneath), key=lambda p: len(p.parts), reverse=True):
        _unmount(point)
    removed = []
    for child in sorted(root.iterdir()):
        try:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        except OSError as exc:
            raise ExecutorError(
                f"cannot remove the leftover task folder {child} ({exc.strerror}); it may "
                "hold a decrypted input: remove it by hand and start the site again"
            ) from exc
        removed.append(child.name)
    if remove_root:
        root.rmdir()
    return removed


def memory_backed(path: Path) -> bool:
    """True if ``path`` lies on a memory-backed file system."""
    return filesystem_of(path) in MEMORY_FS


__all__ = [
    "make_task_folder",
    "memory_backed",
    "memory_root",
    "owner_root",
    "remove_task_folder",
    "sweep",
]
