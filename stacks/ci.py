"""The CI layer: Gitea and its runners, built on the platform layer's PostgreSQL.

Creates, when `rack.gitea` is set:
- `Namespace` `ci` (Pod Security `restricted` enforced: Gitea and its init Job) and `ci-runners`
  (`privileged`: the runners' rootless Docker-in-Docker sidecar needs it, so it is fenced into a
  namespace of its own), each with a default-deny NetworkPolicy;
- `GeneratedSecret` `gitea-runner-token`: the shared registration token Gitea is started with
  and the runners register with;
- Gitea's read-only pull account (`rack-puller`), with the password the metal layer generated for
  every node's registries.yaml;
- `Gitea` (protected) and, with `runners.replicas > 0`, `GiteaRunners` (egress to the servers'
  API, every node's and the GPU host's SSH, `gitea.runners.state-backend`; the rack CA of the
  system layer trusted in every job);
- with `rack.backup.offsite`, `GiteaBackup`: Gitea's files copied off-node on `gitea.backup.schedule`.

Gitea's Ingress (`git.<domain>` -> service `gitea` port 3000 in `ci`) is the platform layer's,
like every Ingress.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.ci import (
    Gitea,
    GiteaArgs,
    GiteaBackup,
    GiteaBackupArgs,
    GiteaRunners,
    GiteaRunnersArgs,
    GiteaSettings,
    RunnerSettings,
)
from components.ci import gitea as gitea_mod
from components.ci import gitea_runners as runners_mod
from components.core import (
    NAMESPACES,
    WORKLOAD_LABEL,
    GeneratedSecret,
    GeneratedSecretArgs,
    KubernetesObject,
    pod_security_labels,
    render_default_deny,
    render_namespace,
)
from components.platform import server_image as pg_server_image
from rack.config import DatabaseKind, Rack
from rack.loader import Loaded
from rack.vocabulary import Category
from stacks.metal import MetalLayer
from stacks.platform import PlatformLayer
from stacks.system import SystemLayer

CI_NAMESPACE = "ci"
"""Gitea's namespace (the platform layer's Ingress points at service `gitea` here)."""
RUNNERS_NAMESPACE = "ci-runners"
"""The runners' namespace."""


def namespace_labels() -> dict[str, dict[str, str]]:
    """Pod Security per CI namespace: restricted for Gitea, privileged (only) for the runners."""
    return {
        CI_NAMESPACE: pod_security_labels(Category.INFRASTRUCTURE, enforce="restricted"),
        RUNNERS_NAMESPACE: pod_security_labels(Category.INFRASTRUCTURE, enforce="privileged", warn="privileged"),
    }


def api_addresses(rack: Rack) -> list[str]:
    """Where a job's kubeconfig may point: every server's address and `k3s.api-address`."""
    out = {str(n.address) for n in rack.servers()}
    if rack.k3s.api_address is not None:
        out.add(str(rack.k3s.api_address))
    return sorted(out)


def ssh_peers(rack: Rack) -> list[tuple[str, int]]:
    """Every node's SSH, and the GPU host's: what `pulumi up` dials from a job."""
    peers = [(str(n.address), rack.ssh.port) for n in rack.nodes]
    if rack.gpu_host is not None:
        peers.append((str(rack.gpu_host.address), rack.gpu_host.ssh_port))
    return peers


@dataclass(frozen=True)
class CiLayer:
    components: dict[str, pulumi.ComponentResource] = field(default_factory=dict)
    """Gitea and its runners, by name."""
    namespaces: dict[str, KubernetesObject] = field(default_factory=dict)
    """The CI namespaces, by name."""
    default_deny: dict[str, KubernetesObject] = field(default_factory=dict)
    """The default-deny policy of each CI namespace, by namespace."""


def build_ci(
    loaded: Loaded,
    metal: MetalLayer,
    system: SystemLayer,
    platform: PlatformLayer,
) -> CiLayer:
    """CI jobs trust the rack CA (`system.ca`) besides the public roots."""
    rack = loaded.rack
    cfg = rack.gitea
    if cfg is None:
        return CiLayer()
    postgres = platform.endpoints.get("postgres")
    if postgres is None or rack.databases.postgres is None:
        # The config requires postgres with gitea (rack_problems); only a platform layer that has
        # not handed its endpoint over yet gets here.
        pulumi.log.warn("gitea: the platform layer provides no postgres endpoint; Gitea and its runners are left out")
        return CiLayer()
    node = rack.node(cfg.volume.node)
    assert node is not None and node.storage is not None, "validated by rack_problems"

    k8s_opts = pulumi.ResourceOptions(provider=metal.k8s_provider, depends_on=metal.cluster_ready)
    namespaces: dict[str, KubernetesObject] = {}
    default_deny: dict[str, KubernetesObject] = {}
    wanted = [CI_NAMESPACE] + ([RUNNERS_NAMESPACE] if cfg.runners.replicas > 0 else [])
    labels = namespace_labels()
    for ns in wanted:
        if ns == CI_NAMESPACE and system.ci_namespace is not None:
            # The system layer owns `ci` (its Ingress for Gitea lives there); one object, one owner.
            namespaces[ns] = system.ci_namespace
        else:
            namespaces[ns] = KubernetesObject(
                f"ns-{ns}",
                render_namespace(ns, labels[ns]),
                k8s_opts,
            )
        deny = render_default_deny(ns)
        default_deny[ns] = KubernetesObject(
            f"netpol-{ns}-default-deny",
            deny,
            pulumi.ResourceOptions(provider=metal.k8s_provider, depends_on=[namespaces[ns]]),
        )

    token = GeneratedSecret("gitea-runner-token", GeneratedSecretArgs(length=48))
    fqdn = f"{cfg.host}.{rack.domain}"
    runners_on = cfg.runners.replicas > 0
    settings = GiteaSettings(
        version=cfg.version,
        namespace=CI_NAMESPACE,
        fqdn=fqdn,
        # https: the ingress serves HTTPS only; Gitea hands this URL to Actions jobs (checkout) and
        # as the container registry's token realm, so an http:// one makes both follow a redirect.
        root_url=f"https://{fqdn}/",
        node=node.hostname,
        cpu=cfg.cpu,
        memory=cfg.memory,
        admin_user=cfg.admin_user,
        postgres=postgres,
        # The server's own image (pgvector's with `vector: true`), as the backup Job uses.
        postgres_image=pg_server_image(DatabaseKind.POSTGRES, rack.databases.postgres),
        runners_namespace=RUNNERS_NAMESPACE if runners_on else None,
        runner_pod_labels={WORKLOAD_LABEL: runners_mod.NAME} if runners_on else None,
        pull_user=gitea_mod.PULL_USER if metal.registry_pull_password is not None else None,
    )
    pg_component = platform.components.get("postgres")
    gitea = Gitea(
        "gitea",
        GiteaArgs(
            settings=settings,
            storage_path=node.storage.path,
            volume_size=cfg.volume.size,
            runner_token=token.value,
            admin_password=loaded.secrets.get("gitea-admin-password"),
            node_access=metal.node_access.get(node.hostname),
            pull_password=metal.registry_pull_password,
        ),
        pulumi.ResourceOptions(
            providers=[metal.k8s_provider],
            depends_on=[namespaces[CI_NAMESPACE], *([pg_component] if pg_component is not None else [])],
        ),
    )
    components: dict[str, pulumi.ComponentResource] = {"gitea": gitea}
    offsite = rack.backup.offsite
    if offsite is not None and platform.offsite is not None:
        components["gitea-backup"] = GiteaBackup(
            "gitea-backup",
            GiteaBackupArgs(
                offsite=offsite,
                schedule=cfg.backup.schedule,
                node=node.hostname,
                namespace=CI_NAMESPACE,
                data_namespace=NAMESPACES[Category.DATA],
                metrics_url=platform.metrics_url,
                depends_on=(
                    platform.offsite.secrets[CI_NAMESPACE],
                    platform.offsite.passwd[CI_NAMESPACE],
                    gitea.volume,
                    default_deny[CI_NAMESPACE],
                ),
            ),
            pulumi.ResourceOptions(providers=[metal.k8s_provider]),
        )
    if runners_on:
        backend_ip = rack.state_backend_ip()
        backend = cfg.runners.state_backend
        state_backend = (str(backend_ip), backend.port) if backend is not None and backend_ip is not None else None
        components["gitea-runners"] = GiteaRunners(
            "gitea-runners",
            GiteaRunnersArgs(
                settings=RunnerSettings(
                    namespace=RUNNERS_NAMESPACE,
                    replicas=cfg.runners.replicas,
                    version=cfg.runners.version,
                    docker_version=cfg.runners.docker_version,
                    labels=cfg.runners.labels,
                    cpu=cfg.runners.cpu,
                    memory=cfg.runners.memory,
                    work_size=cfg.runners.work_size,
                    gitea_url=f"http://{gitea_mod.NAME}.{CI_NAMESPACE}.svc.cluster.local:{gitea_mod.HTTP_PORT}",
                    gitea_namespace=CI_NAMESPACE,
                    gitea_pod_labels={WORKLOAD_LABEL: gitea_mod.NAME},
                    ingress_address=str(rack.ingress.address),
                    registry_host=fqdn,
                    buildkit_version=cfg.runners.buildkit_version,
                    api_addresses=api_addresses(rack),
                    ssh_peers=ssh_peers(rack),
                    state_backend=state_backend,
                    failover_seconds=rack.failover_seconds,
                ),
                registration_token=token.value,
                ca_cert_pem=system.ca.ca_cert_pem if system.ca is not None else None,
            ),
            pulumi.ResourceOptions(
                providers=[metal.k8s_provider], depends_on=[namespaces[RUNNERS_NAMESPACE], gitea.http_service]
            ),
        )
    return CiLayer(components=components, namespaces=namespaces, default_deny=default_deny)
