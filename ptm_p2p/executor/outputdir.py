"""The task's output folder on the host: size-capped, and read back without trusting it.

When we may mount (root), the folder is a tmpfs of ``cap + slack`` bytes and few inodes, so
the *kernel* stops a container that writes too much (ENOSPC) before the host disk suffers;
a tmpfs inside the container would vanish when the container stops, so the mount lives on
the host and is bind-mounted in. Without mount rights, a plain folder is used and the cap is
enforced when reading back. Either way the reader skips symlinks and special files (a
container could plant a link to a host file) and never reads past the cap.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ptm_p2p.errors import ExecutorError

TASK_UID = 65534  # "nobody": the user task containers run as
SLACK_BYTES = 1024 * 1024  # lets a writer go past the cap so that "too big" is detectable
MAX_FILES = 256


@dataclass
class OutputDir:
    path: Path
    cap: int
    kernel_capped: bool = False

    @classmethod
    def create(cls, parent: Path, cap: int) -> OutputDir:
        path = parent / "output"
        path.mkdir(mode=0o700)
        out = cls(path=path, cap=cap)
        if os.geteuid() == 0 and shutil.which("mount"):
            options = (
                f"size={cap + SLACK_BYTES},nr_inodes={MAX_FILES * 2},mode=0700,"
                f"uid={TASK_UID},gid={TASK_UID},nosuid,nodev,noexec"
            )
            proc = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", options, "ptm-output", str(path)],
                capture_output=True,
                check=False,
            )
            out.kernel_capped = proc.returncode == 0
        if not out.kernel_capped:
            if os.geteuid() == 0:
                os.chown(path, TASK_UID, TASK_UID)
            else:
                path.chmod(0o777)  # the task user must write; the parent folder stays 0700
        return out

    def read(self) -> tuple[dict[str, bytes], int, str | None]:
        """(files by relative path, total bytes seen, reason if over the cap or malformed)."""
        files: dict[str, bytes] = {}
        total = 0
        problem: str | None = None
        for root, dirs, names in os.walk(self.path, followlinks=False):
            for name in sorted(names):
                full = Path(root) / name
                rel = str(full.relative_to(self.path))
                try:
                    info = os.lstat(full)
                except OSError:
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue  # symlinks, fifos, devices: never followed or read
                total += info.st_size
                if total > self.cap:
                    problem = f"output is larger than the cap of {self.cap} bytes"
                    continue
                if len(files) >= MAX_FILES:
                    problem = f"output has more than {MAX_FILES} files"
                    continue
                try:
                    # O_NONBLOCK: should the file turn into a fifo after lstat, open must
                    # not hang the site; fstat re-checks that what was opened is regular.
                    fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                    with os.fdopen(fd, "rb") as handle:
                        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                            continue
                        data = handle.read(self.cap + 1)
                except OSError as exc:
                    # e.g. a file the task made unreadable (mode 000) when we are not root
                    problem = f"output file {rel!r} cannot be read ({exc.strerror})"
                    continue
                if len(data) > info.st_size:
                    problem = f"output file {rel!r} grew while it was read"
                    continue
                files[rel] = data
            dirs.sort()
        if problem:
            return {}, total, problem
        return files, total, None

    def remove(self) -> None:
        if self.kernel_capped:
            proc = subprocess.run(["umount", str(self.path)], capture_output=True, check=False)
            if proc.returncode != 0:
                # Busy (a straggling reader): detach it now, the kernel frees it when idle.
                lazy = subprocess.run(
                    ["umount", "-l", str(self.path)], capture_output=True, check=False
                )
                if lazy.returncode != 0:
                    raise ExecutorError(
                        f"cannot unmount the task output tmpfs {self.path}: "
                        f"{proc.stderr.decode(errors='replace').strip()}; unmount it by hand "
                        f"(`umount -l {self.path}`)"
                    )
            self.kernel_capped = False
        shutil.rmtree(self.path, ignore_errors=True)
