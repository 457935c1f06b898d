"""The network layer: libp2p hosts (Noise only) and the msgpack request/response sync protocol.

framing (length-prefixed frames) → protocol (typed messages) → rpc (libp2p streams) are
independent of the ledger; verified_log, checkpoint_book, peer_book and trust are a
daemon's parts, assembled once by replica (``open_replica``), whose ``ReplicaTracker`` keeps
a copy up to date for every follower of the log (sites, the researcher's client);
sync_server serves the parts, fetch brings verified ranges in, peer_pool keeps one client
per peer, blobs moves large outputs, hub_requests makes one-shot requests to the hub;
daemon_runner, invitation, host and home_status are shared by the hub (ptm_p2p.hub) and the
site daemon (ptm_p2p.site). See docs/network.md.
"""
