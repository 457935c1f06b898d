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


def test_data_rules(tmp_path):
    data = tmp_path / "registry.csv"
    data.write_text("age\n50\n")
    p = SitePolicy.from_table({"data": {"registry": str(data)}})
    assert p.check_data(["registry"])["registry"] == data
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
        # TOML has inf and nan: neither may reach the engine or a socket timeout
        ({"limits": {"timeout": float("inf")}}, "positive"),
        ({"limits": {"timeout": float("nan")}}, "positive"),
        ({"limits": {"cpus": float("nan")}}, "positive"),
        ({"limits": {"cpus": 0.001}}, "cpus must be between"),
        ({"limits": {"timeout": 10**9}}, "at most"),
        ({"limits": {"memory": 10**400}}, "at most 1t"),
        ({"limits": {"memory": ["1g"]}}, "expected a size"),
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
    smaller = limits.narrowed(memory_bytes=64 * 2**20, cpus=0.25)
    assert (smaller.memory_bytes, smaller.cpus, smaller.timeout_s) == (64 * 2**20, 0.25, 60)
    bigger = limits.narrowed(memory_bytes=2**40, cpus=64)
    assert (bigger.memory_bytes, bigger.cpus) == (limits.memory_bytes, limits.cpus)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout_s": "10"},
        {"timeout_s": float("nan")},
        {"timeout_s": True},
        {"timeout_s": 0},
        {"memory_bytes": 1.5},
        {"memory_bytes": 1024},  # below the 16m floor: the runtime could not even start
        {"cpus": -1},
    ],
)
def test_a_task_cannot_ask_for_malformed_limits(kwargs):
    with pytest.raises(PolicyError):
        Limits().narrowed(**kwargs)


def test_bare_digest_never_lets_the_publisher_pick_the_registry():
    p = policy()  # repository 127.0.0.1:5000/ptm/summary, pinned cox, bare digest cd…
    bare = "sha256:" + "cd" * 32
    assert p.registries == {"127.0.0.1:5000"}
    assert p.may_pull(p.check_image(f"{REPO}@{D}"))
    assert p.may_pull(p.check_image(f"127.0.0.1:5000/ptm/cox@{D}"))
    assert p.may_pull(p.check_image(f"127.0.0.1:5000/other@{bare}"))
    # allowed content, but the host is the publisher's choice: no pull from there
    for host in ("127.0.0.1:5999", "evil.example", "localhost"):
        assert not p.may_pull(p.check_image(f"{host}/x@{bare}"))
    assert not p.may_pull(p.check_image(f"x@{bare}"))  # docker.io


@pytest.mark.parametrize(
    ("text", "registry"),
    [
        ("ubuntu", "docker.io"),
        ("library/ubuntu", "docker.io"),
        ("localhost/a", "localhost"),
        ("localhost:5000/a", "localhost:5000"),
        ("Registry.Example/a/b", "registry.example"),
        ("127.0.0.1:5000/ptm/summary", "127.0.0.1:5000"),
    ],
)
def test_registry_host_follows_dockers_rule(text, registry):
    assert ImageRef.parse(text).registry == registry


def test_container_options_keep_their_own_label_and_refuse_bad_labels(tmp_path):
    from ptm_p2p.executor.outputdir import OutputDir
    from ptm_p2p.executor.sandbox import CONTAINER_LABEL, SandboxRun, container_options

    out = OutputDir(path=tmp_path, cap=1)
    run = SandboxRun(image="x", labels={CONTAINER_LABEL: "0", "other": "y"})
    assert container_options(run, tmp_path, out)["labels"] == {CONTAINER_LABEL: "1", "other": "y"}
    for label in ("..", "a/../../etc", "", "/abs"):
        with pytest.raises(PolicyError):
            container_options(SandboxRun(image="x", data={label: tmp_path}), tmp_path, out)


def test_image_ref_round_trip():
    ref = ImageRef.parse(f"localhost:5000/a/b-c:v1@{D}")
    assert (ref.repository, ref.tag, ref.digest) == ("localhost:5000/a/b-c", "v1", D)
    assert ref.by_digest == f"localhost:5000/a/b-c@{D}"


def test_data_the_task_user_cannot_read_is_refused_with_the_fix(tmp_path):
    private = tmp_path / "private.csv"
    private.write_text("age\n50\n")
    private.chmod(0o600)
    policy = SitePolicy.from_table({"data": {"registry": str(private)}})
    with pytest.raises(PolicyError, match=r"chmod o\+r"):
        policy.check_data(["registry"])
    private.chmod(0o644)
    assert policy.check_data(["registry"]) == {"registry": private}


# --- data paths: symlinks, devices, system folders (issue 10, probe 8) ---------------------


def test_a_symlink_to_a_system_file_is_refused_without_chmod_advice(tmp_path):
    link = tmp_path / "registry.csv"
    link.symlink_to("/etc/shadow")
    policy = SitePolicy.from_table({"data": {"registry": str(link)}})
    with pytest.raises(PolicyError) as caught:
        policy.check_data(["registry"])
    message = str(caught.value)
    assert "chmod" not in message
    assert "/etc/shadow" in message and "system folder" in message
    assert "[policy.data] registry" in message


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/proc/self/environ"])
def test_devices_and_system_files_are_not_data(device, tmp_path):
    policy = SitePolicy.from_table({"data": {"d": device}})
    with pytest.raises(PolicyError, match="system folder") as caught:
        policy.check_data(["d"])
    assert "chmod" not in str(caught.value)


def test_a_device_outside_system_folders_is_not_data(tmp_path):
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    fifo.chmod(0o644)
    policy = SitePolicy.from_table({"data": {"d": str(fifo)}})
    with pytest.raises(PolicyError, match="named pipe.*not a regular file"):
        policy.check_data(["d"])


def test_a_symlink_to_someone_elses_file_is_refused(tmp_path):
    import os

    target = tmp_path / "alice.csv"
    target.write_text("x\n")
    target.chmod(0o600)
    os.chown(target, 1000, 1000)
    link = tmp_path / "registry.csv"
    link.symlink_to(target)  # owned by root, the operator here
    policy = SitePolicy.from_table({"data": {"registry": str(link)}})
    with pytest.raises(PolicyError, match="belongs to uid 1000") as caught:
        policy.check_data(["registry"])
    assert "chmod" not in str(caught.value)


def test_a_symlink_to_own_data_gets_chmod_advice_for_the_target(tmp_path):
    target = tmp_path / "real" / "registry.csv"
    target.parent.mkdir()
    target.write_text("x\n")
    target.chmod(0o600)
    link = tmp_path / "registry.csv"
    link.symlink_to(target)
    policy = SitePolicy.from_table({"data": {"registry": str(link)}})
    with pytest.raises(PolicyError) as caught:
        policy.check_data(["registry"])
    assert f"`chmod o+r {target}`" in str(caught.value)
    target.chmod(0o644)
    assert policy.check_data(["registry"]) == {"registry": target}  # the target is mounted


def test_an_unreadable_file_inside_a_data_folder_is_named(tmp_path):
    folder = tmp_path / "registry"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.csv").write_text("x\n")
    (folder / "sub" / "b.csv").write_text("x\n")
    (folder / "sub" / "b.csv").chmod(0o600)
    policy = SitePolicy.from_table({"data": {"registry": str(folder)}})
    with pytest.raises(PolicyError, match=r"b\.csv is not readable.*chmod -R o\+rX"):
        policy.check_data(["registry"])
    (folder / "sub" / "b.csv").chmod(0o644)
    assert policy.check_data(["registry"]) == {"registry": folder}


def test_a_file_owned_by_the_task_user_is_readable_by_its_owner_bits(tmp_path):
    import os

    data = tmp_path / "registry.csv"
    data.write_text("x\n")
    os.chown(data, 65534, 65534)
    data.chmod(0o400)
    policy = SitePolicy.from_table({"data": {"registry": str(data)}})
    assert policy.check_data(["registry"]) == {"registry": data}
