"""Repository-level checks: the ledger stays pure, roles stay apart, the CLI uses only public
names, and the docs keep their promises."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
    after = readme.split("A site's `config.toml`", 1)[1]
    block = after.split("```toml\n", 1)[1].split("```", 1)[0]
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


@pytest.mark.parametrize("layer", ["network", "executor", "ledger"])
def test_shared_layers_import_no_role(layer: str) -> None:
    """network/, executor/ and ledger/ serve every role: they never import a role package
    (hub, site, client, admin) or the CLI, so a role's change cannot reach under another."""
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "ptm_p2p" / layer).rglob("*.py"))
        for name in _imports(path)
        if any(name.startswith(f"ptm_p2p.{role}") for role in (*ROLES, "cli"))
    ]
    assert not offenders, f"{layer}/ must not import a role:\n" + "\n".join(offenders)


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
        "import ptm_p2p.cli.collab as net\n"
        "from ptm_p2p import __version__, errors\n"
        "from ptm_p2p.cli.tasks import _parse_memory, open_client\n"
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


PACKAGE = ROOT / "ptm_p2p"


def _module_of(path: Path, package: Path) -> str:
    parts = [package.name, *path.relative_to(package).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(
    tree: ast.Module, module: str, is_package: bool, type_checking: bool
) -> set[str]:
    """What a module imports when it is loaded: its body and the blocks of its top-level
    ``if``/``try``/``with``, but not inside functions or classes (those run later, when every
    module is loaded); ``if TYPE_CHECKING:`` blocks only with ``type_checking``."""
    found: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[: len(package) - node.level + 1]
                    base = ".".join([*package, *([base] if base else [])])
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if type_checking or test not in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(tree.body)
    return found


def import_graph(package: Path = PACKAGE, type_checking: bool = False) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports at load time (``ptm_p2p.x.y``), with
    ``type_checking`` also those it imports only for its annotations."""
    files = {_module_of(path, package): path for path in sorted(package.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        names = _top_level_imports(tree, module, path.name == "__init__.py", type_checking)
        graph[module] = {name for name in names if name in files and name != module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:  # recursion depth: at most the number of modules
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(groups)


def test_the_cycle_check_finds_a_cycle_and_ignores_type_checking_and_local_imports(
    tmp_path: Path,
) -> None:
    pkg = tmp_path / "ptm_p2p"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from ptm_p2p.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from .c import x\n")
    (pkg / "sub" / "c.py").write_text("import ptm_p2p.a\nx = 1\n")
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nimport ptm_p2p.e\n"
        "if TYPE_CHECKING:\n    import ptm_p2p.a\n"
    )
    (pkg / "e.py").write_text("def f():\n    import ptm_p2p.d\n")
    graph = import_graph(pkg)
    assert graph["ptm_p2p.sub.b"] == {"ptm_p2p.sub.c"}
    assert graph["ptm_p2p.d"] == {"ptm_p2p.e"} and graph["ptm_p2p.e"] == set()
    assert import_cycles(graph) == [["ptm_p2p.a", "ptm_p2p.sub.b", "ptm_p2p.sub.c"]]
    assert import_graph(pkg, type_checking=True)["ptm_p2p.d"] == {"ptm_p2p.a", "ptm_p2p.e"}


@pytest.mark.parametrize("type_checking", [False, True], ids=["loaded", "annotations"])
def test_no_import_cycles_between_files(type_checking: bool) -> None:
    """No two files of ptm_p2p import each other, directly or through others: each can be
    read (and tested) after the ones it imports, and a change in one cannot break the loading
    of another through a half-initialised module. Also not through ``if TYPE_CHECKING:``
    imports, the usual way to hide a cycle: two files that name each other's types are one
    part, to be read and changed together. (A function-local import is how a file reaches
    a heavy dependency only when needed; it is not counted.)"""
    cycles = import_cycles(import_graph(type_checking=type_checking))
    assert not cycles, "import cycles between files of ptm_p2p:\n" + "\n".join(
        " <-> ".join(group) for group in cycles
    )


def test_only_daemons_import_the_network_daemon_runner() -> None:
    """``network/daemon_runner.py`` starts a libp2p host and runs a daemon; the parts a daemon is
    made of (the trust registry, the peer book, the verified log…) must not need it, e.g.
    for a file writer (``atomic_file.py``)."""
    graph = import_graph(type_checking=True)
    users = sorted(m for m, names in graph.items() if "ptm_p2p.network.daemon_runner" in names)
    parts = [m for m in users if m.startswith("ptm_p2p.network.")]
    assert not parts, f"parts of the network layer import network/daemon_runner.py: {parts}"
