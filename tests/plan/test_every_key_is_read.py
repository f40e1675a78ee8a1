"""No config key is read by nothing: every leaf key of the rack model (each `Model.key`), changed
alone from the value the `everything` sample gives it (tests/fixtures/valid/everything.yaml sets
every key), must change the offline plan: what the program registers (plain inputs, options,
dependencies) or what the plan reports (placements, links, problems). The GPU layer is built
(the sample skips it).

A key with no other valid value is in `FIXED` with the reason; a key that cannot change alone or
validly from the sample gets its own pair of racks in `SPECIAL`.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import types
import typing
from collections.abc import Callable, Iterator
from enum import Enum
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel

from plan.result import make_plan
from rack.config import ConfigError, Rack, parse_rack
from rack.loader import Loaded, RackSecrets
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.slow]

SAMPLE: dict[str, Any] = yaml.safe_load((FIXTURES / "valid" / "everything.yaml").read_text())["config"]["homelab:rack"]
Racks = tuple[dict[str, Any], dict[str, Any]]


def _with(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    node: Any = out
    *parents, last = path.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


def _get(raw: Any, path: str) -> Any:
    for key in path.split("."):
        raw = raw[int(key)] if isinstance(raw, list) else (raw.get(key) if isinstance(raw, dict) else None)
    return raw


FIXED: dict[str, str] = {
    "Ingress.controller": "one allowed value (`traefik`): nothing to change it to",
}
"""Leaf keys (`Model.key`) with no other valid value, and why."""

KNOWN_UNREAD: dict[str, str] = {}
"""Findings: keys this test shows the plan does not read. Strict xfail: fixing one fails here,
so that the entry is removed with the fix."""

SECOND_RELIABLE = {
    "hostname": "db-2",
    "address": "192.168.20.32",
    "role": "agent",
    "class": "reliable",
    "capacity": {"cpu": "4", "memory": "8Gi"},
    "storage": {"path": "/mnt/ssd", "size": "1Ti"},
}


def _to_second_reliable_node(path: str) -> Callable[[dict[str, Any]], Racks]:
    """A volume's `node` can only name a reliable node with storage: the sample has one."""

    def make(raw: dict[str, Any]) -> Racks:
        base = copy.deepcopy(raw)
        base["nodes"].append(SECOND_RELIABLE)
        return base, _with(base, path, "db-2")

    return make


def _node_target(raw: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The off-node copies on a second reliable node's rest-server instead of the sample's sftp."""
    base = copy.deepcopy(raw)
    base["nodes"].append(SECOND_RELIABLE)
    offsite = {"node": "db-2", "retention": base["backup"]["offsite"]["retention"], **extra}
    return _with(base, "backup.offsite", offsite)


def _three_servers(raw: dict[str, Any]) -> dict[str, Any]:
    """gen-1 and gen-2 as servers too (etcd wants an odd count; a server is control-plane)."""
    out = copy.deepcopy(raw)
    for node in out["nodes"]:
        if node["hostname"] in ("gen-1", "gen-2"):
            node.update({"role": "server", "class": "control-plane"})
    return out


SPECIAL: dict[str, Callable[[dict[str, Any]], Racks]] = {
    # airgap-dir only exists with source: airgap (the sample installs online)
    "Install.airgap-dir": lambda raw: (
        _with(raw, "k3s.install", {"source": "airgap", "airgap-dir": "./airgap"}),
        _with(raw, "k3s.install", {"source": "airgap", "airgap-dir": "./airgap-2"}),
    ),
    "Install.source": lambda raw: (raw, _with(raw, "k3s.install", {"source": "airgap", "airgap-dir": "./airgap"})),
    # a state backend's name must be a dns.records name: the other record of the sample
    "StateBackend.address": lambda raw: (raw, _with(raw, "gitea.runners.state-backend.address", "printer")),
    "Database.node": _to_second_reliable_node("databases.postgres.node"),
    "VolumeRef.node": _to_second_reliable_node("gitea.volume.node"),
    "Monitoring.node": _to_second_reliable_node("monitoring.node"),
    # a role goes with a class, and etcd wants an odd number of servers: two agents promoted
    "Node.role": lambda raw: (raw, _three_servers(raw)),
    "K3s.bootstrap-server": lambda raw: (
        _three_servers(raw),
        _with(_three_servers(raw), "k3s.bootstrap-server", "gen-1"),
    ),
    # the Service's name is what apps put in `uses`; its port is one of the containers'
    "GpuService.name": lambda raw: (
        raw,
        _with(_with(raw, "gpu-host.service.name", "llm2"), "apps.0.uses", ["postgres", "redis", "llm2"]),
    ),
    "GpuService.port": lambda raw: (raw, _with(raw, "gpu-host.service.port", 8081)),
    # rest-server's version and volume size only exist with a `node` target (the sample's is sftp)
    "Offsite.rest-server-version": lambda raw: (
        _node_target(raw, {}),
        _node_target(raw, {"rest-server-version": "0.13.1"}),
    ),
    "Offsite.size": lambda raw: (_node_target(raw, {}), _node_target(raw, {"size": "300Gi"})),
    # the sample's sftp repository against db-2's rest-server (the same racks but for that key)
    "Offsite.node": lambda raw: (
        _with(_node_target(raw, {}), "backup.offsite", raw["backup"]["offsite"]),
        _node_target(raw, {}),
    ),
}
"""`Model.key` -> (base, changed) raw racks, where one key cannot change alone or validly."""


# --- the leaves of the model -------------------------------------------------------------------


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class inside an annotation (`Node`, `list[Node]`, `Gitea | None`), else None."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            if (found := _model_of(arg)) is not None:
                return found
        return None
    if origin is typing.Annotated:
        return _model_of(typing.get_args(annotation)[0])
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _models(model: type[BaseModel] = Rack) -> set[type[BaseModel]]:
    out = {model}
    for info in model.model_fields.values():
        if (sub := _model_of(info.annotation)) is not None:
            out |= _models(sub)
    return out


def leaves(model: type[BaseModel] = Rack, raw: Any = SAMPLE, prefix: str = "") -> Iterator[tuple[str, str, Any]]:
    """(`Model.key`, concrete path `nodes.3.storage.size`, annotation) of every leaf key of every
    element and section the sample sets."""
    for name, info in model.model_fields.items():
        key = info.alias or name
        sub = _model_of(info.annotation)
        value = raw.get(key) if isinstance(raw, dict) else None
        path = f"{prefix}{key}"
        if sub is None:
            yield f"{model.__name__}.{key}", path, info.annotation
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from leaves(sub, item, f"{path}.{i}.")
        elif isinstance(value, dict):
            yield from leaves(sub, value, f"{path}.")


def _fields() -> dict[str, list[tuple[str, Any]]]:
    """`Model.key` -> every (concrete path, annotation) of that leaf in the sample."""
    out: dict[str, list[tuple[str, Any]]] = {}
    for field, concrete, annotation in leaves():
        out.setdefault(field, []).append((concrete, annotation))
    return out


FIELDS = _fields()


# --- changing one value, validly ---------------------------------------------------------------


def _bump_numbers(text: str, step: int = 1) -> str:
    """The last number in the text, plus `step` (16.6 -> 16.7, 0 4 * * * -> 0 5 * * *)."""
    matches = list(re.finditer(r"\d+", text))
    if not matches:
        return text + "x"
    m = matches[-1]
    return text[: m.start()] + str(max(0, int(m.group()) + step)) + text[m.end() :]


def _choices(annotation: Any) -> list[Any]:
    """The values an enum or Literal annotation allows."""
    out: list[Any] = []
    origin = typing.get_origin(annotation)
    if origin is Literal:
        out += list(typing.get_args(annotation))
    elif origin in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            out += _choices(arg)
    elif isinstance(annotation, type) and issubclass(annotation, Enum):
        out += [m.value for m in annotation]
    return out


def candidates(value: Any, annotation: Any) -> Iterator[Any]:
    """Other values of the same type, most plausible first (validity is checked by the caller)."""
    if isinstance(value, bool):
        yield not value
    elif isinstance(value, int):
        yield from (value + 1, value - 1, value * 2, value // 2)
    elif isinstance(value, str) and value.startswith("@"):
        yield from (v for v in ("@hourly", "@daily", "@weekly") if v != value)
    elif isinstance(value, str) and re.fullmatch(r"\d+(\.\d+){1,2}", value):
        yield from (_bump_numbers(value), _bump_numbers(value, step=-1))
    elif isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?(m|Ki|Mi|Gi|Ti)?", value):
        number, unit = re.fullmatch(r"([\d.]+)(.*)", value).groups()  # type: ignore[union-attr]
        yield from (f"{int(float(number) * 2)}{unit}", f"{max(1, int(float(number) // 2))}{unit}")
    elif isinstance(value, str) and re.fullmatch(r"[\d.]+", value):
        address = IPv4Address(value)
        yield from (str(address + n) for n in (1, 2, 3, 4, 7, 9, 13))
    elif isinstance(value, str) and re.fullmatch(r"[\d.]+/\d+", value):
        net = IPv4Network(value)
        yield str(IPv4Network(f"{net.network_address + 2**24}/{net.prefixlen}"))
    elif isinstance(value, str):
        yield from _choices(annotation)
        yield from (_bump_numbers(value), _bump_numbers(value, step=-1))
        yield from (f"{value}x", f"x{value}", value.replace("-", "") + "2", value.rstrip("/") + "2")
    elif isinstance(value, list):
        if value:
            for first in candidates(value[0], None):
                yield [first, *value[1:]]
            yield value[:-1]
            yield [*value, value[-1]]
    elif isinstance(value, dict):
        if value:
            k, v = next(iter(value.items()))
            yield {**value, f"{k}x": v}
            for other in candidates(v, None):
                yield {**value, k: other}
    elif value is None:
        yield from _choices(annotation)


def changed_rack(field: str) -> Racks:
    """(base, changed): the sample and the sample with only this key changed (at the first place
    the sample sets it where another value is valid), both valid racks."""
    if field in SPECIAL:
        return SPECIAL[field](SAMPLE)
    for concrete, annotation in FIELDS[field]:
        current = _get(SAMPLE, concrete)
        for candidate in candidates(current, annotation):
            if candidate == current:
                continue
            raw = _with(SAMPLE, concrete, candidate)
            try:
                parse_rack(copy.deepcopy(raw))
            except ConfigError:
                continue
            return SAMPLE, raw
    raise AssertionError(f"no valid other value for {field} at {[c for c, _ in FIELDS[field]]}: add it to SPECIAL")


# --- the plan ----------------------------------------------------------------------------------


@functools.cache
def plan_of(raw_json: str) -> str:
    """The plan of a rack as text: every registration (plain inputs, secrets included, never
    printed: a connection's port or pinned host key is secret with its key), its options and
    dependencies, and the plan's report (placements, links, problems)."""
    loaded = Loaded(parse_rack(json.loads(raw_json)), RackSecrets(), frozenset(), ())
    result = make_plan(loaded, "everything")
    registrations = sorted(
        json.dumps(
            [r.urn, r.inputs, r.depends_on, r.protect, r.retain_on_delete, r.provider, r.additional_secret_outputs],
            sort_keys=True,
            default=str,
        )
        for r in result.recording
    )
    report = {k: v for k, v in result.to_json().items() if k not in ("stack", "resources")}
    return json.dumps([registrations, report], sort_keys=True, default=str)


def _difference(base: Any, changed: Any, path: str = "") -> str:
    """Where two raw racks differ (for the failure message)."""
    if isinstance(base, dict) and isinstance(changed, dict):
        for key in sorted(set(base) | set(changed), key=str):
            if base.get(key) != changed.get(key):
                return _difference(base.get(key), changed.get(key), f"{path}.{key}" if path else str(key))
    if isinstance(base, list) and isinstance(changed, list) and len(base) == len(changed):
        for i, (a, b) in enumerate(zip(base, changed, strict=True)):
            if a != b:
                return _difference(a, b, f"{path}[{i}]")
    return f"rack.{path}: {base!r} -> {changed!r}"


def test_every_leaf_of_every_model_is_checked() -> None:
    """The walk sees every leaf key the models declare (each at least once in the sample)."""
    declared = {
        f"{m.__name__}.{i.alias or n}"
        for m in _models()
        for n, i in m.model_fields.items()
        if _model_of(i.annotation) is None
    }
    assert declared == set(FIELDS) | set(SPECIAL), sorted(declared ^ (set(FIELDS) | set(SPECIAL)))
    assert len(declared) > 80


@pytest.mark.parametrize(
    "field",
    [
        pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=KNOWN_UNREAD[f])) if f in KNOWN_UNREAD else f
        for f in sorted(set(FIELDS) | set(SPECIAL))
    ],
)
def test_changing_the_key_changes_the_plan(field: str) -> None:
    if field in FIXED:
        pytest.skip(FIXED[field])
    base, changed = changed_rack(field)
    assert plan_of(json.dumps(base, sort_keys=True)) != plan_of(json.dumps(changed, sort_keys=True)), (
        f"{field} ({_difference(base, changed)}) changes neither the registrations nor the plan's report"
    )


def test_the_check_sees_a_key_nothing_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison is not vacuous: with the readers of `k3s.system-reserved.cpu` (the kubelet
    argument and the plan's allocatable) made to ignore it, the key shows as dead."""
    import components.metal.k3s_scripts as scripts
    import plan.result

    real_nodes = plan.result.nodes_from_rack
    default = type(SAMPLE_RACK.k3s.system_reserved)()
    monkeypatch.setattr(scripts, "system_reserved_arg", lambda rack: f"system-reserved=cpu={default.cpu},memory=1Gi")

    def ignoring_the_cpu_reserve(rack: Rack) -> Any:
        reserve = rack.k3s.system_reserved.model_copy(update={"cpu": default.cpu})
        return real_nodes(rack.model_copy(update={"k3s": rack.k3s.model_copy(update={"system_reserved": reserve})}))

    monkeypatch.setattr(plan.result, "nodes_from_rack", ignoring_the_cpu_reserve)
    plan_of.cache_clear()
    try:
        base, changed = changed_rack("Reserve.cpu")
        assert plan_of(json.dumps(base, sort_keys=True)) == plan_of(json.dumps(changed, sort_keys=True))
    finally:
        plan_of.cache_clear()


SAMPLE_RACK = parse_rack(copy.deepcopy(SAMPLE))
