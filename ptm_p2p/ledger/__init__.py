"""The ledger: pure code over bytes (entries, Merkle tree, checkpoints, replay) plus the store.

Nothing here touches sockets, Docker, the clock or the environment; ``store.py`` is the one
module that does I/O. Modules import only ``ptm_p2p.errors`` and each other (checked by
``tests/test_layering.py``). Import what you need from the submodules, e.g.
``from ptm_p2p.ledger.entry import Entry``; this package file stays empty of imports so that
loading one submodule never drags in the others.
"""
