"""The development infrastructure: mirror discovery, idempotent set-up, the base image."""

from __future__ import annotations

import time

import pytest

from ptm_p2p.dev.baseimage import debian_mirror
from ptm_p2p.dev.settings import DevSettings
from ptm_p2p.dev.stack import ensure_stack
from ptm_p2p.errors import ExecutorError

pytestmark = pytest.mark.docker


def test_debian_mirror_from_deb822(tmp_path):
    (tmp_path / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/security\n"
        "Suites: bookworm-security\n"
    )
    assert debian_mirror(tmp_path) == "http://mirror.example/debian"


@pytest.mark.parametrize(
    "value", ["127.0.0.1", "127.0.0.1:", "127.0.0.1:99999", "10.0.0.1:5000", "127.0.0.1:\uff15"]
)
def test_registry_must_be_loopback_with_a_port(monkeypatch, value):
    monkeypatch.setenv("PTM_REGISTRY", value)
    with pytest.raises(ExecutorError, match="must listen on"):
        DevSettings.from_env()


def test_second_set_up_is_fast_and_identical(stack):
    started = time.monotonic()
    again = ensure_stack(stack.settings)
    assert time.monotonic() - started < 30
    assert again.images == stack.images
    assert all("@sha256:" in ref for ref in again.images.values())


def test_base_image_has_python_and_numpy(client, stack):
    out = client.containers.run(
        stack.base_image,
        ["python3", "-c", "import numpy; print(numpy.__version__)"],
        remove=True,
        network_mode="none",
        user="65534:65534",
        read_only=True,
    )
    assert out.decode().strip().startswith("1.")
