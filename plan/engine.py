"""Running the real program under Pulumi's mock engine, recording every registration.

`RecordingMonitor` sees each RegisterResource request whole: type, name, parent, dependencies,
the effective `protect`, `retainOnDelete`, `additionalSecretOutputs`, the provider, and the
serialized inputs with their secret markers. The plan and the mocked tests both read it.

What the harness itself costs is kept small, because `make bench` compares the plan against the
SDK's floor run under this same harness (see `run_program` and `RecordingMonitor`).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import struct_pb2
from pulumi.runtime import config as _config
from pulumi.runtime import mocks as _mocks
from pulumi.runtime import rpc as _rpc
from pulumi.runtime import settings as _settings
from pulumi.runtime.proto import resource_pb2 as _resource_pb2
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

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


def _from_value(value: struct_pb2.Value, path: str, paths: list[str]) -> tuple[Any, Any]:
    """One protobuf `Value` as (plain, redacted), collecting the paths of secret values.

    What `json_format.MessageToDict` would give, with integral numbers as ints (protobuf's Struct
    carries every number as a double; the program wrote integers) and every secret-marked value
    replaced by "[secret]" in the redacted copy, in one pass over the message."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        text = value.string_value
        return text, text
    if kind == "struct_value":
        return _from_struct(value.struct_value, path, paths)
    if kind == "number_value":
        number = value.number_value
        if number.is_integer():
            number = int(number)
        return number, number
    if kind == "bool_value":
        flag = value.bool_value
        return flag, flag
    if kind == "list_value":
        plain_l: list[Any] = []
        red_l: list[Any] = []
        for i, item in enumerate(value.list_value.values):
            plain, red = _from_value(item, f"{path}[{i}]", paths)
            plain_l.append(plain)
            red_l.append(red)
        return plain_l, red_l
    return None, None  # null_value, or no kind set


def _from_struct(struct: struct_pb2.Struct, path: str, paths: list[str]) -> tuple[dict[str, Any] | Any, Any]:
    fields = struct.fields
    sig = fields.get(SECRET_SIG_KEY)
    if sig is not None and sig.WhichOneof("kind") == "string_value" and sig.string_value == SECRET_SIG:
        paths.append(path or "<root>")
        inner = fields.get("value")
        plain, _ = _from_value(inner, path, []) if inner is not None else (None, None)
        return plain, REDACTED
    plain_d: dict[str, Any] = {}
    red_d: dict[str, Any] = {}
    # Keys in order: a Struct is a map, whose iteration order differs between processes; sorted,
    # the inputs and the secret paths read the same in every run.
    for key in sorted(fields):
        plain_d[key], red_d[key] = _from_value(fields[key], f"{path}.{key}" if path else key, paths)
    return plain_d, red_d


class DefaultMocks(pulumi.runtime.Mocks):
    """Echo inputs as outputs (as the Kubernetes provider predicts them in a preview), with an id
    derived from the logical name."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def _echoes_inputs(mocks: pulumi.runtime.Mocks) -> bool:
    """Whether `mocks` answers every registration as `DefaultMocks` does (id `<name>-id`, inputs
    echoed as outputs)."""
    return isinstance(mocks, DefaultMocks) and type(mocks).new_resource is DefaultMocks.new_resource


class RecordingMonitor(_mocks.MockMonitor):
    """The SDK's mock monitor, recording every registration.

    With `echo=True` (only for mocks that echo inputs, see `_echoes_inputs`), a registration is
    answered with its own serialized inputs instead of the SDK's round trip (deserialize the
    inputs, hand them to `new_resource`, serialize the echo back on a private event loop): the
    SDK deserializes the answer either way, and the outputs it resolves are the same (secret
    markers, unknowns and resource references survive both ways). The state `MockMonitor` keeps
    per resource for `getResource` invokes is deserialized when one is asked for."""

    def __init__(self, mocks: pulumi.runtime.Mocks, *, echo: bool = False):
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.echo = echo and _echoes_inputs(mocks)
        self._deferred: dict[str, struct_pb2.Struct] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        if request.type == "pulumi:pulumi:Stack":
            return super().RegisterResource(request)
        if self.echo:
            urn = self.make_urn(request.parent, request.type, request.name)
            id_ = f"{request.name}-id"
            response = _resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=request.object)
            self.resources[urn] = _mocks.MockMonitor.ResourceRegistration(urn, id_, {})
            self._deferred[urn] = response.object  # the response's copy: the request is larger
        else:
            response = super().RegisterResource(request)
        paths: list[str] = []
        plain, redacted = _from_struct(request.object, "", paths)
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

    def _materialize(self) -> None:
        """Deserialize the state of echoed registrations (as `MockMonitor` stores it)."""
        if not self._deferred:
            return
        _ensure_event_loop()
        for urn, obj in self._deferred.items():
            registered = self.resources[urn]
            self.resources[urn] = registered._replace(state=_rpc.deserialize_properties(obj))
        self._deferred.clear()

    def Invoke(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        self._materialize()
        return super().Invoke(request)

    def get_registered_resources(self) -> dict[str, _mocks.MockMonitor.ResourceRegistration]:
        self._materialize()
        return super().get_registered_resources()


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


@contextmanager
def collector_paused(*, one_shot: bool = False) -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one program run (restored after).

    A run is a bounded batch whose objects nearly all stay alive until it ends (every resource,
    Output and registration), so the collector's passes over the growing heap find almost nothing
    to free, and cost a third to a half of the wall time at rack scale (gen-2 passes rescan the
    whole heap). Reference counting still frees everything acyclic at once; cyclic garbage waits
    for the first collection after the run, which looks at each object of the run once.

    `one_shot` is for a process that runs one program and then ends (`python -m plan`, each
    `make bench` child): the run's objects move to the collector's permanent generation
    (`gc.freeze`) instead of being looked at once more; they live until the process ends, as the
    plan keeps them anyway. A process that runs many programs (the tests) must not use it: the
    cyclic garbage of a frozen run is never collected.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if one_shot:
            gc.freeze()
        if enabled:
            gc.enable()


def run_program(
    program: Callable[[], Any],
    *,
    stack: str = "homelab",
    preview: bool = True,
    mocks: pulumi.runtime.Mocks | None = None,
    config: dict[str, str] | None = None,
    one_shot: bool = False,
) -> Recording:
    """Run `program` (the real composition) under mocks and return what it registered.

    In a preview with echoing mocks the monitor answers registrations directly
    (`RecordingMonitor`, `echo`), and the garbage collector pauses for the run
    (`collector_paused`, where `one_shot` is explained): costs of the harness, not of the
    program."""
    reset_runtime()
    if config is not None:
        _config.set_all_config(config)
    mocks = mocks or DefaultMocks()
    monitor = RecordingMonitor(mocks, echo=preview)
    _mocks.set_mocks(mocks, project="homelab", stack=stack, preview=preview, monitor=monitor)
    with collector_paused(one_shot=one_shot):
        _sync_await(run_pulumi_func(program))
    return Recording(monitor.registrations)
