"""The site daemon (`ptm node`): replication and witnessing (task execution comes later)."""
