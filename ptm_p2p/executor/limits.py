"""Resource limits of a task container, and the parsing of sizes like ``"512m"``.

A site's ``[policy.limits]`` table sets the maximum it grants; a task may ask for less
(a shorter timeout), never for more: ``Limits.narrowed`` takes the smaller of the two.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace
from typing import Any

from ptm_p2p.errors import PolicyError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.I)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
MAX_SIZE = 1024**4
MIN_CPUS = 0.01  # the engine refuses a smaller CPU quota at container creation
MAX_TIMEOUT_S = 7 * 24 * 3600.0  # the ledger's own bound on a task's timeout_s


def parse_size(value: Any, where: str) -> int:
    """Bytes from an int or a string such as ``"64m"``, ``"1.5GiB"`` (binary units)."""
    if isinstance(value, bool):
        raise PolicyError(f"{where}: expected a size such as 512m, got {value!r}")
    if isinstance(value, int):
        number: float = value
    elif isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise PolicyError(f"{where}: {value!r} is not a size; write e.g. 512m, 2g or 1048576")
        number = float(match.group(1)) * _UNITS[match.group(2).lower()]
    else:
        raise PolicyError(f"{where}: expected a size such as 512m, got {value!r}")
    # Bounded so that no engine call can overflow (a TOML integer may be huge, a float inf).
    if not 0 < number <= MAX_SIZE:
        raise PolicyError(f"{where}: a size must be positive and at most 1t, got {value!r}")
    return int(number)


def _positive(value: Any, where: str, kind: type = float) -> Any:
    # TOML has inf and nan: both would reach the engine (or a socket timeout) and crash there.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise PolicyError(f"{where}: expected a positive number, got {value!r}")
    if kind is int and not isinstance(value, int):
        raise PolicyError(f"{where}: expected a whole number, got {value!r}")
    return kind(value)


@dataclass(frozen=True)
class Limits:
    """What one task container may use. Every field is enforced by the kernel or the engine,
    except ``output_bytes`` and ``log_bytes`` which the executor enforces while collecting."""

    memory_bytes: int = 512 * 1024**2  # memory and memory+swap: no swapping around the cap
    cpus: float = 1.0  # nano_cpus = cpus * 1e9
    pids: int = 64  # small: a fork bomb stops here, and the machine survives
    timeout_s: float = 600.0  # wall clock from start; the container is killed after it
    output_bytes: int = 1024**3  # total size of /ptm/output (outputs over 64 KiB travel as blobs)
    log_bytes: int = 1024**2  # stdout + stderr kept; the rest is counted and dropped
    tmp_bytes: int = 64 * 1024**2  # /tmp tmpfs

    KEYS = ("memory", "cpus", "pids", "timeout", "output", "logs", "tmp")

    @classmethod
    def from_config(cls, table: dict[str, Any], where: str = "[policy.limits]") -> Limits:
        if not isinstance(table, dict):
            raise PolicyError(f"{where} must be a table")
        unknown = sorted(set(table) - set(cls.KEYS))
        if unknown:
            raise PolicyError(
                f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(cls.KEYS)}"
            )
        d = cls()
        limits = cls(
            memory_bytes=parse_size(table.get("memory", d.memory_bytes), f"{where} memory"),
            cpus=_positive(table.get("cpus", d.cpus), f"{where} cpus"),
            pids=_positive(table.get("pids", d.pids), f"{where} pids", int),
            timeout_s=_positive(table.get("timeout", d.timeout_s), f"{where} timeout"),
            output_bytes=parse_size(table.get("output", d.output_bytes), f"{where} output"),
            log_bytes=parse_size(table.get("logs", d.log_bytes), f"{where} logs"),
            tmp_bytes=parse_size(table.get("tmp", d.tmp_bytes), f"{where} tmp"),
        )
        limits.validate(where)
        return limits

    def validate(self, where: str = "limits") -> None:
        # Below these the Python runtime of an algorithm image cannot even start, which
        # would show up as a confusing failure of every task.
        if self.memory_bytes < 16 * 1024**2:
            raise PolicyError(f"{where}: memory must be at least 16m, got {self.memory_bytes}")
        if self.pids < 4:
            raise PolicyError(f"{where}: pids must be at least 4, got {self.pids}")
        if not MIN_CPUS <= self.cpus <= 1024:
            raise PolicyError(f"{where}: cpus must be between {MIN_CPUS} and 1024, got {self.cpus}")
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise PolicyError(
                f"{where}: timeout must be > 0 and at most {MAX_TIMEOUT_S:g} s, "
                f"got {self.timeout_s}"
            )

    def narrowed(
        self,
        timeout_s: float | None = None,
        memory_bytes: int | None = None,
        cpus: float | None = None,
    ) -> Limits:
        """These limits, with the task's own smaller timeout, memory or CPUs where it asks.

        A task may only narrow: a larger request is capped at the site's maximum. The
        values come from a signed task entry, so they are type-checked here (a string or
        a NaN must not reach the engine or a socket timeout).
        """
        narrowed = self
        if timeout_s is not None:
            value = _positive(timeout_s, "the task's timeout_s")
            narrowed = replace(narrowed, timeout_s=min(narrowed.timeout_s, value))
        if memory_bytes is not None:
            value = _positive(memory_bytes, "the task's memory", int)
            narrowed = replace(narrowed, memory_bytes=min(narrowed.memory_bytes, value))
        if cpus is not None:
            value = _positive(cpus, "the task's cpus")
            narrowed = replace(narrowed, cpus=min(narrowed.cpus, value))
        narrowed.validate("the task's limits")
        return narrowed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
