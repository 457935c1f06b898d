"""``ptm init`` and ``ptm id`` through click's CliRunner, on real home folders."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from click.testing import CliRunner

from ptm_p2p.cli import main
from ptm_p2p.home import Home


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_init_creates_a_private_key_file_and_prints_only_the_public_key(tmp_path: Path) -> None:
    home = tmp_path / "hospital-a"
    code, out, err = run("init", "--home", str(home), "--name", "hospital-a")
    assert code == 0, err
    key_file = home / "identity.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    seed_hex = key_file.read_text().strip()
    assert seed_hex not in out and seed_hex not in err
    loaded = Home.load(home)
    assert loaded.name == "hospital-a"
    assert loaded.public_key.hex() in out
    assert str(key_file) in out and (home / "ledger.db").exists()


def test_id_prints_the_public_key_from_home_or_ptm_home(tmp_path: Path) -> None:
    home = tmp_path / "h"
    code, out, _ = run("init", "--home", str(home), "--name", "site.b_2", "--json")
    assert code == 0
    created = json.loads(out)
    code, out, _ = run("id", "--home", str(home))
    assert (code, out.strip()) == (0, created["public_key"])
    code, out, _ = run("id", "--json", env={"PTM_HOME": str(home)})
    assert code == 0
    assert json.loads(out) == {
        "name": "site.b_2",
        "public_key": created["public_key"],
        "home": str(home),
    }


def test_init_honours_ptm_home(tmp_path: Path) -> None:
    home = tmp_path / "from-env"
    code, _, err = run("init", "--name", "researcher-1", env={"PTM_HOME": str(home)})
    assert code == 0, err
    assert Home.load(home).name == "researcher-1"


def test_init_refuses_to_overwrite_an_identity(tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert run("init", "--home", str(home), "--name", "first")[0] == 0
    key_before = (home / "identity.key").read_bytes()
    code, _, err = run("init", "--home", str(home), "--name", "second")
    assert code == 1
    assert "already" in err and "identity.key" in err
    assert (home / "identity.key").read_bytes() == key_before
    assert Home.load(home).name == "first"


def test_bad_names_exit_1_and_create_nothing(tmp_path: Path) -> None:
    for bad in ("", "-leading-dash", "has space", "a" * 65, 'quote"', "new\nline", "é"):
        home = tmp_path / f"h{len(bad)}{bad.isascii()}"
        code, _, err = run("init", "--home", str(home), "--name", bad)
        assert code == 1, bad
        assert "not allowed" in err
        assert not (home / "identity.key").exists()


def test_id_without_an_identity_explains_what_to_do(tmp_path: Path) -> None:
    code, _, err = run("id", "--home", str(tmp_path / "missing"))
    assert code == 1 and "ptm init" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run("id", "--home", str(tmp_path / "empty"))
    assert code == 1 and "ptm init" in err
    code, _, err = run("id", env={"PTM_HOME": ""})
    assert code == 1 and "--home" in err


def test_id_refuses_a_key_readable_by_others(tmp_path: Path) -> None:
    home = tmp_path / "h"
    run("init", "--home", str(home), "--name", "x")
    (home / "identity.key").chmod(0o644)
    code, _, err = run("id", "--home", str(home))
    assert code == 1 and "chmod 600" in err


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("init", "--home", str(tmp_path))[0] == 2  # --name missing
