"""What several CLI modules share: silencing libp2p's loggers in one-shot commands."""

from __future__ import annotations


def quiet_libp2p() -> None:
    """Silence py-libp2p's own loggers in one-shot commands.

    It logs every failed dial at ERROR ("Failed to open TCP stream…") straight to stderr;
    the command reports the outcome itself, in one line.
    """
    import logging

    import libp2p  # noqa: F401 - importing it (re)configures its loggers; quiet them after

    quiet = logging.getLogger("libp2p")
    quiet.setLevel(logging.CRITICAL + 1)
    quiet.addHandler(logging.NullHandler())
