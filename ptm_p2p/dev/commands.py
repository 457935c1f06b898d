"""What ``ptm dev up / status / down / clear-cache`` do and print, without click.

Shared by the CLI (``ptm_p2p/cli/dev.py``) and ``python -m ptm_p2p.dev`` (used by
``scripts/dev-up.sh`` before ``ptm`` is on PATH), so both say exactly the same. Each function
returns the lines (or the JSON object) to print; the caller prints them.
"""

from __future__ import annotations

import json
import shutil
from typing import Any


def up(build_images: bool = True, as_json: bool = False) -> list[str]:
    """Start the engine and registry, build the base and (optionally) the algorithm images."""
    from ptm_p2p.dev.stack import ensure_stack

    stack = ensure_stack(build_images=build_images)
    if as_json:
        info = {"registry": stack.registry, "base_image": stack.base_image, "images": stack.images}
        return [json.dumps(info, indent=2)]
    lines = [
        f"engine         docker {stack.client.version().get('Version')}",
        f"registry       {stack.registry}",
        f"base image     {stack.base_image}",
    ]
    lines += [f"{name:<14} {ref}" for name, ref in stack.images.items()]
    return lines


def status(as_json: bool = False) -> list[str]:
    """What is running and built; starts nothing."""
    from ptm_p2p.dev.stack import status as stack_status

    info: dict[str, Any] = stack_status()
    if as_json:
        return [json.dumps(info, indent=2)]
    return [f"{key:<22} {value}" for key, value in info.items()]


def down() -> list[str]:
    """Stop the registry and dockerd that ``up`` started (by their pid files)."""
    from ptm_p2p.dev.engine import stop_engine
    from ptm_p2p.dev.registry import stop_registry
    from ptm_p2p.dev.settings import DevSettings

    settings = DevSettings.from_env()
    return [
        f"registry {'stopped' if stop_registry(settings) else 'not started by us'}",
        f"dockerd  {'stopped' if stop_engine(settings) else 'not started by us'}",
    ]


def clear_cache() -> list[str]:
    """Delete the cached base-image tarball (the next ``up`` debootstraps again)."""
    from ptm_p2p.dev.settings import DevSettings

    cache = DevSettings.from_env().cache_dir
    shutil.rmtree(cache, ignore_errors=True)
    return [f"removed {cache}"]
