"""Task folders in memory, and the sweep a site runs at start (real mounts, as root)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from ptm_p2p.executor import workdir


def _mounted(path: Path) -> bool:
    return any(point == path for point, _ in workdir.mounts())


def test_a_task_folder_is_private_and_in_memory() -> None:
    owner = f"test-{uuid.uuid4().hex[:12]}"
    folder = workdir.make_task_folder(owner, "ab" * 32)
    try:
        assert workdir.memory_backed(folder)
        assert folder.parent.name == f"ptm-tasks-{owner}"
        assert folder.name.startswith("task-abababababababab-")
        assert folder.stat().st_mode & 0o777 == 0o700
        assert folder.parent.stat().st_mode & 0o777 == 0o700
    finally:
        workdir.sweep(owner, remove_root=True)
    assert not folder.parent.exists()


def test_sweep_unmounts_and_removes_only_its_owners_leftovers() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs as a crashed run leaves one: it needs root")
    owner, other = (f"test-{uuid.uuid4().hex[:12]}" for _ in range(2))
    left = workdir.make_task_folder(owner, "cd" * 32)
    (left / "input").write_bytes(b'{"secret": 1}')
    output = left / "output"
    output.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "ptm-output", str(output)], check=True)
    (output / "output.json").write_bytes(b"{}")
    theirs = workdir.make_task_folder(other, "ef" * 32)
    try:
        assert _mounted(output)
        assert workdir.sweep(owner) == [left.name]
        assert not _mounted(output)
        assert not left.exists()
        assert left.parent.exists()  # the owner's folder stays, empty, for the next runs
        assert theirs.exists()  # another site's folder is never touched
        assert workdir.sweep(owner) == []
    finally:
        if _mounted(output):
            subprocess.run(["umount", "-l", str(output)], check=False)
        workdir.sweep(owner, remove_root=True)
        workdir.sweep(other, remove_root=True)
