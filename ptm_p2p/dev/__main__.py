"""``python -m ptm_p2p.dev [up|status|down]``: the ``ptm dev`` commands without the CLI."""

from __future__ import annotations

import sys

from ptm_p2p.cli.executor import dev
from ptm_p2p.errors import PtmError

if __name__ == "__main__":
    try:
        dev.main(
            args=sys.argv[1:] or ["up"], prog_name="python -m ptm_p2p.dev", standalone_mode=True
        )
    except PtmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
