"""The README's config reference is the models': the table between the markers is exactly what
`python -m rack.reference` prints, and that table covers every key of the models."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from rack.config import Rack
from rack.loader import OPTION_KEYS, SECRET_KEYS
from rack.reference import END, START, config_reference, default_text, rows, type_name
from tests.conftest import ROOT

README = ROOT / "README.md"


def test_readme_has_the_current_reference() -> None:
    text = README.read_text() if README.exists() else ""
    if START not in text or END not in text:
        pytest.fail(
            f"README.md has no config reference: add a '## Config reference' section with {START} and {END} "
            "and paste the output of `python -m rack.reference` between them"
        )
    between = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert between == config_reference(), "README config reference is stale: rerun `python -m rack.reference`"
    assert "## Config reference" in text.split(START, 1)[0]


def test_module_prints_the_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rack.reference"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out == config_reference() + "\n"


def test_one_row_per_key_of_every_model() -> None:
    table = config_reference().splitlines()
    assert table[:2] == ["| key | type | default | description |", "|---|---|---|---|"]
    keys = [line.split(" | ")[0].removeprefix("| `").removesuffix("`") for line in table[2:]]
    assert len(keys) == len(set(keys))
    assert all(len(re.findall(r"(?<!\\)\|", line)) == 5 for line in table), "a cell broke the table"
    for key in ("rack.nodes[].address", "rack.k3s.cluster-cidr", "rack.gpu-host.containers[].health-path"):
        assert key in keys
    assert {f"homelab:{k}" for k in SECRET_KEYS} | {"homelab:rack", "homelab:skip-layers"} <= set(keys)
    # every field of every model reachable from Rack, with its docstring
    walked = list(rows())
    assert all(description for _, _, _, description in walked), "a field lacks its docstring"
    assert len(walked) == len(keys) - 1 - len(SECRET_KEYS) - len(OPTION_KEYS)


def test_rows_read_the_models() -> None:
    by_key = {key: (kind, default, description) for key, kind, default, description in rows()}
    assert by_key["rack.nodes[].address"] == ("IPv4 address", "required", "Static IPv4 address reached over SSH.")
    assert by_key["rack.k3s.cluster-cidr"][:2] == ("IPv4 CIDR", "`10.42.0.0/16`")
    assert by_key["rack.ssh.port"][:2] == ("integer (1–65535)", "`22`")
    assert by_key["rack.k3s.datastore"][:2] == ("one of `sqlite`, `etcd`", "`sqlite`")
    assert by_key["rack.dns.upstream"][:2] == ("list of IPv4 address (at least 1, at most 3)", "`[1.1.1.1, 9.9.9.9]`")
    assert by_key["rack.dns.records"][:2] == ("map of hostname to IPv4 address", "`{}`")
    assert by_key["rack.gpu-host"][1] == "—"
    assert by_key["rack.ssh"][1] == "(keys below)"
    assert by_key["rack.k3s.secrets-encryption"][:2] == ("boolean", "`true`")
    assert by_key["rack.k3s.version"][0] == "k3s version"
    assert by_key["rack.apps[].image"][0] == "image reference"


def test_type_and_default_helpers() -> None:
    fields = Rack.model_fields
    assert type_name(fields["domain"].annotation, fields["domain"].metadata) == "domain"
    assert default_text(fields["domain"]) == "required"
    assert default_text(fields["failover_seconds"]) == "`60`"
    assert type_name(str | None) == "string"
    assert type_name(list[int]) == "list of integer"


def test_pipes_in_descriptions_are_escaped() -> None:
    line = next(li for li in config_reference().splitlines() if li.startswith("| `rack.k3s.datastore`"))
    assert "sqlite: exactly one server \\| etcd" in line
