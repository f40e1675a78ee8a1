"""RackCa: the rack's private CA, the certificate Traefik serves by default, and every node's trust.

Creates, under `homelab:system:RackCa`:
- `<name>-ca` (`CaCertificate`, a dynamic resource): the CA's key (secret) and certificate, made
  once on the first `up` and kept in state; nothing but its common name replaces it;
- `<name>-serving` (`ServingCertificate`): the key (secret) and certificate for
  `*.<domain>`, `<domain>` and `ingress.address`, reissued in place by a later `preview`/`up`
  when fewer than `RENEW_DAYS` remain or the names change (the CA stays);
- `<name>-secret`: the `kubernetes.io/tls` Secret `SECRET_NAME` in kube-system holding the leaf
  and its key (the CA's key never leaves the state), updated in place on a reissue. Traefik
  serves it by default through the `default` TLSStore that TraefikConfig asks its chart for;
- `<name>-trust-<hostname>` (remote.Command, per node): the CA into the system trust store at
  `RACK_CA_PATH` (components/core/trust.py), `update-ca-certificates` run only when the file
  changed. The certificate goes on stdin, so a new CA is an update of the same command (no
  replacement, so no old `delete` in between); its delete, when the node leaves the rack, takes
  the CA out of the store.

`ca_cert_pem` is the PEM every client that should trust the rack takes (the stack output
`rack_ca_certificate`, CI job containers).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi

from components.core.certificates import CaCertificate, ServingCertificate
from components.core.kubernetes_object import KubernetesObject
from components.core.layout import LABEL_PREFIX
from components.core.remote_command import RemoteCommand
from components.core.trust import trust_script, untrust_script
from components.metal.k3s_scripts import remote_command
from components.system.traefik_config import CHART_NAMESPACE
from rack.config import Rack

if TYPE_CHECKING:
    from components.metal.k3s_cluster import NodeAccess

SECRET_NAME = "rack-default-tls"
"""The `kubernetes.io/tls` Secret in Traefik's namespace that the default TLSStore names."""
CA_VALIDITY_DAYS = 3650
"""The CA is valid ten years: every laptop and phone trusts it by hand, so it should rarely change."""
SERVING_VALIDITY_DAYS = 365
"""The leaf is valid a year: within what every client accepts for a locally trusted CA (Apple's
limit is 825 days for TLS server certificates)."""
RENEW_DAYS = 30
"""A `preview`/`up` with fewer days than this left on the leaf reissues it."""
CA_COMMON_NAME_PREFIX = "homelab rack CA"
"""The CA's subject is `<prefix> (<stack>)`: recognisable in a keychain, independent of the domain."""


def serving_names(rack: Rack) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) of the default certificate: the domain, its wildcard (every
    ingress host is one label under it) and the ingress address (pure)."""
    return [rack.domain, f"*.{rack.domain}"], [str(rack.ingress.address)]


def tls_data(cert_pem: str, key_pem: str) -> dict[str, str]:
    """A `kubernetes.io/tls` Secret's `data`: the certificate and its key, base64 (pure)."""
    return {
        "tls.crt": base64.b64encode(cert_pem.encode()).decode(),
        "tls.key": base64.b64encode(key_pem.encode()).decode(),
    }


def render_tls_secret(data: Any) -> dict[str, Any]:
    """The Secret Traefik's default TLSStore names (pure); `data` is `tls_data`'s, an Output in the
    component (KubernetesObject makes a Secret's `data` secret, as pulumi-kubernetes' Secret does)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SECRET_NAME,
            "namespace": CHART_NAMESPACE,
            "labels": {f"{LABEL_PREFIX}/managed": "true"},
        },
        "type": "kubernetes.io/tls",
        "data": data,
    }


def new_rack_ca(name: str = "rack-ca", common_name: str | None = None) -> CaCertificate:
    """The rack's CA, `<name>-ca`, its key a secret output. `common_name` None:
    `<CA_COMMON_NAME_PREFIX> (<stack>)`; a change of it replaces the CA, and every client must then
    trust the new one. Made first in the composition: the metal layer writes its certificate for
    containerd (registries.yaml), `RackCa` signs the serving certificate with it."""
    return CaCertificate(
        f"{name}-ca",
        common_name=common_name or f"{CA_COMMON_NAME_PREFIX} ({pulumi.get_stack()})",
        validity_days=CA_VALIDITY_DAYS,
        opts=pulumi.ResourceOptions(additional_secret_outputs=["private_key_pem"]),
    )


@dataclass(frozen=True, kw_only=True)
class RackCaArgs:
    rack: Rack
    """The validated rack (domain, ingress address, nodes)."""
    node_access: Mapping[str, NodeAccess] = field(default_factory=dict)
    """SSH to each node (hostname -> access); a node listed here gets the CA in its trust store."""
    ca: CaCertificate
    """The rack CA (`new_rack_ca`): made before the metal layer, whose nodes' containerd trusts it
    for the rack's registry before this component exists."""


class RackCa(pulumi.ComponentResource):
    ca_cert_pem: pulumi.Output[str]
    """The CA certificate (PEM, public): what every client that trusts the rack takes."""
    ca: CaCertificate
    """The CA (its `private_key_pem` is secret)."""
    serving: ServingCertificate
    """The default certificate (its `private_key_pem` is secret)."""
    serving_cert_pem: pulumi.Output[str]
    """The default certificate (PEM, public)."""
    secret: KubernetesObject
    """The `kubernetes.io/tls` Secret `SECRET_NAME` in kube-system."""
    secret_name: str
    """Its name, for the TLSStore."""
    node_trust: dict[str, RemoteCommand]
    """Per hostname: the CA written to `RACK_CA_PATH` and the store updated (depend on it before
    anything on the node reads the file)."""

    def __init__(self, name: str, args: RackCaArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:system:RackCa", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.ca = args.ca
        self.ca_cert_pem = self.ca.cert_pem
        dns_names, ip_addresses = serving_names(args.rack)
        self.serving = ServingCertificate(
            f"{name}-serving",
            ca_cert_pem=self.ca.cert_pem,
            ca_private_key_pem=pulumi.Output.secret(self.ca.private_key_pem),
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            validity_days=SERVING_VALIDITY_DAYS,
            renew_days=RENEW_DAYS,
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["private_key_pem"]),
        )
        self.serving_cert_pem = self.serving.cert_pem
        data = pulumi.Output.all(self.serving.cert_pem, self.serving.private_key_pem).apply(
            lambda ck: tls_data(ck[0], ck[1])
        )
        self.secret_name = SECRET_NAME
        self.secret = KubernetesObject(f"{name}-secret", render_tls_secret(data), child)
        self.node_trust = {}
        for hostname, access in sorted(args.node_access.items()):
            self.node_trust[hostname] = RemoteCommand(
                f"{name}-trust-{hostname}",
                connection=access.connection,
                create=remote_command(trust_script(), user=access.user),
                update=remote_command(trust_script(), user=access.user),
                delete=remote_command(untrust_script(), user=access.user),
                stdin=self.ca.cert_pem,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[access.after]),
            )
        self.register_outputs(
            {"ca_cert_pem": self.ca_cert_pem, "serving_cert_pem": self.serving_cert_pem, "secret_name": SECRET_NAME}
        )
