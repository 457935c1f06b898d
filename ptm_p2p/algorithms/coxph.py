"""Federated Cox proportional-hazards regression, driven from the researcher's side.

Two models, each a separate image so a site's policy can allow one and refuse the other:

* **pooled** (``coxph-pooled``): the same fit as pooling every patient in one place. The
  Newton–Raphson step needs, per *global* event time, the risk-set sums Σw, Σw·x, Σw·xxᵀ
  (w = exp(xβ)); each site sends its share (WebDISCO, Lu et al. 2015), and for Efron's ties
  the same sums over its tied events.
* **site-stratified** (``coxph-stratified``): each site keeps its own baseline hazard; a
  site sends only its log-likelihood, score and information at β (exact for that model).

Rounds (each is one request per site through a ``RoundRunner``):

1. ``describe`` — everything that does not depend on β: counts, event times and counts,
   Σx over events, constant covariates — checked here before any β leaves the researcher —
   and each site's own log-likelihood, score and information at β = 0. For the stratified
   model that *is* the first Newton evaluation; for the pooled model their sum gives a
   one-step start (the stratified model's first Newton step, close to the pooled one), which
   saves the round that evaluating the pooled model at 0 would cost.
2. ``evaluate`` at the current β (the pooled model's second round also asks for the
   numbers at risk, which give the log-likelihood at β = 0 for the likelihood-ratio test).
   Newton–Raphson: step Δ = I⁻¹U; when the largest |Δ| is below ``tol`` the step is applied
   and the fit stops *without another round* (Newton converges quadratically: the error
   left is of order Δ²); when the log-likelihood drops, the step is halved.

As in lifelines and survival::coxph, the reported log-likelihood and the covariance
(inverse information) are those of the last evaluated β, one step below ``tol`` before the
returned coefficients.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ptm_p2p import algorithm
from ptm_p2p.algorithms import survival_site as site
from ptm_p2p.algorithms.rounds import LocalRunner, RoundInfo, RoundRunner, tables_from_frames
from ptm_p2p.errors import StudyError

POOLED = "coxph-pooled"
STRATIFIED = "coxph-stratified"
# Largest Newton step at which the fit stops (and applies it). Newton converges
# quadratically, so what is left after a step s is of order s² (1e-16 here); even where
# convergence is only linear (after step halving) it is below 1e-8, a hundred times under
# the 1e-6 to which federated and centralized fits are required to agree.
DEFAULT_TOL = 1e-8
# A new β counts as worse only when its log-likelihood is lower by more than rounding noise.
LOGLIK_SLACK = 1e-12
# A site's answer over 64 KiB travels as an encrypted blob through the hub's blob store (not in
# the ledger entry), so it is bounded by the site's output limit (``[policy.limits] output``,
# 1 GB by default) and the researcher's memory: keep well under both.
MAX_ANSWER_BYTES = 256_000_000

Evaluation = tuple[float, np.ndarray, np.ndarray]  # log-likelihood, score, information


@dataclass(frozen=True)
class CoxResult:
    """A fitted Cox model: per-covariate figures are dicts keyed by covariate name."""

    covariates: tuple[str, ...]
    params: dict[str, float]
    standard_errors: dict[str, float]
    z: dict[str, float]
    p_values: dict[str, float]
    ci_lower: dict[str, float]
    ci_upper: dict[str, float]
    hazard_ratios: dict[str, float]
    covariance: tuple[tuple[float, ...], ...]
    log_likelihood: float
    log_likelihood_initial: float
    iterations: int
    rounds: int
    converged: bool
    n: int
    n_events: int
    site_counts: dict[str, dict[str, int]]
    ties: str
    stratified: bool
    alpha: float
    duration_col: str
    event_col: str
    round_log: tuple[RoundInfo, ...] = field(default=(), repr=False)
    # secure aggregation (stratified model): only sums over the sites were seen, so
    # ``site_counts`` is empty per site; ``dropped`` names sites left out, and why
    secure: bool = False
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def likelihood_ratio_test(self) -> tuple[float, int, float]:
        """(statistic, degrees of freedom, p-value) against the model with β = 0."""
        stat = max(0.0, 2.0 * (self.log_likelihood - self.log_likelihood_initial))
        df = len(self.covariates)
        return stat, df, chi2_sf(stat, df)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.round_log)

    # lifelines' CoxPHFitter names, as pandas objects indexed by covariate, for code written
    # against lifelines; ``params`` and the other dicts stay as they are for existing users.
    @property
    def params_(self) -> Any:
        """The coefficients as a pandas Series named ``coef`` (as lifelines' ``params_``)."""
        return self._series(self.params, "coef")

    @property
    def standard_errors_(self) -> Any:
        """Standard errors as a pandas Series named ``se`` (lifelines' name)."""
        return self._series(self.standard_errors, "se")

    @property
    def hazard_ratios_(self) -> Any:
        """exp(coef) as a pandas Series named ``exp(coef)`` (lifelines' name)."""
        return self._series(self.hazard_ratios, "exp(coef)")

    @property
    def confidence_intervals_(self) -> Any:
        """The coefficients' confidence bounds as a DataFrame with lifelines' columns
        (``95% lower-bound``, ``95% upper-bound`` for alpha = 0.05)."""
        import pandas as pd

        level = f"{round(100 * (1 - self.alpha))}%"
        frame = pd.DataFrame(
            {
                f"{level} lower-bound": self._series(self.ci_lower, "lower"),
                f"{level} upper-bound": self._series(self.ci_upper, "upper"),
            }
        )
        frame.index.name = "covariate"
        return frame

    def _series(self, values: dict[str, float], name: str) -> Any:
        import pandas as pd

        series = pd.Series([values[c] for c in self.covariates], index=list(self.covariates))
        series.name = name
        series.index.name = "covariate"
        return series

    def summary_frame(self) -> Any:
        """The coefficient table as a pandas DataFrame (index: covariates)."""
        import pandas as pd

        level = f"{1 - self.alpha:g}"
        rows = {
            "coef": self.params,
            "exp(coef)": self.hazard_ratios,
            "se(coef)": self.standard_errors,
            f"coef lower {level}": self.ci_lower,
            f"coef upper {level}": self.ci_upper,
            "z": self.z,
            "p": self.p_values,
        }
        frame = pd.DataFrame(rows).loc[list(self.covariates)]
        frame.index.name = "covariate"
        return frame

    def summary(self) -> str:
        """The fit as text, laid out like survival::coxph's printout."""
        level = f"{1 - self.alpha:.2f}".lstrip("0")
        name_w = max(8, *(len(c) for c in self.covariates))
        columns = ("coef", "exp(coef)", "se(coef)", "z", "p", f"lower {level}", f"upper {level}")
        head = f"{'':{name_w}}" + "".join(f"{c:>11}" for c in columns)
        lines = [
            "Federated Cox proportional hazards ("
            + (
                "site-stratified: each site its own baseline hazard"
                if self.stratified
                else "pooled: global risk sets"
            )
            + ")",
            f"  duration = {self.duration_col!r}, event = {self.event_col!r}, "
            f"ties = {self.ties.capitalize()}, sites = {len(self.site_counts)}"
            + (", secure aggregation (only sums over the sites opened)" if self.secure else ""),
            "",
            head,
        ]
        for c in self.covariates:
            cells = (
                f"{self.params[c]:.4g}",
                f"{self.hazard_ratios[c]:.4g}",
                f"{self.standard_errors[c]:.4g}",
                f"{self.z[c]:.3f}",
                _format_p(self.p_values[c]),
                f"{math.exp(self.ci_lower[c]):.4g}",
                f"{math.exp(self.ci_upper[c]):.4g}",
            )
            lines.append(f"{c:{name_w}}" + "".join(f"{v:>11}" for v in cells))
        stat, df, p = self.likelihood_ratio_test
        lines += [
            "",
            f"Likelihood ratio test = {stat:.2f} on {df} df, p = {_format_p(p)}",
            f"Partial log-likelihood = {self.log_likelihood:.4f} "
            f"(at β = 0: {self.log_likelihood_initial:.4f})",
            f"n = {self.n}, number of events = {self.n_events}",
            f"Newton–Raphson iterations = {self.iterations}, rounds = {self.rounds}, "
            + ("converged" if self.converged else "NOT converged"),
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-able values."""
        stat, df, p = self.likelihood_ratio_test
        return {
            "model": "site-stratified" if self.stratified else "pooled",
            "ties": self.ties,
            "duration": self.duration_col,
            "event": self.event_col,
            "covariates": list(self.covariates),
            "coefficients": {
                c: {
                    "coef": self.params[c],
                    "exp_coef": self.hazard_ratios[c],
                    "se": self.standard_errors[c],
                    "z": self.z[c],
                    "p": self.p_values[c],
                    "ci_lower": self.ci_lower[c],
                    "ci_upper": self.ci_upper[c],
                }
                for c in self.covariates
            },
            "covariance": [list(row) for row in self.covariance],
            "alpha": self.alpha,
            "log_likelihood": self.log_likelihood,
            "log_likelihood_initial": self.log_likelihood_initial,
            "likelihood_ratio_test": {"statistic": stat, "df": df, "p": p},
            "iterations": self.iterations,
            "rounds": self.rounds,
            "converged": self.converged,
            "n": self.n,
            "n_events": self.n_events,
            "sites": self.site_counts,
            "secure": self.secure,
            "dropped": self.dropped,
            "round_log": [r.to_dict() for r in self.round_log],
        }


def _format_p(p: float) -> str:
    return "<2e-16" if p < 2e-16 else f"{p:.3g}"


def chi2_sf(x: float, df: int) -> float:
    """P(χ²_df > x) for a whole number of degrees of freedom (closed forms; no SciPy)."""
    if df <= 0:
        return math.nan
    if x <= 0:
        return 1.0
    h = x / 2.0
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= h / i
            total += term
        return min(1.0, math.exp(-h) * total)
    total = math.erfc(math.sqrt(h))
    term = math.sqrt(h) * math.exp(-h) / math.gamma(1.5)
    for i in range(1, (df - 1) // 2 + 1):
        total += term
        term *= h / (i + 0.5)
    return min(1.0, total)


# --- the study driver -----------------------------------------------------------------------


class _Study:
    """Runs rounds through the runner and keeps the log."""

    def __init__(
        self,
        runner: RoundRunner,
        image: str,
        sites: Sequence[str],
        base: dict[str, Any],
        progress: Callable[[str], None] | None,
    ) -> None:
        self.runner = runner
        self.image = image
        self.sites = list(sites)
        self.base = base
        self.progress = progress
        self.log: list[RoundInfo] = []

    def round(self, label: str, extra: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        request = {**self.base, **extra}
        requests = {s: dict(request) for s in self.sites}
        t0 = time.monotonic()
        outputs = self.runner(self.image, requests)
        seconds = time.monotonic() - t0
        missing = [s for s in self.sites if not isinstance(outputs.get(s), dict)]
        if missing:
            raise StudyError(
                f"{self.image}: no answer from {', '.join(missing)} in round {len(self.log) + 1}",
                {s: "no answer" for s in missing},
            )
        for s in self.sites:
            answer = outputs[s]
            if answer.get("version") != site.VERSION or answer.get("covariates") != self.base.get(
                "covariates"
            ):
                raise StudyError(
                    f"{self.image}: {s} answered in another format (version "
                    f"{answer.get('version')!r}); is it running the same image as the others?",
                    {s: "unexpected answer"},
                )
        size = len(json.dumps(request, sort_keys=True, separators=(",", ":")))
        self.log.append(
            RoundInfo(
                label,
                seconds,
                {s: size for s in self.sites},
                {
                    s: len(json.dumps(outputs[s], sort_keys=True, separators=(",", ":")))
                    for s in self.sites
                },  # fmt: skip
            )
        )
        if self.progress:
            self.progress(
                f"round {len(self.log)} ({label}): {len(self.sites)} site(s) answered "
                f"in {seconds:.2f} s"
            )
        return {s: outputs[s] for s in self.sites}


def _check_request(
    sites: Sequence[str], duration_col: str, event_col: str, covariates: Sequence[str], ties: str
) -> None:
    problems = []
    if not sites or len(set(sites)) != len(sites):
        problems.append("give one or more distinct sites")
    for name, value in (("duration_col", duration_col), ("event_col", event_col)):
        if not isinstance(value, str) or not value:
            problems.append(f"{name} must be a column name")
    if (
        not covariates
        or not all(isinstance(c, str) and c for c in covariates)
        or len(set(covariates)) != len(covariates)
    ):
        problems.append("covariates must be one or more distinct column names")
    elif {duration_col, event_col} & set(covariates) or duration_col == event_col:
        problems.append("the duration, the event and the covariates must be different columns")
    if ties not in site.TIES:
        problems.append(f"ties must be one of {site.TIES}, not {ties!r}")
    if problems:
        raise StudyError("cannot start the Cox regression: " + "; ".join(problems))


def _check_constants(
    covariates: Sequence[str], answers: Mapping[str, dict[str, Any]], stratified: bool
) -> None:
    for a, name in enumerate(covariates):
        values = [answers[s]["constant"][a] for s in answers]
        if stratified and all(values):
            raise StudyError(
                f"covariate {name!r} does not vary within any site: the site-stratified model "
                "cannot estimate it (each site's baseline hazard absorbs it); drop it or fit "
                "the pooled model"
            )
        if not stratified and all(v is not None for v in values) and len(set(values)) == 1:
            raise StudyError(
                f"covariate {name!r} is the same ({values[0]:g}) for every patient at every "
                "site: its coefficient cannot be estimated; drop it"
            )


def _newton_step(info: np.ndarray, score: np.ndarray, covariates: Sequence[str]) -> np.ndarray:
    try:
        step = np.linalg.solve(info, score)
    except np.linalg.LinAlgError:
        step = None
    if step is None or not np.all(np.isfinite(step)):
        raise StudyError(
            "the information matrix is singular: some covariates are collinear (or one is "
            f"constant) among {', '.join(covariates)}; drop one and fit again"
        )
    return np.asarray(step)


def fit(
    runner: RoundRunner,
    sites: Sequence[str],
    duration_col: str,
    event_col: str,
    covariates: Sequence[str],
    ties: str = "efron",
    stratify_sites: bool = False,
    *,
    data: str | None = None,
    alpha: float = 0.05,
    tol: float = DEFAULT_TOL,
    max_iterations: int = 30,
    max_halvings: int = 10,
    max_answer_bytes: int = MAX_ANSWER_BYTES,
    progress: Callable[[str], None] | None = None,
    secure: bool = False,
    grid: Sequence[float] | None = None,
) -> CoxResult:
    """Fit a Cox model over the sites' data, one ``runner`` call per round.

    ``secure`` runs every round under secure aggregation (the runner's ``secure_sum``):
    each site's answer is masked and only sums over the sites open (``_fit_secure``). The
    pooled model then needs ``grid``, time points holding every event time (under
    disclosure control the sites' lattice, e.g. every multiple of their
    ``time_resolution``): the sites count their events on it, so only the global event
    times and counts open, never a site's own.

    ``data`` is the sites' data label (the images default to their only one); ``tol`` bounds
    the largest Newton step at convergence; ``max_answer_bytes`` caps the pooled model's
    per-site answer (one ledger result entry). Bad input, a refusing site or a singular model is
    a ``StudyError`` naming the cause, raised before any β-dependent round where possible.
    """
    covariates = list(covariates)
    _check_request(sites, duration_col, event_col, covariates, ties)
    if not 0 < alpha < 1:
        raise StudyError(f"alpha must be between 0 and 1, not {alpha}")
    base: dict[str, Any] = {
        "duration": duration_col,
        "event": event_col,
        "covariates": covariates,
        "ties": ties,
    }
    if data is not None:
        base["data"] = data
    newton = _Newton(tol, max_iterations, max_halvings)
    meta = _Meta(tuple(covariates), ties, stratify_sites, duration_col, event_col, alpha)
    if secure:
        return _fit_secure(runner, list(sites), base, grid, progress, newton, meta,
                           max_answer_bytes)  # fmt: skip
    if grid is not None:
        raise StudyError("grid= is for secure aggregation (secure=True)")
    return _fit_plain(runner, list(sites), base, progress, newton, meta, max_answer_bytes)


def _fit_plain(
    runner: RoundRunner,
    sites: list[str],
    base: dict[str, Any],
    progress: Callable[[str], None] | None,
    newton: _Newton,
    meta: _Meta,
    max_answer_bytes: int,
) -> CoxResult:
    """``fit`` without secure aggregation: every site's own answer opens."""
    covariates, ties, stratify_sites = list(meta.covariates), meta.ties, meta.stratified
    study = _Study(runner, STRATIFIED if stratify_sites else POOLED, sites, base, progress)
    p = len(covariates)
    described = study.round("describe", {"step": "describe"})
    _check_constants(covariates, described, stratify_sites)
    site_counts = {
        s: {"n": int(a["n"]), "events": int(a["events"]), "incomplete": int(a["incomplete"])}
        for s, a in described.items()
    }
    # the pooled model can estimate a covariate that is constant within every site
    between_sites = not stratify_sites and any(
        all(described[s]["constant"][a] is not None for s in study.sites) for a in range(p)
    )
    beta = _start(covariates, [described[s]["start"] for s in study.sites], between_sites)
    evaluate: Callable[[np.ndarray, str], Evaluation | None]
    if stratify_sites:
        ll_initial = math.fsum(float(described[s]["loglik_at_zero"]) for s in study.sites)
        evaluate = _StratifiedEvaluator(study)
        first = evaluate(beta, "evaluate at the start")
    else:
        times, counts, event_total = _pooled_events(study.sites, described)
        pooled = _PooledEvaluator(study, times, counts, event_total, ties, p, max_answer_bytes)
        evaluate = pooled
        first = pooled(beta, "evaluate at the start", at_risk=True)
        ll_initial = pooled.initial_loglik()
    fitted = newton.run(evaluate, first, beta, ll_initial, covariates)
    return _result(
        fitted,
        meta,
        study.log,
        site_counts,
        n=sum(c["n"] for c in site_counts.values()),
        n_events=sum(c["events"] for c in site_counts.values()),
    )


class _StratifiedEvaluator:
    """The site-stratified model's ℓ, U, I at β: the sum of the sites' own."""

    def __init__(self, study: _Study) -> None:
        self.study = study

    def __call__(self, beta: np.ndarray, label: str) -> Evaluation | None:
        answers = self.study.round(label, {"step": "evaluate", "betas": [beta.tolist()]})
        points = [answers[s]["points"][0] for s in self.study.sites]
        if any(pt.get("overflow") for pt in points):
            return None
        return (
            math.fsum(float(pt["loglik"]) for pt in points),
            _total(np.array(pt["score"], dtype=np.float64) for pt in points),
            _total(np.array(pt["information"], dtype=np.float64) for pt in points),
        )


@dataclass(frozen=True)
class _Fitted:
    """Where Newton–Raphson stopped: β, the last evaluation (ℓ, U, I), and how."""

    beta: np.ndarray
    current: Evaluation
    ll_initial: float
    iterations: int
    converged: bool


@dataclass(frozen=True)
class _Newton:
    """Newton–Raphson with step halving (see the module docstring)."""

    tol: float
    max_iterations: int
    max_halvings: int

    def run(
        self,
        evaluate: Callable[[np.ndarray, str], Evaluation | None],
        first: Evaluation | None,
        beta: np.ndarray,
        ll_initial: float,
        covariates: list[str],
    ) -> _Fitted:
        """From ``beta`` (already evaluated: ``first``); the point before it is β = 0,
        whose ℓ is ``ll_initial``."""
        previous, previous_ll = np.zeros(len(covariates)), ll_initial
        trial, halvings, iterations, converged = first, 0, 0, False
        while True:
            while trial is None or trial[0] < previous_ll - LOGLIK_SLACK * (1 + abs(previous_ll)):
                if halvings == self.max_halvings:
                    raise StudyError(
                        f"no step of iteration {iterations} increases the likelihood after "
                        f"{self.max_halvings} halvings; the model may be unidentifiable (check "
                        "for separation: a covariate that predicts every event)"
                    )
                beta = (previous + beta) / 2.0
                halvings += 1
                trial = evaluate(beta, f"evaluate, iteration {iterations}, step halved")
            current = trial
            loglik, score, info = current
            step = _newton_step(info, score, covariates)
            iterations += 1
            if float(np.max(np.abs(step))) < self.tol:
                beta, converged = beta + step, True
                break
            if iterations >= self.max_iterations:
                break
            previous, previous_ll = beta, loglik
            beta, halvings = beta + step, 0
            trial = evaluate(beta, f"evaluate, iteration {iterations}")
        return _Fitted(beta, current, ll_initial, iterations, converged)


@dataclass(frozen=True)
class _Meta:
    """What a fit was asked: carried into its ``CoxResult``."""

    covariates: tuple[str, ...]
    ties: str
    stratified: bool
    duration_col: str
    event_col: str
    alpha: float


def _result(
    fitted: _Fitted,
    meta: _Meta,
    log: Sequence[RoundInfo],
    site_counts: dict[str, dict[str, int]],
    *,
    n: int,
    n_events: int,
    secure: bool = False,
    dropped: Mapping[str, str] | None = None,
) -> CoxResult:
    """The ``CoxResult`` of a finished Newton–Raphson run."""
    beta = fitted.beta
    loglik, _, info = fitted.current
    try:
        covariance = np.linalg.inv(info)
    except np.linalg.LinAlgError as exc:
        raise StudyError("the information matrix at the optimum is singular") from exc
    se = np.sqrt(np.diag(covariance))
    zq = statistics.NormalDist().inv_cdf(1 - meta.alpha / 2)
    zs = beta / se
    names = meta.covariates
    return CoxResult(
        covariates=tuple(names),
        params=_named(names, beta),
        standard_errors=_named(names, se),
        z=_named(names, zs),
        p_values=_named(names, [math.erfc(abs(v) / math.sqrt(2)) for v in zs]),
        ci_lower=_named(names, beta - zq * se),
        ci_upper=_named(names, beta + zq * se),
        hazard_ratios=_named(names, np.exp(beta)),
        covariance=tuple(tuple(float(v) for v in row) for row in covariance),
        log_likelihood=float(loglik),
        log_likelihood_initial=float(fitted.ll_initial),
        iterations=fitted.iterations,
        rounds=len(log),
        converged=fitted.converged,
        n=n,
        n_events=n_events,
        site_counts=site_counts,
        ties=meta.ties,
        stratified=meta.stratified,
        alpha=meta.alpha,
        duration_col=meta.duration_col,
        event_col=meta.event_col,
        round_log=tuple(log),
        secure=secure,
        dropped=dict(dropped or {}),
    )


class _SecureStudy:
    """A model's rounds under secure aggregation: each round is one ``runner.secure_sum``
    call, and only the sums over the sites open. The sites of the describe round are the
    study's: a site dropped later would change the likelihood mid-fit, so that is an error.

    Fixed-point error (docs/privacy.md): each total is within half an ulp plus
    256 · 2⁻⁹⁷ of the exact sum of the sites' doubles, so the fit equals the plain fit to
    far below 1e-9 relative.
    """

    def __init__(
        self,
        runner: RoundRunner,
        image: str,
        sites: list[str],
        base: dict[str, Any],
        progress: Callable[[str], None] | None,
    ) -> None:
        secure_sum = getattr(runner, "secure_sum", None)
        if secure_sum is None:
            raise StudyError(f"{type(runner).__name__} cannot run secure-aggregation rounds")
        self.secure_sum = secure_sum
        self.image = image
        self.sites = sites
        self.base = base
        self.progress = progress
        self.log: list[RoundInfo] = []
        self.dropped: dict[str, str] = {}

    def round(self, label: str, extra: Mapping[str, Any]) -> dict[str, np.ndarray]:
        request = {**self.base, "secure_sum": True, **extra}
        t0 = time.monotonic()
        summed = self.secure_sum(self.image, {s: dict(request) for s in self.sites})
        seconds = time.monotonic() - t0
        if self.log and list(summed.sites) != self.sites:
            gone = {**summed.dropped}
            raise StudyError(
                f"{self.image}: {', '.join(gone) or 'a site'} dropped out in round "
                f"{len(self.log) + 1} ({label}); the likelihood would change mid-fit: fit "
                "again without it",
                gone,
            )
        self.dropped.update(summed.dropped)
        self.sites = list(summed.sites)
        for s, public in summed.public.items():
            if (
                not isinstance(public, dict)
                or public.get("version") != site.VERSION
                or public.get("covariates") != self.base.get("covariates")
            ):
                raise StudyError(
                    f"{self.image}: {s} answered in another format; is it running the same "
                    "image as the others?",
                    {s: "unexpected answer"},
                )
        size = len(json.dumps(request, sort_keys=True, separators=(",", ":")))
        self.log.append(
            RoundInfo(
                f"{label} (secure sum)",
                seconds,
                {s: size for s in self.sites},
                dict(summed.answer_bytes),
            )
        )
        if self.progress:
            self.progress(
                f"round {len(self.log)} ({label}, secure sum): {len(self.sites)} site(s) "
                f"summed in {seconds:.2f} s"
                + (f"; dropped {', '.join(summed.dropped)}" if summed.dropped else "")
            )
        return {name: np.array(values, dtype=np.float64) for name, values in summed.total.items()}

    def evaluate_stratified(self, beta: np.ndarray, label: str) -> Evaluation | None:
        p = beta.size
        total = self.round(label, {"step": "evaluate", "betas": [beta.tolist()]})
        if float(total["overflow"][0]) > 0.5:
            return None
        return (
            float(total["loglik"][0]),
            total["score"].reshape(p),
            total["information"].reshape(p, p),
        )


def _fit_secure(
    runner: RoundRunner,
    sites: list[str],
    base: dict[str, Any],
    grid: Sequence[float] | None,
    progress: Callable[[str], None] | None,
    newton: _Newton,
    meta: _Meta,
    max_answer_bytes: int,
) -> CoxResult:
    """``fit(..., secure=True)``: the fit from sums over the sites only."""
    covariates = list(meta.covariates)
    p = len(covariates)
    study = _SecureStudy(runner, STRATIFIED if meta.stratified else POOLED, sites, base, progress)
    extra: dict[str, Any] = {"step": "describe"}
    if not meta.stratified:
        extra["secure_sum"] = {"grid": _checked_grid(grid)}
    described = study.round("describe", extra)
    # how many sites hold each covariate constant: all of them means no site can fit it
    constant = [round(float(c)) == len(study.sites) for c in described["constant"]]
    if meta.stratified and any(constant):
        raise StudyError(
            f"covariate {covariates[constant.index(True)]!r} does not vary within any site: "
            "the site-stratified model cannot estimate it (each site's baseline hazard "
            "absorbs it); drop it or fit the pooled model"
        )
    try:
        beta = _newton_step(
            described["start_information"].reshape(p, p), described["start_rhs"], covariates
        )
    except StudyError:
        if meta.stratified or not any(constant):
            raise
        beta = np.zeros(p)  # varies only between sites: as ``_start``
    evaluate: Callable[[np.ndarray, str], Evaluation | None]
    if meta.stratified:
        evaluate = study.evaluate_stratified
        first = evaluate(beta, "evaluate at the start")
        ll_initial = float(described["loglik_at_zero"][0])
    else:
        times, counts = _grid_events(list(grid or ()), described)
        pooled = _SecurePooledEvaluator(
            study, times, counts, described["event_total"], meta.ties, p, max_answer_bytes
        )
        evaluate = pooled
        first = pooled(beta, "evaluate at the start", at_risk=True)
        ll_initial = pooled.initial_loglik()
    fitted = newton.run(evaluate, first, beta, ll_initial, covariates)
    return _result(
        fitted, meta, study.log, {s: {} for s in study.sites},
        n=round(float(described["n"][0])), n_events=round(float(described["events"][0])),
        secure=True, dropped=study.dropped,
    )  # fmt: skip


def _checked_grid(grid: Sequence[float] | None) -> list[float]:
    if grid is None or not len(grid):
        raise StudyError(
            "the pooled model under secure aggregation needs grid=: time points holding "
            "every event time (under disclosure control the sites' lattice, e.g. every "
            "multiple of their time_resolution up to the longest follow-up)"
        )
    return [float(t) for t in grid]


class OffGridError(StudyError):
    """Events fall on no point of the secure pooled model's grid (``off`` of them): the fit
    would not be exact, so it stops after the describe round; ``ptm study`` names its flags."""

    def __init__(self, message: str, off: int) -> None:
        super().__init__(message)
        self.off = off


def _grid_events(
    grid: list[float], described: Mapping[str, np.ndarray]
) -> tuple[list[float], list[int]]:
    """The global event times and counts from the summed counts on ``grid``."""
    off = round(float(described["off_grid"][0]))
    if off:
        raise OffGridError(
            f"{off} event(s) fall on no point of the grid, so the fit would not be exact: "
            "give a grid holding every event time (under disclosure control the sites' "
            "lattice, multiples of their time_resolution; without it every distinct time)",
            off,
        )
    counts = [round(float(d)) for d in described["event_counts"]]
    times = [t for t, d in zip(grid, counts, strict=True) if d > 0]
    return times, [d for d in counts if d > 0]


def _start(
    covariates: Sequence[str], starts: Sequence[Mapping[str, Any]], between_sites: bool
) -> np.ndarray:
    """The maximiser of the sum of the sites' quadratic approximations.

    Site s fitted its own data to b_s (or stayed at 0) and sent the score U_s and the
    information I_s there; Σ_s [U_sᵀ(β − b_s) − ½(β − b_s)ᵀ I_s (β − b_s)] is largest at
    β = (Σ I_s)⁻¹ Σ (U_s + I_s b_s): the inverse-variance meta-analysis of the local fits,
    usually within a few hundredths of the pooled optimum.
    """
    info = _total(np.array(st["information"], dtype=np.float64) for st in starts)
    rhs = _total(
        np.array(st["score"], dtype=np.float64)
        + np.array(st["information"], dtype=np.float64) @ np.array(st["beta"], dtype=np.float64)
        for st in starts
    )
    try:
        return _newton_step(info, rhs, covariates)
    except StudyError:
        # Singular: either collinear covariates (the model itself is singular: say so now,
        # before any β-dependent round) or, for the pooled model, a covariate that varies
        # only between sites, which no site alone can estimate: then start at 0.
        if between_sites:
            return np.zeros(len(covariates))
        raise


def _named(names: Sequence[str], values: Any) -> dict[str, float]:
    return {n: float(v) for n, v in zip(names, values, strict=True)}


def _total(arrays: Any) -> np.ndarray:
    """Sum arrays in the given (site) order, elementwise."""
    out: np.ndarray | None = None
    for a in arrays:
        out = a.copy() if out is None else out + a
    if out is None:
        raise StudyError("no site answered")
    return out


def _pooled_events(
    sites: Sequence[str], described: Mapping[str, dict[str, Any]]
) -> tuple[list[float], list[int], np.ndarray]:
    """The global event times, their event counts and Σx over all events, from the sites'
    own event times (the plain pooled model's describe answers)."""
    counts: dict[float, int] = {}
    for s in sites:
        answer = described[s]
        for t, d in zip(answer["event_times"], answer["event_counts"], strict=True):
            counts[float(t)] = counts.get(float(t), 0) + int(d)
    times = sorted(counts)
    event_total = _total(np.array(described[s]["event_total"], dtype=np.float64) for s in sites)
    return times, [counts[t] for t in times], event_total


class _PooledEvaluator:
    """Combines the sites' risk-set sums at the global event times into ℓ, U and I."""

    # an answer's doubles travel as base64 JSON: ~10.7 bytes each
    bytes_per_value = 8 * 4 / 3

    def __init__(
        self,
        study: Any,
        times: list[float],
        counts: list[int],
        event_total: np.ndarray,
        ties: str,
        p: int,
        max_answer_bytes: int,
    ) -> None:
        self.study = study
        self.ties = ties
        self.p = p
        self.times = times
        self.counts = counts
        self.tied = [j for j, d in enumerate(self.counts) if d > 1] if ties == "efron" else []
        self.event_total = np.asarray(event_total, dtype=np.float64)
        self.at_risk: list[int] | None = None
        # Each answer carries m × n_terms(p) numbers (+ the tied rows). Say so before
        # round 2 when that would exceed what a result may carry.
        rows = len(self.times) + len(self.tied)
        self.answer_bytes = int(rows * site.n_terms(p) * self.bytes_per_value) + 16 * len(
            self.times
        )
        if self.answer_bytes > max_answer_bytes:
            raise StudyError(
                f"the pooled model would need about {self.answer_bytes // 1000} kB per site per "
                f"round ({len(self.times)} global event times × {site.n_terms(p)} sums for "
                f"{p} covariates), over the {max_answer_bytes // 1000} kB allowed per answer; "
                "fit the site-stratified model (a few kB per round) or fewer covariates"
            )

    def _request(self, beta: np.ndarray, at_risk: bool) -> dict[str, Any]:
        extra: dict[str, Any] = {
            "step": "evaluate",
            "times": self.times,
            "tied": self.tied,
            "betas": [beta.tolist()],
        }
        if at_risk:
            extra["at_risk"] = True
        return extra

    def _sums(
        self, beta: np.ndarray, label: str, at_risk: bool
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The risk-set sums and tied sums over all sites at β (None: β overflows)."""
        answers = self.study.round(label, self._request(beta, at_risk))
        m, q = len(self.times), site.n_terms(self.p)
        if at_risk:
            self.at_risk = [0] * m
            for s in self.study.sites:
                counts = answers[s].get("at_risk")
                if not isinstance(counts, list) or len(counts) != m:
                    raise StudyError(f"{s} answered without the numbers at risk", {s: "bad"})
                self.at_risk = [a + int(b) for a, b in zip(self.at_risk, counts, strict=True)]
        points = [answers[s]["points"][0] for s in self.study.sites]
        if any(pt.get("overflow") for pt in points):
            return None
        try:
            sums = _total(site.unpack(pt["sums"]) for pt in points)
            tied_sums = (
                _total(site.unpack(pt["tied_sums"]) for pt in points)
                if self.ties == "efron"
                else np.zeros((0, q))
            )
        except (KeyError, algorithm.AlgorithmError, ValueError) as exc:
            raise StudyError(f"a site's sums are malformed: {exc}") from exc
        return sums, tied_sums

    def __call__(self, beta: np.ndarray, label: str, at_risk: bool = False) -> Evaluation | None:
        got = self._sums(beta, label, at_risk)
        if got is None:
            return None
        sums, tied_sums = got
        if sums.shape != (len(self.times), site.n_terms(self.p)) or tied_sums.shape != (
            len(self.tied),
            site.n_terms(self.p),
        ):
            raise StudyError("a site's sums have the wrong shape; are all sites on one image?")
        return site.cox_terms(
            beta, self.event_total, self.counts, sums, self.tied, tied_sums, self.ties
        )

    def initial_loglik(self) -> float:
        """ℓ(0) from the numbers at risk: at β = 0 every weight is 1."""
        if self.at_risk is None:
            raise StudyError("the numbers at risk were not asked for")
        m, q = len(self.times), site.n_terms(self.p)
        sums = np.zeros((m, q))
        sums[:, 0] = self.at_risk
        tied_sums = np.zeros((len(self.tied), q))
        tied_sums[:, 0] = [self.counts[j] for j in self.tied]
        loglik, _, _ = site.cox_terms(
            np.zeros(self.p), self.event_total, self.counts, sums, self.tied, tied_sums,
            self.ties,
        )  # fmt: skip
        return loglik


class _SecurePooledEvaluator(_PooledEvaluator):
    """The pooled model's evaluate rounds under secure aggregation: every site's risk-set
    sums (and tied sums, numbers at risk, overflow flag) are masked; only their totals
    open, so the researcher never sees one site's sums."""

    # a masked value is 32 base64 characters (24 bytes)
    bytes_per_value = 32.0

    def _sums(
        self, beta: np.ndarray, label: str, at_risk: bool
    ) -> tuple[np.ndarray, np.ndarray] | None:
        total = self.study.round(label, self._request(beta, at_risk))
        m, q = len(self.times), site.n_terms(self.p)
        try:
            if at_risk:
                self.at_risk = [round(float(v)) for v in total["at_risk"].reshape(m)]
            if float(total["overflow"][0]) > 0.5:
                return None
            tied = total["tied_sums"] if self.tied else np.zeros(0)
            return total["sums"].reshape(m, q), tied.reshape(len(self.tied), q)
        except (KeyError, ValueError) as exc:
            raise StudyError(
                f"the summed sums are malformed (are all sites on one image?): {exc}"
            ) from exc


def coarsened_data(
    site_frames: Any,
    duration_col: str,
    event_col: str,
    covariates: Sequence[str],
    *,
    min_group_size: int | Mapping[str, int] = algorithm.DEFAULT_MIN_GROUP_SIZE,
    time_resolution: float | Mapping[str, float],
) -> Any:
    """The pooled data *as the sites coarsen it* under disclosure control: one pandas
    DataFrame (a ``site`` column, the event, the covariates, the coarsened duration) of
    every site's complete rows, by the very function the sites answer from, so a central
    fit on it (lifelines, R) must equal the federated fit with control on
    (docs/privacy.md). Deterministic: the same frames and policies give the same rows."""
    import pandas as pd

    tables = tables_from_frames(site_frames)
    params = {"duration": duration_col, "event": event_col, "covariates": list(covariates)}
    parts = []
    for name, table in tables.items():
        k = (min_group_size.get(name, algorithm.DEFAULT_MIN_GROUP_SIZE)
             if isinstance(min_group_size, Mapping) else min_group_size)  # fmt: skip
        res = (time_resolution[name] if isinstance(time_resolution, Mapping)
               else time_resolution)  # fmt: skip
        try:
            coarse = site.coarsened_table(POOLED, table, params, k, res)
        except algorithm.AlgorithmError as exc:
            raise StudyError(f"{name}: {exc}", {name: str(exc)}) from exc
        frame = pd.DataFrame({c: coarse[c] for c in (duration_col, event_col, *covariates)})
        frame.insert(0, "site", name)
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def fit_local(
    site_frames: Any,
    duration_col: str,
    event_col: str,
    covariates: Sequence[str],
    ties: str = "efron",
    stratify_sites: bool = False,
    *,
    min_group_size: int = algorithm.DEFAULT_MIN_GROUP_SIZE,
    time_resolution: float | None = None,
    **options: Any,
) -> CoxResult:
    """``fit`` over in-process sites: a list of pandas DataFrames (sites ``site-1``, …) or a
    mapping site name → DataFrame. The same site code and coordinator as a federated run."""
    tables = tables_from_frames(site_frames)
    runner = LocalRunner(tables, min_group_size, time_resolution)
    return fit(
        runner, list(tables), duration_col, event_col, covariates, ties, stratify_sites,
        **options,
    )  # fmt: skip
