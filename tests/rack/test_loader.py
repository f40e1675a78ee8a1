"""Loading a rack from a stack file (the plan) and from Pulumi config (`up`): the committed stacks
load, `{secure: ...}` values become secrets whose value is unknown, plaintext secrets and unknown
keys are refused without echoing the value, and the missing-SSH-identity warning follows the agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime import config as runtime_config

from rack.config import ConfigError
from rack.loader import (
    SECRET_KEYS,
    RackSecrets,
    StackFile,
    load_from_pulumi,
    missing_secret_warnings,
    unknown_secret,
)
from tests.conftest import ROOT, stack_raw

PINNED_ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEfXvCVmJUlxHplHnoeOQffkiyN49wWm4eLnnGgyVK1i"
"""A real ed25519 public key (made with ssh-keygen for this test; its private half was discarded)."""


def write_stack(tmp_path: Path, config: dict[str, Any], name: str = "test") -> Path:
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    return path


def with_rack(**extra: Any) -> dict[str, Any]:
    return {"homelab:rack": stack_raw("lab"), **extra}


# --- the committed stacks ---------------------------------------------------------------------


def test_homelab_stack_file() -> None:
    stack = StackFile.read(ROOT / "Pulumi.homelab.yaml")
    assert stack.stack == "homelab"
    assert "homelab:rack" in stack.config
    loaded = stack.load()
    assert loaded.rack.domain == "lab.home.arpa"
    assert [n.hostname for n in loaded.rack.nodes] == ["rack-cp-1", "rack-pi-1", "rack-pi-2", "rack-db-1", "rack-lab-1"]
    assert loaded.skip_layers == frozenset()
    assert loaded.secrets.present == {}
    assert all(loaded.secrets.get(k) is None for k in SECRET_KEYS)


def test_lab_stack_file() -> None:
    stack = StackFile.read(ROOT / "Pulumi.lab.yaml")
    assert stack.stack == "lab"
    loaded = stack.load()
    assert loaded.rack.domain == "lab.test"
    assert loaded.skip_layers == frozenset({"gpu"})
    assert loaded.rack.k3s.install.source == "airgap"
    assert loaded.rack.bootstrap().hostname == "lab-cp-1"


def test_the_fixtures_of_conftest_are_these_files(homelab: Any, lab: Any) -> None:
    assert homelab.rack == StackFile.read(ROOT / "Pulumi.homelab.yaml").load().rack
    assert lab.rack.domain == "lab.test"


# --- reading the file --------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such stack file"):
        StackFile.read(tmp_path / "Pulumi.nope.yaml")


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text("config:\n  homelab:rack: {domain: [\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        StackFile.read(path)


@pytest.mark.parametrize("text", ["- a\n- b\n", "config: [1, 2]\n", "just a string\n"])
def test_not_a_stack_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="must be a mapping with a `config:` mapping"):
        StackFile.read(path)


def test_empty_file_has_no_rack(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.empty.yaml"
    path.write_text("")
    stack = StackFile.read(path)
    assert stack.config == {}
    with pytest.raises(ConfigError) as info:
        stack.load()
    assert [i.path for i in info.value.issues] == ["homelab:rack"]


def test_other_namespaces_are_left_alone(tmp_path: Path) -> None:
    path = write_stack(tmp_path, with_rack(**{"pulumi:disable-default-providers": ["kubernetes"], "kubernetes:x": 1}))
    assert StackFile.read(path).load().rack.domain == "lab.test"


def test_problems_in_and_around_the_rack_come_together(tmp_path: Path) -> None:
    rack = stack_raw("lab")
    rack["nodes"][0]["address"] = "10.77.0.300"
    config = {"homelab:rack": rack, "homelab:colour": "red", "homelab:skip-layers": "gpu"}
    with pytest.raises(ConfigError) as info:
        StackFile.read(write_stack(tmp_path, config)).load()
    assert sorted(i.path for i in info.value.issues) == [
        "homelab:colour",
        "homelab:skip-layers",
        "rack.nodes[0].address",
    ]


# --- secrets -----------------------------------------------------------------------------------


def test_plaintext_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = write_stack(tmp_path, with_rack(**{"homelab:gitea-admin-password": "hunter2-plain"}))
    with pytest.raises(ConfigError) as info:
        StackFile.read(path).load()
    (issue,) = info.value.issues
    assert issue.path == "homelab:gitea-admin-password"
    assert "pulumi config set --secret homelab:gitea-admin-password" in issue.message
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value.issues)


@pytest.mark.parametrize("value", [{"secure": "AAAB", "extra": 1}, {"plain": "x"}, ["AAAB"], 42])
def test_anything_but_exactly_secure_is_refused(tmp_path: Path, value: Any) -> None:
    path = write_stack(tmp_path, with_rack(**{"homelab:k3s-token": value}))
    with pytest.raises(ConfigError) as info:
        StackFile.read(path).load()
    assert [i.path for i in info.value.issues] == ["homelab:k3s-token"]


def test_secure_values_are_present(tmp_path: Path) -> None:
    path = write_stack(tmp_path, with_rack(**{f"homelab:{k}": {"secure": "AAABAJ"} for k in SECRET_KEYS}))
    loaded = StackFile.read(path).load()
    assert set(loaded.secrets.present) == set(SECRET_KEYS)


def test_get_refuses_keys_that_are_not_secrets() -> None:
    with pytest.raises(KeyError):
        RackSecrets().get("rack")
    assert RackSecrets().get("postgres-password") is None


@pulumi.runtime.test
def test_secure_value_becomes_a_secret_whose_value_is_unknown(tmp_path: Path, mocked: Any) -> pulumi.Output[Any]:
    path = write_stack(tmp_path, with_rack(**{"homelab:postgres-password": {"secure": "AAABAJdIw"}}))
    secret = StackFile.read(path).load().secrets.get("postgres-password")
    assert isinstance(secret, pulumi.Output)

    async def check() -> bool:
        assert await secret.is_secret() is True
        assert await secret.is_known() is False
        assert await secret.future() is None
        return True

    return pulumi.Output.from_input(check())


@pulumi.runtime.test
def test_unknown_secret_stays_secret_through_apply(mocked: Any) -> pulumi.Output[Any]:
    """Whatever a component derives from it is secret and unknown too (never printed in the plan)."""
    derived = unknown_secret().apply(lambda v: f"postgres://app:{v}@db")

    async def check() -> bool:
        assert await derived.is_secret() is True
        assert await derived.is_known() is False
        return True

    return pulumi.Output.from_input(check())


@pulumi.runtime.test
def test_load_from_pulumi_reads_config_and_secrets(mocked: Any) -> pulumi.Output[Any]:
    """The `up` path: the same rack from Pulumi config, each set secret a secret Output."""
    runtime_config.set_all_config(
        {
            "homelab:rack": json.dumps(stack_raw("homelab")),
            "homelab:skip-layers": json.dumps(["gpu"]),
            "homelab:postgres-password": "from-config",
        },
        ["homelab:postgres-password"],
    )
    loaded = load_from_pulumi()
    assert loaded.rack == StackFile.read(ROOT / "Pulumi.homelab.yaml").load().rack
    assert loaded.skip_layers == frozenset({"gpu"})
    assert set(loaded.secrets.present) == {"postgres-password"}
    assert loaded.secrets.get("mysql-password") is None
    secret = loaded.secrets.get("postgres-password")
    assert secret is not None

    async def check() -> bool:
        assert await secret.is_secret() is True
        assert await secret.future() == "from-config"
        return True

    return pulumi.Output.from_input(check())


def test_load_from_pulumi_without_a_rack() -> None:
    runtime_config.set_all_config({"homelab:skip-layers": "[]"}, [])
    with pytest.raises(ConfigError, match="homelab:rack: required"):
        load_from_pulumi()


def test_load_from_pulumi_rejects_what_the_plan_rejects() -> None:
    rack = stack_raw("lab")
    rack["k3s"]["datastore"] = "etcd"
    rack["nodes"][1].update(role="server", **{"class": "control-plane"})
    runtime_config.set_all_config({"homelab:rack": json.dumps(rack)}, [])
    with pytest.raises(ConfigError) as info:
        load_from_pulumi()
    assert [i.path for i in info.value.issues] == ["rack.k3s.datastore"]


# --- the SSH identity warning ----------------------------------------------------------------


def test_no_key_and_no_agent_warns_with_the_command_to_run() -> None:
    (warning,) = missing_secret_warnings(set(), env={})
    assert warning.key == "homelab:ssh-private-key"
    assert "pulumi config set --secret homelab:ssh-private-key" in warning.message
    assert "ssh-agent" in warning.message


def test_an_agent_or_a_key_silences_the_warning() -> None:
    assert missing_secret_warnings(set(), env={"SSH_AUTH_SOCK": "/run/user/1000/ssh-agent.sock"}) == []
    assert missing_secret_warnings({"ssh-private-key"}, env={}) == []
    assert missing_secret_warnings(set(), env={"SSH_AUTH_SOCK": ""}) != []


def test_stack_file_warning_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = StackFile.read(ROOT / "Pulumi.homelab.yaml")
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    unpinned = "rack.backup.offsite.host-key"  # the sample's backup target (see the test below)
    assert [w.key for w in stack.load().warnings] == ["homelab:ssh-private-key", unpinned]
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    assert [w.key for w in stack.load().warnings] == [unpinned]


def test_a_secure_ssh_key_silences_the_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    path = write_stack(tmp_path, with_rack(**{"homelab:ssh-private-key": {"secure": "AAAB"}}))
    assert StackFile.read(path).load().warnings == ()


# --- homelab:skip-layers ----------------------------------------------------------------------


def test_skip_layers_accepts_gpu(tmp_path: Path) -> None:
    path = write_stack(tmp_path, with_rack(**{"homelab:skip-layers": ["gpu"]}))
    assert StackFile.read(path).load().skip_layers == frozenset({"gpu"})


def test_skip_layers_defaults_to_nothing(tmp_path: Path) -> None:
    assert StackFile.read(write_stack(tmp_path, with_rack())).load().skip_layers == frozenset()


@pytest.mark.parametrize("value", ["gpu", ["metal"], ["gpu", "apps"], [1], {"gpu": True}])
def test_skip_layers_rejects(tmp_path: Path, value: Any) -> None:
    path = write_stack(tmp_path, with_rack(**{"homelab:skip-layers": value}))
    with pytest.raises(ConfigError) as info:
        StackFile.read(path).load()
    (issue,) = info.value.issues
    assert issue.path == "homelab:skip-layers"
    assert "['gpu']" in issue.message


# --- homelab:init-system (gone: k3s runs under systemd on every host) -----------------------


@pytest.mark.parametrize("value", ["systemd", "none"])
def test_init_system_is_no_longer_a_key(tmp_path: Path, value: Any) -> None:
    path = write_stack(tmp_path, with_rack(**{"homelab:init-system": value}))
    with pytest.raises(ConfigError) as info:
        StackFile.read(path).load()
    (issue,) = info.value.issues
    assert (issue.path, issue.message) == ("homelab:init-system", "unknown config key")


def test_an_unpinned_sftp_backup_target_is_a_warning_naming_the_key() -> None:
    """The sample stack leaves the GPU box's host key out (no made-up key): the plan warns, with
    the command that reads it, and an up logs the same warning."""
    loaded = StackFile.read(ROOT / "Pulumi.homelab.yaml").load()
    warned = {w.key: w.message for w in loaded.warnings}
    assert "192.168.10.50" in warned["rack.backup.offsite.host-key"]
    assert "ssh-keyscan -t ed25519 192.168.10.50" in warned["rack.backup.offsite.host-key"]
    sample = StackFile.read(ROOT / "Pulumi.homelab.yaml")
    sample.config["homelab:rack"]["backup"]["offsite"]["host-key"] = PINNED_ED25519
    pinned = sample.load()
    assert "rack.backup.offsite.host-key" not in {w.key for w in pinned.warnings}
