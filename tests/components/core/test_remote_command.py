"""RemoteCommand and CopyToRemote register exactly what pulumi-command's typed classes register
for the same arguments: type, inputs (connection defaults included), secret paths, secret outputs
and the request options the engine acts on (provider version, replaceOnChanges)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_command as command

from components.core.remote_command import CopyToRemote, RemoteCommand, connection
from tests.components.conftest import registered_alike


def test_a_command_registers_as_the_typed_command(record: Any, options: dict[str, tuple[Any, ...]]) -> None:
    outputs: dict[str, Any] = {}

    def program() -> None:
        key = pulumi.Output.secret("-----BEGIN OPENSSH PRIVATE KEY-----")
        typed = command.remote.Command(
            "typed",
            connection=command.remote.ConnectionArgs(
                host="10.0.0.5", user="pi", port=2222, host_key="ssh-ed25519 AAAA", private_key=key
            ),
            create="echo create",
            update="echo update",
            delete="echo delete",
            stdin=pulumi.Output.secret("token"),
            triggers=["v1.31.4+k3s1"],
            logging=command.remote.Logging.NONE,
            opts=pulumi.ResourceOptions(ignore_changes=["create"]),
        )
        ours = RemoteCommand(
            "ours",
            connection=connection(host="10.0.0.5", user="pi", port=2222, host_key="ssh-ed25519 AAAA", private_key=key),
            create="echo create",
            update="echo update",
            delete="echo delete",
            stdin=pulumi.Output.secret("token"),
            triggers=["v1.31.4+k3s1"],
            logging="none",
            opts=pulumi.ResourceOptions(ignore_changes=["create"]),
        )
        outputs["typed"], outputs["ours"] = typed.stdout, ours.stdout

    rec = record(program, preview=False)
    registered_alike(rec, options, "typed", "ours")
    assert sorted(rec.by_name("ours").secret_paths) == ["connection", "stdin"]
    assert options["ours"][0] == ["triggers[*]"] and options["ours"][1]
    assert isinstance(outputs["ours"], pulumi.Output)


def test_the_agent_connection_and_a_bare_command_match_too(record: Any, options: dict[str, tuple[Any, ...]]) -> None:
    def program() -> None:
        command.remote.Command("typed", connection=command.remote.ConnectionArgs(host="h", user="u"), create="true")
        RemoteCommand("ours", connection=connection(host="h", user="u"), create="true")

    rec = record(program)
    registered_alike(rec, options, "typed", "ours")
    assert rec.by_name("ours").inputs["connection"] == {
        "host": "h",
        "user": "u",
        "port": 22,
        "dialErrorLimit": 10,
        "perDialTimeout": 15,
    }


def test_a_copy_registers_as_the_typed_copy(record: Any, options: dict[str, tuple[Any, ...]], tmp_path: Path) -> None:
    binary = tmp_path / "k3s-arm64"
    binary.write_bytes(b"\x7fELF")

    def program() -> None:
        command.remote.CopyToRemote(
            "typed",
            connection=command.remote.ConnectionArgs(host="h", user="u"),
            source=pulumi.FileAsset(str(binary)),
            remote_path="/var/lib/homelab/k3s",
        )
        CopyToRemote(
            "ours",
            connection=connection(host="h", user="u"),
            source=pulumi.FileAsset(str(binary)),
            remote_path="/var/lib/homelab/k3s",
        )

    rec = record(program)
    registered_alike(rec, options, "typed", "ours")
    assert rec.by_name("ours").inputs["remotePath"] == "/var/lib/homelab/k3s"
