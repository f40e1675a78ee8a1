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
    render_server_block,
)
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


def test_server_block_is_authoritative_for_the_domain(homelab: Loaded) -> None:
    block = render_server_block(homelab.rack)
    lines = [line.strip() for line in block.splitlines()]
    assert lines[0] == "lab.home.arpa:53 {"
    assert "192.168.10.21 api.lab.home.arpa" in lines
    assert "192.168.10.50 gpu-3090.lab.home.arpa" in lines
    # No `fallthrough`: an unknown name under the domain is NXDOMAIN, never asked upstream.
    assert "fallthrough" not in block
    assert block.count("{") == block.count("}") == 2


def test_configmap_is_coredns_custom_with_a_server_key(homelab: Loaded) -> None:
    cm = render_configmap(homelab.rack)
    assert cm["metadata"]["name"] == "coredns-custom" and cm["metadata"]["namespace"] == "kube-system"
    assert list(cm["data"]) == ["lab.home.arpa.server"]
    kubernetes_validate.validate(cm, "1.31", strict=True)


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
