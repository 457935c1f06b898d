"""Development infrastructure that the project installs and starts for itself.

A fresh machine has no Docker engine, no registry and no way to pull ``python:…`` images.
``ptm dev up`` (and the executor test fixtures) bring up, idempotently:

* ``engine``     a Docker engine: the running one if ``docker info`` works, else ``dockerd``
                 started in the background with ``--bridge=none --iptables=false``;
* ``registry``   Debian's ``docker-registry`` on 127.0.0.1 with storage in our state folder;
* ``baseimage``  ``ptm-base-python:bookworm``, a debootstrapped Debian with Python and NumPy,
                 cached as a tarball so a second machine set-up is fast;
* ``images``     the project's algorithm images, built on that base, pushed to the registry
                 and named by digest.
"""

from __future__ import annotations

from ptm_p2p.dev.settings import DevSettings

__all__ = ["DevSettings"]
