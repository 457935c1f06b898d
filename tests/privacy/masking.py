"""What the secure-aggregation tests share: each site's answer masked as its daemon masks it,
the check that only the total over the sites opens, and one task in plain and secure-sum
form for a site's policy to judge."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ptm_p2p.ledger import crypto, secagg
from ptm_p2p.ledger import entry as E

from .attacks import read_as_unmasked


def masked(outputs: Mapping[str, Any], task: bytes) -> dict[str, dict]:
    """Every site's answer masked for ``task`` (``secagg.mask_output``, each site under a
    key of its own, all of them the targets), in the wire form the researcher receives."""
    keys = {s: crypto.Signer.generate() for s in outputs}
    targets = [key.public_key for key in keys.values()]
    return {
        s: json.loads(secagg.mask_output(keys[s], targets, task, json.dumps(o).encode()))
        for s, o in outputs.items()
    }


def assert_only_the_total_opens(
    received: Mapping[str, Any],
    truth: Mapping[str, Mapping[str, Any]],
    public: Mapping[str, Any] | None = None,
) -> None:
    """No single answer and no pair reads as a site's values (``read_as_unmasked``); the sum
    of all of them opens to the sites' values added up exactly (to rounding). With
    ``public``: every answer's public part is exactly that, so it says nothing of the data."""
    names = list(truth)
    if public is not None:
        assert all(received[s]["public"] == public for s in names)
    assert read_as_unmasked(received, truth) == 0
    total, _ = secagg.unmask_by_sum(received)
    for name in truth[names[0]]:
        exact = np.array([math.fsum(v) for v in zip(*(truth[s][name] for s in names), strict=True)])
        assert np.allclose(total[name], exact, rtol=1e-15, atol=1e-20), name


def plain_and_secure_task(image: str, inputs: Mapping[bytes, bytes]) -> tuple[E.Entry, E.Entry]:
    """One researcher's task for ``image`` over ``inputs`` (site key → input), published
    twice: plain, then as a secure-sum round."""
    researcher = crypto.Signer.generate()
    limits = {"timeout_s": 60, "memory_mb": 64, "cpu_millis": 100}
    chain = E.AuthorChain(researcher)
    plain = chain.append(E.TASK, E.task_payload_v2(researcher, 1, image, inputs, limits), 1)
    secure = chain.append(
        E.TASK, E.task_payload_v2(researcher, 2, image, inputs, limits, aggregate="secure-sum"), 2
    )
    return plain, secure
