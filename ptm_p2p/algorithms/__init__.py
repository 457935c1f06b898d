"""Federated algorithms driven from the researcher's side, and the site code they run.

* ``survival_site`` — what a site computes (pure NumPy + the standard library; copied into
  the ``coxph-pooled``, ``coxph-stratified`` and ``km`` images);
* ``rounds`` — the one seam to the network: a ``RoundRunner`` sends one request per site and
  returns each site's decoded output; ``LocalRunner`` does it in process;
* ``coxph`` and ``km`` — the coordinators (Newton–Raphson over aggregates; pooled
  Kaplan–Meier curves), with ``fit`` over any runner and ``fit_local`` over DataFrames.

Nothing here is imported by ``ptm --help``; pandas and matplotlib load inside functions.
"""
