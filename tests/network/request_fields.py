"""The request field names the protocol fuzz tests fill with random values."""

REQUEST_FIELDS = (
    "start",
    "end",
    "old_size",
    "after",
    "timeout_ms",
    "note",
    "kind",
    "first",
    "second",
    "detail",
    "entries",
    "addrs",
    "author",
    "at_least",
)
"""Fields of the requests (and some of the answers) across all ops, so that any op may get
another op's field, of any type."""
