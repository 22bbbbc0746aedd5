"""The layer contracts of docs/architecture.md, checked.

- ``lint-imports`` (import-linter, configured in ``pyproject.toml``): the packages and the rooms
  inside them import downwards only, which also rules out import circles between rooms; the
  trainer knows no OpenDSS; only the OpenDSS room imports opendssdirect.
- No private name crosses a module boundary: no ``from x import _name`` and no
  ``module._name`` on an imported module of the project (tests are exempt: they may probe
  internals).
- Every function-local import of the packages says why on its line (an optional dependency, a
  plotting backend, start-up time), so the import block at the top is the dependency graph.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gridedge_env", "gradmap_agents", "baselines")


def _modules():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(mod: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".")
    is_pkg = False  # relative to the containing package
    base = base[: len(base) - node.level + (1 if is_pkg else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _private(name: str) -> bool:
    return (name.startswith("_") and not name.startswith("__")
            and name not in ("_fields", "_replace", "_asdict", "_make"))  # NamedTuple API


def test_import_contracts_hold():
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(exe), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


@pytest.mark.parametrize("path", list(_modules()), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_names_across_modules(path):
    mod = _module_name(path)
    if path.name == "__init__.py":
        mod += ".__init__"
    tree = ast.parse(path.read_text())
    bad, module_aliases = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            src = _absolute(mod, node)
            if src.split(".")[0] in PACKAGES:
                bad += [f"line {node.lineno}: from {src} import {a.name}"
                        for a in node.names if _private(a.name)]
                module_aliases |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
            module_aliases |= {a.asname or a.name.split(".")[0] for a in node.names
                               if a.name.split(".")[0] in PACKAGES}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _private(node.attr)
                and isinstance(node.value, ast.Name) and node.value.id in module_aliases):
            bad.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    assert not bad, f"{path.relative_to(ROOT)} uses private names of other modules: {bad}"


@pytest.mark.parametrize("path", list(_modules()), ids=lambda p: str(p.relative_to(ROOT)))
def test_function_local_imports_say_why(path):
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    bad = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and "#" not in lines[node.lineno - 1]:
                bad.append(f"line {node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bad, (f"{path.relative_to(ROOT)}: function-local imports without a reason "
                     f"comment (move them to the top, or say why on the line): {bad}")


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    succ = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    for root in sorted(succ):
        if root in index:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.append(x)
                        if x == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif w not in index:
                index[w] = low[w] = counter[0]
                counter[0] += 1
                stack.append(w)
                on.add(w)
                work.append((w, iter(succ.get(w, []))))
            elif w in on:
                low[v] = min(low[v], index[w])
    return out


def test_no_import_circles_between_modules():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    for pkg in {m for m in graph.modules if graph.find_children(m)}:
        # a package's __init__ re-exporting its submodules is not a circle of the design
        for child in graph.find_children(pkg):
            if graph.direct_import_exists(importer=pkg, imported=child):
                graph.remove_import(importer=pkg, imported=child)
    assert not _cycles(graph), f"import circles: {_cycles(graph)}"
