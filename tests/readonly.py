"""A read-only view of a folder for tests: a read-only bind mount.

The tests run as root, for whom permission bits mean nothing (``chmod 555`` stops no write),
so a folder an operator or auditor cannot write is made the way a read-only medium is: a bind
mount remounted ``ro``, which refuses every write with EROFS, even root's.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def read_only_view(folder: Path, view: Path) -> Iterator[Path]:
    """``view`` shows ``folder``'s files, read-only, for the duration of the block."""
    view.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(folder), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        probe = view / ".probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:  # pragma: no cover - the mount did not take: fail rather than test nothing
            probe.unlink()
            raise AssertionError(f"{view} is writable; the read-only bind mount did not hold")
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)
