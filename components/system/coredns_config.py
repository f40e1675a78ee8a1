"""CorednsConfig: the rack's names under `rack.domain`, served by k3s' bundled CoreDNS.

Creates, under `homelab:system:CorednsConfig`, one `ConfigMap` `coredns-custom` in kube-system:
the k3s way to extend CoreDNS (the packaged `coredns` ConfigMap is rewritten by k3s on every
restart, so it is never patched). k3s' Corefile ends with `import /etc/coredns/custom/*.server`,
so the key `<domain>.server` adds one server block, authoritative for the domain:
- every app `host` and Gitea's host -> `ingress.address`;
- every `dns.records` name -> its address;
- the GPU host's hostname -> its address.
A name under the domain that is none of these answers NXDOMAIN instead of leaking upstream.

Forwarding everything else to `dns.upstream`: a `forward .` inside `coredns-custom` cannot win over
the packaged `forward . /etc/resolv.conf` (CoreDNS evaluates forwards in order; k3s#5186,
#10951, #12979). The k3s way is the `resolv-conf` option pointing at a file listing the
upstreams: the metal layer writes it on every node (`components.metal.k3s_scripts.
render_resolv_conf`) and restarts CoreDNS when the upstreams change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.core.kubernetes_object import KubernetesObject
from components.core.layout import LABEL_PREFIX
from rack.config import Rack

CONFIGMAP_NAME = "coredns-custom"
"""The ConfigMap k3s' CoreDNS deployment mounts at /etc/coredns/custom (optional volume)."""
CONFIGMAP_NAMESPACE = "kube-system"
TTL_SECONDS = 60


def domain_records(rack: Rack) -> dict[str, str]:
    """Every name CoreDNS answers under the domain: FQDN -> IPv4 address (pure, sorted)."""
    records: dict[str, str] = {}
    ingress = str(rack.ingress.address)
    for app in rack.apps:
        if app.host is not None:
            records[f"{app.host}.{rack.domain}"] = ingress
    if rack.gitea is not None:
        records[f"{rack.gitea.host}.{rack.domain}"] = ingress
    if rack.monitoring is not None:
        records[f"{rack.monitoring.host}.{rack.domain}"] = ingress  # Grafana, through the ingress
    for name, address in rack.dns.records.items():
        records[f"{name}.{rack.domain}"] = str(address)
    if rack.gpu_host is not None:
        records[f"{rack.gpu_host.hostname}.{rack.domain}"] = str(rack.gpu_host.address)
    return dict(sorted(records.items()))


def server_key(rack: Rack) -> str:
    """The ConfigMap key: `<domain>.server` (k3s imports `*.server` at the Corefile's top level)."""
    return f"{rack.domain}.server"


def render_server_block(rack: Rack) -> str:
    """The Corefile server block for the domain (pure)."""
    lines = [f"{rack.domain}:53 {{", "    errors", f"    cache {TTL_SECONDS}", "    hosts {"]
    for fqdn, address in domain_records(rack).items():
        lines.append(f"        {address} {fqdn}")
    lines += [f"        ttl {TTL_SECONDS}", "    }", "}"]
    return "\n".join(lines) + "\n"


def render_configmap(rack: Rack) -> dict[str, Any]:
    """The `coredns-custom` ConfigMap (pure)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP_NAME,
            "namespace": CONFIGMAP_NAMESPACE,
            "labels": {f"{LABEL_PREFIX}/managed": "true"},
        },
        "data": {server_key(rack): render_server_block(rack)},
    }


@dataclass(frozen=True, kw_only=True)
class CorednsConfigArgs:
    rack: Rack
    """The validated rack (domain, dns, ingress, apps, gitea, gpu-host)."""


class CorednsConfig(pulumi.ComponentResource):
    configmap: KubernetesObject
    """The `coredns-custom` ConfigMap."""
    records: dict[str, str]
    """FQDN -> address of every name served."""

    def __init__(self, name: str, args: CorednsConfigArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:system:CorednsConfig", name, None, opts)
        manifest = render_configmap(args.rack)
        self.configmap = KubernetesObject(f"{name}-configmap", manifest, pulumi.ResourceOptions(parent=self))
        self.records = domain_records(args.rack)
        self.register_outputs({"configmap": self.configmap, "records": self.records})
