"""pulumi-command's remote `Command` and `CopyToRemote`, registered from their wire properties.

As `KubernetesObject` does for Kubernetes objects: the same type tokens
(`command:remote:Command`, `command:remote:CopyToRemote`), the same properties on the wire
(camelCase, the connection's defaults filled in as pulumi-command's `ConnectionArgs` fills them),
the same options the typed classes add (the provider version, `connection` secret as input and
output, `replaceOnChanges: triggers[*]`), so the same URNs, provider calls and diffs. What it skips
is the typed classes' Python input and output types: a translation of every property name through
type metadata on the way in and out, which took 4.3 ms per Command under the plan's harness
against 3.1 ms for this (`make bench` registers five per node).

`stdout` and `stderr` are outputs here as on the typed class (`read_token.stdout`).
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

import pulumi

TYPE = "command:remote:Command"
COPY_TYPE = "command:remote:CopyToRemote"

Connection = dict[str, Any]
"""A connection as pulumi-command receives it (`host`, `user`, `port`, `hostKey`, `privateKey`...)."""

PROVIDER_VERSION = version("pulumi-command")
"""The provider version the typed classes request: the installed SDK's release (its package
metadata; a release such as 1.2.1 reads the same in PEP 440 and semver)."""

LOGGING_NONE = "none"
"""`logging: none`: the provider neither logs nor shows stdout/stderr (commands that print secrets)."""


def connection(
    *,
    host: str,
    user: str,
    port: int = 22,
    host_key: str | None = None,
    private_key: pulumi.Input[str] | None = None,
) -> Connection:
    """An SSH connection, with the defaults pulumi-command's `ConnectionArgs` sets (10 dial errors,
    15 s per dial); `private_key` None means the ssh-agent. Secret as a whole once registered."""
    conn: Connection = {"host": host, "user": user, "port": port, "dialErrorLimit": 10, "perDialTimeout": 15}
    if host_key is not None:
        conn["hostKey"] = host_key
    if private_key is not None:
        conn["privateKey"] = private_key
    return conn


def _options(opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    """What the typed classes merge into every registration."""
    return pulumi.ResourceOptions.merge(
        pulumi.ResourceOptions(version=PROVIDER_VERSION),
        pulumi.ResourceOptions.merge(
            opts,
            pulumi.ResourceOptions(additional_secret_outputs=["connection"], replace_on_changes=["triggers[*]"]),
        ),
    )


def _present(props: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if v is not None}


class RemoteCommand(pulumi.CustomResource):
    """A command run over SSH on create (and on update/delete when given)."""

    stdout: pulumi.Output[str]
    stderr: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        connection: Connection,
        create: pulumi.Input[str] | None = None,
        update: pulumi.Input[str] | None = None,
        delete: pulumi.Input[str] | None = None,
        stdin: pulumi.Input[str] | None = None,
        triggers: Sequence[Any] | None = None,
        logging: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = _present(
            {
                "connection": pulumi.Output.secret(connection),
                "create": create,
                "update": update,
                "delete": delete,
                "stdin": stdin,
                "triggers": list(triggers) if triggers is not None else None,
                "logging": logging,
            }
        )
        super().__init__(TYPE, name, {**props, "stdout": None, "stderr": None}, _options(opts))


class CopyToRemote(pulumi.CustomResource):
    """A local file or directory copied to a path on the host over SSH."""

    def __init__(
        self,
        name: str,
        *,
        connection: Connection,
        source: pulumi.Asset | pulumi.Archive,
        remote_path: pulumi.Input[str],
        triggers: Sequence[Any] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        props = _present(
            {
                "connection": pulumi.Output.secret(connection),
                "source": source,
                "remotePath": remote_path,
                "triggers": list(triggers) if triggers is not None else None,
            }
        )
        super().__init__(COPY_TYPE, name, props, _options(opts))
