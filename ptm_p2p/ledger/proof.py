"""Proofs of opened outputs: a researcher shows an auditor what a site signed, nothing more.

A format-2 result commits to its output as SHA-256("ptm/commit/v2\\n" || n || plaintext),
where the nonce ``n`` travels inside the key box only the researcher opens. To prove what
it opened, the researcher reveals ``n`` and the plaintext (``ptm results --prove DIR``,
``write_proof``); anyone then recomputes the commitment and compares it with the signed
entry (``ptm ledger check-proof DIR``, ``check_proof``). Nothing else is revealed: not the
secretstream key, not the log nonce.

A proof folder holds ``README.txt`` and one folder per site::

    DIR/<site>/output        the plaintext output, byte for byte
    DIR/<site>/proof.json    {"format": 2, "site", "site_key", "entry", "entry_hash",
                              "task", "nonce", "result"}   (bytes as lowercase hex;
                              "result" is the signed result entry itself, raw)

The check needs no key: the result entry's signature (by ``site_key``), its hash, that it is a
format-2 result, and the commitment. Given the auditor's own verified copy of the log, also
that the log holds this very entry at ``entry``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptm_p2p.errors import DecodeError, LedgerError
from ptm_p2p.ledger import crypto
from ptm_p2p.ledger.entry import RESULT, Entry, ResultPayloadV2
from ptm_p2p.ledger.store import LogStore

PROOF_FILE = "proof.json"
OUTPUT_FILE = "output"
README_FILE = "README.txt"

README = """\
Proof of opened outputs (ptm format 2)

Each folder is one site's answer to task {task}:
  output       the plaintext output the researcher opened
  proof.json   the signed result entry ("result", hex), its index in the log ("entry"),
               and the commitment nonce n ("nonce", hex) that was sealed to the researcher

To check (anyone, no key needed):
  ptm ledger check-proof {folder} [--ledger YOUR-VERIFIED-LEDGER-OR-HOME]

By hand: decode "result" (docs/ledger.md, Entries), check its Ed25519 signature by
"site_key", that it is a format-2 result of task "task", and that
  SHA-256("ptm/commit/v2\\n" || nonce || output) == output.commit
of that entry. With a copy of the log: the entry at index "entry" must be "result" exactly.
"""


@dataclass(frozen=True)
class ProofVerdict:
    """One site's proof, checked: ``ok`` and what was checked or why it failed."""

    site: str
    ok: bool
    detail: str
    entry: int | None = None
    in_log: bool | None = None  # None: no log given to compare with


def write_proof(
    folder: Path,
    site: str,
    site_key: bytes,
    result: Entry,
    index: int,
    plaintext: bytes,
    nonce: bytes,
) -> Path:
    """Write one site's proof to ``folder/site`` (and the README); returns that folder."""
    payload = result.typed_payload
    if not isinstance(payload, ResultPayloadV2):
        raise DecodeError(
            f"{result.describe()} is a format-1 result: its proof is its output_digest, which "
            "anyone can recompute from the output; no nonce to reveal"
        )
    if crypto.commit(nonce, plaintext) != payload.output.commit:
        raise LedgerError(f"{site}: the output and nonce do not match the signed commitment")
    here = folder / site
    here.mkdir(parents=True, exist_ok=True)
    (here / OUTPUT_FILE).write_bytes(plaintext)
    record = {
        "format": 2,
        "site": site,
        "site_key": site_key.hex(),
        "entry": index,
        "entry_hash": result.hash.hex(),
        "task": payload.task.hex(),
        "nonce": nonce.hex(),
        "result": result.raw.hex(),
    }
    (here / PROOF_FILE).write_text(json.dumps(record, indent=2) + "\n")
    (folder / README_FILE).write_text(README.format(task=payload.task.hex(), folder=folder))
    return here


def check_proof(folder: Path, store: LogStore | None = None) -> list[ProofVerdict]:
    """Check every site proof under ``folder``; one verdict per site folder.

    With ``store`` (the auditor's verified copy of the log), each result entry must also be
    the entry the log holds at the proof's index."""
    if not folder.is_dir():
        raise DecodeError(f"{folder} is not a folder written by `ptm results --prove`")
    verdicts = [
        _check_one(sub, store)
        for sub in sorted(folder.iterdir())
        if sub.is_dir() and (sub / PROOF_FILE).exists()
    ]
    if not verdicts:
        raise DecodeError(f"{folder} holds no SITE/{PROOF_FILE}: not a proof folder")
    return verdicts


def _check_one(here: Path, store: LogStore | None) -> ProofVerdict:
    site = here.name
    try:
        record: dict[str, Any] = json.loads((here / PROOF_FILE).read_text())
        plaintext = (here / OUTPUT_FILE).read_bytes()
        raw = bytes.fromhex(record["result"])
        nonce = bytes.fromhex(record["nonce"])
        site_key = bytes.fromhex(record["site_key"])
        index = int(record["entry"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return ProofVerdict(site, False, f"unreadable proof: {exc}")
    try:
        result = Entry.from_bytes(raw)
    except LedgerError as exc:
        return ProofVerdict(site, False, f"the result entry does not verify: {exc}", index)
    payload = result.typed_payload
    if result.kind != RESULT or not isinstance(payload, ResultPayloadV2):
        return ProofVerdict(site, False, "the entry is not a format-2 result", index)
    if result.author != site_key:
        return ProofVerdict(site, False, "the result is signed by another key than site_key")
    if record.get("entry_hash") != result.hash.hex() or record.get("task") != payload.task.hex():
        return ProofVerdict(site, False, "entry_hash or task does not match the entry", index)
    if crypto.commit(nonce, plaintext) != payload.output.commit:
        return ProofVerdict(
            site, False, "the output and nonce do not give the signed commitment", index
        )
    in_log: bool | None = None
    if store is not None:
        in_log = index < store.size() and store.raw_range(index, index + 1)[0] == raw
        if not in_log:
            return ProofVerdict(
                site, False, f"the log does not hold this result at entry {index}", index, False
            )
    where = f"entry {index} of the given log" if in_log else f"entry {index} (log not checked)"
    return ProofVerdict(
        site,
        True,
        f"{len(plaintext)} bytes of output match the commitment {site} signed, {where}",
        index,
        in_log,
    )
