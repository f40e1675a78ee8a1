"""CorednsConfig: the rack's names under `rack.domain`, served by k3s' bundled CoreDNS, inside the
cluster and, with `rack.dns.address`, to the LAN.

Creates, under `homelab:system:CorednsConfig`:
- one `ConfigMap` `coredns-custom` in kube-system: the k3s way to extend CoreDNS (the packaged
  `coredns` ConfigMap is rewritten by k3s on every restart, so it is never patched). k3s' Corefile
  ends with `import /etc/coredns/custom/*.server` (manifests/coredns.yaml; k3s#4397), so the key
  `<domain>.server` adds the server blocks below at the Corefile's top level (with
  `rack.dns.address`, the key `<domain>.zone` holds the LAN view's zone file);
- with `rack.dns.address`, one `Service` `coredns-lan` in kube-system: `type: LoadBalancer` on
  53/udp and 53/tcp, selecting k3s' CoreDNS pods (`k8s-app: kube-dns`), labelled with the ServiceLB
  pool of the node at that address (`components.core.layout.servicelb_labels`; the metal layer's
  NodePatch labels the nodes before this exists).

The names (`domain_records`): every app `host`, Gitea's and Grafana's host -> `ingress.address`;
every `dns.records` name -> its address; the GPU host's hostname -> its address.

Two views, because the same CoreDNS answers pods and the LAN:
- **Pods** ask the cluster DNS Service on :53. The block `<domain>:53` answers the rack's names and
  lets every other name under the domain fall through (`hosts ... fallthrough`) to
  `forward . <dns.upstream>`: a state backend at `minio.<domain>` that the LAN's own DNS holds still
  resolves in a CI job, never NXDOMAIN from the rack.
- **The LAN** reaches CoreDNS through the `coredns-lan` Service, whose port 53 targets the pods'
  port `LAN_PORT` (a Service may target any port the pod listens on; the packaged Deployment
  declares only 53 and 9153, and declaring is informational). There, `<domain>:LAN_PORT` is
  authoritative for the rack's names and answers NXDOMAIN for any other name under the domain,
  and `.:LAN_PORT` forwards every other name to `dns.upstream`. The LAN view never forwards a name
  under the domain: the router that sends `<domain>` to the rack is very often `dns.upstream`
  too, and a rack that asked it back would loop (router -> rack -> router ...). The pods' view may,
  because the router's answer for an unknown in-zone name comes from the LAN view, which ends it.
  It also keeps the cluster's own names (`cluster.local`, NodeHosts) off the LAN.

Forwarding: each block forwards to `dns.upstream` itself. (A `forward .` in a `*.override` key
would land in the packaged `.:53` block beside its `forward . /etc/resolv.conf`; CoreDNS
evaluates forwards in order, k3s#5186, #10951, #12979; k3s#12980 moved the packaged forward after
the import, so releases before it cannot be overridden that way. The
packaged block's forward reads the node's k3s `resolv-conf`, which the metal layer writes from
`dns.upstream` on every node: `components.metal.k3s_scripts.render_resolv_conf`.)

Ports on the node: ServiceLB runs a `svclb-coredns-lan-*` pod only on the node at the address,
holding host ports 53/udp and 53/tcp there (k3s pkg/cloudprovider/servicelb.go `newDaemonSet`:
one container per Service port, `hostPort: port`). Traefik's svclb pod holds 80/443 and Gitea's
2222 on the same nodes: different ports, no clash; ServiceLB only fails to place a pod where
another Service already holds the same host port and protocol. A DNS server of the node's own
listening on the node's address :53 (dnsmasq, a Pi-hole) would be shadowed: hostPorts are
iptables DNAT rules of the CNI portmap plugin, not sockets; Raspberry Pi OS runs none by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.core.kubernetes_object import KubernetesObject
from components.core.layout import LABEL_PREFIX, LAN_DNS_POOL, SERVICELB_POOL_LABEL
from rack.config import Rack

CONFIGMAP_NAME = "coredns-custom"
"""The ConfigMap k3s' CoreDNS deployment mounts at /etc/coredns/custom (optional volume)."""
CONFIGMAP_NAMESPACE = "kube-system"
CUSTOM_DIR = "/etc/coredns/custom"
"""Where k3s' CoreDNS Deployment mounts `coredns-custom` (volume `custom-config-volume`)."""
SERVICE_NAME = "coredns-lan"
"""The LoadBalancer Service answering the LAN on `rack.dns.address`."""
COREDNS_SELECTOR = {"k8s-app": "kube-dns"}
"""The pod labels of k3s' packaged CoreDNS Deployment (manifests/coredns.yaml)."""
DNS_PORT = 53
"""What the pods' view listens on (the cluster DNS Service's port) and the LAN asks on."""
LAN_PORT = 1053
"""Where the LAN view listens inside the CoreDNS pods (unprivileged; any free port would do)."""
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


def _hosts(rack: Rack) -> list[str]:
    """The rack's names; any other name under the domain goes on to the block's next plugin."""
    lines = ["    hosts {"]
    for fqdn, address in domain_records(rack).items():
        lines.append(f"        {address} {fqdn}")
    return [*lines, f"        ttl {TTL_SECONDS}", "        fallthrough", "    }"]


def _forward(rack: Rack) -> str:
    return "    forward . " + " ".join(str(a) for a in rack.dns.upstream)


def render_server_block(rack: Rack) -> str:
    """The Corefile server blocks of `<domain>.server` (pure): the pods' view on :53 and, with
    `dns.address`, the LAN view on `LAN_PORT` (see the module docstring for why they differ)."""
    head = ["    errors", f"    cache {TTL_SECONDS}"]
    lines = [
        f"{rack.domain}:{DNS_PORT} {{",
        *head,
        *_hosts(rack),
        _forward(rack),
        "}",
    ]
    if rack.dns.address is not None:
        zone = f"    file {CUSTOM_DIR}/{zone_key(rack)} {rack.domain}"
        lines += [f"{rack.domain}:{LAN_PORT} {{", *head, *_hosts(rack), zone, "}"]
        lines += [f".:{LAN_PORT} {{", *head, _forward(rack), "}"]
    return "\n".join(lines) + "\n"


def zone_key(rack: Rack) -> str:
    """The ConfigMap key of the LAN view's zone file: `<domain>.zone` (k3s imports only `*.server`
    and `*.override`; this one is read by the `file` plugin at CUSTOM_DIR)."""
    return f"{rack.domain}.zone"


def render_zone(rack: Rack) -> str:
    """The LAN view's zone: the SOA of the domain and nothing else (pure).

    CoreDNS' `hosts` plugin answers SERVFAIL, not NXDOMAIN, for a name it does not hold and may
    not fall through (plugin/hosts/hosts.go: "we don't have a SOA"), so the LAN view lets it fall
    through to this zone, where the `file` plugin answers NXDOMAIN, authoritative, with the SOA
    (negative caching for `TTL_SECONDS`, RFC 2308). The zone never changes with the records, so
    its serial never has to move for the `file` plugin to reload it."""
    soa = f"ns.{rack.domain}. hostmaster.{rack.domain}. 1 3600 600 86400 {TTL_SECONDS}"
    return f"$ORIGIN {rack.domain}.\n@ {TTL_SECONDS} IN SOA {soa}\n"


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
        "data": {
            server_key(rack): render_server_block(rack),
            **({zone_key(rack): render_zone(rack)} if rack.dns.address is not None else {}),
        },
    }


def render_lan_service(rack: Rack) -> dict[str, Any] | None:
    """The `coredns-lan` LoadBalancer Service, or None without `dns.address` (pure).

    ServiceLB's svclb pod forwards the node's port 53 to the Service's cluster IP on port 53
    (`DEST_IPS`/`DEST_PORT` in `newDaemonSet`), and kube-proxy sends that to a CoreDNS pod's
    `LAN_PORT`. The pool label keeps the svclb pod, and so the address in the Service's status,
    on the node at `dns.address`. It is created after the nodes' labels (the metal layer's
    NodePatches are in `cluster_ready`): k3s builds the pool into the svclb nodeSelector when it
    first sees the Service, while `updateDaemonSets`, run when the first enablelb label appears,
    resets existing svclb selectors to `enablelb` alone."""
    if rack.dns.address is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": SERVICE_NAME,
            "namespace": CONFIGMAP_NAMESPACE,
            "labels": {f"{LABEL_PREFIX}/managed": "true", SERVICELB_POOL_LABEL: LAN_DNS_POOL},
        },
        "spec": {
            "type": "LoadBalancer",
            "selector": dict(COREDNS_SELECTOR),
            "ports": [
                {"name": "dns", "port": DNS_PORT, "targetPort": LAN_PORT, "protocol": "UDP"},
                {"name": "dns-tcp", "port": DNS_PORT, "targetPort": LAN_PORT, "protocol": "TCP"},
            ],
        },
    }


@dataclass(frozen=True, kw_only=True)
class CorednsConfigArgs:
    rack: Rack
    """The validated rack (domain, dns, ingress, apps, gitea, gpu-host)."""


class CorednsConfig(pulumi.ComponentResource):
    configmap: KubernetesObject
    """The `coredns-custom` ConfigMap."""
    lan_service: KubernetesObject | None
    """The `coredns-lan` LoadBalancer Service, None without `dns.address`."""
    records: dict[str, str]
    """FQDN -> address of every name served."""

    def __init__(self, name: str, args: CorednsConfigArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:system:CorednsConfig", name, None, opts)
        manifest = render_configmap(args.rack)
        self.configmap = KubernetesObject(f"{name}-configmap", manifest, pulumi.ResourceOptions(parent=self))
        service = render_lan_service(args.rack)
        self.lan_service = (
            None
            if service is None
            # After the ConfigMap: CoreDNS listens on LAN_PORT once it has reloaded the new blocks.
            else KubernetesObject(
                f"{name}-lan-service", service, pulumi.ResourceOptions(parent=self, depends_on=[self.configmap])
            )
        )
        self.records = domain_records(args.rack)
        self.register_outputs({"configmap": self.configmap, "lan_service": self.lan_service, "records": self.records})
