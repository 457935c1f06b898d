"""How the explorer's browser tests and ``scripts/explorer_screenshots.py`` start Chromium.

Debian's ``chromium`` (installed by ``bin/system-packages``), headless, without the sandbox
(containers have no user namespaces for it) and without anything that reaches the network
on its own (updates, sync, QUIC): the page under test is the only traffic.
"""

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
