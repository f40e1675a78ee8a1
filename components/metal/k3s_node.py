"""K3sNode: one host of the rack, from preflight to upgrade, over SSH.

Creates, under the component `homelab:metal:K3sNode` (logical names `<name>-<step>`, where the
cluster names the node `<cluster>-<hostname>`):
- `preflight` (remote.Command): read-only checks (arch, memory cgroup, memory, disk, storage mount).
  No delete: it changes nothing.
- `membership` (remote.Command): its create changes nothing; its **delete uninstalls k3s on this
  host**. It has no triggers and its inputs depend only on the hostname, the host layout and the
  SSH connection, so no config change on a node that stays can replace it (a replaced command
  runs its old delete: pulumi-command#189). Only removing the node from config deletes it.
- `binary`, `installer` (remote.CopyToRemote, air-gap only): `k3s-<arch>` and `install.sh` from
  `airgap-dir` into a per-version staging folder.
- `install` (remote.Command): first join, join token (and on servers the agent token's secret)
  on stdin. `ignore_changes=["create", "stdin"]`: a node joins once; it never re-runs for a
  version bump (and does nothing on a complete node anyway). No delete.
- `drain` (remote.Command on the bootstrap server, before the upgrade): when the node's kubelet is
  not on `k3s.version` yet, cordon it (annotated as the upgrade's) and drain it through the
  eviction API (PodDisruptionBudgets honoured) within `k3s.upgrade.drain-timeout-seconds`.
- `upgrade` (remote.Command): create = update = converge to `k3s.version`, the rendered
  config.yaml and resolv.conf (`dns.upstream`), the token files (servers: agent-token-file;
  agents: the agent token as their join token) and, with a `registry`, registries.yaml (the rack's
  own registry with the pull account's credentials, 0600) and the rack CA's certificate
  containerd verifies it with, restarting k3s only if one changed. The same stdin as the
  install (secrets and registry files travel there, never in the command text). No delete.
- `ready` (remote.Command on the bootstrap server, after the upgrade): the gate. Waits until the
  Node is Ready with its kubelet on `k3s.version` (`k3s.upgrade.ready-timeout-seconds`), then
  uncordons it if the drain cordoned it. It fails naming what it waited for, so the nodes after
  it never start; the next `up` resumes at it. The cluster chains nodes by their gates: servers
  one at a time, then agents in batches of `k3s.upgrade.agents-at-once`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi

from components.core.remote_command import Connection, CopyToRemote, RemoteCommand
from components.metal.k3s_scripts import (
    REGISTRY_CA_PATH,
    HostLayout,
    airgap_binary_name,
    config_yaml,
    install_script,
    membership_script,
    preflight_script,
    remote_command,
    render_config,
    render_registries,
    render_resolv_conf,
    staging_dir,
    uninstall_script,
    upgrade_drain_script,
    upgrade_gate_script,
    upgrade_script,
)
from rack.config import InstallSource, Node, Rack
from rack.vocabulary import Role


@dataclass(frozen=True, kw_only=True)
class RegistryAccess:
    """How every node pulls from the rack's own registry (k3s registries.yaml)."""

    host: str
    """The registry's host name (`<gitea.host>.<domain>`): the first part of its images' names."""
    username: str
    """The read-only pull account."""
    password: pulumi.Input[str]
    """Its password (secret)."""
    ca_cert_pem: pulumi.Input[str] | None = None
    """The rack CA's certificate (PEM), written to REGISTRY_CA_PATH and named as `tls.ca_file`;
    None: containerd verifies the registry against the node's system store. A new certificate
    (any new CA, `--replace` included) is a trigger of each node's gate, which then runs again."""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def registry_stdin(registry: RegistryAccess, layout: HostLayout) -> list[pulumi.Output[str]]:
    """Stdin lines 3 and 4 of the install and upgrade steps (the caller keeps stdin secret):
    registries.yaml and the CA certificate, each base64 on one line (an empty line 4: no CA file)."""
    ca_file = REGISTRY_CA_PATH if registry.ca_cert_pem is not None else None

    def registries_line(password: str) -> str:
        return _b64(
            render_registries(
                host=registry.host, username=registry.username, password=password, ca_file=ca_file, layout=layout
            )
        )

    ca_line = pulumi.Output.from_input(registry.ca_cert_pem or "").apply(lambda ca: _b64(ca) if ca else "")
    return [pulumi.Output.from_input(registry.password).apply(registries_line), ca_line]


def registry_fingerprint(registry: RegistryAccess | None) -> str:
    """What the registry files converge to, without the password and the CA's certificate: host,
    user and whether a CA file is named (pure, and known at preview), so the gate re-runs when they
    change. The certificate itself is the gate's trigger (it is unknown until the first `up` made
    it, and would hide the gate's text from the plan). A new password alone restarts k3s (stdin
    changed) without re-running the gate. "": none."""
    if registry is None:
        return ""
    parts = (registry.host, registry.username, REGISTRY_CA_PATH if registry.ca_cert_pem is not None else "")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class K3sNodeArgs:
    rack: Rack
    """The validated rack (k3s settings, SSH user, bootstrap server)."""
    node: Node
    """This host's entry of rack.nodes."""
    connection: Connection
    """SSH to this host: configured user and port, pinned host key, key or agent."""
    token: pulumi.Input[str]
    """The join token (secret): the cluster token on the bootstrap server, the server's full token
    on the other servers, the full agent token (`K10...::node:...`) on agents."""
    agent_token: pulumi.Input[str] | None = None
    """Servers only: the agent token's secret (secret), written to `agent-token-file`."""
    layout: HostLayout = field(default_factory=HostLayout)
    """Where k3s lives on the host ("" root on a real Pi)."""
    install_after: Sequence[pulumi.Resource] = field(default_factory=list)
    """What must exist before this node joins (the bootstrap server's token read-back)."""
    upgrade_after: Sequence[pulumi.Resource] = field(default_factory=list)
    """The gates that must pass first (the previous server's, or the previous batch of agents')."""
    api_connection: Connection | None = None
    """SSH to the bootstrap server, where the drain and the gate run `k3s kubectl` (None: this node)."""
    api_layout: HostLayout | None = None
    """The bootstrap server's host layout (None: this node's)."""
    api_after: Sequence[pulumi.Resource] = field(default_factory=list)
    """What makes the API answer (the bootstrap server's install), before this node's drain."""
    registry: RegistryAccess | None = None
    """The rack's own registry (registries.yaml and the CA file); None: no registries.yaml of ours."""


class K3sNode(pulumi.ComponentResource):
    preflight: RemoteCommand
    """Read-only checks; fails with what to fix."""
    membership: RemoteCommand
    """The only command whose delete uninstalls k3s here."""
    copies: list[CopyToRemote]
    """Air-gap binary and installer copies (empty for source: online)."""
    install: RemoteCommand
    """First join."""
    drain: RemoteCommand
    """On the bootstrap server, before the upgrade: cordon and drain when the version changes."""
    upgrade: RemoteCommand
    """Converges version and config.yaml in place."""
    ready: RemoteCommand
    """On the bootstrap server, after the upgrade: the Node is Ready on the version; uncordon."""

    def __init__(self, name: str, args: K3sNodeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:metal:K3sNode", name, None, opts)
        rack, node, layout = args.rack, args.node, args.layout
        user = rack.ssh.user
        k3s = rack.k3s
        conn = args.connection

        def run(script: str) -> str:
            return remote_command(script, user=user)

        self.preflight = RemoteCommand(
            f"{name}-preflight",
            connection=conn,
            create=run(
                preflight_script(
                    hostname=node.hostname,
                    role=node.role,
                    arch=node.arch,
                    storage_path=node.storage.path if node.storage else None,
                    layout=layout,
                )
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.membership = RemoteCommand(
            f"{name}-membership",
            connection=conn,
            create=run(membership_script(hostname=node.hostname, layout=layout)),
            delete=run(uninstall_script(hostname=node.hostname, layout=layout)),
            # In parallel with the preflight: it changes nothing, and it must exist before the
            # install so that removing the node deletes (uninstalls) after everything else.
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.copies = []
        if k3s.install.source == InstallSource.AIRGAP:
            assert k3s.install.airgap_dir is not None, "validated by rack_problems"
            source_dir = Path(k3s.install.airgap_dir)
            stage = staging_dir(k3s.version, layout)
            for step, local, remote in (
                ("binary", airgap_binary_name(node.arch), "k3s"),
                ("installer", "install.sh", "install.sh"),
            ):
                self.copies.append(
                    CopyToRemote(
                        f"{name}-{step}",
                        connection=conn,
                        source=pulumi.FileAsset(str(source_dir / local)),
                        remote_path=f"{stage}/{remote}",
                        opts=pulumi.ResourceOptions(parent=self),
                    )
                )

        config_text = config_yaml(render_config(rack, node, layout))
        resolv_text = render_resolv_conf(rack)
        # install and upgrade converge the node to the same release and files (one script, two modes)
        install_text, upgrade_text = (
            run(
                script(
                    hostname=node.hostname,
                    role=node.role,
                    version=k3s.version,
                    config_text=config_text,
                    resolv_conf_text=resolv_text,
                    source=k3s.install.source,
                    layout=layout,
                )
            )
            for script in (install_script, upgrade_script)
        )
        # Secrets on stdin, one per line: the join token, then (servers) the agent token's secret,
        # then with a registry registries.yaml and the CA certificate (base64; agents leave line 2 empty).
        lines: list[pulumi.Input[str]] = [args.token]
        if node.role == Role.SERVER:
            assert args.agent_token is not None, "every server is given the agent token"
            lines.append(args.agent_token)
        elif args.registry is not None:
            lines.append("")
        if args.registry is not None:
            lines += registry_stdin(args.registry, layout)
        stdin: pulumi.Output[str] = pulumi.Output.secret(
            pulumi.Output.all(*lines).apply(lambda values: "".join(f"{v}\n" for v in values))
        )
        self.install = RemoteCommand(
            f"{name}-install",
            connection=conn,
            create=install_text,
            stdin=stdin,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.preflight, self.membership, *self.copies, *args.install_after],
                # Joining happens once; later versions, config and tokens are the upgrade step's
                # job, and the install script does nothing on a complete node, so a stale copy is
                # harmless.
                ignore_changes=["create", "stdin"],
            ),
        )
        api_conn = args.api_connection or conn
        api_layout = args.api_layout or layout
        gate = rack.k3s.upgrade
        self.drain = RemoteCommand(
            f"{name}-drain",
            connection=api_conn,
            create=run(
                upgrade_drain_script(
                    hostname=node.hostname,
                    version=k3s.version,
                    timeout_s=gate.drain_timeout_seconds,
                    layout=api_layout,
                )
            ),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[self.install, *args.api_after, *args.upgrade_after]
            ),
        )
        self.upgrade = RemoteCommand(
            f"{name}-upgrade",
            connection=conn,
            create=upgrade_text,
            update=upgrade_text,
            stdin=stdin,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.install, *self.copies, *args.upgrade_after, self.drain],
            ),
        )
        converges = hashlib.sha256(upgrade_text.encode()).hexdigest()[:16]
        if registry_digest := registry_fingerprint(args.registry):
            converges += f"+{registry_digest[:16]}"
        self.ready = RemoteCommand(
            f"{name}-ready",
            connection=api_conn,
            create=run(
                upgrade_gate_script(
                    hostname=node.hostname,
                    version=k3s.version,
                    converges=converges,
                    timeout_s=gate.ready_timeout_seconds,
                    layout=api_layout,
                )
            ),
            # A new CA certificate (written by the upgrade step) replaces the gate: it runs again.
            triggers=[args.registry.ca_cert_pem]
            if args.registry is not None and args.registry.ca_cert_pem is not None
            else None,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.upgrade]),
        )
        self.register_outputs(
            {
                "preflight": self.preflight,
                "membership": self.membership,
                "install": self.install,
                "drain": self.drain,
                "upgrade": self.upgrade,
                "ready": self.ready,
            }
        )
