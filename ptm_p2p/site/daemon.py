"""``ptm node``: the site daemon, assembled from its parts (as ``hub/daemon.py`` assembles
the hub).

* ``replicator.Site`` follows the hub, verifies and cosigns, and talks to other sites
  (anti-entropy, evidence); it serves peers through its ``SyncServer``;
* ``worker.TaskWorker`` runs the tasks the verified replica assigns to this site, deciding
  what to do with each in ``decide.py`` and seeing the site through ``worker_site.SiteAdapter``;
* ``network/daemon_runner.py`` runs them side by side on one libp2p host, writes ``status.json``
  and stops them all on SIGTERM/SIGINT.

Before anything starts, what a crashed run left in memory (decrypted inputs and outputs) is
swept, and the site's ``[policy]`` is read: a bad one stops the daemon here, naming the key.
"""

from __future__ import annotations

import logging

from ptm_p2p.errors import PtmError
from ptm_p2p.home import Home
from ptm_p2p.home_files import write_failed_status
from ptm_p2p.network.daemon_runner import DaemonParts, home_lock, serve_home
from ptm_p2p.network.invitation import Invitation
from ptm_p2p.site.replicator import Site
from ptm_p2p.site.worker import TaskWorker, site_settings, sweep_task_folders
from ptm_p2p.site.worker_site import SiteAdapter

log = logging.getLogger(__name__)


def run_node(home: Home, invitation: Invitation, host_ip: str, port: int, peers: list[str]) -> None:
    """Run a site daemon until SIGTERM/SIGINT; one daemon per home (see ``home_lock``)."""
    with home_lock(home.path, "node"):
        try:
            _serve_node(home, invitation, host_ip, port, peers)
        except PtmError as exc:
            # `ptm status` shows why the daemon is not running (a damaged or altered ledger
            # copy, a bad policy): the operator should not have to dig through logs.
            write_failed_status(home.path, "node", str(exc))
            raise


def _serve_node(
    home: Home, invitation: Invitation, host_ip: str, port: int, peers: list[str]
) -> None:
    # First of all: nothing decrypted that a crashed run left in memory stays there.
    sweep_task_folders(home.public_key.hex())
    policy, parallel = site_settings(home)  # a bad [policy] stops the daemon here, at start
    site = Site(home, invitation, peers)
    worker = TaskWorker(SiteAdapter(site), policy, parallel)
    try:
        serve_home(
            home,
            host_ip,
            port,
            DaemonParts(
                handler=site.server.answer,
                tasks=[
                    site.follow_hub,
                    site.anti_entropy,
                    site.push_cosignatures,
                    worker.run,
                    # Durable cosignatures, and a stop on damage to our own file found while
                    # serving a peer (as the hub does).
                    *site.server.tasks(),
                ],
                status=lambda host: site.status(host, worker.status()),
                role="node",
            ),
        )
    finally:
        site.book.flush()
        worker.close()
        site.store.close()
        try:
            sweep_task_folders(home.public_key.hex(), stopping=True)
        except PtmError as exc:  # the next start tries again, and stops if it cannot
            log.error("%s", exc)
