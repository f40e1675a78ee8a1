"""The composition: which parts this rack has, layer by layer (metal -> system -> platform ->
ci -> apps -> gpu -> observability), and what the stack exports. `__main__.py` and the offline plan both call `build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.ci import Gitea
from components.observability import GRAFANA_ADMIN_USER, Grafana
from components.system import new_rack_ca, routes
from rack.loader import Loaded
from stacks.apps import AppsLayer, build_apps
from stacks.ci import CiLayer, build_ci
from stacks.gpu import GpuLayer, build_gpu
from stacks.metal import MetalLayer, build_metal
from stacks.observability import ObservabilityLayer, build_observability
from stacks.platform import PlatformLayer, build_platform
from stacks.system import SystemLayer, build_system


@dataclass(frozen=True)
class RackStack:
    metal: MetalLayer
    system: SystemLayer
    platform: PlatformLayer
    ci: CiLayer
    apps: AppsLayer
    gpu: GpuLayer
    observability: ObservabilityLayer


def build(loaded: Loaded) -> RackStack:
    # The rack CA comes first: containerd on every node trusts it for the rack's registry
    # (registries.yaml's ca_file, written with k3s' files), and the system layer signs Traefik's
    # default certificate with it and puts it in each node's trust store.
    rack_ca = new_rack_ca()
    metal = build_metal(loaded, rack_ca)
    system = build_system(loaded, metal, rack_ca)
    platform = build_platform(loaded, metal, system)
    ci = build_ci(loaded, metal, system, platform)
    apps = build_apps(loaded, metal, system, platform)
    gpu = build_gpu(loaded, metal, system)
    observability = build_observability(loaded, metal, system, platform, gpu)
    return RackStack(
        metal=metal, system=system, platform=platform, ci=ci, apps=apps, gpu=gpu, observability=observability
    )


def export(stack: RackStack, loaded: Loaded) -> None:
    rack = loaded.rack
    pulumi.export("kubeconfig", stack.metal.kubeconfig)
    pulumi.export("domain", rack.domain)
    pulumi.export("nodes", sorted(n.hostname for n in rack.nodes))
    pulumi.export("apps", sorted(stack.apps.workloads))
    pulumi.export("gpu_layer", "on" if stack.gpu.enabled else "off")
    pulumi.export("grafana", stack.observability.grafana_url)
    if stack.system.ca is not None:
        # Public: `pulumi stack output rack_ca_certificate > rack-ca.crt` (docs/trust.md).
        pulumi.export("rack_ca_certificate", stack.system.ca.ca_cert_pem)
    offsite = stack.platform.offsite
    if offsite is not None:
        # The repositories' password (a secret: `pulumi stack output backup_password --show-secrets`),
        # and the line the SFTP server's authorized_keys needs (None: the user supplied the key).
        pulumi.export("backup_password", offsite.password)
        pulumi.export("backup_ssh_public_key", offsite.ssh_public_key)
    for name, value in login_outputs(stack, loaded).items():
        pulumi.export(name, value)


def login_outputs(stack: RackStack, loaded: Loaded) -> dict[str, Any]:
    """The way in, as stack outputs: every URL the rack serves, and each admin's user name and
    password (secret: `pulumi stack output gitea_admin_password --show-secrets`)."""
    rack = loaded.rack
    urls = {route.key: f"https://{route.host}/" for route in routes(rack)}
    if stack.observability.grafana_url is not None:
        urls["grafana"] = stack.observability.grafana_url
    out: dict[str, Any] = {"urls": dict(sorted(urls.items()))}
    if rack.dns.address is not None:
        # Where the router's conditional forwarder (or the laptop) sends the domain (docs/lan-dns.md).
        out["dns_address"] = str(rack.dns.address)
    gitea = stack.ci.components.get("gitea")
    if rack.gitea is not None and isinstance(gitea, Gitea):
        out["gitea_admin_user"] = rack.gitea.admin_user
        out["gitea_admin_password"] = gitea.admin_password  # a secret Output already
    grafana = stack.observability.components.get("grafana")
    if isinstance(grafana, Grafana):
        out["grafana_admin_user"] = GRAFANA_ADMIN_USER
        out["grafana_admin_password"] = grafana.admin_password  # a secret Output already
    return out
