"""The recording harness: its one-pass reading of the serialized inputs, its direct echo of a
registration, and its collector pause change nothing a run records, only what the run costs."""

from __future__ import annotations

import gc
from dataclasses import asdict
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from google.protobuf import json_format, struct_pb2

from plan.engine import (
    REDACTED,
    SECRET_SIG,
    SECRET_SIG_KEY,
    UNKNOWN,
    DefaultMocks,
    Recording,
    RecordingMonitor,
    _from_struct,
    collector_paused,
    run_program,
)
from rack.loader import Loaded
from stacks.composition import build, export


def walk_reference(value: Any, path: str, paths: list[str]) -> tuple[Any, Any]:
    """The reading `_from_struct` replaces, kept as the reference: `json_format.MessageToDict`,
    then a walk for secret markers that turns integral doubles back into ints."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            paths.append(path or "<root>")
            plain, _ = walk_reference(value.get("value"), path, [])
            return plain, REDACTED
        plain_d: dict[str, Any] = {}
        red_d: dict[str, Any] = {}
        for key, item in sorted(value.items()):  # keys in order, as `_from_struct` reads them
            plain_d[key], red_d[key] = walk_reference(item, f"{path}.{key}" if path else key, paths)
        return plain_d, red_d
    if isinstance(value, list):
        pairs = [walk_reference(item, f"{path}[{i}]", paths) for i, item in enumerate(value)]
        return [p for p, _ in pairs], [r for _, r in pairs]
    if isinstance(value, float) and value.is_integer():
        return int(value), int(value)
    return value, value


def secret(value: Any) -> dict[str, Any]:
    return {SECRET_SIG_KEY: SECRET_SIG, "value": value}


SAMPLE: dict[str, Any] = {
    "metadata": {"name": "x", "labels": {"a": "b"}, "annotations": {}},
    "replicas": 3,
    "ratio": 0.25,
    "enabled": True,
    "off": False,
    "nothing": None,
    "unknown": UNKNOWN,
    "stringData": {"password": secret("hunter2"), "user": "app"},
    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": secret("s3")}, 7, [1.5, secret(2)]],
    "whole": secret({"nested": secret("inner"), "n": 4}),
    "emptySecret": {SECRET_SIG_KEY: SECRET_SIG},
    "notSecret": {SECRET_SIG_KEY: "5cf8f73096256a8f31e491e813e4eb8e", "urn": "urn:x", "id": "i"},
    "numbers": [0, -1, 1e20, 2.5e-3],
}


def test_one_pass_reading_matches_message_to_dict_and_walk() -> None:
    struct = struct_pb2.Struct()
    struct.update(SAMPLE)
    ref_paths: list[str] = []
    expected = walk_reference(json_format.MessageToDict(struct), "", ref_paths)
    paths: list[str] = []
    got = _from_struct(struct, "", paths)
    assert got == expected
    assert paths == ref_paths
    plain, redacted = got
    # the types survive too (== would let 3 == 3.0 and True == 1 pass)
    assert type(plain["replicas"]) is int and type(plain["ratio"]) is float and plain["enabled"] is True
    assert plain["numbers"] == [0, -1, 100000000000000000000, 0.0025] and type(plain["numbers"][2]) is int
    assert sorted(paths) == ["emptySecret", "env[1].value", "env[3][1]", "stringData.password", "whole"]
    assert redacted["stringData"] == {"password": REDACTED, "user": "app"}
    assert plain["whole"] == {"nested": "inner", "n": 4}  # a secret inside a secret: one path
    assert plain["emptySecret"] is None and redacted["whole"] == REDACTED
    assert plain["unknown"] == UNKNOWN and plain["nothing"] is None


class RoundTripMocks(DefaultMocks):
    """DefaultMocks answered the SDK's way: overriding `new_resource` (with the same body) turns
    the monitor's direct echo off, so each registration goes through deserialize -> mock ->
    serialize."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        return f"{args.name}-id", dict(args.inputs)


def comparable(recording: Recording) -> list[dict[str, Any]]:
    rows = []
    for r in recording:
        row = asdict(r)
        row["secret_paths"] = sorted(row["secret_paths"])
        rows.append(row)
    return sorted(rows, key=lambda row: row["urn"])


def wired_program() -> None:
    """Resources whose inputs are made of other resources' outputs: a nested secret, a secret
    in a list, an unknown (the dynamic value in a preview), a provider reference."""
    provider = k8s.Provider("k8s", kubeconfig="unused")
    opts = pulumi.ResourceOptions(provider=provider)
    sec = k8s.core.v1.Secret(
        "s", metadata={"name": "s", "namespace": "x"}, string_data={"pw": pulumi.Output.secret("p")}, opts=opts
    )
    cm = k8s.core.v1.ConfigMap(
        "cm",
        metadata={"name": "cm", "namespace": "x", "labels": sec.metadata.apply(lambda m: {"from": m["name"]})},
        data=sec.string_data.apply(lambda d: {"copied": d["pw"], "keys": ",".join(sorted(d))}),
        opts=opts,
    )
    k8s.core.v1.ConfigMap(
        "cm2",
        metadata={"name": "cm2", "namespace": "x"},
        data=pulumi.Output.all(cm.data, cm.id, cm.urn).apply(lambda a: {"n": str(len(a[0])), "id": a[1], "u": a[2]}),
        opts=opts,
    )


def test_direct_echo_records_what_the_sdk_round_trip_records(homelab: Loaded) -> None:
    def program() -> None:
        export(build(homelab), homelab)

    direct = run_program(program, stack="homelab")
    round_trip = run_program(program, stack="homelab", mocks=RoundTripMocks())
    assert len(direct) > 200
    assert comparable(direct) == comparable(round_trip)

    direct = run_program(wired_program)
    round_trip = run_program(wired_program, mocks=RoundTripMocks())
    assert comparable(direct) == comparable(round_trip)
    cm2 = direct.by_name("cm2")
    assert cm2.inputs["data"] == {"n": "2", "id": "cm-id", "u": direct.by_name("cm").urn}
    assert cm2.secret_paths == ["data"]  # the secret flowed through cm's outputs
    assert direct.by_name("cm").inputs["metadata"]["labels"] == {"from": "s"}


def test_echoing_monitor_keeps_the_state_mock_monitor_keeps() -> None:
    """`get_registered_resources` (and `getResource` invokes) see the deserialized inputs."""
    monitors: list[RecordingMonitor] = []
    for mocks in (DefaultMocks(), RoundTripMocks()):
        monitor = RecordingMonitor(mocks, echo=True)
        pulumi.runtime.set_mocks(mocks, project="homelab", stack="t", preview=True, monitor=monitor)

        @pulumi.runtime.test
        def registered() -> pulumi.Output[Any]:
            sec = k8s.core.v1.Secret("s", metadata={"name": "s"}, string_data={"pw": pulumi.Output.secret("p")})
            return sec.urn

        registered()
        monitors.append(monitor)
    direct, round_trip = monitors
    assert direct.echo and not round_trip.echo
    assert direct.get_registered_resources() == round_trip.get_registered_resources()
    [state] = [r.state for r in direct.get_registered_resources().values()]
    assert state["metadata"] == {"name": "s"} and state["kind"] == "Secret"


def test_collector_paused_for_the_run_and_restored() -> None:
    seen: list[bool] = []
    run_program(lambda: seen.append(gc.isenabled()))
    assert seen == [False] and gc.isenabled()

    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("the program failed")
    assert gc.isenabled()

    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a caller's own pause is left as it was
    finally:
        gc.enable()


def test_one_shot_run_leaves_its_objects_to_the_permanent_generation() -> None:
    gc.collect()
    before = gc.get_freeze_count()
    try:
        run_program(lambda: None, one_shot=True)
        frozen = gc.get_freeze_count() - before
        assert frozen > 1000 and gc.isenabled()  # the run's objects, not looked at again
        assert gc.get_count()[0] < 700  # and no collection debt left for the next allocation
    finally:
        gc.unfreeze()
    run_program(lambda: None)
    assert gc.get_freeze_count() == 0  # a plain run (the tests') freezes nothing
