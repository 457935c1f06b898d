"""The site daemon (`ptm node`): replication and witnessing (``replicator``, ``witness``),
and executing the tasks the verified log assigns to this site (``worker``, ``decide``),
assembled in ``daemon``."""
