"""Tests of the lab's own scripts (lab/*.py), loaded by path: their file names are not module names."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.conftest import ROOT


def lab_script(filename: str) -> ModuleType:
    """lab/<filename> as a module (imported afresh)."""
    name = filename.removesuffix(".py").replace("-", "_")
    spec = importlib.util.spec_from_file_location(name, ROOT / "lab" / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
