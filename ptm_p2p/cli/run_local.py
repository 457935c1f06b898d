"""``ptm run-local``: run an algorithm image on local files in exactly the sandbox a site
uses (no ledger, no policy, no registry): an algorithm author's check before publishing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ptm_p2p.cli.common import file_option, folder_option, json_option, positive_number_option
from ptm_p2p.errors import PolicyError


def _parse_data(values: tuple[str, ...]) -> dict[str, Path]:
    data: dict[str, Path] = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep or not label or not path:
            raise click.BadParameter(f"{value!r}: expected LABEL=PATH", param_hint="--data")
        data[label] = Path(path)
    return data


@click.command("run-local")
@click.argument("image")
@click.option(
    "--data",
    "data",
    multiple=True,
    metavar="LABEL=PATH",
    help="Mount PATH (file or folder) read-only at /ptm/data/LABEL. Repeatable.",
)
@file_option(
    "--input",
    "input_file",
    exists=True,
    as_path=True,
    help="Task input file (JSON), mounted at /ptm/input.",
)
@folder_option(
    "--out", "out_dir", as_path=True, required=True, help="Folder to copy the output files into."
)
@click.option(
    "--timeout", type=float, default=600.0, show_default=True, help="Wall-clock limit in seconds."
)
@click.option("--memory", default="512m", show_default=True, help="Memory limit.")
@click.option(
    "--min-group-size",
    type=int,
    default=5,
    show_default=True,
    help="PTM_MIN_GROUP_SIZE given to the algorithm.",
)
@positive_number_option(
    "--time-resolution",
    help="Turn disclosure control on with this time lattice (PTM_TIME_RESOLUTION), as a "
    "site's [policy] disclosure_control = true does; default off (docs/privacy.md).",
)
@json_option("Print the result record as JSON.")
def run_local_cmd(
    image: str,
    data: tuple[str, ...],
    input_file: Path | None,
    out_dir: Path,
    timeout: float,
    memory: str,
    min_group_size: int,
    time_resolution: float | None,
    as_json: bool,
) -> None:
    """Run algorithm IMAGE locally in exactly the sandbox a site uses.

    IMAGE is a local tag or id (no policy, no registry). The container gets no network,
    a read-only root, user 65534, memory/CPU/pid limits, your data read-only and the input
    file; the files it writes to /ptm/output are copied to --out.

    \b
    Example:
      echo '{"data": "table"}' > params.json
      ptm run-local 127.0.0.1:5000/ptm/summary:latest \\
          --data table=patients.csv --input params.json --out result/
    """
    if not image.strip():
        raise click.BadParameter(
            "no image given: name a local image by tag (REPOSITORY:TAG) or id, e.g. "
            "127.0.0.1:5000/ptm/summary:latest (`docker images` lists them)",
            param_hint="IMAGE",
        )
    from ptm_p2p.executor import Limits, run_local
    from ptm_p2p.executor.limits import parse_size

    client = _docker()
    try:
        limits = Limits(timeout_s=timeout, memory_bytes=parse_size(memory, "--memory"))
        limits.validate("--timeout/--memory")
    except PolicyError as exc:
        raise click.BadParameter(str(exc)) from exc
    input_bytes = input_file.read_bytes() if input_file else b""
    result = run_local(
        client,
        image,
        _parse_data(data),
        input_bytes,
        limits,
        min_group_size,
        time_resolution=time_resolution,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for rel, content in result.files.items():
        target = out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    if as_json:
        record = result.to_dict()
        record["out_dir"] = str(out_dir)
        click.echo(json.dumps(record, indent=2))
    else:
        _print_result(result, out_dir)
    if not result.ok:
        sys.exit(1)


def _docker() -> Any:
    """The local Docker engine's client; ``ExecutorError`` naming `ptm dev up` if none answers."""
    import docker

    from ptm_p2p.errors import ExecutorError

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        raise ExecutorError(f"no Docker engine answers ({exc}); run `ptm dev up`") from exc
    return client


def _print_result(result: Any, out_dir: Path) -> None:
    """The run's record as text; the container's logs on stderr."""
    click.echo(f"status     {result.status}" + (f" ({result.reason})" if result.reason else ""))
    click.echo(f"exit code  {result.exit_code}")
    click.echo(f"image      {result.digest or result.image_id}")
    click.echo(f"output     {len(result.files)} file(s), {result.output_bytes} bytes in {out_dir}")
    click.echo(
        f"logs       {result.log_bytes} bytes" + (" (truncated)" if result.logs_truncated else "")
    )
    t = result.timings
    click.echo(f"timings    total {t.total_s:.2f} s (run {t.run_s:.2f} s)")
    if result.logs:
        sys.stderr.write(result.logs.decode("utf-8", "replace"))


def register(main: click.Group) -> None:
    """Add ``ptm run-local`` to the ``ptm`` group."""
    main.add_command(run_local_cmd)
