"""``ptm study``: federated survival analysis over the live collaboration, from the shell.

``ptm study coxph`` fits a Cox proportional-hazards model (pooled or site-stratified) and
``ptm study km`` Kaplan–Meier curves; every round is one signed task through the hub
(``ptm_p2p.algorithms.runner.NetworkRunner`` over the researcher's client), the sites'
answers are aggregates only (docs/survival.md says what each round reveals). The fit on
stdout (``--json`` for machines), one progress line per round on stderr. The client,
libp2p, NumPy and pandas load inside the commands, so ``ptm --help`` stays fast.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ptm_p2p.cli.common import (
    client_options,
    file_option,
    open_client,
    positive_number_option,
    targets,
)
from ptm_p2p.cli.study_grid import SECURE_OPTIONS, group_levels, levels_option, secure_grid
from ptm_p2p.errors import StudyError

if TYPE_CHECKING:
    from ptm_p2p.algorithms.runner import NetworkRunner
    from ptm_p2p.client import Client


def register(main: click.Group) -> None:
    main.add_command(study)


@click.group()
def study() -> None:
    """Federated survival analysis: Cox regression and Kaplan–Meier curves.

    Each round is a signed task to the named sites, which run the algorithm image next to
    their data and answer with aggregates only (docs/survival.md lists what each round
    reveals). The images are resolved to digests once, before the first round.

    \b
    Examples:
      ptm study coxph --to-all --data gbsg2 --duration time --event cens \\
          --covariates age,tsize,pnodes --home researcher/
      ptm study km --to-all --data gbsg2 --duration time --event cens --plot km.png
    """


def _targets(to: str | None, to_all: bool) -> list[str] | None:
    """Named sites, or None for every admitted site (resolved once connected)."""
    names = targets(to, to_all, "sites")
    if names is not None and not names:
        raise click.UsageError("--to needs at least one site name")
    return names


def _columns(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise click.BadParameter("give one or more column names: A,B,C", param_hint="--covariates")
    return names


def _say(message: str) -> None:
    click.echo(message, err=True)


def _runner(
    client: Client,
    registry: str,
    data: str,
    timeout: float,
    names: tuple[str, ...],
    definition: dict[str, Any],
    resume: bool,
) -> NetworkRunner:
    """The runner of this study, recording each completed round in the home's study state;
    with ``resume``, the state of the same study (same command, sites, data and options) is
    read back and its completed rounds are not published again."""
    from ptm_p2p.algorithms.runner import NetworkRunner, describe_round, images_from_registry
    from ptm_p2p.client.study_state import StudyState, study_id

    path = StudyState.path_for(client.home.path, study_id(definition))
    if resume:
        try:
            state = StudyState.load(path)
        except FileNotFoundError:
            raise StudyError(
                f"nothing to resume: no state of this study in {path.parent} (the same command, "
                "sites, data and options as the run that stopped); run it without --resume"
            ) from None
        missing = [name for name in names if name not in state.images]
        if missing:
            raise StudyError(f"{path} names no image for {', '.join(missing)}")
        images = {name: state.images[name] for name in names}
        pending = f", round {state.pending.number} published" if state.pending else ""
        _say(
            f"resuming study {state.study}: {state.last_completed} round(s) completed"
            f"{pending} ({path})"
        )
    else:
        images = images_from_registry(registry, names)
        state = StudyState.new(client.home.path, definition, images)
        state.save()
    for name in names:
        _say(f"image {name}: {images[name]}")

    def on_round(number: int, info: Any) -> None:
        _say(describe_round(number, info))

    return NetworkRunner(client, images, data, on_round=on_round, timeout=timeout, state=state)


def _sites(client: Client, targets: list[str] | None) -> list[str]:
    client.sync()
    if targets is not None:
        return targets
    names = sorted(client.sites())
    if not names:
        raise click.ClickException("the collaboration has no admitted sites yet")
    return names


def _alpha_option(help: str) -> Callable[[Any], Any]:
    return click.option(
        "--alpha",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=0.05,
        show_default=True,
        help=help,
    )


to_option = click.option("--to", "to", default=None, help="The sites, by organisation: A,B,C.")
to_all_option = click.option("--to-all", is_flag=True, help="Every admitted site.")
data_option = click.option(
    "--data", "data", required=True, help="The sites' data label (a CSV each site offers)."
)
duration_option = click.option(
    "--duration", required=True, help="Column of follow-up times (non-negative numbers)."
)
event_option = click.option(
    "--event", required=True, help="Column of event indicators: 1 event, 0 censored."
)
registry_option = click.option(
    "--registry",
    default="127.0.0.1:5000",
    show_default=True,
    help="Registry holding the ptm/<algorithm>:latest images (resolved to digests once).",
)
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(1, 7 * 24 * 3600),
    default=300,
    show_default=True,
    help="Seconds each round may take before the sites that have not answered are named; "
    "a hub that restarts meanwhile is reached again within them.",
)
resume_option = click.option(
    "--resume",
    is_flag=True,
    help="Go on with the run of this study that stopped (same command and options): the "
    "rounds it completed are read back from the log, not published again.",
)


@dataclass(frozen=True)
class StudyRun:
    """What every study command is given besides its own options: the sites, their data
    and its survival columns, the confidence level, secure aggregation and its time grid
    (``cli/study_grid.py``), the images' registry, each round's timeout, whether to resume,
    and the researcher's home, invitation and output format."""

    to: str | None
    to_all: bool
    data: str
    duration: str
    event: str
    alpha: float
    secure: bool
    grid_step: float | None
    horizon: float | None
    grid_file: Path | None
    registry: str
    timeout: float
    resume: bool
    home: str | None
    invitation: str | None
    as_json: bool

    def grid(self, needed: bool, what: str) -> list[float] | None:
        """The time grid of the secure-sum rounds (None: none), or a usage error naming the
        flags; ``needed``: whether ``what`` counts events on a grid under --secure."""
        return secure_grid(self.secure, self.grid_step, self.horizon, self.grid_file, needed, what)

    def secure_definition(self, grid: list[float] | None) -> dict[str, Any]:
        """What --secure adds to the study's definition (a plain study's is unchanged, so
        its --resume finds the state of runs made before the flag existed)."""
        return {"secure": True, "grid": grid} if self.secure else {}

    @contextmanager
    def connect(
        self, image: str, title: str, definition: dict[str, Any]
    ) -> Iterator[tuple[NetworkRunner, list[str]]]:
        """Connect, name the sites (every admitted one for --to-all), say ``title`` and
        yield this study's runner and sites. ``definition``: the command's own options,
        which with the sites, data and columns name the study (its state for --resume)."""
        targets = _targets(self.to, self.to_all)
        with open_client(self.home, self.invitation) as client:
            sites = _sites(client, targets)
            _say(f"{title} over {len(sites)} site(s): {', '.join(sites)}")
            named = {
                "study": definition["study"],
                "sites": sites,
                "data": self.data,
                "duration": self.duration,
                "event": self.event,
                **definition,
            }
            runner = _runner(
                client, self.registry, self.data, self.timeout, (image,), named, self.resume
            )
            yield runner, sites


def study_options(alpha_help: str) -> Callable[[Any], Any]:
    """``StudyRun``'s options around a study command's own: the sites and columns before
    them, the run's settings after; the command receives them as one ``run``."""

    def decorate(f: Any) -> Any:
        @functools.wraps(f)
        def command(**options: Any) -> Any:
            fields = StudyRun.__dataclass_fields__
            run = StudyRun(**{name: options.pop(name) for name in fields})
            return f(run, **options)

        # click lists options in the reverse of the order they are added: the last ones
        # (added first) go in front of the command's own, the first ones after them.
        last: Any = lambda: None  # noqa: E731 - a carrier for click's parameter list
        for option in (client_options, resume_option, timeout_option, registry_option):
            last = option(last)
        last = _alpha_option(alpha_help)(last)
        for option in reversed(SECURE_OPTIONS):  # shown first among the run's settings
            last = option(last)
        wrapped: Any = command
        own = getattr(wrapped, "__click_params__", [])
        wrapped.__click_params__ = [*last.__click_params__, *own]
        for option in (event_option, duration_option, data_option, to_all_option, to_option):
            wrapped = option(wrapped)
        return wrapped

    return decorate


@study.command()
@study_options("1 − confidence level of the intervals.")
@click.option(
    "--covariates", required=True, help="Numeric covariate columns, comma-separated: A,B,C."
)
@click.option(
    "--ties",
    type=click.Choice(["efron", "breslow"]),
    default="efron",
    show_default=True,
    help="How tied event times are handled.",
)
@click.option(
    "--stratify-sites",
    is_flag=True,
    help="Each site its own baseline hazard: sites send only ℓ, score and information at β.",
)
def coxph(run: StudyRun, covariates: str, ties: str, stratify_sites: bool) -> None:
    """Fit a Cox proportional-hazards model over the sites' patients, who never leave them.

    Pooled (default): the same fit as pooling every patient in one place (WebDISCO-style,
    global risk sets; the sites send risk-set sums per event time). --stratify-sites: each
    site keeps its own baseline hazard and sends only its log-likelihood, score and
    information per round; a site's policy may allow this image and refuse the pooled one.
    --secure: every round is a secure sum, so only totals over the sites open; the pooled
    model then counts the sites' events on a time grid you give (--grid-step with
    --horizon, or --grid FILE) that must hold every event time (the sites' lattice).
    Prints coef, exp(coef), se, z, p and the confidence interval per covariate, the
    likelihood-ratio test and the rounds used; one line per round on stderr.

    \b
    Examples:
      ptm study coxph --to hospital-a,hospital-b,hospital-c --data gbsg2 \\
          --duration time --event cens --covariates age,tsize,pnodes,progrec \\
          --ties efron --home researcher/
      ptm study coxph --to-all --data gbsg2 --duration time --event cens \\
          --covariates age,tsize,pnodes --secure --grid-step 30 --horizon 3000
    """
    from ptm_p2p.algorithms import coxph as cox

    names = _columns(covariates)
    image = cox.STRATIFIED if stratify_sites else cox.POOLED
    what = "the site-stratified model" if stratify_sites else "the pooled Cox model"
    grid = run.grid(not stratify_sites, what)
    own = {"study": "coxph", "covariates": names, "ties": ties, "stratify_sites": stratify_sites}
    own |= run.secure_definition(grid)
    title = f"Cox regression ({image}{', secure sums' if run.secure else ''})"
    with run.connect(image, title, own) as (runner, sites):
        try:
            fit = cox.fit(
                runner,
                sites,
                run.duration,
                run.event,
                names,
                ties=ties,
                stratify_sites=stratify_sites,
                data=run.data,
                alpha=run.alpha,
                secure=run.secure,
                grid=grid,
            )
        except cox.OffGridError as exc:
            raise StudyError(
                f"{exc.off} event(s) fall on no point of the grid, so the fit would not be "
                "exact: give a --grid-step that divides the sites' time resolution (e.g. "
                "their 30 days), a --horizon past the longest follow-up, or a --grid FILE "
                "holding every event time"
            ) from exc
    if run.as_json:
        click.echo(json.dumps(fit.to_dict(), indent=2))
    else:
        click.echo(fit.summary())


@study.command()
@study_options("1 − confidence level of the band.")
@click.option("--group", "group", default=None, help="Also a curve per value of this column.")
@levels_option
@positive_number_option(
    "--time-unit",
    help="Sites round every time up to a multiple of this first (coarser reveals less).",
)
@file_option(
    "--plot",
    "plot_path",
    writable=True,
    help="Draw the curves with their confidence bands to this PNG file.",
)
def km(
    run: StudyRun,
    group: str | None,
    levels_text: str | None,
    time_unit: float | None,
    plot_path: str | None,
) -> None:
    """Kaplan–Meier survival curves over the sites' patients, in one round.

    Each site sends, per published time, its numbers of events and censorings, rounded so
    every count is a multiple of its minimum group size (exact when that is 1). Curves:
    pooled, per site, and per --group value (groups smaller than a site's minimum are
    suppressed there), with Greenwood's log(−log) band. --secure: each site's counts on
    your time grid (--grid-step with --horizon, or --grid FILE) are masked and only their
    sum opens: the pooled curve, a curve per --levels value of --group (named up front:
    every site answers each), no curve per site. Prints each curve's patients, events and
    median survival; --json gives every row, --plot a PNG.

    \b
    Examples:
      ptm study km --to-all --data gbsg2 --duration time --event cens --group horTh \\
          --plot km.png --home researcher/
      ptm study km --to-all --data gbsg2 --duration time --event cens \\
          --secure --grid-step 30 --horizon 3000
      ptm study km --to-all --data gbsg2 --duration time --event cens --group horTh \\
          --levels 0,1 --secure --grid-step 30 --horizon 3000
    """
    from ptm_p2p.algorithms import km as kaplan_meier

    levels = group_levels(run.secure, group, levels_text)
    grid = run.grid(True, "Kaplan–Meier")
    own = {"study": "km", "group": group, "time_unit": time_unit} | run.secure_definition(grid)
    own |= {"levels": levels} if levels else {}  # a plain study's definition is unchanged
    title = "Kaplan–Meier" + (" (secure sums)" if run.secure else "")
    with run.connect(kaplan_meier.IMAGE, title, own) as (runner, sites):
        curves = kaplan_meier.fit(
            runner,
            sites,
            run.duration,
            run.event,
            group,
            data=run.data,
            time_unit=time_unit,
            alpha=run.alpha,
            secure=run.secure,
            grid=grid,
            levels=levels,
        )
    if plot_path is not None:
        kaplan_meier.plot(curves, plot_path)
        _say(f"plot written to {plot_path}")
    if run.as_json:
        click.echo(json.dumps(curves.to_dict(), indent=2))
        return
    click.echo(_km_table(curves))


def _km_table(curves: Any) -> str:
    """Per curve: patients, events, median survival with its confidence interval."""
    from ptm_p2p.algorithms.km import median_survival

    level = f"{1 - curves.alpha:.0%}"
    width = max(12, *(len(name) for name in curves.curves))
    lines = [
        f"Federated Kaplan–Meier ({len(curves.sites)} sites, counts rounded to multiples of "
        f"each site's minimum group size: {_sizes(curves.min_group_sizes)})",
        *_secure_lines(curves),
        "",
        f"{'curve':<{width}}{'patients':>10}{'events':>8}{'median':>10}"
        f"{f'{level} CI':>20}{'last time':>11}{'survival':>10}",
    ]
    for name, values in curves.curves.items():
        times, survival = values["time"], values["survival"]
        median, lower, upper = median_survival(values)
        interval = f"{_fmt(lower)} – {_fmt(upper)}"
        lines.append(
            f"{name:<{width}}{values['at_risk'][0]:>10g}{sum(values['events']):>8g}"
            f"{_fmt(median):>10}{interval:>20}{times[-1]:>11g}{survival[-1]:>10.3f}"
        )
    suppressed = {s: g for s, g in curves.suppressed_groups.items() if g}
    if suppressed:
        lines.append("")
        for site, groups in sorted(suppressed.items()):
            lines.append(f"suppressed at {site} (under its minimum): {', '.join(groups)}")
    lines += ["", "every row: --json; the picture: --plot FILE.png"]
    return "\n".join(lines)


def _secure_lines(curves: Any) -> list[str]:
    """Under --secure: that only sums opened, and which sites the sum left out, and why."""
    if not curves.secure:
        return []
    lines = [
        f"secure aggregation: only the sums over {', '.join(curves.sites)} opened "
        f"({curves.rounds} task(s)); no curve per site"
    ]
    if curves.level_sites:
        shown = ", ".join(f"{level}: {n}" for level, n in curves.level_sites.items())
        lines.append(f"sites in each level's curve (the others lack or hide it): {shown}")
    lines += [f"left out of the sum: {site}: {why}" for site, why in curves.dropped.items()]
    return lines


def _fmt(value: float | None) -> str:
    return "NA" if value is None else f"{value:g}"


def _sizes(sizes: dict[str, int]) -> str:
    distinct = sorted(set(sizes.values()))
    return (
        str(distinct[0]) if len(distinct) == 1 else ", ".join(f"{s} {k}" for s, k in sizes.items())
    )
