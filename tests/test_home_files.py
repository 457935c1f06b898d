"""The home's state files (``ptm_p2p/home_files.py``): each one round-trips through its
typed struct, and a missing or corrupt one gets the policy its docstring table gives
(fatal with the file and field named, or a warning and an empty start).

Real files in tmp_path; nothing is mocked.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from ptm_p2p import home_files as hf
from ptm_p2p.errors import ConfigError

KEY = bytes(range(32))
DISTRUST, PEERS = hf.DISTRUST_FILE, hf.PEERS_FILE


# --- witness.json: fatal -----------------------------------------------------------------------


def test_witness_round_trips_and_is_absent_before_any_cosignature(tmp_path: Path) -> None:
    assert hf.load_witness(tmp_path) is None
    hf.save_witness(tmp_path, 7, KEY)
    assert hf.load_witness(tmp_path) == (7, KEY)
    assert json.loads((tmp_path / hf.WITNESS_FILE).read_text()) == {"size": 7, "root": KEY.hex()}


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("{not json", "is not JSON"),
        ('{"size": -1, "root": "' + "00" * 32 + '"}', "field size"),
        ('{"size": 3, "root": "abcd"}', "field root"),
        ('{"size": "3", "root": "' + "00" * 32 + '"}', "field size"),
        ('{"root": "' + "00" * 32 + '"}', "field size is missing"),
    ],
)
def test_a_corrupt_witness_file_stops_the_site_naming_file_and_field(
    tmp_path: Path, text: str, field: str
) -> None:
    (tmp_path / hf.WITNESS_FILE).write_text(text)
    with pytest.raises(ConfigError) as caught:
        hf.load_witness(tmp_path)
    message = str(caught.value)
    assert message.startswith(str(tmp_path / hf.WITNESS_FILE)) and field in message
    assert "Restore it from a backup" in message


# --- distrusted.json and peers.json: warn, start empty -----------------------------------------


def test_distrusted_peers_round_trip(tmp_path: Path) -> None:
    path = tmp_path / hf.DISTRUST_FILE
    assert hf.load_distrusted(path) == {}
    records = {"liar": hf.DistrustedPeer("served a bad range", 12.5)}
    hf.save_distrusted(path, records)
    assert hf.load_distrusted(path) == records


def test_peers_round_trip(tmp_path: Path) -> None:
    path = tmp_path / hf.PEERS_FILE
    assert hf.load_peers(path) == {}
    peers = {"QmPeer": hf.PeerEntry(["/ip4/127.0.0.1/tcp/1"], "site-a")}
    hf.save_peers(path, peers)
    assert hf.load_peers(path) == peers


@pytest.mark.parametrize(
    ("name", "load", "text", "field"),
    [
        (DISTRUST, hf.load_distrusted, "{not json", "is not JSON"),
        (DISTRUST, hf.load_distrusted, '{"liar": {"since": 1}}', "field *.reason is missing"),
        (DISTRUST, hf.load_distrusted, '{"liar": {"reason": 5}}', "field *.reason: expected `str`"),
        (PEERS, hf.load_peers, "[]", "holds a JSON list"),
        (PEERS, hf.load_peers, '{"p": {"addrs": "x"}}', "field *.addrs: expected `array`"),
    ],
)
def test_a_corrupt_distrust_or_peers_file_is_reported_and_read_as_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, load, text: str, field: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with caplog.at_level(logging.WARNING):
        assert load(path) == {}
    assert str(path) in caplog.text and field in caplog.text


# --- pardoned.json: fatal ----------------------------------------------------------------------


def test_pardons_accumulate_across_calls(tmp_path: Path) -> None:
    assert hf.load_pardons(tmp_path) == []
    other = bytes(32)
    assert hf.add_pardons(tmp_path, [KEY]) == [KEY]
    assert hf.add_pardons(tmp_path, [other, KEY]) == [KEY, other]
    assert hf.load_pardons(tmp_path) == [KEY, other]


@pytest.mark.parametrize(
    ("text", "field"),
    [("{not json", "is not JSON"), ('{"keys": ["zz"]}', "field keys"), ("{}", "keys is missing")],
)
def test_a_corrupt_pardon_file_is_fatal_and_named(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / hf.PARDON_FILE
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        hf.load_pardons(tmp_path)
    message = str(caught.value)
    assert message.startswith(str(path)) and field in message and "pardoned keys" in message


# --- status.json: advisory ---------------------------------------------------------------------


def test_status_round_trips_and_marks_a_stop(tmp_path: Path) -> None:
    assert hf.read_status(tmp_path) is None
    now = time.time()
    hf.write_status(tmp_path, {"role": "node", "pid": 42, "updated": now, "lag": 3, "hub_size": 9})
    status = hf.read_status(tmp_path)
    assert status is not None and (status.role, status.pid, status.updated) == ("node", 42, now)
    assert status.shown() == {"role": "node", "lag": 3}  # hub_size: not shown
    hf.mark_stopped(tmp_path)
    stopped = hf.read_status(tmp_path)
    assert stopped is not None and isinstance(stopped.stopped, float)
    assert stopped.connected == [] and stopped.lag == 3


def test_a_failed_start_is_recorded_with_its_error(tmp_path: Path) -> None:
    hf.write_failed_status(tmp_path, "node", "the ledger copy is damaged")
    status = hf.read_status(tmp_path)
    assert status is not None and status.error == "the ledger copy is damaged"
    assert status.updated == 0 and status.role == "node"


def test_a_corrupt_status_file_reads_as_an_empty_status(tmp_path: Path) -> None:
    (tmp_path / hf.STATUS_FILE).write_text('{"updated": "yesterday"}')
    assert hf.read_status(tmp_path) == hf.DaemonStatus()
    (tmp_path / hf.STATUS_FILE).write_text("{not json")
    assert hf.read_status(tmp_path) == hf.DaemonStatus()
    hf.mark_stopped(tmp_path)  # not ours to repair: the file is removed
    assert hf.read_status(tmp_path) is None


def test_read_json_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"size": 1, "root": "' + "00" * 32 + '", "extra": 1}')
    with pytest.raises(hf.HomeFileError, match="unknown field extra") as caught:
        hf.read_json(path, hf.WitnessRecord)
    assert str(caught.value).startswith(str(path))
