"""CorednsConfig: the coredns-custom ConfigMap for the homelab rack, the Corefile block it adds,
and the component under recording mocks (the upstreams' resolv.conf is the metal layer's)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

from components.system.coredns_config import (
    CorednsConfig,
    CorednsConfigArgs,
    domain_records,
    render_configmap,
    render_lan_service,
    render_server_block,
)
from rack.config import parse_rack
from rack.loader import Loaded


def test_homelab_records_cover_apps_gitea_dns_records_and_the_gpu_host(homelab: Loaded) -> None:
    assert domain_records(homelab.rack) == {
        "api.lab.home.arpa": "192.168.10.21",
        "auth.lab.home.arpa": "192.168.10.21",
        "devotional.lab.home.arpa": "192.168.10.21",
        "git.lab.home.arpa": "192.168.10.21",
        "gpu-3090.lab.home.arpa": "192.168.10.50",
        "gpu.lab.home.arpa": "192.168.10.50",
        "grafana.lab.home.arpa": "192.168.10.21",
        "social.lab.home.arpa": "192.168.10.21",
    }


def test_server_blocks_pods_view_falls_through_and_the_lan_view_is_authoritative(homelab: Loaded) -> None:
    """The blocks' shape (what they answer is tests/real/dns, against a real CoreDNS)."""
    blocks = render_server_block(homelab.rack).split("\n}\n")
    pods, lan_zone, lan_rest = (b.strip().splitlines() for b in blocks[:3])
    assert blocks[3] == ""
    assert pods[0] == "lab.home.arpa:53 {"
    assert "192.168.10.21 api.lab.home.arpa" in [x.strip() for x in pods]
    assert [x.strip() for x in pods[-3:]] == ["fallthrough", "}", "forward . 1.1.1.1 9.9.9.9"]
    assert lan_zone[0] == "lab.home.arpa:1053 {"
    assert lan_zone[-1].strip() == "file /etc/coredns/custom/lab.home.arpa.zone lab.home.arpa"
    assert not any("forward" in x for x in lan_zone)  # never back upstream: a router loop otherwise
    assert [x.strip() for x in lan_rest] == [".:1053 {", "errors", "cache 60", "forward . 1.1.1.1 9.9.9.9"]


def test_without_a_lan_address_only_the_pods_view_is_rendered(homelab_raw: dict[str, Any]) -> None:
    del homelab_raw["dns"]["address"]
    rack = parse_rack(homelab_raw)
    block = render_server_block(rack)
    assert block.count(" {\n") == 2 and ":1053" not in block  # the block and its hosts stanza
    assert list(render_configmap(rack)["data"]) == ["lab.home.arpa.server"]
    assert render_lan_service(rack) is None


def test_configmap_is_coredns_custom_with_a_server_key_and_the_zone(homelab: Loaded) -> None:
    cm = render_configmap(homelab.rack)
    assert cm["metadata"]["name"] == "coredns-custom" and cm["metadata"]["namespace"] == "kube-system"
    assert list(cm["data"]) == ["lab.home.arpa.server", "lab.home.arpa.zone"]
    assert cm["data"]["lab.home.arpa.zone"].splitlines()[1].split()[:4] == ["@", "60", "IN", "SOA"]
    kubernetes_validate.validate(cm, "1.31", strict=True)


def test_lan_service_is_a_servicelb_loadbalancer_on_53_pinned_to_the_dns_pool(homelab: Loaded) -> None:
    svc = render_lan_service(homelab.rack)
    assert svc is not None
    kubernetes_validate.validate(svc, "1.31", strict=True)
    assert svc["metadata"]["namespace"] == "kube-system"
    assert svc["metadata"]["labels"]["svccontroller.k3s.cattle.io/lbpool"] == "rack-lan-dns"
    assert svc["spec"]["type"] == "LoadBalancer" and "loadBalancerClass" not in svc["spec"]
    # k3s' packaged CoreDNS pods (manifests/coredns.yaml: `k8s-app: kube-dns`)
    assert svc["spec"]["selector"] == {"k8s-app": "kube-dns"}
    assert sorted((p["protocol"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]) == [
        ("TCP", 53, 1053),
        ("UDP", 53, 1053),
    ]


def test_lab_rack_serves_its_ingress_hosts(lab: Loaded, lab_bare: Loaded) -> None:
    """Every name the ingress routes (apps, Gitea, Grafana) resolves to the ingress address."""
    ingress = "10.77.0.21"
    assert domain_records(lab.rack) == {"git.lab.test": ingress, "grafana.lab.test": ingress, "web.lab.test": ingress}
    assert domain_records(lab_bare.rack) == {"web.lab.test": ingress}


def test_component_registers_the_configmap(record: Any, homelab: Loaded) -> None:
    rec = record(lambda: CorednsConfig("coredns", CorednsConfigArgs(rack=homelab.rack)))
    component = rec.by_name("coredns")
    assert component.type == "homelab:system:CorednsConfig"
    cm = rec.by_name("coredns-configmap")
    assert cm.parent == component.urn
    assert cm.inputs["metadata"]["name"] == "coredns-custom"
    assert cm.inputs["data"] == render_configmap(homelab.rack)["data"]
    svc = rec.by_name("coredns-lan-service")
    assert svc.parent == component.urn
    assert svc.type == "kubernetes:core/v1:Service"
    assert svc.inputs["metadata"]["name"] == "coredns-lan"
    assert "coredns-configmap" in {d.rsplit("::", 1)[-1] for d in svc.depends_on}


def test_component_without_a_lan_address_registers_no_service(record: Any, homelab_raw: dict[str, Any]) -> None:
    del homelab_raw["dns"]["address"]
    rack = parse_rack(homelab_raw)
    rec = record(lambda: CorednsConfig("coredns", CorednsConfigArgs(rack=rack)))
    assert [r.name for r in rec if r.type == "kubernetes:core/v1:Service"] == []
