"""Replace a small file atomically: readers see the old or the new file, never half.

Every file a daemon keeps beside its ledger (``witness.json``, ``peers.json``,
``distrusted.json``, ``status.json``…) is written through ``write_bytes_atomic``, mostly by
way of ``home_files.py`` (its typed structs); ``write_json_atomic`` writes plain JSON data.
It lives here, on its own, so that the parts that keep such files (the trust registry, the
peer book, the site) need not import ``network/daemon_runner.py`` and with it libp2p.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, data: Any, *, durable: bool = False) -> None:
    """``data`` as indented JSON in ``path`` (see ``write_bytes_atomic``)."""
    write_bytes_atomic(path, json.dumps(data, indent=2, default=str).encode(), durable=durable)


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace ``path`` so that readers see the old or the new file, never half of one.

    ``durable`` also fsyncs the file and its folder, for records that must survive a crash
    (what a witness has cosigned); the status file, rewritten every second, skips that.
    """
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        # A full disk fails the write: leave the old file as it was and no half-written
        # temporary file behind.
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
