"""The committed JSON Schema of the stack file: generated from the models (never stale), a valid
Draft 2020-12 schema, accepting every stack the loader accepts and refusing the shapes it refuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from rack.loader import SECRET_KEYS
from rack.schema import render, stack_schema
from tests.conftest import FIXTURES, ROOT

COMMITTED = ROOT / "schema" / "stack.schema.json"
STACKS = [ROOT / "Pulumi.homelab.yaml", ROOT / "Pulumi.lab.yaml"]
VALID = sorted((FIXTURES / "valid").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(COMMITTED.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def errors(validator: jsonschema.Draft202012Validator, doc: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_committed_schema_is_current() -> None:
    assert COMMITTED.read_text() == render(), "stale: run `python -m rack.schema > schema/stack.schema.json`"


def test_module_prints_the_schema() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rack.schema"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out == render()
    assert out.endswith("}\n") and json.loads(out) == stack_schema()


def test_stack_files_point_editors_at_it() -> None:
    for path in STACKS:
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=schema/stack.schema.json"
        assert (path.parent / first.split("$schema=")[1]) == COMMITTED


@pytest.mark.parametrize("path", STACKS + VALID, ids=lambda p: p.stem)
def test_accepts(validator: jsonschema.Draft202012Validator, path: Path) -> None:
    assert errors(validator, load(path)) == []


@pytest.mark.parametrize(
    ("fixture", "where"),
    [
        ("unknown-key-top-level", "$.config['homelab:rack']"),
        ("unknown-key-nested", "$.config['homelab:rack'].nodes[1]"),
        ("unknown-key-snake-case", "$.config['homelab:rack'].k3s"),
        ("wrong-type-port-string", "$.config['homelab:rack'].ssh.port"),
        ("wrong-type-uses-string", "$.config['homelab:rack'].apps[0].uses"),
        ("wrong-type-bool-string", "$.config['homelab:rack'].k3s['secrets-encryption']"),
        ("wrong-type-address-int", "$.config['homelab:rack'].nodes[1].address"),
        ("wrong-enum-class", "$.config['homelab:rack'].nodes[1].class"),
        ("malformed-address", "$.config['homelab:rack'].nodes[1].address"),
        ("missing-required-key", "$.config['homelab:rack'].nodes[2]"),
        ("secret-in-plaintext", "$.config['homelab:postgres-password']"),
        ("unknown-config-key", "$.config"),
        ("skip-layers-unknown-layer", "$.config['homelab:skip-layers'][0]"),
        ("rack-missing", "$.config"),
    ],
)
def test_refuses(validator: jsonschema.Draft202012Validator, fixture: str, where: str) -> None:
    found = errors(validator, load(FIXTURES / "invalid" / f"{fixture}.yaml"))
    assert found, f"{fixture} passed the schema"
    assert any(e.startswith(f"{where}: ") for e in found), found


def test_other_namespaces_stay_open_ours_is_closed(validator: jsonschema.Draft202012Validator) -> None:
    doc = load(STACKS[1])
    doc["config"]["pulumi:disable-default-providers"] = ["kubernetes"]
    doc["config"]["kubernetes:context"] = "lab"
    assert errors(validator, doc) == []
    doc["config"]["homelab:whatever"] = 1
    assert errors(validator, doc) != []
    doc["config"].pop("homelab:whatever")
    doc["config"]["no-namespace"] = 1
    assert errors(validator, doc) != []


def test_every_secret_takes_only_a_secure_value(validator: jsonschema.Draft202012Validator) -> None:
    doc = load(STACKS[0])
    for key in SECRET_KEYS:
        doc["config"][f"homelab:{key}"] = {"secure": "AAABAHx1"}
    assert errors(validator, doc) == []
    doc["config"]["homelab:k3s-token"] = {"secure": "AAAB", "plain": "x"}
    assert errors(validator, doc) != []


def test_descriptions_come_from_the_field_docstrings() -> None:
    defs = stack_schema()["$defs"]
    assert defs["Node"]["properties"]["address"]["description"] == "Static IPv4 address reached over SSH."
    assert "cluster-cidr" in defs["K3s"]["properties"]
    assert defs["Rack"]["additionalProperties"] is False
