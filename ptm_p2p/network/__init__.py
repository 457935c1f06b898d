"""The network layer: libp2p hosts (Noise only) and the msgpack request/response sync protocol.

framing (length-prefixed frames) → protocol (typed messages) → rpc (libp2p streams) are
independent of the ledger; verified_log, checkpoint_book, peer_book and trust are a
daemon's parts, sync_server serves them, fetch brings verified ranges in; daemon, invitation,
client and status are shared by the hub (ptm_p2p.hub) and the site daemon (ptm_p2p.site).
See docs/network.md.
"""
