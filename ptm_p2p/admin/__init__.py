"""The administration of a collaboration and of the homes that serve it.

What the collaboration's admin does (``ptm collab …``): make and write the genesis entry
(``genesis``), admit and revoke members and read who is a member from a verified log
(``members``); and what an operator's ``ptm hub`` / ``ptm node`` check and keep in their home
before the daemon starts (``daemons``: a writable home, a valid config, the node's port file,
where the hub's invitation was last written, the message for a damaged ledger copy).

The CLI only parses, calls these and prints. Nothing here imports another role (hub, site,
client): they meet on the ledger and the network protocol.
"""
