"""Helpers for algorithm images: read the input, find data by label, write the output.

Standard library only: this file is copied into algorithm images (as
``/opt/ptm/ptm_p2p/algorithm.py``), where the rest of ptm_p2p is not installed. It follows
the algorithm contract of docs/executor.md:

* ``/ptm/input`` (``$PTM_INPUT``): the task's input, JSON, read-only;
* ``/ptm/data/<label>`` (``$PTM_DATA_DIR``): each data source the task asked for, read-only,
  a file or a folder;
* ``/ptm/output/`` (``$PTM_OUTPUT``): the only writable folder besides a small ``/tmp``; the
  result is ``output.json`` in it (``$PTM_OUTPUT_FILE``);
* ``$PTM_MIN_GROUP_SIZE``: the smallest group the site allows an aggregate to report;
* exit codes: 0 with the result, 2 with ``{"error": ...}`` (``AlgorithmError``: the task
  cannot be computed), 3 with ``{"refused": ...}`` (``AlgorithmRefusal``: the site's data
  may not be summarised, e.g. too few patients; the site records the run as ``refused``).

Example ``main.py`` of an image::

    from ptm_p2p import algorithm

    params = algorithm.read_input()
    path = algorithm.data_file(params.get("data", "table"), suffix=".csv")
    algorithm.write_output({"rows": sum(1 for _ in open(path)) - 1})
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_MIN_GROUP_SIZE = 5


EXIT_ERROR = 2  # the output is {"error": message}
EXIT_REFUSED = 3  # the output is {"refused": reason}; the site records status "refused"


class AlgorithmError(Exception):
    """The task cannot be computed (bad input, missing data, too few rows)."""


class AlgorithmRefusal(AlgorithmError):
    """The site's data may not be summarised for this task (e.g. fewer patients or events
    than the site's minimum group size): the algorithm declines rather than fails."""


def input_path() -> Path:
    return Path(os.environ.get("PTM_INPUT", "/ptm/input"))


def read_input() -> Any:
    """The task input parsed as JSON; an empty input is ``{}``."""
    raw = input_path().read_bytes()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise AlgorithmError(f"the task input is not JSON: {exc}") from exc


def data_dir() -> Path:
    return Path(os.environ.get("PTM_DATA_DIR", "/ptm/data"))


def data_labels() -> list[str]:
    """Labels of the data sources mounted for this task."""
    listed = os.environ.get("PTM_DATA_LABELS")
    if listed is not None:
        return [label for label in listed.split(",") if label]
    folder = data_dir()
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def data_path(label: str) -> Path:
    """Where the data source ``label`` is mounted (a file or a folder)."""
    path = data_dir() / label
    if "/" in label or label in ("", ".", "..") or not path.exists():
        raise AlgorithmError(
            f"no data source {label!r} in this task (available: {', '.join(data_labels())})"
        )
    return path


def data_file(label: str, suffix: str = "") -> Path:
    """The file of data source ``label``; for a folder, its only file ending in ``suffix``."""
    path = data_path(label)
    if path.is_file():
        return path
    matches = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(suffix))
    if len(matches) != 1:
        raise AlgorithmError(
            f"data source {label!r} is a folder with {len(matches)} files ending in "
            f"{suffix!r}; name the file in the task input"
        )
    return matches[0]


def min_group_size() -> int:
    try:
        return max(1, int(os.environ.get("PTM_MIN_GROUP_SIZE", DEFAULT_MIN_GROUP_SIZE)))
    except ValueError:
        return DEFAULT_MIN_GROUP_SIZE


def time_resolution() -> float | None:
    """The site's time lattice when its policy turns disclosure control on
    (``PTM_TIME_RESOLUTION``, a positive number); None: no control (exact answers)."""
    try:
        value = float(os.environ.get("PTM_TIME_RESOLUTION", "0") or "0")
    except ValueError:
        return None
    return value if value > 0 and value == value and value != float("inf") else None


def output_dir() -> Path:
    return Path(os.environ.get("PTM_OUTPUT", "/ptm/output"))


def output_file() -> Path:
    return Path(os.environ.get("PTM_OUTPUT_FILE", str(output_dir() / "output.json")))


def write_output(value: Any) -> Path:
    """Write the result as JSON to the output file (compact, sorted keys)."""
    path = output_file()
    path.write_text(json.dumps(value, sort_keys=True, separators=(",", ":")))
    return path


def evaluate(compute: Any, params: Any) -> tuple[Any, int]:
    """``compute(params)`` as (output, exit code), the way ``main`` reports it.

    A refusal is ``({"refused": reason}, 3)``, another ``AlgorithmError`` is
    ``({"error": message}, 2)``, success is ``(result, 0)``. In-process runners (local mode
    for algorithm authors) call this so they see exactly what a container would write.
    """
    try:
        return compute(params), 0
    except AlgorithmRefusal as exc:
        return {"refused": str(exc)}, EXIT_REFUSED
    except AlgorithmError as exc:
        return {"error": str(exc)}, EXIT_ERROR


def main(compute: Any) -> None:
    """Run ``compute(params) -> result`` with the contract's input and output.

    An ``AlgorithmRefusal`` becomes ``{"refused": reason}`` and exit code 3 (the site
    records the run as ``refused``); another ``AlgorithmError`` becomes ``{"error": message}``
    and exit code 2, so the researcher sees why a site could not compute; anything else is a
    crash (exit 1).
    """
    try:
        params = read_input()
    except AlgorithmError as exc:
        output, code = {"error": str(exc)}, EXIT_ERROR
    else:
        output, code = evaluate(compute, params)
    write_output(output)
    if code:
        label = "refused" if code == EXIT_REFUSED else "error"
        print(f"{label}: {next(iter(output.values()))}", file=sys.stderr)
        sys.exit(code)
