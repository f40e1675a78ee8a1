"""What the component tests share: checking a wire-form class against the typed SDK class."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.runtime import mocks as _mocks

from plan.engine import Recording, RecordingMonitor


@pytest.fixture
def options(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[Any, ...]]:
    """Per resource name: the RegisterResource options a Registration does not keep
    (replaceOnChanges, provider version, ignoreChanges)."""
    seen: dict[str, tuple[Any, ...]] = {}
    register = RecordingMonitor.RegisterResource

    def spy(self: _mocks.MockMonitor, request: Any) -> Any:
        seen[request.name] = (list(request.replaceOnChanges), request.version, list(request.ignoreChanges))
        return register(self, request)

    monkeypatch.setattr(RecordingMonitor, "RegisterResource", spy)
    return seen


def registered_alike(
    rec: Recording, options: dict[str, tuple[Any, ...]], typed: str, ours: str, *, version: bool = True
) -> None:
    """`ours` registered what the typed class registered as `typed`: type, inputs, secret paths,
    secret outputs, dependencies and options (the provider version only with `version`)."""
    a, b = rec.by_name(typed), rec.by_name(ours)
    assert (a.type, a.inputs, sorted(a.secret_paths), a.additional_secret_outputs, a.depends_on) == (
        b.type,
        b.inputs,
        sorted(b.secret_paths),
        b.additional_secret_outputs,
        b.depends_on,
    )
    (replace_a, version_a, ignore_a), (replace_b, version_b, ignore_b) = options[typed], options[ours]
    assert (replace_a, ignore_a) == (replace_b, ignore_b)
    if version:
        assert version_a == version_b
