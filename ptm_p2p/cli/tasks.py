"""The researcher's task commands: ``ptm publish``, ``wait``, ``results``, ``tasks``, ``cancel``.

Each opens the researcher's home (key, verified ledger copy) and the collaboration's
invitation, talks to the hub through ``ptm_p2p.client.Client`` and prints what the
*verified* copy of the log says. Results on stdout (``--json`` for machines), progress on
stderr. The client (and libp2p) is imported inside each command, so ``ptm --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ptm_p2p.cli.common import client_options, folder_option, open_client, targets
from ptm_p2p.errors import EXIT_DOMAIN, EXIT_NOT_DONE, EXIT_OK, EXIT_REFUSED, PtmError

if TYPE_CHECKING:
    from ptm_p2p.client import Client, TaskView


def register(main: click.Group) -> None:
    """Add ``ptm publish``, ``wait``, ``results``, ``tasks`` and ``cancel`` to the ``ptm`` group."""
    for command in (publish, wait, results, tasks, cancel):
        main.add_command(command)


def _parse_memory(text: str | None) -> int | None:
    """'512m', '2g', '1024' (MiB) → MiB."""
    if text is None:
        return None
    value = text.strip().lower()
    scale = {"k": 1 / 1024, "m": 1, "g": 1024}.get(value[-1:])
    number = value[:-1] if scale is not None else value
    try:
        mib = float(number) * (scale if scale is not None else 1)
    except ValueError:
        raise click.BadParameter(f"{text!r}: write a size such as 512m or 2g") from None
    if not 16 <= mib <= 1024 * 1024:
        raise click.BadParameter(f"{text!r}: between 16m and 1024g")
    return int(mib)


def _parse_params(params: tuple[str, ...]) -> bytes:
    out: dict[str, Any] = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: write KEY=VALUE", param_hint="--param")
        try:
            out[key] = json.loads(value)  # numbers, lists, true/false as JSON
        except ValueError:
            out[key] = value  # anything else as a string
    return json.dumps(out, sort_keys=True).encode()


def _progress_line(view: TaskView) -> str:
    answered = sum(1 for s in view.progress.values() if s not in ("not seen", "received"))
    sites = "  ".join(f"{site}: {state}" for site, state in view.progress.items())
    return f"[{answered}/{len(view.progress)} answered] {sites}"


def _wait_with_progress(
    client: Client, task_id: str, timeout: float | None, started: float | None = None
) -> TaskView:
    """Follow the task, a progress line on stderr at each change. ``started``: when the
    command began (monotonic), so that --timeout bounds the whole command, connecting and
    syncing included, not only the polling after them."""
    last: list[str] = [""]

    def show(view: TaskView) -> None:
        line = _progress_line(view)
        if line != last[0]:
            click.echo(f"  {line}", err=True)
            last[0] = line

    if timeout is not None and started is not None:
        timeout = max(0.0, timeout - (time.monotonic() - started))
    return client.wait(task_id, timeout=timeout, on_progress=show)


def _answered_exit_code(client: Client, view: TaskView, timeout: float | None) -> int:
    """How `ptm wait` and `ptm publish --wait` exit, with the why on stderr:

    0 when every target answered and at least one answered ok (a partial result is still a
    result: the others' reasons are shown); 3 (refused) when every target refused; 1 when
    none answered ok otherwise (failed, timed out, cancelled: nothing to open); 4 (not done)
    when --timeout passed first, naming each site that has not even received the task."""
    if not view.done:
        click.echo(
            f"timed out: --timeout {timeout:g} s passed before every site answered "
            f"({_progress_line(view)})",
            err=True,
        )
        for site, why in client.silent_sites(view).items():
            click.echo(f"  {site}: {why}", err=True)
        return EXIT_NOT_DONE
    states = list(view.progress.values())
    if "ok" in states:
        return EXIT_OK
    counts = ", ".join(f"{n} {state}" for state, n in sorted(view.counts.items()))
    if states and all(state == "refused" for state in states):
        click.echo(
            f"error: every site refused the task ({counts}); `ptm results {view.id[:16]}` "
            "shows each site's reason",
            err=True,
        )
        return EXIT_REFUSED
    click.echo(
        f"error: no site answered ok ({counts}); `ptm results {view.id[:16]}` shows why",
        err=True,
    )
    return EXIT_DOMAIN


# --- commands ---------------------------------------------------------------------------------


@click.command()
@click.argument("image")
@click.option("--to", "to", default=None, help="Target sites, by organisation or key: A,B,C.")
@click.option("--to-all", is_flag=True, help="Target every admitted site.")
@click.option(
    "--input",
    "input_file",
    type=click.File("rb"),
    default=None,
    help="The input file, sealed separately to each site ('-' for stdin).",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    help="KEY=VALUE for a JSON input (repeatable; VALUE parsed as JSON when it can be).",
)
@click.option(
    "--data", "data", multiple=True, help="A site data label the task reads (repeatable)."
)
@click.option(
    "--timeout",
    type=click.IntRange(1, 7 * 24 * 3600),
    default=600,
    show_default=True,
    help="Seconds each site lets the container run (a site may allow less).",
)
@click.option("--memory", default=None, help="Memory per site, e.g. 512m (default 512m).")
@click.option("--cpus", type=click.FloatRange(0.01, 1024), default=None, help="CPUs (default 1).")
@click.option("--algorithm", default=None, help="A name for the task, e.g. summary/v1.")
@click.option("--wait", "then_wait", is_flag=True, help="Then wait for every site's answer.")
@client_options
def publish(
    image: str,
    to: str | None,
    to_all: bool,
    input_file: Any,
    params: tuple[str, ...],
    data: tuple[str, ...],
    timeout: int,
    memory: str | None,
    cpus: float | None,
    algorithm: str | None,
    then_wait: bool,
    home: str | None,
    invitation: str | None,
    as_json: bool,
) -> None:
    """Publish a signed task: IMAGE runs at each target site next to its data.

    A tag is resolved to its digest through the registry now, and the digest is what is
    signed: moving the tag later changes nothing. The input is sealed to each target site
    separately; only that site can read it. Prints the task id.

    \b
    Example:
      ptm publish 127.0.0.1:5000/ptm/summary:latest --to-all --data gbsg2 \\
          --param data=gbsg2 --param 'categorical=["horTh"]' --wait --home researcher/
    """
    named = targets(to, to_all)
    if input_file is not None and params:
        raise click.UsageError("give the input either as --input FILE or as --param KEY=VALUE")
    payload = input_file.read() if input_file is not None else _parse_params(params)
    memory_mb = _parse_memory(memory)
    from ptm_p2p.errors import TaskLookupError

    with open_client(home, invitation) as client:
        client.sync()
        try:
            task = client.publish(
                image,
                to="all" if named is None else named,
                input=payload,
                data=list(data),
                timeout_s=timeout,
                memory_mb=memory_mb or 512,
                cpu_millis=round((cpus or 1.0) * 1000),
                algorithm=algorithm,
            )
        except TaskLookupError as exc:
            if to_all:
                raise
            # a site name that is not a member is a bad argument (exit 2), like a typo
            raise click.BadParameter(str(exc), param_hint="--to") from exc
        click.echo(f"published task {task.id} (entry {task.index}): {task.image}", err=True)
        if then_wait:
            limit = timeout + 60
            view = _wait_with_progress(client, task.id, limit)
            _print_results(client, task.id, as_json, None)
            code = _answered_exit_code(client, view, limit)
            if code:
                sys.exit(code)
            return
    if as_json:
        click.echo(json.dumps(task.to_dict(), indent=2))
    else:
        click.echo(task.id)


@click.command()
@click.argument("task")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
@client_options
def wait(
    task: str, timeout: float | None, home: str | None, invitation: str | None, as_json: bool
) -> None:
    """Follow a task until every target site has answered.

    Progress per site on stderr: not seen (the site has not cosigned a checkpoint holding
    the task), received (it has: provable from its cosignature), then its answer: ok,
    failed, refused, timeout or cancelled.

    Exit 0 when every site answered and at least one answered ok; 3 when every site
    refused; 1 when none answered ok otherwise; 4 when --timeout (counted from the start
    of the command) passed first: then each site that has not received the task is named
    with what the log says of its node (down or cut off from the hub).

    \b
    Example:
      ptm wait 93c17583ced5fdc8 --timeout 300 --home researcher/
    """
    started = time.monotonic()
    with open_client(home, invitation) as client:
        client.sync()
        view = _wait_with_progress(client, task, timeout, started)
        if as_json:
            click.echo(json.dumps(view.to_dict(), indent=2))
        else:
            click.echo(_progress_line(view))
        code = _answered_exit_code(client, view, timeout)
    if code:
        sys.exit(code)


def _print_results(
    client: Client,
    task: str,
    as_json: bool,
    out: Path | None,
    only: tuple[str, ...] = (),
    prove: Path | None = None,
) -> list[str]:
    """Print a task's results (``only``: just those sites); returns the sites shown that
    are faulty or unavailable. ``prove``: also write a proof folder for the ok sites."""
    answers = client.results(task)
    view = client.task(task)
    if only:
        unknown = [site for site in only if site not in view.progress]
        if unknown:
            raise click.UsageError(
                f"--site {', '.join(unknown)}: not a target of this task "
                f"(targets: {', '.join(view.progress)})"
            )
        answers = {site: a for site, a in answers.items() if site in only}
    bad = [site for site, a in answers.items() if a.fault or a.status == "unavailable"]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for site, answer in answers.items():
            if site not in bad:
                (out / f"{site}.output").write_bytes(answer.output)
    proved: list[str] = []
    if prove is not None:
        proved = _write_proofs(client, answers, bad, prove)
    if as_json:
        data = view.to_dict()
        data["results"] = {}
        for site, answer in answers.items():
            item = answer.to_dict()
            try:
                item["output"] = answer.json()
            except PtmError:
                item["output_text"] = answer.output.decode("utf-8", "replace")
            data["results"][site] = item
        click.echo(json.dumps(data, indent=2))
        return bad
    named = f"{view.algorithm}, " if view.algorithm else ""
    click.echo(f"task {view.id} (entry {view.index}), {named}image {view.image}")
    click.echo(f"  {'site':<16}{'status':<11}{'ran':<22}{'run s':>7}{'output':>9}  reason")
    for site, state in view.progress.items():
        if only and site not in only:
            continue
        if site not in answers:
            click.echo(f"  {site:<16}{state:<11}")
            continue
        answer = answers[site]
        run = answer.timings.get("run_ms")
        reason = _reason(answer)
        ran = f"{run / 1000:>7.2f}" if run is not None else f"{'-':>7}"  # never ran: no time
        click.echo(
            f"  {site:<16}{answer.status:<11}{answer.image_digest[:19] + '…':<22}{ran}"
            f"{len(answer.output):>8}B  {reason}"
        )
    if out is not None:
        click.echo(f"outputs written to {out}/SITE.output")
    if prove is not None:
        click.echo(
            f"proofs of {', '.join(proved) or 'no site'} written to {prove} "
            f"(check: ptm ledger check-proof {prove})"
        )
    for site in bad:
        click.echo(f"warning: {site} is {answers[site].status}: {answers[site].reason}", err=True)
    return bad


def _reason(answer: Any) -> str:
    """The table's reason: the algorithm's own, from the output sealed to us ("no data
    source 'other' …"), before the public one the site signed ("the algorithm exited with
    code 2"), which stays in --json as ``reason``; a faulty answer names its failed check."""
    from ptm_p2p.client.researcher import why_not_ok

    if answer.fault:
        return f"{answer.fault} check failed (signed {answer.signed_status}): {answer.reason}"
    if answer.status == "ok":
        return answer.reason or ""
    sealed = why_not_ok(answer)
    if answer.reason and sealed != answer.reason:
        return f"{sealed} ({answer.reason})"
    return sealed


def _write_proofs(
    client: Client, answers: dict[str, Any], bad: list[str], folder: Path
) -> list[str]:
    """A proof (plaintext, nonce, signed entry) of each opened format-2 output."""
    from ptm_p2p.ledger.proof import write_proof

    written = []
    for site, answer in answers.items():
        if site in bad or answer.format != 2:
            continue
        entry = _entry_at(client, answer.index)
        write_proof(folder, site, answer.key, entry, answer.index, answer.output, answer.nonce)
        written.append(site)
    return written


def _entry_at(client: Client, index: int) -> Any:
    from ptm_p2p.ledger.entry import Entry

    (raw,) = client.follower.store.raw_range(index, index + 1)
    return Entry.from_bytes(raw)


@click.command()
@click.argument("task")
@folder_option("--out", as_path=True, help="Write each site's opened output to DIR/SITE.output.")
@click.option(
    "--site",
    "only",
    multiple=True,
    help="Show only this site (repeatable); exit 1 if one of them is faulty.",
)
@folder_option(
    "--prove",
    as_path=True,
    help="Write a proof of each opened output to DIR (plaintext, nonce, signed entry).",
)
@client_options
def results(
    task: str,
    out: Path | None,
    only: tuple[str, ...],
    prove: Path | None,
    home: str | None,
    invitation: str | None,
    as_json: bool,
) -> None:
    """Open a task's results with your key: status, image digest that ran, timings.

    Only results under a hub-signed checkpoint that passed every replay rule are shown, and
    each output is checked against the commitment its site signed. A site whose output does
    not open as signed is shown as `faulty`, naming the failed check (key box, blob,
    decrypt, commitment); the other sites are shown as usual and the exit code stays 0,
    unless you asked for that site with --site (then 1).

    A site that failed or refused shows the algorithm's own reason, read from the output
    sealed to you (e.g. "no data source 'other' …"), followed by the public one the site
    signed (e.g. "the algorithm exited with code 2"); `run s` is "-" when nothing ran.

    --prove DIR writes, per opened site, the plaintext and the commitment nonce with the
    signed entry: anyone can check them with `ptm ledger check-proof DIR`.

    \b
    Example:
      ptm results 93c17583ced5fdc8 --json --home researcher/
      ptm results 93c17583ced5fdc8 --prove proof/ --home researcher/
    """
    with open_client(home, invitation) as client:
        client.sync()
        bad = _print_results(client, task, as_json, out, only, prove)
    if only and bad:
        sys.exit(EXIT_DOMAIN)


@click.command()
@click.option("--mine", is_flag=True, help="Only tasks this home published.")
@client_options
def tasks(mine: bool, home: str | None, invitation: str | None, as_json: bool) -> None:
    """List the collaboration's tasks and each target's progress.

    \b
    Example:
      ptm tasks --mine --home researcher/
    """
    with open_client(home, invitation) as client:
        views = client.tasks(mine=mine)
    if as_json:
        click.echo(json.dumps([v.to_dict() for v in views], indent=2))
        return
    if not views:
        click.echo("no tasks yet")
    for view in views:
        flag = " (cancelled)" if view.cancelled else ""
        counts = ", ".join(f"{n} {s}" for s, n in sorted(view.counts.items()))
        click.echo(
            f"{view.id[:16]}  entry {view.index:<6} {task_name(view.algorithm, view.image):<30} "
            f"by {view.publisher}: {counts}{flag}"
        )


def task_name(algorithm: str | None, image: str) -> str:
    """What ran, readably: the task's algorithm name and its image's repository without
    the registry, with the digest's first 12 hex digits (``summary/v1 (ptm/summary@1a2b…)``)
    — never the bare tail of a digest."""
    repo, _, digest = image.partition("@")
    first, slash, rest = repo.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        repo = rest  # drop the registry host: the same everywhere in one collaboration
    short = f"{repo}@{digest.removeprefix('sha256:')[:12]}" if digest else repo
    return f"{algorithm} ({short})" if algorithm else short


@click.command()
@click.argument("task")
@click.option("--reason", default=None, help="Why (recorded in the log).")
@client_options
def cancel(
    task: str, reason: str | None, home: str | None, invitation: str | None, as_json: bool
) -> None:
    """Cancel a task you published: sites that have not answered skip or stop it.

    A site that has not started answers `cancelled` without running anything; a running
    container is stopped and the site answers `cancelled`; answers already given stay.

    \b
    Example:
      ptm cancel 93c17583ced5fdc8 --reason "wrong covariates" --home researcher/
    """
    with open_client(home, invitation) as client:
        view = client.cancel(task, reason)
    if as_json:
        click.echo(json.dumps(view.to_dict(), indent=2))
    else:
        click.echo(f"cancelled task {view.id}; {_progress_line(view)}")
