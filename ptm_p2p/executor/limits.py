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


def parse_size(value: Any, where: str) -> int:
    """Bytes from an int or a string such as ``"64m"``, ``"1.5GiB"`` (binary units)."""
    if isinstance(value, bool):
        raise PolicyError(f"{where}: expected a size such as 512m, got {value!r}")
    if isinstance(value, int):
        number = float(value)
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise PolicyError(f"{where}: {value!r} is not a size; write e.g. 512m, 2g or 1048576")
        number = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if number <= 0 or not math.isfinite(number):
        raise PolicyError(f"{where}: a size must be positive, got {value!r}")
    return int(number)


def _positive(value: Any, where: str, kind: type = float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
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
    output_bytes: int = 10 * 1024**2  # total size of /ptm/output
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

    def narrowed(self, timeout_s: float | None = None) -> Limits:
        """These limits, with the task's own (smaller) timeout when it asks for one."""
        if timeout_s is None:
            return self
        if timeout_s <= 0 or not math.isfinite(timeout_s):
            raise PolicyError(f"the task asks for a timeout of {timeout_s!r} s; must be > 0")
        return replace(self, timeout_s=min(self.timeout_s, float(timeout_s)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
