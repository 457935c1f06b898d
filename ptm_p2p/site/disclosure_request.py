"""What a task asks of the site's data, as the disclosure record (``disclosure.py``) reads it
from the task's image and input: its data labels, its coefficient vectors (β probes), the
columns it may group by, and the key of its query (what decides the answer, for the
differencing rule across secure sums)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

COX_KINDS = ("coxph-pooled", "coxph-stratified")
# The input fields that decide an answer of the site's images (survival_site, summary):
# two secure-sum requests with equal values here (same image, same data source) are the
# same query, whatever else their inputs say.
QUERY_FIELDS = (
    "step", "duration", "event", "covariates", "ties", "betas", "times", "tied",
    "at_risk", "secure_sum", "group", "groups", "strata", "time_unit", "columns",
    "categorical",
)  # fmt: skip


@dataclass(frozen=True)
class Request:
    """What the daemon reads from a task's input: the fields that select patients."""

    kind: str  # the image's name, e.g. "coxph-pooled"
    labels: tuple[str, ...]  # the data source(s) its answer is computed over
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def betas(self) -> list[list[float]]:
        """The coefficient vectors asked (any request with ``betas``, whatever its image)."""
        value = self.params.get("betas")
        if not isinstance(value, list):
            return []
        out = []
        for beta in value:
            # Fail closed: anything the image might evaluate counts (a boolean as 0/1, which
            # the image refuses anyway); only what it cannot read at all is left out.
            if isinstance(beta, list) and all(isinstance(b, int | float) for b in beta):
                out.append([float(b) + 0.0 for b in beta])  # + 0.0: -0.0 is 0.0
        return out

    def probes(self) -> list[bytes]:
        """One key per distinct β: the same β for the same model is not a new probe."""
        head = {
            "kind": self.kind,
            "duration": self.params.get("duration"),
            "event": self.params.get("event"),
            "covariates": self.params.get("covariates"),
        }
        keys = []
        for beta in self.betas:
            text = json.dumps({**head, "beta": beta}, sort_keys=True, separators=(",", ":"))
            keys.append(hashlib.sha256(text.encode()).digest())
        return list(dict.fromkeys(keys))

    def grouping_columns(self) -> list[str]:
        """Columns that may split the patients into groups (a KM ``group`` or ``strata``,
        the Cox covariates: which of these are categorical is decided on the data)."""
        out: list[str] = []
        for key in ("group", "groups", "strata"):
            value = self.params.get(key)
            if isinstance(value, str) and value:
                out.append(value)
            elif isinstance(value, list):
                out.extend(v for v in value if isinstance(v, str) and v)
        return out

    def query(self, label: str) -> bytes:
        """What decides a site's answer to this request over ``label``: the image and the
        input's answer-deciding fields (``QUERY_FIELDS``); fields the images ignore are
        left out, so adding one does not make the same query look new."""
        fields = {k: self.params[k] for k in QUERY_FIELDS if k in self.params}
        text = json.dumps([self.kind, label, fields], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).digest()

    def covariates(self) -> list[str]:
        value = self.params.get("covariates")
        if not isinstance(value, list):
            return []
        return [v for v in value if isinstance(v, str) and v]


def parse_request(image: str, data: Sequence[str], raw_input: bytes) -> Request:
    """The request of a task: its image's name, the data labels its answer reads (the one
    named by ``data`` in the input when it is mounted, else every label mounted) and the
    input's JSON object (``{}`` when the input is not a JSON object: such a task selects
    nothing beyond its labels)."""
    kind = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    try:
        params = json.loads(raw_input) if raw_input.strip() else {}
    except ValueError:
        params = {}
    if not isinstance(params, dict):
        params = {}
    mounted = tuple(dict.fromkeys(str(d) for d in data))
    named = params.get("data")
    labels = (named,) if isinstance(named, str) and named in mounted else mounted
    return Request(kind, labels, params)
