"""Federated Cox regression, site-stratified model: this site's share of one round.

Input (JSON): ``{"step": "describe" | "evaluate", "data": LABEL, "duration": COL,
"event": COL, "covariates": [COL, ...], "ties": "efron" | "breslow", "betas": [[...]]}``;
the researcher's ``ptm_p2p.algorithms.coxph.fit(..., stratify_sites=True)`` writes it.
The answer is only this site's partial log-likelihood, score and information (its own
baseline hazard) at each β asked, plus counts and its own fit in ``describe``. Fewer
patients or events than the site's minimum group size: ``{"refused": reason}``, exit 3.
"""

from ptm_p2p import algorithm
from ptm_p2p.algorithms import survival_site

if __name__ == "__main__":
    algorithm.main(lambda params: survival_site.run_task("coxph-stratified", params))
