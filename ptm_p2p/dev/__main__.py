"""``python -m ptm_p2p.dev [up|status|down|clear-cache]``: ``ptm dev`` without the CLI.

Used by ``scripts/dev-up.sh`` on a machine where ``ptm`` is not installed yet; the work and
the output are ``ptm_p2p.dev.commands``, shared with ``ptm dev``.
"""

from __future__ import annotations

import argparse
import sys

from ptm_p2p.dev import commands
from ptm_p2p.errors import PtmError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ptm_p2p.dev",
        description="Development infrastructure: Docker engine, local registry, base and "
        "algorithm images (the same as `ptm dev`).",
    )
    sub = parser.add_subparsers(dest="command")
    up = sub.add_parser("up", help="start/prepare what is missing, print image digests")
    up.add_argument("--no-images", action="store_true", help="skip the algorithm images")
    up.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
    status = sub.add_parser("status", help="show what is running and built")
    status.add_argument("--json", dest="as_json", action="store_true", help="print JSON")
    sub.add_parser("down", help="stop the registry and dockerd that `up` started")
    sub.add_parser("clear-cache", help="delete the cached base-image tarball")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command in (None, "up"):
            lines = commands.up(
                build_images=not getattr(args, "no_images", False),
                as_json=getattr(args, "as_json", False),
            )
        elif args.command == "status":
            lines = commands.status(as_json=args.as_json)
        elif args.command == "down":
            lines = commands.down()
        else:
            lines = commands.clear_cache()
    except PtmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
