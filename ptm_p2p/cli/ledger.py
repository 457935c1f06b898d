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
from typing import TYPE_CHECKING, Any

import click

from ptm_p2p.cli.common import folder_option, json_option
from ptm_p2p.errors import StoreError
from ptm_p2p.ledger_copy import ledger_file, open_read_only, read_only_copy

if TYPE_CHECKING:  # imported where used: `ptm --help` must not pay for the ledger and rich
    from ptm_p2p.ledger.entry import Entry

# Replays shorter than this finish before a bar would be readable.
PROGRESS_THRESHOLD = 20_000


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


SECTIONS = (
    "overview",
    "problems",
    "studies",
    "tasks",
    "researchers",
    "sites",
    "data",
    "members",
    "checkpoints",
    "all",
)


@click.command("audit")
@click.argument("ledger", type=click.Path(path_type=Path))
@json_option("Print the complete report as JSON.")
@folder_option(
    "--csv",
    "csv_dir",
    as_path=True,
    help="Also write the report as CSV files (tasks, answers, studies, …) into this folder.",
)
@click.option(
    "--section",
    "-s",
    type=click.Choice(SECTIONS),
    default="overview",
    show_default=True,
    help="Which part of the report to print as text (every line of it).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def audit_command(
    ledger: Path, as_json: bool, csv_dir: Path | None, section: str, quiet: bool
) -> None:
    """Replay a ledger copy offline and report what happened and everything found wrong.

    Checks every entry (canonical bytes, signature, per-author chain, membership and task
    rules), recomputes the Merkle tree, checks every stored checkpoint against it and each
    consecutive pair for consistency. Then reports who asked what, where, on which data,
    when and what each site answered and why: per study (the rounds of one fit grouped),
    per task, researcher, site and data label, and each member's timeline. Exit 0 when all
    is well, 1 when anything is wrong (each problem names the entry and author, its
    consequences counted under it).

    The text shows an overview that fits a screen; `--section tasks` (or studies,
    researchers, sites, data, members, checkpoints, problems, all) prints one part in full.
    `--json` is the complete report; `--csv DIR` writes spreadsheet tables. LEDGER is a
    ledger file or a home folder; it is opened read-only; to audit the ledger of a running
    daemon, snapshot it first with `ptm ledger copy`.

    \b
    Examples:
      ptm audit ~/.ptm/hospital-a
      ptm audit /tmp/a.db --section sites
      ptm audit /tmp/a.db --csv /tmp/audit-csv
      ptm ledger simulate /tmp/l.db --entries 5000 --sites 4 && ptm audit /tmp/l.db --json
    """
    from ptm_p2p.ledger.audit import audit, default_workers
    from ptm_p2p.ledger.report import build_report

    home = ledger if ledger.is_dir() else None
    ledger = ledger_file(ledger)
    store = open_read_only(ledger)
    try:
        damage = store.check_file()
        if damage:
            raise StoreError(
                f"{ledger}: the SQLite file itself is damaged "
                f"({'; '.join(' '.join(d.split()) for d in damage[:3])}); "
                "nothing in it can be trusted — fetch a fresh copy from the hub or a site"
            )
        if home is not None and store.size() == 0:
            raise StoreError(_empty_home_message(home))
        with _progress("auditing", store.size(), quiet or as_json) as progress:
            workers = default_workers(store.size(), os.cpu_count())
            accepted: list[tuple[int, bytes | Entry]] = []
            report = audit(store, progress, workers, lambda i, e: accepted.append((i, e)))
        data = build_report(report, accepted, pardoned=_pardons(home))
    finally:
        store.close()
    data["ledger"] = str(ledger)
    if csv_dir is not None:
        written = write_csv(data, csv_dir)
        if not as_json:
            click.echo(
                f"wrote {len(written)} CSV files to {csv_dir}: {', '.join(written)}", err=True
            )
    if as_json:
        import msgspec

        # msgspec: a 100,000-entry report is ~130 MB of JSON, which json.dumps takes ~10 s
        # to indent; msgspec writes the same text in well under a second.
        click.echo(msgspec.json.format(msgspec.json.encode(data), indent=2).decode())
    else:
        text = render_report(ledger, data, section)
        _page(text)
    raise SystemExit(0 if report.ok else 1)


def _empty_home_message(home: Path) -> str:
    return (
        f"{home} is a home whose ledger holds no entries: this home has never replicated "
        "the log. An admin's home never does (`ptm collab` signs memberships and sends them "
        "to the hub, it keeps no copy), nor does a home before its daemon or client first "
        "synced. Audit a home that replicates the log instead: a site's or the hub's "
        "(`ptm ledger copy SITE_HOME /tmp/l.db && ptm audit /tmp/l.db`), or an admitted "
        "auditor's or researcher's home after `ptm tasks --home HOME` synced it"
    )


def _pardons(home: Path | None) -> list[bytes]:
    """Keys a hub's operator pardoned (a hub home's pardoned.json), for the members' timeline."""
    from ptm_p2p.home_files import load_pardons  # [] when the home keeps no such file

    return [] if home is None else load_pardons(home)


def _page(text: str) -> None:
    """Echo, through a pager when the text is longer than an interactive terminal."""
    import shutil
    import sys

    if sys.stdout.isatty() and text.count("\n") + 2 > shutil.get_terminal_size().lines:
        click.echo_via_pager(text + "\n")
    else:
        click.echo(text)


def write_csv(data: dict[str, Any], folder: Path) -> list[str]:
    """Write each table of the report to FOLDER/<name>.csv; return the file names."""
    import csv

    from ptm_p2p.ledger.report import csv_tables

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (header, rows) in csv_tables(data).items():
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        written.append(f"{name}.csv")
    return written


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def _short(hexkey: str) -> str:
    return hexkey[:16] + "…"


OVERVIEW_ROWS = 12


def render_report(path: Path, data: dict[str, Any], section: str = "overview") -> str:
    """The human-readable audit report: an overview, or one section in full."""
    lines = [
        f"ledger {path}: {data['size']} entries, origin {data['origin'] or '(no genesis)'}, "
        f"{data['first_time'] or '-'} … {data['last_time'] or '-'} (UTC)"
    ]
    full = section != "overview"
    wanted = SECTIONS[1:-1] if section in ("overview", "all") else (section,)
    if section == "overview":
        lines.append("entries by kind:   " + _counts(data["entries_by_kind"]))
        lines.append("entries by author: " + _counts(data["entries_by_author"]))
    for name in wanted:
        lines.append("")
        lines.extend(_SECTION_RENDERERS[name](data, full))
    if not full:
        lines.append("")
        lines.append(
            "every line of a part: --section studies|tasks|researchers|sites|data|members|"
            "checkpoints|problems|all; everything: --json; spreadsheets: --csv DIR"
        )
    lines.append(_verdict(data))
    return "\n".join(lines)


def _verdict(data: dict[str, Any]) -> str:
    if data["problems"]:
        return "result: FAILED — this copy cannot be trusted as it is"
    if data["evidence"]:
        return "result: FAILED — the log is intact but holds evidence of misbehaviour"
    return "result: ok — every entry, chain, rule and checkpoint verified"


def _more(shown: int, total: int, section: str, full: bool) -> list[str]:
    if full or total <= shown:
        return []
    return [f"  ({total - shown} more: ptm audit LEDGER --section {section})"]


def _problems(data: dict[str, Any], full: bool) -> list[str]:
    causes = data["causes"]
    lines = []
    for e in data["evidence"]:
        lines.append(f"  evidence: {e}")
    if not causes:
        return ["PROBLEMS: none", *lines]
    total = len(causes) + data["problems_omitted"]
    lines.insert(0, f"PROBLEMS ({total} causes; consequences counted under each):")
    shown = causes if full else causes[:OVERVIEW_ROWS]
    for c in shown:
        lines.append(f"  {c['message']}")
        if c["consequence_count"]:
            lines.append(f"      → {c['consequence_count']} consequences of it:")
            lines.extend(f"        {m}" for m in c["consequences"])
    lines.extend(_more(len(shown), len(causes), "problems", full))
    if data["problems_omitted"]:
        lines.append(f"  (and {data['problems_omitted']} more not kept: fix the first ones first)")
    return lines


def _studies(data: dict[str, Any], full: bool) -> list[str]:
    studies = data["studies"]
    lines = [f"studies ({len(studies)}; {data['study_rule']}):"]
    shown = studies if full else studies[-8:]
    for s in shown:
        lines.append(
            f"  {s['study'][:16]}  {s['family']:<18} for {s['publisher']:<24} "
            f"{s['rounds']} round(s), {s['first_time']} … {s['last_time']}"
        )
        lines.append(
            f"      images {', '.join(s['images'])}; data {', '.join(s['data']) or '-'}; "
            f"sites {', '.join(s['sites'])}; answers: {_counts(s['statuses'])}"
        )
        not_ok = s["not_ok"] if full else []
        for n in not_ok:
            lines.append(
                f"      round {n['round']} at {n['site']}: {n['status']}: "
                f"{n['reason'] or 'no reason given'}"
            )
        if len(not_ok) < len(s["not_ok"]):
            lines.append(
                f"      ({len(s['not_ok']) - len(not_ok)} more answers not ok: --section studies)"
            )
    if not full and len(studies) > len(shown):
        lines.append(f"  (the last {len(shown)} shown; all {len(studies)}: --section studies)")
    return lines


def _tasks(data: dict[str, Any], full: bool) -> list[str]:
    tasks = data["tasks"]
    done = sum(1 for t in tasks if not t["pending"])
    lines = [f"tasks ({len(tasks)}, {done} answered by every target):"]
    shown = tasks if full else tasks[-5:]
    for t in shown:
        lines.append(
            f"  entry {t['index']:<7} {t['time']}  {t['task'][:16]}  {t['algorithm_name']} "
            f"({t['image_repository']}, {t['image_digest'][:19]}…) by {t['publisher']}"
            f"{' round ' + str(t['round']) if t.get('round') else ''}"
            + ("" if full else f": {_counts(_status_counts(t))}")
        )
        if not full:
            continue
        lines.append(f"      data {', '.join(t['data']) or '-'}; targets {len(t['target_sites'])}")
        for a in t["answers"]:
            why = f": {a['reason']}" if a["reason"] else ""
            lines.append(f"      {a['site']['name']:<26} {a['status']:<9} {a['time']}{why}")
        for p in t["pending"]:
            lines.append(f"      {p:<26} no answer yet")
        if t["cancelled"]:
            c = t["cancelled"]
            lines.append(
                f"      cancelled at entry {c['index']} ({c['time']}): {c['reason'] or '-'}"
            )
    if not full and len(tasks) > len(shown):
        lines.append(f"  (the last {len(shown)} shown; all {len(tasks)}: --section tasks)")
    return lines


def _status_counts(task: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in task["answers"]:
        counts[a["status"]] = counts.get(a["status"], 0) + 1
    if task["pending"]:
        counts["waiting"] = len(task["pending"])
    return counts


def _researchers(data: dict[str, Any], full: bool) -> list[str]:
    lines = [f"researchers ({len(data['researchers'])}):"]
    for r in data["researchers"]:
        lines.append(
            f"  {r['name']:<26} {r['tasks']} tasks in {r['studies']} studies, "
            f"{r['first_time']} … {r['last_time']}; answers: {_counts(r['statuses'])}"
        )
        lines.append(
            f"      algorithms {', '.join(r['algorithms'])}; data {', '.join(r['data']) or '-'}; "
            f"sites {', '.join(r['sites'])}"
        )
    return lines


def _sites(data: dict[str, Any], full: bool) -> list[str]:
    lines = [f"sites ({len(data['sites'])}):"]
    for s in data["sites"]:
        lines.append(
            f"  {s['name']:<26} targeted by {s['targeted']} tasks, answered {s['answered']}: "
            f"{_counts(s['statuses'])}; ran {', '.join(s['ran']) or '-'}"
        )
        not_ok = s["not_ok"] if full else s["not_ok"][-2:]
        for n in not_ok:
            lines.append(
                f"      {n['status']:<8} task {n['task'][:16]} "
                f"({n['algorithm']}, {n['publisher']}) "
                f"{n['time']}: {n['reason'] or 'no reason given'}"
            )
        if len(not_ok) < len(s["not_ok"]):
            lines.append(f"      ({len(s['not_ok']) - len(not_ok)} more: --section sites)")
    return lines


def _data(data: dict[str, Any], full: bool) -> list[str]:
    lines = [f"data sources ({len(data['data_sources'])}):"]
    for d in data["data_sources"]:
        lines.append(
            f"  {d['label']:<20} {d['tasks']} tasks by {', '.join(d['researchers'])} at "
            f"{len(d['sites'])} sites; answers: {_counts(d['statuses'])}"
        )
    return lines


def _members(data: dict[str, Any], full: bool) -> list[str]:
    members = data["members"]
    lines = [f"members ({len(members)}):"]
    shown = (
        members
        if full or len(members) <= OVERVIEW_ROWS
        else [m for m in members if m["revoked_at"] is not None or m["role"] != "auditor"][
            :OVERVIEW_ROWS
        ]
    )
    for m in shown:
        events = "; ".join(
            f"{e['event']} at entry {e['index']} {e['time'] or ''}".rstrip()
            + (f" ({e['reason']})" if e["reason"] and e["event"] != "pardoned" else "")
            if e["index"] is not None
            else e["event"]
            for e in m["timeline"]
        )
        lines.append(f"  {m['org']:<20} {m['role']:<11} {_short(m['key'])}  {events}")
    if len(shown) < len(members):
        lines.append(f"  ({len(members) - len(shown)} more: --section members)")
    lines.extend(f"  warning: {w}" for w in data["warnings"])
    return lines


def _checkpoints(data: dict[str, Any], full: bool) -> list[str]:
    cps = data["checkpoints"]
    good = sum(1 for c in cps if c["ok"])
    lines = [f"checkpoints ({len(cps)}, {good} verified):"]
    # Overview: every bad checkpoint, and the last few good ones for context.
    listed = cps if full else [c for c in cps[:-5] if not c["ok"]] + cps[-5:]
    for c in listed:
        mark = "ok " if c["ok"] else "BAD"
        lines.append(
            f"  {mark} size {c['size']:<8} root {c['root'][:16]}…  cosigned by "
            f"{len(c['cosigners'])}: {', '.join(c['cosigners']) or '-'}"
        )
    if len(listed) < len(cps):
        lines.append(f"  (all {len(cps)} were checked: --section checkpoints)")
    return lines


_SECTION_RENDERERS = {
    "problems": _problems,
    "studies": _studies,
    "tasks": _tasks,
    "researchers": _researchers,
    "sites": _sites,
    "data": _data,
    "members": _members,
    "checkpoints": _checkpoints,
}


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
    source = ledger_file(source)
    with read_only_copy(source) as store:
        store.copy_to(target)
        size = store.size()
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
@json_option("Print the verdicts as JSON.")
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

    store = open_read_only(ledger_file(ledger)) if ledger is not None else None
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
@json_option("Print the summary as JSON.")
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
