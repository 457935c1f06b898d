"""Site policy parsing and checks (pure: no engine needed)."""

from __future__ import annotations

import tomllib

import pytest

from ptm_p2p.errors import PolicyError
from ptm_p2p.executor import ImageRef, Limits, SitePolicy, parse_size

D = "sha256:" + "ab" * 32
REPO = "127.0.0.1:5000/ptm/summary"
KEY = "9c" * 32

CONFIG = f"""
name = "site-a"
[policy]
images = ["{REPO}", "127.0.0.1:5000/ptm/cox@{D}", "sha256:{"cd" * 32}"]
publishers = ["uni-research", "{KEY.upper()}"]
min_group_size = 8
[policy.data]
registry = "/etc/hostname"
[policy.limits]
memory = "256m"
cpus = 0.5
pids = 32
timeout = 120
output = "1m"
logs = "64k"
"""


def policy() -> SitePolicy:
    return SitePolicy.from_config(tomllib.loads(CONFIG))


def test_parses_a_full_policy():
    p = policy()
    assert p.repositories == {REPO}
    assert p.pinned == {f"127.0.0.1:5000/ptm/cox@{D}"}
    assert p.min_group_size == 8
    assert p.limits == Limits(
        memory_bytes=256 * 2**20,
        cpus=0.5,
        pids=32,
        timeout_s=120,
        output_bytes=2**20,
        log_bytes=64 * 2**10,
    )


def test_image_rules():
    p = policy()
    assert p.check_image(f"{REPO}@{D}").repository == REPO
    assert p.check_image(f"127.0.0.1:5000/ptm/cox@{D}").digest == D
    assert p.check_image(f"elsewhere/x@sha256:{'cd' * 32}")  # allowed by bare digest
    with pytest.raises(PolicyError, match="not allowed by this site's policy"):
        p.check_image(f"127.0.0.1:5000/ptm/cox@sha256:{'ef' * 32}")
    with pytest.raises(PolicyError, match="not pinned by digest"):
        p.check_image(f"{REPO}:latest")
    with pytest.raises(PolicyError, match="not a valid reference"):
        p.check_image("UPPER CASE")


def test_publisher_rules():
    p = policy()
    p.check_publisher(None, "uni-research")
    p.check_publisher(KEY, None)  # keys compare case-insensitively
    with pytest.raises(PolicyError, match="publisher other is not allowed"):
        p.check_publisher("00" * 32, "other")


def test_data_rules():
    p = policy()
    assert str(p.check_data(["registry"])["registry"]) == "/etc/hostname"
    with pytest.raises(PolicyError, match="'nope' is not offered by this site"):
        p.check_data(["nope"])
    with pytest.raises(PolicyError, match="not allowed"):
        p.check_data(["../etc"])


def test_empty_policy_allows_nothing():
    p = SitePolicy.from_config({"name": "site-a"})
    with pytest.raises(PolicyError):
        p.check_image(f"{REPO}@{D}")
    with pytest.raises(PolicyError):
        p.check_publisher(KEY, "uni-research")
    with pytest.raises(PolicyError):
        p.check_data(["registry"])
    assert p.min_group_size == 5


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"imagez": []}, "unknown key"),
        ({"images": "x"}, "must be a list"),
        ({"images": [f"{REPO}:latest"]}, "names a tag"),
        ({"data": {"a": "relative/path"}}, "absolute path"),
        ({"data": {"bad label": "/x"}}, "not allowed"),
        ({"min_group_size": 0}, "min_group_size"),
        ({"limits": {"memory": "lots"}}, "not a size"),
        ({"limits": {"memory": "1m"}}, "at least 16m"),
        ({"limits": {"pids": 2.5}}, "whole number"),
        ({"limits": {"timeout": -1}}, "positive"),
        ({"limits": {"disk": "1g"}}, "unknown key"),
    ],
)
def test_bad_policies_are_rejected_clearly(table, message):
    with pytest.raises(PolicyError, match=message):
        SitePolicy.from_table(table)


def test_sizes_and_narrowing():
    assert parse_size("1.5GiB", "x") == int(1.5 * 2**30)
    assert parse_size(4096, "x") == 4096
    limits = Limits(timeout_s=60)
    assert limits.narrowed(10).timeout_s == 10
    assert limits.narrowed(1000).timeout_s == 60
    assert limits.narrowed(None) is limits


def test_image_ref_round_trip():
    ref = ImageRef.parse(f"localhost:5000/a/b-c:v1@{D}")
    assert (ref.repository, ref.tag, ref.digest) == ("localhost:5000/a/b-c", "v1", D)
    assert ref.by_digest == f"localhost:5000/a/b-c@{D}"
