"""The tree's floors: `rack/` (the config contract) imports neither `components` nor `stacks`;
`components/` never imports `stacks`; `components/` holds one subpackage per layer and no module
at its top but `__init__.py`; each layer's `__init__.py` says what it owns. Read with `ast`, so
an import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYERS = {"core", "metal", "system", "platform", "ci", "observability", "gpu", "apps"}
STACK_LAYERS = {"metal", "system", "platform", "ci", "observability", "gpu", "apps"}


def imported_packages(path: Path) -> set[str]:
    """Top-level package of every module `path` imports (absolute imports; the tree has no relative ones)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            found.add((node.module or "").split(".")[0])
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize(("package", "forbidden"), [("rack", {"components", "stacks"}), ("components", {"stacks"})])
def test_no_import_points_up(package: str, forbidden: set[str]) -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(imported_packages(p) & forbidden) for p in modules(package)}
    assert modules(package)
    assert {p: f for p, f in offenders.items() if f} == {}


def test_the_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The check above cannot pass by missing a lazy import."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from stacks.metal import MetalLayer\n    import components.core.layout\n")
    assert imported_packages(module) == {"stacks", "components"}


def test_components_is_one_package_per_layer() -> None:
    top = ROOT / "components"
    assert sorted(p.name for p in top.glob("*.py")) == ["__init__.py"]
    assert {p.name for p in top.iterdir() if p.is_dir() and p.name != "__pycache__"} == LAYERS
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((top / layer / "__init__.py").read_text()))
        assert doc and len(doc.splitlines()) <= 2, f"components/{layer}/__init__.py: say in two lines what it owns"


def test_stacks_holds_the_composition_and_one_module_per_layer() -> None:
    names = {p.stem for p in (ROOT / "stacks").glob("*.py")} - {"__init__"}
    assert names == STACK_LAYERS | {"composition"}


def test_stacks_import_components_through_the_layer_packages() -> None:
    """What a layer function uses is what its component package exports."""
    for path in modules("stacks"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("components."):
                package = ROOT.joinpath(*node.module.split("."))
                if package.is_dir():
                    continue  # `from components.ci import Gitea` or a module of the layer
                exported = _exports(node.module.rsplit(".", 1)[0])
                missing = [a.name for a in node.names if a.name not in exported]
                assert not missing, f"{path.name}: {node.module} {missing} not exported by the layer package"


def _exports(package: str) -> set[str]:
    tree = ast.parse(ROOT.joinpath(*package.split("."), "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            assert isinstance(node.value, ast.List)
            return {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
    return set()


def test_every_layer_package_import_resolves() -> None:
    """The exports are real names: importing each layer package runs its `from … import`."""
    import importlib

    for layer in LAYERS:
        module = importlib.import_module(f"components.{layer}")
        for name in getattr(module, "__all__", []):
            assert hasattr(module, name), f"components.{layer} exports {name} but does not define it"
