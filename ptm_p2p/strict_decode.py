"""Strict typed decoding of a home's files: msgspec structs, errors in our words.

msgspec checks a file's whole shape in one pass (unknown keys, types, ranges) and says where
the first problem is (``Expected `int`, got `str` - at `$.tasks.parallel```). ``convert``
turns that into a ``Problem`` (which key, what kind of mistake, the value found) so that a
caller can phrase it with the form it expects (``config.py``, ``executor/policy.py``), and
``describe`` phrases it generically (``field size: expected `int` >= 0``) for the small JSON
files of ``home_files.py``. ``closest`` gives the "did you mean" name for an unknown key.

Nothing here knows any file; this module imports only msgspec and the exception tree.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import msgspec

T = TypeVar("T")

_AT = re.compile(r"^(?P<detail>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
# msgspec names a struct's keys and list positions, but a dict's keys only as ``[...]``.
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[(\.\.\.)\]")
ANY_KEY = "*"  # the step for ``[...]``: some key of a dict, which msgspec does not say
NOT_FOUND: Any = type("NotFound", (), {"__repr__": lambda self: "?"})()
_NAMED = re.compile(r"^Object (?:contains unknown|missing required) field `(?P<key>.+)`$")
# msgspec's type names as a reader of JSON or TOML knows them.
JSON_NAMES = {"array": "list", "str": "string", "int": "number", "float": "number"}


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with some decoded data.

    ``where`` is the path of keys to the table or value concerned (list positions left
    out: ``images[3]`` is reported as ``images``); for ``unknown`` and ``missing`` ``key``
    is the offending key inside ``where``; ``detail`` is msgspec's own wording.
    """

    kind: Literal["unknown", "missing", "invalid"]
    where: tuple[str, ...]
    key: str
    detail: str
    value: Any  # what the data holds at ``where`` (``invalid``) or at ``where + key``

    @property
    def field(self) -> tuple[str, ...]:
        """The path of the key the problem is about."""
        return (*self.where, self.key) if self.key else self.where

    @property
    def dotted(self) -> str:
        return ".".join(self.field)


def problem_of(exc: msgspec.ValidationError, data: Any) -> Problem:
    """The ``Problem`` msgspec's error describes, with the offending value taken from
    ``data`` (the builtins that were being converted; ``None`` where it cannot be found)."""
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any text
    detail = match["detail"]
    where = tuple(
        name or ANY_KEY for name, _index, some in _STEP.findall(match["path"] or "") if name or some
    )
    named = _NAMED.match(detail)
    kind: Literal["unknown", "missing", "invalid"] = "invalid"
    key = ""
    if named:
        kind = "unknown" if "unknown" in detail else "missing"
        key = named["key"]
    return Problem(kind, where, key, detail, value_at(data, (*where, key) if key else where))


def value_at(data: Any, path: Sequence[str]) -> Any:
    """What ``data`` holds at ``path``; ``NOT_FOUND`` past a key msgspec did not name."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return NOT_FOUND
        data = data[key]
    return data


def convert(data: Any, type_: type[T], explain: Callable[[Problem], Exception]) -> T:
    """``data`` (parsed TOML or JSON) as ``type_``, strictly (no ``"1"`` for 1, no ``true``
    for 1); the first problem is raised as ``explain(problem)``."""
    try:
        return msgspec.convert(data, type_, strict=True)
    except msgspec.ValidationError as exc:
        raise explain(problem_of(exc, data)) from None


def describe(problem: Problem) -> str:
    """A generic phrase for ``problem``: ``field size: expected `int` >= 0, got -1``."""
    if problem.kind == "missing":
        return f"field {problem.dotted} is missing"
    if problem.kind == "unknown":
        return f"unknown field {problem.dotted}"
    wrong_top = re.fullmatch(r"Expected `object`, got `(\w+)`", problem.detail)
    if not problem.where and wrong_top:
        found = wrong_top[1]
        return f"holds a JSON {JSON_NAMES.get(found, found)}, not an object"
    # msgspec names the type found (``got `int```); the value itself says more.
    detail = re.sub(r", got `[^`]*`$", "", problem.detail)
    detail = detail[:1].lower() + detail[1:]
    field = f"field {problem.dotted or '(top level)'}: {detail}"
    if problem.value is NOT_FOUND:
        return field
    shown = repr(problem.value)
    return f"{field}, got {shown[:77] + '...' if len(shown) > 80 else shown}"


def closest(key: str, allowed: Sequence[str]) -> str | None:
    """The allowed name ``key`` most likely misspells, if any is close enough."""
    found = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return found[0] if found else None


def field_names(type_: Any) -> tuple[str, ...]:
    """The keys a struct type accepts, in declaration order."""
    return tuple(f.encode_name for f in msgspec.structs.fields(type_))
