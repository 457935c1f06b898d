"""The researcher's side: a Python client for notebooks, scripts and multi-round algorithms.

``Client(home, invitation)`` keeps one connection to the hub and a verified copy of the log
in the home; ``publish``, ``wait``, ``results``, ``tasks``, ``cancel`` and ``run_round``
(one round over many sites: publish, wait, open) are what ``ptm publish / wait / results /
tasks / cancel`` use. See ``ptm_p2p.client.researcher`` for the details.
"""

from ptm_p2p.client.researcher import Client, SiteAnswer, TaskView

__all__ = ["Client", "SiteAnswer", "TaskView"]
