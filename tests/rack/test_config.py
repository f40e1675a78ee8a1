"""The rack config boundary: every invalid fixture fails with exactly its one rule, every valid
fixture parses, the value validators accept and refuse what they should, and problems are
collected (all at once, each with a kebab-case key path) instead of raised one by one."""

from __future__ import annotations

import base64
import re
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from rack.config import (
    ConfigError,
    Issue,
    _abs_path,
    _cidr,
    _cron,
    _domain,
    _host_key,
    _hostname,
    _image,
    _ipv4,
    _k3s_version,
    _version,
    _version_text,
    format_loc,
    parse_rack,
)
from rack.loader import StackFile
from tests.conftest import FIXTURES, stack_raw
from tests.prereq import need

VALID = sorted((FIXTURES / "valid").glob("*.yaml"))
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))
_HEADER = re.compile(r"^# (rule|expect|expect-message|expect-issues): (.+)$")


@dataclass(frozen=True)
class Expectation:
    rule: str
    path: str
    message: str
    issues: int


def expectation(path: Path) -> Expectation:
    """The fixture's header comments: `# rule:`, `# expect:`, `# expect-message:` (and an
    optional `# expect-issues: N` where one rule legitimately reports several problems)."""
    head: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if m := _HEADER.match(line):
            head[m[1]] = m[2].strip()
    missing = {"rule", "expect", "expect-message"} - set(head)
    assert not missing, f"{path.name}: header lacks {sorted(missing)}"
    return Expectation(head["rule"], head["expect"], head["expect-message"], int(head.get("expect-issues", "1")))


def problems(path: Path) -> list[Issue]:
    with pytest.raises(ConfigError) as info:
        StackFile.read(path).load()
    return info.value.issues


# --- fixtures -------------------------------------------------------------------------------


def test_there_are_enough_fixtures() -> None:
    assert len(VALID) >= 4
    assert len(INVALID) >= 25


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_breaks_exactly_its_rule(path: Path) -> None:
    want = expectation(path)
    issues = problems(path)
    rendered = "\n".join(str(i) for i in issues)
    assert any(i.path == want.path and want.message in i.message for i in issues), (
        f"rule '{want.rule}': expected {want.path}: ...{want.message}... in\n{rendered}"
    )
    assert len(issues) == want.issues, f"rule '{want.rule}': more than one rule fired:\n{rendered}"


def test_every_spec_validation_has_a_fixture() -> None:
    """The spec's 'Validation a user can rely on' list, each mapped to at least one fixture rule."""
    rules = {expectation(p).rule for p in INVALID}
    spec = [
        "unknown key (top level of rack)",
        "unknown key (nested in a node)",
        "wrong type (port as a string)",
        "malformed address",
        "malformed CIDR (prefix longer than 32)",
        "malformed quantity (cpu)",
        "malformed quantity (memory)",
        "malformed quantity (size)",
        "malformed version (k3s)",
        "malformed version (database)",
        "malformed hostname (RFC 1123: uppercase and underscore)",
        "image reference without a tag",
        "image reference with the tag latest",
        "malformed image reference",
        "duplicate hostname",
        "duplicate node address",
        "node address inside the cluster CIDR",
        "node address inside the service CIDR",
        "cluster and service CIDRs overlap",
        "datastore sqlite with more than one server",
        "datastore etcd with an even number of servers",
        "no server node",
        "volume names a node that does not exist",
        "volume names a node that is not reliable",
        "volume on a reliable node without storage",
        "volume sizes exceed storage.size",
        "app uses a name that is not a database or the GPU service",
        "experimental app with no experimental node",
        "app host colliding with another app's host",
        "DNS record colliding with an app host",
        "install source airgap without airgap-dir",
        "bootstrap-server missing with two or more servers",
        "secret given in plaintext",
        "unknown homelab:* config key",
    ]
    assert sorted(set(spec) - rules) == []


def test_fixture_rules_are_unique() -> None:
    rules = [expectation(p).rule for p in INVALID]
    assert len(rules) == len(set(rules))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_fixture_parses(path: Path) -> None:
    loaded = StackFile.read(path).load()
    assert loaded.rack.servers(), "a valid rack has a server"
    assert loaded.rack.bootstrap().hostname in {n.hostname for n in loaded.rack.servers()}


def test_committed_stacks_parse() -> None:
    for name in ("homelab", "lab"):
        rack = parse_rack(stack_raw(name))
        assert rack.nodes


def _fields(model: BaseModel, declared: set[str], written: set[str]) -> None:
    """Every `Model.field` the models declare along this instance, and those the YAML wrote."""
    for name, info in type(model).model_fields.items():
        key = f"{type(model).__name__}.{info.alias or name}"
        declared.add(key)
        if name in model.model_fields_set:
            written.add(key)
        value = getattr(model, name)
        for item in value if isinstance(value, list) else value.values() if isinstance(value, dict) else [value]:
            if isinstance(item, BaseModel):
                _fields(item, declared, written)


NOT_IN_EVERYTHING = {"Install.airgap-dir", "Offsite.node", "Offsite.size", "Offsite.rest-server-version"}
"""Keys that contradict another key of the same section there (airgap.yaml covers airgap-dir,
offsite-node.yaml the in-cluster repository's keys)."""


def test_everything_fixture_sets_every_key() -> None:
    """The 'every optional section' fixture stays complete as fields are added to the models."""
    rack = StackFile.read(FIXTURES / "valid" / "everything.yaml").load().rack
    declared: set[str] = set()
    written: set[str] = set()
    _fields(rack, declared, written)
    assert "Rack.gpu-host" in written and "GpuContainer.health-path" in declared
    missing = sorted(declared - written - NOT_IN_EVERYTHING)
    assert not missing, f"add these keys to tests/fixtures/valid/everything.yaml: {missing}"


# --- error collection and paths -------------------------------------------------------------


def test_many_problems_are_reported_at_once(homelab_raw: dict[str, Any]) -> None:
    """Field errors come all together, not the first one only."""
    homelab_raw["nodes"][3]["address"] = "192.168.10.999"
    homelab_raw["k3s"]["cluster-cidr"] = "10.42.0.0/99"
    homelab_raw["apps"][1]["image"] = "git.lab.home.arpa/bible/auth"
    homelab_raw["colour"] = "red"
    with pytest.raises(ConfigError) as info:
        parse_rack(homelab_raw)
    paths = {i.path for i in info.value.issues}
    assert paths == {"rack.nodes[3].address", "rack.k3s.cluster-cidr", "rack.apps[1].image", "rack.colour"}


def test_many_cross_key_problems_are_reported_at_once(homelab_raw: dict[str, Any]) -> None:
    """Rules across keys are collected too, and the message lists every one of them."""
    homelab_raw["nodes"][2]["hostname"] = "rack-pi-1"
    homelab_raw["nodes"][4]["address"] = "10.43.1.1"
    homelab_raw["apps"][0]["uses"] = ["postgres", "mongo"]
    homelab_raw["databases"]["redis"]["node"] = "rack-pi-1"
    with pytest.raises(ConfigError) as info:
        parse_rack(homelab_raw)
    got = {i.path for i in info.value.issues}
    assert got == {
        "rack.nodes[2].hostname",
        "rack.nodes[4].address",
        "rack.apps[0].uses[1]",
        "rack.databases.redis.node",
    }
    text = str(info.value)
    assert all(p in text for p in got) and text.count("\n") == 3


def test_paths_use_indexes_and_kebab_case_aliases(homelab_raw: dict[str, Any]) -> None:
    homelab_raw["nodes"][3]["address"] = "nope"
    homelab_raw["k3s"]["cluster-cidr"] = "nope"
    homelab_raw["gpu-host"]["containers"][0]["health-path"] = "no-slash"
    homelab_raw["nodes"][0]["host-key"] = "nope"
    with pytest.raises(ConfigError) as info:
        parse_rack(homelab_raw)
    assert [i.path for i in info.value.issues] == [
        "rack.k3s.cluster-cidr",
        "rack.nodes[0].host-key",
        "rack.nodes[3].address",
        "rack.gpu-host.containers[0].health-path",
    ]


def test_snake_case_field_names_are_unknown_keys(homelab_raw: dict[str, Any]) -> None:
    """Python field names are not YAML keys: `cluster_cidr` must not silently work."""
    homelab_raw["k3s"]["cluster_cidr"] = homelab_raw["k3s"].pop("cluster-cidr")
    with pytest.raises(ConfigError) as info:
        parse_rack(homelab_raw)
    assert [(i.path, i.message) for i in info.value.issues] == [("rack.k3s.cluster_cidr", "unknown key")]


def test_models_still_construct_by_field_name() -> None:
    """Python code (tests, composition) builds models by field name; only YAML is alias-only."""
    rack = parse_rack(stack_raw("lab"))
    node = rack.nodes[0].model_copy(update={"host_key": None})
    assert node.host_key is None
    assert type(rack.k3s).model_validate({"version": "v1.31.4+k3s1", "cluster_cidr": "10.50.0.0/16"}).cluster_cidr == (
        IPv4Network("10.50.0.0/16")
    )


def test_rack_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        parse_rack(["not", "a", "mapping"])
    assert [(i.path, i.message) for i in info.value.issues] == [("rack", "must be a mapping of keys, got list")]


@pytest.mark.parametrize(
    ("loc", "want"),
    [
        (("nodes", 3, "address"), "rack.nodes[3].address"),
        (("k3s", "cluster-cidr"), "rack.k3s.cluster-cidr"),
        (("dns", "records", "Bad", "[key]"), "rack.dns.records.Bad (key)"),
        ((), "rack"),
    ],
)
def test_format_loc(loc: tuple[int | str, ...], want: str) -> None:
    assert format_loc(loc) == want


def test_wrong_type_message_names_what_was_given(homelab_raw: dict[str, Any]) -> None:
    homelab_raw["apps"][0]["replicas"] = "two"
    with pytest.raises(ConfigError) as info:
        parse_rack(homelab_raw)
    (issue,) = info.value.issues
    assert issue.path == "rack.apps[0].replicas"
    assert "(got str 'two')" in issue.message


def test_the_rack_is_frozen() -> None:
    rack = parse_rack(stack_raw("homelab"))
    with pytest.raises(ValueError, match="frozen"):
        rack.domain = "other.example"  # type: ignore[misc]


# --- value validators -----------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "rack-cp-1", "x" * 63, "0abc", "pi4"])
def test_hostname_accepts(value: str) -> None:
    assert _hostname(value) == value


@pytest.mark.parametrize("value", ["", "-pi", "pi-", "Pi", "pi_1", "pi.local", "x" * 64, "pi 1"])
def test_hostname_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="RFC 1123"):
        _hostname(value)


@pytest.mark.parametrize("value", ["lab.home.arpa", "example.org", "a.b"])
def test_domain_accepts(value: str) -> None:
    assert _domain(value) == value


@pytest.mark.parametrize("value", ["lab", "Lab.Home", "lab..home", ".lab.home", "lab.home.", "-a.b", "a_b.c"])
def test_domain_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="not a DNS domain"):
        _domain(value)


@pytest.mark.parametrize("value", ["v1.31.4+k3s1", "v1.30.10+k3s12"])
def test_k3s_version_accepts(value: str) -> None:
    assert _k3s_version(value) == value


@pytest.mark.parametrize("value", ["1.31.4+k3s1", "v1.31.4", "v1.31+k3s1", "v1.31.4-k3s1", "latest", "stable"])
def test_k3s_version_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="pinned k3s release"):
        _k3s_version(value)


@pytest.mark.parametrize("value", ["16.6", "1.22.6", "8.4.3", "0.2"])
def test_version_accepts(value: str) -> None:
    assert _version(value) == value


@pytest.mark.parametrize("value", ["16", "latest", "v16.6", "16.6.1.2", "16.x", "1.22.6-rootless"])
def test_version_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="pinned version"):
        _version(value)


def test_version_refuses_yaml_floats_but_takes_ints_and_strings() -> None:
    with pytest.raises(ValueError, match="quote it"):
        _version_text(16.1)
    assert _version_text(16) == "16"
    assert _version_text("16.10") == "16.10"


@pytest.mark.parametrize(
    "value",
    [
        "nginx:1.27.3",
        "ollama/ollama:0.5.4",
        "git.lab.home.arpa/bible/api:1.8.0",
        "localhost:5000/team/app:v2",
        "10.0.0.5:5000/queue:0.3.0",
        "ghcr.io/a/b@sha256:" + "0" * 64,
        "ghcr.io/a/b:1.0@sha256:" + "f" * 64,
        "docker.io/library/redis:7.4.1-alpine",
        "ghcr.io/a/b:latest@sha256:" + "a" * 64,
    ],
)
def test_image_accepts(value: str) -> None:
    assert _image(value) == value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("nginx", "has no tag"),
        ("ghcr.io/a/b", "has no tag"),
        ("nginx:latest", "latest"),
        ("Nginx:1.0", "not an image reference"),
        ("ghcr.io//b:1", "not an image reference"),
        ("nginx:", "not an image reference"),
        ("nginx:1.0 ", "not an image reference"),
        ("a/b@sha256:abc", "not an image reference"),
        ("nginx:-bad", "not an image reference"),
    ],
)
def test_image_rejects(value: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        _image(value)


def test_ipv4() -> None:
    assert _ipv4("192.168.10.11") == IPv4Address("192.168.10.11")
    assert _ipv4(IPv4Address("10.0.0.1")) == IPv4Address("10.0.0.1")
    for bad in ("192.168.10.256", "192.168.010.1", "fe80::1", "host", ""):
        with pytest.raises(ValueError, match="is not an IPv4 address"):
            _ipv4(bad)
    for wrong in (3232238091, True, ["10.0.0.1"]):
        with pytest.raises(ValueError, match="written as text"):
            _ipv4(wrong)


def test_cidr() -> None:
    assert _cidr("10.42.0.0/16") == IPv4Network("10.42.0.0/16")
    assert _cidr(IPv4Network("10.0.0.0/8")) == IPv4Network("10.0.0.0/8")
    with pytest.raises(ValueError, match="host bits set"):
        _cidr("10.42.0.1/16")
    for bad in ("10.42.0.0", "10.42.0.0/33", "10.42.0.0/-1", "2001:db8::/32", "x/16"):
        with pytest.raises(ValueError, match="is not an IPv4 CIDR"):
            _cidr(bad)
    with pytest.raises(ValueError, match=r"got int 5"):
        _cidr(5)


@pytest.fixture(scope="module")
def host_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Real public host keys from OpenSSH's ssh-keygen (the oracle), one per type and size."""
    need("ssh-keygen", "openssh-client")
    out: dict[str, str] = {}
    for name, args in {
        "ed25519": ["-t", "ed25519"],
        "ecdsa-256": ["-t", "ecdsa", "-b", "256"],
        "ecdsa-384": ["-t", "ecdsa", "-b", "384"],
        "ecdsa-521": ["-t", "ecdsa", "-b", "521"],
        "rsa": ["-t", "rsa", "-b", "2048"],
    }.items():
        key = tmp_path_factory.mktemp("keys") / name
        subprocess.run(["ssh-keygen", "-q", *args, "-N", "", "-C", "root@pi", "-f", str(key)], check=True)
        out[name] = key.with_suffix(".pub").read_text().strip()
    return out


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa-256", "ecdsa-384", "ecdsa-521"])
def test_host_key_accepts_ed25519_and_ecdsa_pins(host_keys: dict[str, str], kind: str) -> None:
    key = host_keys[kind]
    assert _host_key(f"  {key} \n") == key
    assert _host_key(" ".join(key.split()[:2])) == " ".join(key.split()[:2])  # as ssh-keyscan prints it


def test_host_key_refuses_an_rsa_pin_saying_why_and_what_to_pin(host_keys: dict[str, str]) -> None:
    with pytest.raises(ValueError) as info:
        _host_key(host_keys["rsa"])
    message = str(info.value)
    for part in ("ssh-rsa", "SHA-1", "OpenSSH 8.8", "pulumi-command", "ssh-keyscan -t ed25519 <address>"):
        assert part in message, part


def test_rsa_pins_are_config_errors_on_nodes_and_the_gpu_host(
    homelab_raw: dict[str, Any], host_keys: dict[str, str]
) -> None:
    homelab_raw["nodes"][2]["host-key"] = host_keys["rsa"]
    homelab_raw["gpu-host"]["host-key"] = host_keys["rsa"]
    with pytest.raises(ConfigError) as info:
        parse_rack(homelab_raw)
    assert [i.path for i in info.value.issues] == ["rack.nodes[2].host-key", "rack.gpu-host.host-key"]
    assert all("is an ssh-rsa pin" in i.message for i in info.value.issues)


def test_host_key_refuses_what_pulumi_command_could_not_parse(host_keys: dict[str, str]) -> None:
    ed_type, ed_blob = host_keys["ed25519"].split()[:2]
    ec_type, ec_blob = host_keys["ecdsa-256"].split()[:2]
    bad = {
        "AAAAC3Nza": "OpenSSH public host key",  # no type
        "ssh-dss AAAAB3NzaC1kc3M=": "type ssh-dss is not one of",
        "ssh-ed25519": "OpenSSH public host key",  # no key
        "ssh-ed25519 !!!": "OpenSSH public host key",
        f"ssh-ed25519 {ed_blob[:-4]}": "its base64 is not a key",  # cut short: bad padding
        f"{ec_type} {ed_blob}": "is not a ecdsa-sha2-nistp256 key",  # the type names another key
        f"ecdsa-sha2-nistp384 {ec_blob}": "is not a ecdsa-sha2-nistp384 key",  # a P-256 key
        f"{ed_type} {base64.b64encode(base64.b64decode(ed_blob)[:-1]).decode()}": "truncated",
    }
    for value, why in bad.items():
        with pytest.raises(ValueError, match="is not an OpenSSH public host key") as info:
            _host_key(value)
        assert why.replace("truncated", "its base64 is not a key") in str(info.value), (value, str(info.value))


def test_cron() -> None:
    assert _cron("15 3 * * *") == "15 3 * * *"
    assert _cron(" @daily ") == "@daily"
    for bad in ("@yearly-ish", "15 3 * *", "daily", ""):
        with pytest.raises(ValueError, match="cron schedule"):
            _cron(bad)


def test_abs_path() -> None:
    assert _abs_path("/mnt/ssd") == "/mnt/ssd"
    for bad in ("mnt/ssd", "./x", "/mnt/../etc", "/mnt/..", ""):
        with pytest.raises(ValueError, match="absolute path"):
            _abs_path(bad)


def test_quantities_accept_yaml_numbers(homelab_raw: dict[str, Any]) -> None:
    """`cpu: 4` and `cpu: 0.5` are read as numbers by YAML and kept as Kubernetes strings."""
    homelab_raw["nodes"][0]["capacity"] = {"cpu": 4, "memory": "8Gi"}
    homelab_raw["apps"][0]["cpu"] = 0.5
    rack = parse_rack(homelab_raw)
    assert rack.nodes[0].capacity.cpu == "4"
    assert rack.apps[0].cpu == "0.5"


def test_booleans_are_not_quantities(homelab_raw: dict[str, Any]) -> None:
    homelab_raw["apps"][0]["cpu"] = True
    with pytest.raises(ConfigError) as info:
        parse_rack(homelab_raw)
    assert [i.path for i in info.value.issues] == ["rack.apps[0].cpu"]


def test_defaults_fill_in() -> None:
    rack = StackFile.read(FIXTURES / "valid" / "minimal.yaml").load().rack
    assert rack.ssh.user == "pi" and rack.ssh.port == 22
    assert rack.k3s.cluster_cidr == IPv4Network("10.42.0.0/16")
    assert rack.k3s.service_cidr == IPv4Network("10.43.0.0/16")
    assert rack.dns.upstream == [IPv4Address("1.1.1.1"), IPv4Address("9.9.9.9")]
    assert rack.bootstrap().hostname == "cp-1"
    assert rack.service_names() == []


def test_service_names_list_databases_then_gpu_service() -> None:
    rack = parse_rack(stack_raw("homelab"))
    assert rack.service_names() == ["postgres", "mysql", "redis", "inference"]
