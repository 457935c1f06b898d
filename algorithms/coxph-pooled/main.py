"""Federated Cox regression, pooled model: this site's share of one round.

Input (JSON): ``{"step": "describe" | "evaluate", "data": LABEL, "duration": COL,
"event": COL, "covariates": [COL, ...], "ties": "efron" | "breslow", ...}``; the
researcher's ``ptm_p2p.algorithms.coxph.fit`` writes it. ``describe`` answers with counts,
this site's event times and event counts, Σx over its events and its own fit (the start);
``evaluate`` with the risk-set sums Σw, Σw·x, Σw·xxᵀ at every global event time for each
β asked (w = exp(xβ)). What that reveals is listed in docs/survival.md. Fewer patients or
events than the site's minimum group size: ``{"refused": reason}``, exit 3.
"""

from ptm_p2p import algorithm
from ptm_p2p.algorithms import survival_site

if __name__ == "__main__":
    algorithm.main(lambda params: survival_site.run_task("coxph-pooled", params))
