"""config.toml as typed, validated data (issue 10): one schema, every error naming the file,
the key and the expected form; `ptm config check` and `ptm node` refuse what it refuses.

Real files in tmp_path, the real CLI through CliRunner; `ptm node` stops on the config
before it touches the network, so no daemon is started here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ptm_p2p.cli import main
from ptm_p2p.config import HomeConfig, load_config
from ptm_p2p.errors import ConfigError
from ptm_p2p.home import Home

REPO = "127.0.0.1:5000/ptm/summary"


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home.init(tmp_path / "site-a", "site-a")


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "registry.csv"
    path.parent.mkdir()
    path.write_text("age\n50\n")
    path.chmod(0o644)
    return path


def write(home: Home, body: str) -> Path:
    home.config_path.write_text('name = "site-a"\n' + body)
    return home.config_path


def test_a_full_config_loads_as_typed_values(home: Home, data_file: Path) -> None:
    write(
        home,
        f"""
[tasks]
parallel = 3
[policy]
min_group_size = 8
publishers = ["uni-research"]
images = ["{REPO}"]
[policy.limits]
memory = "256m"
[policy.data]
registry = "{data_file}"
""",
    )
    config = load_config(home.path)
    assert isinstance(config, HomeConfig)
    assert config.name == "site-a"
    assert config.policy.repositories == {REPO}
    assert config.policy.min_group_size == 8
    assert config.policy.data == {"registry": data_file}
    assert config.tasks_parallel == 3
    assert config.check_data() == []


def test_defaults_deny_everything_and_run_one_task(home: Home) -> None:
    config = load_config(home.path)
    assert config.tasks_parallel == 1
    assert not config.policy.repositories and not config.policy.publishers


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[polcy]\nimages = []\n", r"unknown section \[polcy\]; did you mean \[policy\]\?"),
        ("colour = 1\n", r"unknown key colour"),
        ('[policy]\nimages = "a string"\n', r"\[policy\] images must be a list of non-empty"),
        ('[policy]\nmin_group_size = "five"\n', r"\[policy\] min_group_size must be a whole"),
        ("[policy]\nimgaes = []\n", r"\[policy\]: unknown key\(s\) imgaes"),
        ('[policy.limits]\nmemory = "lots"\n', r"\[policy.limits\] memory: 'lots' is not a size"),
        ('[policy.data]\nregistry = "relative.csv"\n', r"\[policy.data\] registry: expected an"),
        ('[policy.data]\n"bad label" = "/srv/x"\n', r"\[policy.data\] label 'bad label'"),
        ('[policy]\nimages = ["UPPER CASE"]\n', r"\[policy\] images: image 'UPPER CASE'"),
        ('[tasks]\nparallel = "two"\n', r"\[tasks\] parallel must be a whole number"),
        ("[tasks]\nparallel = 0\n", r"\[tasks\] parallel must be from 1 to 64"),
        ("[tasks]\nparalel = 2\n", r"unknown key \[tasks\] paralel; did you mean parallel\?"),
        ("tasks = 3\n", r"tasks must be a table"),
        ("[policy\n", r"is not valid TOML"),
    ],
)
def test_mistakes_are_refused_naming_file_key_and_form(
    home: Home, body: str, expected: str
) -> None:
    path = write(home, body)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_config(home.path)
    assert str(caught.value).startswith(f"{path}")


def test_name_is_required_and_checked(home: Home) -> None:
    home.config_path.write_text("[tasks]\nparallel = 1\n")
    with pytest.raises(ConfigError, match="name is missing"):
        load_config(home.path)
    home.config_path.write_text('name = "no spaces please"\n')
    with pytest.raises(ConfigError, match="name must be a string of 1-64"):
        load_config(home.path)


def test_a_missing_config_says_how_to_make_a_home(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ptm init"):
        load_config(tmp_path)


# --- data paths ----------------------------------------------------------------------------


def test_data_problems_are_listed_with_file_and_label(
    home: Home, data_file: Path, tmp_path: Path
) -> None:
    link = tmp_path / "data" / "shadow.csv"
    link.symlink_to("/etc/shadow")
    private = tmp_path / "data" / "private.csv"
    private.write_text("x\n")
    private.chmod(0o600)
    write(
        home,
        f"""
[policy.data]
ok = "{data_file}"
shadow = "{link}"
zero = "/dev/zero"
missing = "{tmp_path / "nope.csv"}"
private = "{private}"
""",
    )
    problems = load_config(home.path).check_data()
    assert len(problems) == 4
    by_label = {p.split("[policy.data] ")[1].split(" ")[0]: p for p in problems}
    assert set(by_label) == {"shadow", "zero", "missing", "private"}
    assert all(p.startswith(str(home.config_path)) for p in problems)
    assert "chmod" not in by_label["shadow"] and "chmod" not in by_label["zero"]
    assert "does not exist" in by_label["missing"]
    assert f"chmod o+r {private}" in by_label["private"]


# --- the CLI -------------------------------------------------------------------------------


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_config_check_passes_a_good_config(home: Home, data_file: Path) -> None:
    write(home, f'[policy]\nimages = ["{REPO}"]\n[policy.data]\nregistry = "{data_file}"\n')
    code, out = run("config", "check", "--home", str(home.path))
    assert code == 0, out
    assert "config ok" in out and REPO in out


def test_config_check_fails_on_a_typo(home: Home) -> None:
    write(home, "[polcy]\nimages = []\n")
    code, out = run("config", "check", "--home", str(home.path))
    assert code == 1
    assert "did you mean [policy]" in out and str(home.config_path) in out


def test_config_check_fails_on_a_device_as_data(home: Home) -> None:
    write(home, '[policy.data]\nzero = "/dev/zero"\n')
    code, out = run("config", "check", "--home", str(home.path), "--json")
    assert code == 1
    assert "/dev/zero" in out and "system folder" in out


def test_node_refuses_to_start_on_a_bad_config(home: Home, tmp_path: Path) -> None:
    invitation = tmp_path / "invite.json"
    invitation.write_text("{}")
    for body, expected in (
        ('[policy]\nmin_group_size = "five"\n', "min_group_size must be a whole number"),
        ('[policy.data]\nzero = "/dev/zero"\n', "ptm config check"),
    ):
        write(home, body)
        code, out = run("node", "--home", str(home.path), "--invitation", str(invitation))
        assert code == 1, out
        assert expected in out and str(home.config_path) in out
    # The old option name reaches the same check.
    code, out = run("node", "--home", str(home.path), "--join", str(invitation))
    assert code == 1 and "ptm config check" in out


def test_config_check_takes_the_home_from_ptm_home(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTM_HOME", str(home.path))
    code, out = run("config", "check")
    assert code == 0, out
    assert str(home.config_path) in out


def test_hub_blob_quota_and_retention_are_read_with_defaults(home: Home) -> None:
    assert load_config(home.path).blob_quota == 20 * 1024**3
    assert load_config(home.path).blob_retention_days == 90.0
    write(home, '[hub]\nblob_quota = "2g"\nblob_retention = 7.5\n')
    config = load_config(home.path)
    assert (config.blob_quota, config.blob_retention_days) == (2 * 1024**3, 7.5)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[hub]\nblob_qota = 1\n", "[hub] blob_qota; did you mean blob_quota?"),
        ('[hub]\nblob_quota = "lots"\n', "[hub] blob_quota: 'lots' is not a size"),
        ("[hub]\nblob_retention = 0\n", "[hub] blob_retention must be a number of days"),
        ('[hub]\nblob_retention = "90d"\n', "e.g. blob_retention = 90; got '90d'"),
        ("[hb]\nblob_quota = 1\n", "unknown section [hb]; did you mean [hub]?"),
    ],
)
def test_hub_blob_settings_are_checked(home: Home, body: str, expected: str) -> None:
    path = write(home, body)
    with pytest.raises(ConfigError) as caught:
        load_config(home.path)
    assert str(path) in str(caught.value) and expected in str(caught.value)
