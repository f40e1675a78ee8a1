"""Running the real program under Pulumi's mock engine, recording every registration.

`RecordingMonitor` sees each RegisterResource request whole: type, name, parent, dependencies,
the effective `protect`, `retainOnDelete`, `additionalSecretOutputs`, the provider, and the
serialized inputs with their secret markers. The plan and the mocked tests both read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import config as _config
from pulumi.runtime import mocks as _mocks
from pulumi.runtime import settings as _settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
REDACTED = "[secret]"


@dataclass
class Registration:
    """One registered resource as the engine would receive it."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    provider: str
    protect: bool
    retain_on_delete: bool
    depends_on: list[str]
    additional_secret_outputs: list[str]
    inputs: dict[str, Any]
    """Plain input values (secrets unwrapped: never print these)."""
    redacted: dict[str, Any]
    """Inputs with every secret value replaced by "[secret]"."""
    secret_paths: list[str]
    """Paths (`spec.template.spec.containers[0].env[1].value`) of secret inputs."""

    @property
    def urn_name(self) -> str:
        return self.urn.split("::")[-1]


def _walk_secrets(value: Any, path: str, paths: list[str]) -> tuple[Any, Any]:
    """Returns (plain, redacted) copies of a serialized value, collecting secret paths."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            paths.append(path or "<root>")
            plain, _ = _walk_secrets(value.get("value"), path, [])
            return plain, REDACTED
        plain_d: dict[str, Any] = {}
        red_d: dict[str, Any] = {}
        for key, item in value.items():
            sub = f"{path}.{key}" if path else key
            plain_d[key], red_d[key] = _walk_secrets(item, sub, paths)
        return plain_d, red_d
    if isinstance(value, list):
        pairs = [_walk_secrets(item, f"{path}[{i}]", paths) for i, item in enumerate(value)]
        return [p for p, _ in pairs], [r for _, r in pairs]
    if isinstance(value, float) and value.is_integer():
        # protobuf's Struct carries every number as a double; the program wrote integers.
        return int(value), int(value)
    return value, value


class DefaultMocks(pulumi.runtime.Mocks):
    """Echo inputs as outputs (as the Kubernetes provider predicts them in a preview), with an id
    derived from the logical name."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


class RecordingMonitor(_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            raw = json_format.MessageToDict(request.object, preserving_proto_field_name=True)
            paths: list[str] = []
            plain, redacted = _walk_secrets(raw, "", paths)
            self.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=bool(request.custom),
                    provider=request.provider,
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    depends_on=sorted(set(request.dependencies)),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    inputs=plain,
                    redacted=redacted,
                    secret_paths=paths,
                )
            )
        return response


@dataclass
class Recording:
    registrations: list[Registration] = field(default_factory=list)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def by_name(self, name: str) -> Registration:
        matches = [r for r in self.registrations if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} registrations named {name!r}")
        return matches[0]

    def __iter__(self) -> Iterator[Registration]:
        return iter(self.registrations)

    def __len__(self) -> int:
        return len(self.registrations)


def reset_runtime() -> None:
    """Fresh event loop and runtime settings, so one run never sees another's state."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    _settings.reset_options()
    _config.set_all_config({}, [])
    _settings.SETTINGS.rpc_manager.clear()
    _settings.SETTINGS.outputs.clear()


def run_program(
    program: Callable[[], Any],
    *,
    stack: str = "homelab",
    preview: bool = True,
    mocks: pulumi.runtime.Mocks | None = None,
    config: dict[str, str] | None = None,
) -> Recording:
    """Run `program` (the real composition) under mocks and return what it registered."""
    reset_runtime()
    if config is not None:
        _config.set_all_config(config)
    mocks = mocks or DefaultMocks()
    monitor = RecordingMonitor(mocks)
    _mocks.set_mocks(mocks, project="homelab", stack=stack, preview=preview, monitor=monitor)
    _sync_await(run_pulumi_func(program))
    return Recording(monitor.registrations)
