"""CLI commands for ledger files: ``ptm audit`` replays one offline, ``ptm ledger simulate``
writes a realistic signed one to learn on.

Reports go to stdout (``--json`` for machines); the progress bar goes to stderr, so
``ptm audit L --json > report.json`` stays clean.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ptm_p2p.errors import StoreError
from ptm_p2p.home import LEDGER_FILE

if TYPE_CHECKING:  # imported where used: `ptm --help` must not pay for the ledger and rich
    from ptm_p2p.ledger.audit import AuditReport
    from ptm_p2p.ledger.store import SqliteStore

# Replays shorter than this finish before a bar would be readable.
PROGRESS_THRESHOLD = 20_000
SHOWN_PROBLEMS = 20


@contextmanager
def _progress(label: str, total: int, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr, or a no-op for short jobs and non-terminals."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    if quiet or total < PROGRESS_THRESHOLD or not console.is_terminal:
        yield lambda done, total: None
        return
    columns = (
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("entries"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _ledger_path(path: Path) -> Path:
    """A ledger file, or a home folder holding one."""
    return path / LEDGER_FILE if path.is_dir() else path


def _open_existing(path: Path) -> SqliteStore:
    from ptm_p2p.ledger.store import SqliteStore

    if not path.is_file():
        raise StoreError(
            f"{path}: no such ledger file; give the path of a ledger copy, e.g. "
            "HOME/ledger.db, or make one with `ptm ledger simulate`"
        )
    # Read-only: an audit must never change the file it is judging.
    return SqliteStore(path, read_only=True)


@click.command("audit")
@click.argument("ledger", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def audit_command(ledger: Path, as_json: bool, quiet: bool) -> None:
    """Replay a ledger copy offline and report everything found wrong.

    Checks every entry (canonical bytes, signature, per-author chain, membership and task
    rules), recomputes the Merkle tree, checks every stored checkpoint against it and each
    consecutive pair for consistency, and lists members, tasks and their results. Exit 0
    when all is well, 1 when anything is wrong (each problem names the entry and author).
    LEDGER is a ledger file or a home folder. The file is opened read-only; to audit the
    ledger of a running daemon, snapshot it first with `ptm ledger copy`.

    \b
    Examples:
      ptm audit ~/.ptm/hospital-a
      ptm ledger copy ~/.ptm/hospital-a /tmp/a.db && ptm audit /tmp/a.db
      ptm ledger simulate /tmp/l.db --entries 5000 --sites 4 && ptm audit /tmp/l.db --json
    """
    from ptm_p2p.ledger.audit import audit, default_workers

    ledger = _ledger_path(ledger)
    store = _open_existing(ledger)
    try:
        damage = store.check_file()
        if damage:
            raise StoreError(
                f"{ledger}: the SQLite file itself is damaged "
                f"({'; '.join(' '.join(d.split()) for d in damage[:3])}); "
                "nothing in it can be trusted — fetch a fresh copy from the hub or a site"
            )
        with _progress("auditing", store.size(), quiet or as_json) as progress:
            workers = default_workers(store.size(), os.cpu_count())
            report = audit(store, progress, workers)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(render_report(ledger, report))
    raise SystemExit(0 if report.ok else 1)


def render_report(path: Path, report: AuditReport) -> str:
    """The human-readable audit report."""
    state = report.state
    lines = [f"ledger {path}: {report.size} entries, origin {state.origin or '(no genesis)'}"]
    lines.append("")
    lines.append(
        "entries by kind:   " + ", ".join(f"{k} {n}" for k, n in report.kind_counts.items())
    )
    lines.append(
        "entries by author: " + ", ".join(f"{who} {n}" for who, n in report.author_counts().items())
    )
    lines.append("")
    lines.append(f"members ({len(state.members)}):")
    for m in state.members.values():
        status = f"revoked at entry {m.revoked_at}" if m.revoked_at is not None else "active"
        lines.append(
            f"  {m.org:<20} {m.role:<11} {m.key.hex()[:16]}…  admitted at entry "
            f"{m.admitted_at}, {status}"
        )
    tasks = list(state.tasks.values())
    done = sum(1 for t in tasks if t.done)
    lines.append("")
    lines.append(f"tasks ({len(tasks)}, {done} answered by every target):")
    shown = tasks if len(tasks) <= 20 else tasks[:10] + tasks[-10:]
    for t in shown:
        if len(tasks) > 20 and t is tasks[-10]:
            lines.append(f"  … {len(tasks) - 20} more (use --json for all)")
        answers = (
            ", ".join(f"{state.describe(site)}={r.status}" for site, r in t.results.items())
            or "no answers yet"
        )
        pending = f"; waiting for {len(t.pending)}" if t.pending else ""
        cancelled = f"; cancelled at entry {t.cancelled_at}" if t.cancelled_at is not None else ""
        lines.append(
            f"  entry {t.index:<7} {t.image_digest[:19]}… by "
            f"{state.describe(t.publisher)} → {len(t.targets)} sites: {answers}{pending}"
            f"{cancelled}"
        )
    lines.append("")
    good = sum(1 for c in report.checkpoints if c.ok)
    lines.append(f"checkpoints ({len(report.checkpoints)}, {good} verified):")
    # Every bad checkpoint, and the last few good ones for context.
    recent = report.checkpoints[-5:]
    listed = [c for c in report.checkpoints if not c.ok and c not in recent] + recent
    for c in listed:
        mark = "ok " if c.ok else "BAD"
        lines.append(
            f"  {mark} size {c.size:<8} root {c.root[:16]}…  cosigned by "
            f"{len(c.cosigners)}: {', '.join(c.cosigners) or '-'}"
        )
    if len(report.checkpoints) > 5:
        lines.append(f"  (showing the last 5; all {len(report.checkpoints)} were checked)")
    lines.append("")
    if report.evidence:
        lines.append(f"evidence kept in this copy ({len(report.evidence)}):")
        lines.extend(f"  {e}" for e in report.evidence)
    if report.problems:
        lines.append(f"PROBLEMS ({len(report.problems) + report.problems_omitted}):")
        # The first problems are the causes; later ones are mostly their consequences
        # (an author's chain broken by one forged entry), so the terminal shows a screenful.
        lines.extend(f"  {p.message}" for p in report.problems[:SHOWN_PROBLEMS])
        hidden = len(report.problems) - SHOWN_PROBLEMS + report.problems_omitted
        if hidden > 0:
            lines.append(
                f"  … and {hidden} more (--json lists the first {len(report.problems)}; "
                "the first problems are the causes)"
            )
        lines.append("result: FAILED — this copy cannot be trusted as it is")
    elif report.evidence:
        lines.append("result: FAILED — the log is intact but holds evidence of misbehaviour")
    else:
        lines.append("result: ok — every entry, chain, rule and checkpoint verified")
    return "\n".join(lines)


@click.group("ledger")
def ledger_group() -> None:
    """Work with ledger files: snapshot a live one, or simulate one to learn on.

    See also `ptm audit`, which replays and verifies a ledger file.

    \b
    Examples:
      ptm ledger copy ~/.ptm/hospital-a /tmp/a.db && ptm audit /tmp/a.db
      ptm ledger simulate /tmp/demo.db --entries 20000 --sites 5
    """


@ledger_group.command("copy")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
def copy_command(source: Path, target: Path) -> None:
    """Snapshot a ledger (a file or a home folder) into a new file TARGET.

    Safe while a hub or site daemon is writing to it: SQLite's online backup copies a
    consistent state, including what is still in the -wal file that a plain `cp` misses.

    \b
    Example:
      ptm ledger copy ~/.ptm/hospital-a /tmp/hospital-a.db && ptm audit /tmp/hospital-a.db
    """
    source = _ledger_path(source)
    store = _open_existing(source)
    try:
        store.copy_to(target)
        size = store.size()
    finally:
        store.close()
    click.echo(f"copied {source} ({size} entries) to {target}")


@ledger_group.command("check-proof")
@click.argument("proof", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--ledger",
    "ledger",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="A ledger copy (file or home) that must hold each result entry at its index.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
def check_proof_command(proof: Path, ledger: Path | None, as_json: bool) -> None:
    """Check a proof folder written by `ptm results --prove`: needs no key.

    For each site: the signed result entry verifies and is a format-2 result by that
    site, and SHA-256("ptm/commit/v2\\n" || nonce || output) is the commitment it
    signed. With --ledger (audit that copy first with `ptm audit`), the log must also hold
    that very entry at the index the proof names. Exit 0 when every proof holds, else 1.

    \b
    Example:
      ptm ledger check-proof proof/ --ledger ~/.ptm/auditor
    """
    from ptm_p2p.ledger.proof import check_proof

    store = _open_existing(_ledger_path(ledger)) if ledger is not None else None
    try:
        verdicts = check_proof(proof, store)
    finally:
        if store is not None:
            store.close()
    if as_json:
        click.echo(json.dumps([v.__dict__ for v in verdicts], indent=2))
    else:
        for v in verdicts:
            click.echo(f"{v.site}: {'ok' if v.ok else 'FAILED'}: {v.detail}")
    raise SystemExit(0 if all(v.ok for v in verdicts) else 1)


@ledger_group.command("simulate")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--entries",
    "-n",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="Total number of entries to write.",
)
@click.option(
    "--sites",
    "-k",
    type=click.IntRange(1, 200),
    default=4,
    show_default=True,
    help="Number of hospital sites in the collaboration.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed for keys and choices (same seed, same keys and story).",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Entries between hub checkpoints.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def simulate_command(
    out: Path, entries: int, sites: int, seed: int, checkpoint_every: int, as_json: bool
) -> None:
    """Write a valid, realistic signed ledger to a new file OUT.

    A collaboration (admin, hub, SITES hospitals, researchers, an auditor) with tasks,
    sealed results, a revoked and replaced researcher, and hub checkpoints cosigned by every
    site. Safe to share: it holds no real data.

    \b
    Example:
      ptm ledger simulate /tmp/demo.db --entries 20000 --sites 5 --seed 7
      ptm audit /tmp/demo.db
    """
    from ptm_p2p.ledger.simulate import simulate
    from ptm_p2p.ledger.store import SqliteStore

    if out.exists():
        raise StoreError(f"{out} already exists; simulate writes a new file — pick another name")
    store = SqliteStore(out)
    try:
        with _progress("simulating", entries, as_json) as progress:
            summary = simulate(store, entries, sites, seed, checkpoint_every, progress)
    except BaseException:
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{out}{suffix}").unlink(missing_ok=True)
        raise
    store.close()
    data = {
        "ledger": str(out),
        "entries": summary.entries,
        "tasks": summary.tasks,
        "results": summary.results,
        "checkpoints": summary.checkpoints,
        "origin": summary.origin,
        "hub_key": summary.hub_key.hex(),
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(
            f"wrote {out}: {summary.entries} entries ({summary.tasks} tasks, "
            f"{summary.results} results), {summary.checkpoints} checkpoints, "
            f"origin {summary.origin}"
        )
        click.echo(f"next: ptm audit {out}")


def register(main: click.Group) -> None:
    """Add ``ptm audit`` and ``ptm ledger`` to the ``ptm`` group."""
    main.add_command(audit_command)
    main.add_command(ledger_group)
