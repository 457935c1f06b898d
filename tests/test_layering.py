"""Repository-level checks: the ledger stays pure and the docs keep their promises."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEDGER = ROOT / "ptm_p2p" / "ledger"
# The ledger may use the exception tree and nothing else of ptm_p2p: dependencies flow
# cli -> hub/site/client -> network/executor -> ledger, never back.
ALLOWED_INTERNAL = {"ptm_p2p.errors"}
FORBIDDEN_EXTERNAL = {"docker", "libp2p", "trio", "socket", "requests", "urllib"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_ledger_imports_nothing_of_the_other_layers() -> None:
    offenders = []
    for path in sorted(LEDGER.glob("*.py")):
        for name in _imports(path):
            internal = name.startswith("ptm_p2p") and not (
                name.startswith("ptm_p2p.ledger") or name in ALLOWED_INTERNAL
            )
            external = name.split(".")[0] in FORBIDDEN_EXTERNAL
            if internal or external:
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "the ledger must stay pure:\n" + "\n".join(offenders)


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bin/test" in readme
    assert "bin/test" in ci


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "ptm_p2p").rglob("*.py"))
        if path.stat().st_size and ast.get_docstring(ast.parse(path.read_text())) is None
    ]
    assert not missing, "modules without a docstring: " + ", ".join(missing)


def test_readme_site_config_example_is_a_valid_policy() -> None:
    import tomllib

    from ptm_p2p.executor import SitePolicy

    readme = (ROOT / "README.md").read_text()
    block = readme.split("A site's `config.toml`:\n\n```toml\n", 1)[1].split("```", 1)[0]
    policy = SitePolicy.from_config(tomllib.loads(block))
    assert policy.data and policy.publishers and policy.repositories


ROLES = ("hub", "site", "client")


def test_roles_do_not_import_each_other() -> None:
    """The hub, the site daemon and the researcher's client meet only on the ledger and the
    network protocol: none of them imports another (each could be its own package)."""
    offenders = []
    for role in ROLES:
        for path in sorted((ROOT / "ptm_p2p" / role).glob("*.py")):
            for name in _imports(path):
                for other in ROLES:
                    if other != role and name.startswith(f"ptm_p2p.{other}"):
                        offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "roles must not import each other:\n" + "\n".join(offenders)
