"""Repository-level checks: the ledger stays pure, roles stay apart, the CLI uses only public
names, and the docs keep their promises."""

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


ROLES = ("hub", "site", "client", "admin")


def test_roles_do_not_import_each_other() -> None:
    """The hub, the site daemon, the researcher's client and the admin meet only on the
    ledger and the network protocol: none of them imports another (each could be its own
    package)."""
    offenders = []
    for role in ROLES:
        assert (ROOT / "ptm_p2p" / role / "__init__.py").is_file(), f"no role package {role}"
        for path in sorted((ROOT / "ptm_p2p" / role).rglob("*.py")):
            for name in _imports(path):
                for other in ROLES:
                    if other != role and name.startswith(f"ptm_p2p.{other}"):
                        offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "roles must not import each other:\n" + "\n".join(offenders)


CLI = ROOT / "ptm_p2p" / "cli"


def _private(name: str) -> bool:
    """``_name`` is private; ``__name__``-style dunders (``__version__``) are not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attribute accesses on a name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def private_names_used(path: Path) -> list[str]:
    """Private names of ptm_p2p that ``path`` imports or reads off an imported module:
    ``from ptm_p2p.x import _y``, ``import ptm_p2p._x``, ``module._y``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    modules: dict[str, str] = {}  # local name -> the ptm_p2p module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith("ptm_p2p"):
                    continue
                if any(_private(part) for part in alias.name.split(".")):
                    found.append(f"{node.lineno}: import {alias.name}")
                local = alias.asname or alias.name.split(".")[0]
                modules[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not node.module.startswith("ptm_p2p"):
                continue
            if any(_private(part) for part in node.module.split(".")):
                found.append(f"{node.lineno}: from {node.module} import …")
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
                elif _is_module(f"{node.module}.{alias.name}"):
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.extend(
                f"{node.lineno}: relative import of {alias.name}"
                for alias in node.names
                if _private(alias.name)
            )
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            dotted = _dotted(node)
            if dotted is not None and dotted.split(".")[0] in modules:
                found.append(f"{node.lineno}: {dotted}")
    return found


def test_the_check_for_private_names_finds_each_form(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import ptm_p2p.cli.network as net\n"
        "from ptm_p2p import __version__, errors\n"
        "from ptm_p2p.cli.researcher import _parse_memory, open_client\n"
        "from ptm_p2p.ledger import merkle\n"
        "import ptm_p2p.home\n"
        "net._emit\n"
        "errors.PtmError\n"
        "merkle._hash_children\n"
        "ptm_p2p.home._private\n"
        "self._fine = open_client\n"
    )
    found = private_names_used(sample)
    assert [f.split(":")[0] for f in found] == ["3", "6", "8", "9"], found


def test_the_cli_imports_no_private_names() -> None:
    """The CLI parses, calls and prints: it calls only what the roles, the ledger and its own
    modules offer publicly, so their insides can change without breaking a command."""
    offenders = [
        f"{path.relative_to(ROOT)}:{where}"
        for path in sorted(CLI.rglob("*.py"))
        for where in private_names_used(path)
    ]
    assert not offenders, "the CLI uses private names:\n" + "\n".join(offenders)
