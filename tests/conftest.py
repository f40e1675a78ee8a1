"""Shared fixtures: isolated Pulumi runtimes, recording mocks, and the committed racks.

Every test gets a fresh event loop and fresh runtime settings (state leaks between mocked
tests otherwise: pulumi#6561, #7746).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, settings
from pulumi.runtime import mocks as _mocks

from plan.engine import DefaultMocks, Recording, RecordingMonitor, reset_runtime, run_program
from rack.config import Rack, parse_rack
from rack.loader import Loaded, RackSecrets, StackFile

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def stack_raw(name: str = "homelab") -> dict[str, Any]:
    """The raw `homelab:rack` value of a committed stack file (a deep copy to mutate)."""
    data = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text())
    return copy.deepcopy(data["config"]["homelab:rack"])


def loaded_from(raw: dict[str, Any] | Rack, *, skip: frozenset[str] = frozenset()) -> Loaded:
    rack = raw if isinstance(raw, Rack) else parse_rack(raw)
    return Loaded(rack=rack, secrets=RackSecrets(), skip_layers=skip)


@pytest.fixture
def homelab_raw() -> dict[str, Any]:
    return stack_raw("homelab")


@pytest.fixture
def homelab() -> Loaded:
    return StackFile.read(ROOT / "Pulumi.homelab.yaml").load()


@pytest.fixture
def lab() -> Loaded:
    return StackFile.read(ROOT / "Pulumi.lab.yaml").load()


@pytest.fixture(autouse=True)
def _isolated_runtime() -> Iterator[None]:
    reset_runtime()
    yield
    reset_runtime()


@pytest.fixture
def record() -> Callable[..., Recording]:
    """`record(program, preview=True)`: run a program under recording mocks, get every registration."""
    return run_program


@pytest.fixture
def mocked() -> RecordingMonitor:
    """Set recording mocks for a `@pulumi.runtime.test` test; the monitor records registrations."""
    mocks = DefaultMocks()
    monitor = RecordingMonitor(mocks)
    _mocks.set_mocks(mocks, project="homelab", stack="test", preview=False, monitor=monitor)
    return monitor


@pytest.fixture
def lab_bare() -> Loaded:
    """The lab rack without Gitea and monitoring: a rack with only databases and apps."""
    raw = stack_raw("lab")
    raw.pop("gitea", None)
    raw.pop("monitoring", None)
    return loaded_from(raw)


# --- Hypothesis: a fixed budget and seed in `make test`, a long profile by hand -------------------
# HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/rack/test_fuzz_loader.py tests/plan/test_fuzz_plan.py
# (docs/development.md). Each property sets its own budget through tests.stackfuzz.budget.
_FUZZ_COMMON: dict[str, Any] = {
    "database": None,
    "print_blob": True,  # a failure prints @reproduce_failure(...) to replay it
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    # no explain phase: it re-runs the failing example under a tracer, which breaks the time limits
    "phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
}
# the same examples on every run: a failure in CI is a failure on the laptop
settings.register_profile("bounded", derandomize=True, **_FUZZ_COMMON)
settings.register_profile("long", derandomize=False, **_FUZZ_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bounded"))
