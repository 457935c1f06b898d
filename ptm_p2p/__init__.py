"""ptm_p2p: privacy-preserving federated analysis over a peer-to-peer signed ledger.

Roles: the hub (sequencer and bootstrap peer, ``ptm_p2p.hub``), site daemons
(``ptm_p2p.site``), researchers (``ptm_p2p.client``) and auditors (``ptm audit``). All of them
share one verified, append-only ledger (``ptm_p2p.ledger``).
"""

__version__ = "0.1.0"
