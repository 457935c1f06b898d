"""``python -m ptm_p2p.cli``: the ``ptm`` command without the console script."""

from ptm_p2p.cli import main

main()
