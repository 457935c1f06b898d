"""Federated Kaplan–Meier: this site's event and censoring counts per time, coarsened.

Input (JSON): ``{"data": LABEL, "duration": COL, "event": COL, "group": COL (optional),
"time_unit": NUMBER (optional)}``. Every count in the answer is a multiple of the site's
minimum group size k (cumulative counts rounded up, as OpenSAFELY does); groups of fewer
than k patients are suppressed (and the next smallest while the hidden ones total < k).
Fewer patients than k in all: ``{"refused": reason}``, exit 3.
"""

from ptm_p2p import algorithm
from ptm_p2p.algorithms import survival_site

if __name__ == "__main__":
    algorithm.main(lambda params: survival_site.run_task("km", params))
