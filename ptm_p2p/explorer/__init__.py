"""``ptm explore``: a read-only local web page over a verified ledger copy.

``index`` snapshots and audits the copy and keeps what the pages ask for in memory
(``Explorer``); ``server`` serves it on 127.0.0.1 with the standard library's HTTP server
(GET only: there is no write path); ``static/`` holds the page, plain JavaScript with no
build step, which checks inclusion and consistency proofs itself with WebCrypto.
"""
