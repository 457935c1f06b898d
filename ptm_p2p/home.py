"""One home folder per identity: its private key, its config.toml and its ledger copy.

Layout of a home (made by ``ptm init``)::

    HOME/identity.key   32-byte Ed25519 seed, hex, mode 0600, never printed
    HOME/config.toml    name and role-specific settings (site policy, tasks); its schema
                        and validation: ``ptm_p2p.config.load_config``
    HOME/ledger.db      this identity's verified copy of the ledger (SQLite)

The home is chosen by ``--home`` or, when that is absent, ``PTM_HOME``; the environment is
read by the CLI at call time, never at import time.
"""

from __future__ import annotations

import fcntl
import os
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ptm_p2p.errors import ConfigError, PtmError

if TYPE_CHECKING:  # loaded in load/init: `ptm --help` must not pay for PyNaCl
    from ptm_p2p.ledger.crypto import Signer

KEY_FILE = "identity.key"
CONFIG_FILE = "config.toml"
LEDGER_FILE = "ledger.db"
GENESIS_FILE = "genesis.entry"  # in a hub's home: the entry its log starts from
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Home:
    """An identity's folder; ``load`` checks that it is complete and sane."""

    path: Path
    name: str
    signer: Signer = field(repr=False)
    config: dict[str, Any] = field(repr=False)

    @property
    def public_key(self) -> bytes:
        return self.signer.public_key

    @property
    def ledger_path(self) -> Path:
        return self.path / LEDGER_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @classmethod
    def init(cls, path: Path, name: str, extra_config: str = "") -> Home:
        """Create a new identity in ``path`` (which must not hold one already)."""
        if not NAME_PATTERN.fullmatch(name):
            raise ConfigError(
                f"name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        path = Path(path)
        if (path / KEY_FILE).exists():
            raise ConfigError(
                f"{path / KEY_FILE} already exists: this home already holds an identity; "
                "choose another --home or delete the folder if you really mean to replace it"
            )
        path.mkdir(parents=True, exist_ok=True)
        config_text = (
            "# ptm_p2p identity configuration\n"
            "# (a site's [policy]: see README, 'Running tasks safely')\n"
            f'name = "{name}"\n' + extra_config
        )
        (path / CONFIG_FILE).write_text(config_text)
        from ptm_p2p.ledger.store import SqliteStore  # local: the store is the one I/O module

        SqliteStore(path / LEDGER_FILE).close()
        # The key comes last: it marks the home as complete, so a failure above leaves a
        # folder that ``init`` can simply be run on again.
        from ptm_p2p.ledger.crypto import Signer

        signer = Signer.generate()
        key_path = path / KEY_FILE
        # Create with 0600 from the start: a chmod after writing would leave a window.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(signer.seed.hex() + "\n")
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> Home:
        from ptm_p2p.ledger.crypto import Signer

        path = Path(path)
        key_path = path / KEY_FILE
        if not key_path.exists():
            raise ConfigError(
                f"no identity in {path}: {KEY_FILE} is missing; run `ptm init --home {path} "
                "--name NAME` first"
            )
        mode = key_path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(
                f"{key_path} is readable by others (mode {mode:o}); run `chmod 600 {key_path}`"
            )
        try:
            seed = bytes.fromhex(key_path.read_text().strip())
            signer = Signer(seed)
        except (ValueError, PtmError) as exc:
            raise ConfigError(f"{key_path} does not hold a 32-byte hex Ed25519 seed") from exc
        try:
            config = tomllib.loads((path / CONFIG_FILE).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"{path / CONFIG_FILE} is missing") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path / CONFIG_FILE} is not valid TOML: {exc}") from exc
        name = config.get("name")
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise ConfigError(f"{path / CONFIG_FILE}: 'name' is missing or invalid")
        return cls(path=path, name=name, signer=signer, config=config)


def resolve_home(home: str | Path | None) -> Path:
    """The home folder from ``--home`` or, failing that, ``PTM_HOME``."""
    if home:
        return Path(home)
    env = os.environ.get("PTM_HOME")
    if env:
        return Path(env)
    raise ConfigError("no home folder given: pass --home DIR or set PTM_HOME")


AUTHOR_LOCK_FILE = "author.lock"


@contextmanager
def author_lock(home: Path) -> Iterator[None]:
    """Serialise this identity's signers across processes (an exclusive ``flock`` on
    ``HOME/author.lock``).

    Signing reads the author's chain head, signs the next entry and submits it. Two processes
    doing that at once would sign two different entries with one sequence number, which the
    hub must record as equivocation and refuse the key from then on. Every command and the
    client that signs as a home holds this lock from reading the head until the hub answered.
    """
    with open(Path(home) / AUTHOR_LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
