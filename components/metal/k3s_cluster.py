"""K3sCluster: k3s on every host of the rack over SSH, and the Kubernetes provider built from it.

Creates, under the component `homelab:metal:K3sCluster` (named `<name>`; per-host things keyed by
hostname, never by list position):
- `<name>-token` (GeneratedSecret): the cluster token, or the user's `homelab:k3s-token`.
- `<name>-agent-token` (GeneratedSecret): the secret of k3s' agent token, set on every server
  (`agent-token-file`). Agents join with it and never hold the server token, which unlocks the
  cluster CA keys and bootstrap data (k3s docs, cli/token).
- `<name>-<hostname>` (K3sNode) per node: preflight, membership, air-gap copies, install, upgrade
  (with `registry`, each node's registries.yaml and rack CA file, rolled out with the upgrade).
  The bootstrap server is `rack.bootstrap()` (explicit in config, never "first in the list").
- `<name>-join-token` (remote.Command on the bootstrap server): reads back the full-format server
  token (`K10<ca-hash>::server:...`, which pins the cluster CA) that the other servers join with;
  logging off, stdout a secret.
- `<name>-agent-join-token` (remote.Command on the bootstrap server, after its upgrade step set
  `agent-token-file`): reads back the full-format agent token (`K10<ca-hash>::node:...`) the agents
  join with; logging off, stdout a secret. An agent joined with the server token by an earlier
  version of this program gets the agent token written over it by its upgrade step.
- `<name>-kubeconfig` (remote.Command on the bootstrap server): the provider's credential, a
  token of the ServiceAccount `homelab-pulumi` (cluster-admin, kube-system) valid 365 days, in a
  kubeconfig with the cluster CA (logging off, stdout a secret); the server is rewritten from
  127.0.0.1 to the API address. Its trigger changes every 300 days (`credential_period`), so the
  token is renewed on the first `up` of each period and the provider never runs on an expired
  one, while a second `up` plans nothing. Not k3s.yaml's admin certificate: it lasts a year and
  k3s renews it only when it restarts, so a copy read once expires (k3s docs, certificates).
- `<name>-provider` (kubernetes.Provider): from that kubeconfig, with a stable
  `cluster_identifier` so a refreshed kubeconfig never replaces the provider and everything on it.
- `<name>-<hostname>-registration` (remote.Command on the bootstrap server) per node: create waits
  until the Node is registered; delete cordons, drains and deletes the Node. It depends on the
  node's membership, so on removal the drain runs before the uninstall.
- `<name>-<hostname>-layout` (kubernetes.core.v1.NodePatch) per node: the labels of the layout
  vocabulary, reconciled through the API after join (k3s only applies them at registration); with
  `rack.dns.address`, also the ServiceLB labels that pin the LAN DNS Service to that node.
- `<name>-<hostname>-taints` (remote.Command on the bootstrap server) per node, after its
  NodePatch: the taints this program owns (`rack.homelab.io/*` and the control-plane taint) made
  exactly the layout's with `kubectl taint`, every other taint left alone. Not in the NodePatch:
  `spec.taints` is an atomic list, and a server-side apply of it would own and replace the whole
  list, dropping a cordon's `node.kubernetes.io/unschedulable` or the node lifecycle's
  `not-ready`/`unreachable` taints on every `up`. Its text names the taints, so it re-runs when
  they change. No delete (a removed node's Node is deleted).
- `<name>-dns-upstream` (remote.Command on the bootstrap server), after every node's upgrade step
  wrote `dns.upstream` into its resolv.conf: restarts CoreDNS's pods when they were started with
  other upstreams (they read the file at start). Its text names the upstreams, so it re-runs
  exactly when they change. No delete.

Order: bootstrap install -> join-token -> other servers install; bootstrap upgrade ->
agent-join-token -> agents install (in parallel with the other servers). The rollout of a
`k3s.version` change (`upgrade_batches`): per node drain (cordon, evict honouring PDBs) ->
upgrade -> gate (Ready on the new version, uncordon); the bootstrap server, then the other servers
one at a time (by hostname), then the agents in batches of `k3s.upgrade.agents-at-once`, each
batch after the gates of the one before. A gate that fails stops the rest; the next `up` resumes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from ipaddress import IPv4Address
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.core.generated_secret import GeneratedSecret, GeneratedSecretArgs
from components.core.kubernetes_object import KubernetesObject
from components.core.layout import node_labels, node_taints, servicelb_labels
from components.core.remote_command import LOGGING_NONE, Connection, RemoteCommand, connection
from components.metal.k3s_node import K3sNode, K3sNodeArgs, RegistryAccess
from components.metal.k3s_scripts import (
    SERVER_TOKEN_FILE,
    HostLayout,
    agent_token_script,
    api_address,
    credential_period,
    dns_upstream_script,
    drain_script,
    program_kubeconfig_script,
    read_file_script,
    registration_script,
    remote_command,
    rewrite_kubeconfig,
    taints_script,
)
from rack.config import Node, Rack
from rack.vocabulary import Role

PATCH_FORCE = "pulumi.com/patchForce"
"""NodePatch takes over labels/taints the kubelet set at registration (a field-manager conflict otherwise)."""


def ssh_connection(rack: Rack, node: Node, private_key: pulumi.Input[str] | None = None) -> Connection:
    """SSH to a node: always the configured user (pulumi-command would default to root), the
    pinned host key when the config gives one, the key when given, else the ssh-agent."""
    return connection(
        host=str(node.address),
        user=rack.ssh.user,
        port=rack.ssh.port,
        host_key=node.host_key,
        private_key=pulumi.Output.secret(private_key) if private_key is not None else None,
    )


def render_node_layout(node: Node, *, lan_dns_address: IPv4Address | None = None) -> dict[str, Any]:
    """The Node fields this program applies: class/role/arch labels and the ServiceLB labels
    (`servicelb_labels`: every node in the enablelb set, the node at `rack.dns.address` in the LAN
    DNS pool) (pure). Labels are a map, so server-side apply owns only these keys.
    Taints are the `-taints` command's (`taints_script`)."""
    lan_dns = lan_dns_address is not None and node.address == lan_dns_address
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.hostname,
            "labels": {
                **node_labels(node_class=node.node_class, role=node.role, arch=node.arch),
                **servicelb_labels(lan_dns=lan_dns),
            },
            "annotations": {PATCH_FORCE: "true"},
        },
    }


def upgrade_order(rack: Rack) -> list[Node]:
    """Bootstrap server, the other servers by hostname, then agents by hostname: stable under any
    reordering of rack.nodes."""
    boot = rack.bootstrap()
    servers = sorted((n for n in rack.servers() if n.hostname != boot.hostname), key=lambda n: n.hostname)
    agents = sorted((n for n in rack.nodes if n.role == Role.AGENT), key=lambda n: n.hostname)
    return [boot, *servers, *agents]


def upgrade_batches(rack: Rack) -> list[list[Node]]:
    """The rollout's steps (pure): each server alone (the bootstrap server first), then the agents
    in `upgrade_order` in batches of `k3s.upgrade.agents-at-once`. A step starts when every node of
    the step before is Ready on the new version."""
    order = upgrade_order(rack)
    servers = [n for n in order if n.role == Role.SERVER]
    agents = [n for n in order if n.role == Role.AGENT]
    size = rack.k3s.upgrade.agents_at_once
    return [[s] for s in servers] + [agents[i : i + size] for i in range(0, len(agents), size)]


@dataclass(frozen=True, kw_only=True)
class K3sClusterArgs:
    rack: Rack
    """The validated rack."""
    ssh_private_key: pulumi.Input[str] | None = None
    """`homelab:ssh-private-key` (secret); None uses the ssh-agent (SSH_AUTH_SOCK)."""
    token: pulumi.Input[str] | None = None
    """`homelab:k3s-token` (secret); None generates one on the first `up`."""
    layouts: Mapping[str, HostLayout] = field(default_factory=dict)
    """Per-hostname host layout; hosts not listed use the real one (root "")."""
    today: date | None = None
    """The date the provider's credential period is computed from (None: today)."""
    registry: RegistryAccess | None = None
    """The rack's own registry every node pulls from (registries.yaml and the CA file); None: none."""


@dataclass(frozen=True)
class NodeAccess:
    """SSH to one node, for steps of later layers that must run on the host itself."""

    connection: Connection
    """The node's pulumi-command connection (user, pinned host key, key or agent)."""
    user: str
    """The SSH user (commands go through `sudo -n` unless it is root)."""
    after: pulumi.Resource
    """The node's bootstrap (preflight, install): host steps run after it."""


class K3sCluster(pulumi.ComponentResource):
    token: pulumi.Output[str]
    """The cluster token (secret) the bootstrap server starts with."""
    join_token: pulumi.Output[str]
    """The bootstrap server's full-format server token (secret) the other servers join with."""
    agent_join_token: pulumi.Output[str]
    """The full-format agent token (secret) agents join with."""
    nodes: dict[str, K3sNode]
    """Per hostname."""
    kubeconfig: pulumi.Output[str]
    """The provider's kubeconfig (secret): the program's ServiceAccount token, server rewritten to the API address."""
    provider: k8s.Provider
    """The provider every later layer uses."""
    registrations: dict[str, RemoteCommand]
    """Per hostname: wait for the Node; on removal cordon, drain, delete it."""
    layouts: dict[str, KubernetesObject]
    """Per hostname: labels through the API."""
    taints: dict[str, RemoteCommand]
    """Per hostname: the taints this program owns, by `kubectl taint` on the bootstrap server."""
    dns_upstream: RemoteCommand
    """Restarts CoreDNS when `dns.upstream` changed (after every node wrote it)."""
    ready: list[pulumi.Resource]
    """What must exist before workloads are applied: every node registered and laid out."""
    access: dict[str, NodeAccess]
    """Per hostname: how later layers reach the host over SSH (e.g. to prepare a volume's directory)."""

    def __init__(self, name: str, args: K3sClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:metal:K3sCluster", name, None, opts)
        rack = args.rack
        user = rack.ssh.user
        boot = rack.bootstrap()

        def layout_of(node: Node) -> HostLayout:
            return args.layouts.get(node.hostname, HostLayout())

        # One per node, shared by every command that reaches it (the bootstrap server's by N + 3).
        conns = {n.hostname: ssh_connection(rack, n, args.ssh_private_key) for n in rack.nodes}

        def conn(node: Node) -> Connection:
            return conns[node.hostname]

        def on_boot(script: str) -> str:
            return remote_command(script, user=user)

        self.token = GeneratedSecret(
            f"{name}-token",
            GeneratedSecretArgs(length=48, override=args.token),
            pulumi.ResourceOptions(parent=self),
        ).value

        agent_secret = GeneratedSecret(
            f"{name}-agent-token", GeneratedSecretArgs(length=48), pulumi.ResourceOptions(parent=self)
        ).value

        self.nodes = {}
        order = upgrade_order(rack)
        boot_node = K3sNode(
            f"{name}-{boot.hostname}",
            K3sNodeArgs(
                rack=rack,
                node=boot,
                connection=conn(boot),
                token=self.token,
                agent_token=agent_secret,
                layout=layout_of(boot),
                registry=args.registry,
            ),
            pulumi.ResourceOptions(parent=self),
        )
        self.nodes[boot.hostname] = boot_node

        read_token = RemoteCommand(
            f"{name}-join-token",
            connection=conn(boot),
            create=on_boot(read_file_script(hostname=boot.hostname, path=SERVER_TOKEN_FILE, layout=layout_of(boot))),
            logging=LOGGING_NONE,
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[boot_node.install], additional_secret_outputs=["stdout"]
            ),
        )
        self.join_token = read_token.stdout.apply(lambda t: pulumi.Output.secret((t or "").strip()))
        read_agent_token = RemoteCommand(
            f"{name}-agent-join-token",
            connection=conn(boot),
            create=on_boot(agent_token_script(hostname=boot.hostname, layout=layout_of(boot))),
            logging=LOGGING_NONE,
            # After the bootstrap server's upgrade step: on a cluster made before agent tokens,
            # that step is what sets agent-token-file (until then k3s links the file to the server token).
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[boot_node.upgrade], additional_secret_outputs=["stdout"]
            ),
        )
        self.agent_join_token = read_agent_token.stdout.apply(lambda t: pulumi.Output.secret((t or "").strip()))

        # The rollout: each step's nodes wait for the gates (Ready on the version) of the step before.
        previous_gates: list[pulumi.Resource] = [boot_node.ready]
        for batch in upgrade_batches(rack)[1:]:
            gates: list[pulumi.Resource] = []
            for node in batch:
                k3s_node = K3sNode(
                    f"{name}-{node.hostname}",
                    K3sNodeArgs(
                        rack=rack,
                        node=node,
                        connection=conn(node),
                        token=self.join_token if node.role == Role.SERVER else self.agent_join_token,
                        agent_token=agent_secret if node.role == Role.SERVER else None,
                        layout=layout_of(node),
                        install_after=[read_token if node.role == Role.SERVER else read_agent_token],
                        upgrade_after=previous_gates,
                        api_connection=conn(boot),
                        api_layout=layout_of(boot),
                        api_after=[boot_node.install],
                        registry=args.registry,
                    ),
                    pulumi.ResourceOptions(parent=self),
                )
                self.nodes[node.hostname] = k3s_node
                gates.append(k3s_node.ready)
            previous_gates = gates

        read_kubeconfig = RemoteCommand(
            f"{name}-kubeconfig",
            connection=conn(boot),
            create=on_boot(program_kubeconfig_script(hostname=boot.hostname, layout=layout_of(boot))),
            logging=LOGGING_NONE,
            # A new token each period (see credential_period). Replacing it is harmless: it has no
            # delete, and older tokens expire on their own.
            triggers=[credential_period(args.today or date.today())],
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[boot_node.upgrade], additional_secret_outputs=["stdout"]
            ),
        )
        address = api_address(rack)
        self.kubeconfig = read_kubeconfig.stdout.apply(
            lambda text: pulumi.Output.secret(rewrite_kubeconfig(text or "", address))
        )
        self.provider = k8s.Provider(
            f"{name}-provider",
            kubeconfig=self.kubeconfig,
            # Stable: a re-read kubeconfig must not replace the provider and everything under it.
            cluster_identifier=rack.domain,
            delete_unreachable=False,
            enable_server_side_apply=True,
            # Every ConfigMap and Secret here has a fixed name: by default the provider replaces
            # them on any data change (delete, then create), which a protected component refuses
            # and which leaves a gap even where allowed. Updated in place instead (adding a node
            # edits the metrics scrape ConfigMap; found by the lab e2e).
            enable_config_map_mutable=True,
            enable_secret_mutable=True,
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.registrations = {}
        self.layouts = {}
        self.taints = {}
        for node in order:
            k3s_node = self.nodes[node.hostname]
            registration = RemoteCommand(
                f"{name}-{node.hostname}-registration",
                connection=conn(boot),
                create=on_boot(registration_script(hostname=node.hostname, layout=layout_of(boot))),
                delete=on_boot(drain_script(hostname=node.hostname, layout=layout_of(boot))),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[k3s_node.install, k3s_node.membership]),
            )
            self.registrations[node.hostname] = registration
            manifest = render_node_layout(node, lan_dns_address=rack.dns.address)
            self.layouts[node.hostname] = KubernetesObject(
                f"{name}-{node.hostname}-layout",
                manifest,
                pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[registration]),
                patch=True,
            )
            taints = node_taints(node_class=node.node_class, role=node.role)
            self.taints[node.hostname] = RemoteCommand(
                f"{name}-{node.hostname}-taints",
                connection=conn(boot),
                create=on_boot(taints_script(hostname=node.hostname, taints=taints, layout=layout_of(boot))),
                # After the NodePatch: on a cluster whose NodePatch still owned `spec.taints`, the
                # update that stops applying them drops the list once; this puts ours back.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.layouts[node.hostname]]),
            )
        self.dns_upstream = RemoteCommand(
            f"{name}-dns-upstream",
            connection=conn(boot),
            create=on_boot(
                dns_upstream_script(
                    hostname=boot.hostname, upstream=[str(a) for a in rack.dns.upstream], layout=layout_of(boot)
                )
            ),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[*(n.ready for n in self.nodes.values()), *self.registrations.values()]
            ),
        )
        self.ready = [*self.layouts.values(), *self.taints.values()]
        self.access = {
            n.hostname: NodeAccess(connection=conn(n), user=user, after=self.nodes[n.hostname])
            for n in rack.nodes
            if n.hostname in self.nodes
        }
        self.register_outputs(
            {"kubeconfig": self.kubeconfig, "join_token": self.join_token, "agent_join_token": self.agent_join_token}
        )
