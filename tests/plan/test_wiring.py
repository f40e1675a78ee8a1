"""plan/wiring.py through the real offline plan of the committed homelab stack and variants of it:
pinned volumes against each node's storage, the ingress routes and the node that serves them, and
Gitea's database link. Oracles: the stack file's own values; k3s' ServiceLB tolerations as
upstream writes them (pkg/cloudprovider/servicelb.go, `newDaemonSet`)."""

from __future__ import annotations

from typing import Any

import pytest

from plan.engine import reset_runtime
from plan.result import make_plan
from rack.quantity import storage_gib
from tests.conftest import loaded_from, stack_raw


def plan_json(raw: dict[str, Any]) -> dict[str, Any]:
    reset_runtime()
    try:
        return make_plan(loaded_from(raw), "homelab").to_json()
    finally:
        reset_runtime()


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return stack_raw("homelab")


@pytest.fixture(scope="module")
def plan(raw: dict[str, Any]) -> dict[str, Any]:
    return plan_json(raw)


def expected_volume_sizes(raw: dict[str, Any]) -> dict[str, list[float]]:
    """Per node, the Gi of every pinned volume the stack file asks for: Gitea's volume, each
    database's data volume and its backup volume (backup.size, default the database's size), and
    the metrics store's."""
    sizes: dict[str, list[float]] = {}

    def add(node: str, size: str) -> None:
        sizes.setdefault(node, []).append(storage_gib(size))

    add(raw["gitea"]["volume"]["node"], raw["gitea"]["volume"]["size"])
    for db in raw["databases"].values():
        add(db["node"], db["size"])
        add(db["node"], (db.get("backup") or {}).get("size", db["size"]))
    add(raw["monitoring"]["node"], raw["monitoring"].get("size", "10Gi"))
    return {node: sorted(v) for node, v in sizes.items()}


def test_pinned_volumes_and_storage_follow_the_stack_file(raw: dict[str, Any], plan: dict[str, Any]) -> None:
    expected = expected_volume_sizes(raw)
    assert expected == {"rack-db-1": [2.0, 2.0, 20.0, 20.0, 20.0, 20.0, 30.0, 30.0]}  # the sample: 144Gi of 460Gi
    volumes = plan["volumes"]
    got: dict[str, list[float]] = {}
    for v in volumes:
        got.setdefault(v["node"], []).append(v["size_gib"])
    assert {n: sorted(s) for n, s in got.items()} == expected
    # one entry per PersistentVolume the program registers, each Retain, each mounted by a workload
    pvs = [r for r in plan["resources"] if r["type"] == "kubernetes:core/v1:PersistentVolume"]
    assert sorted(v["name"] for v in volumes) == sorted(r["inputs"]["metadata"]["name"] for r in pvs)
    assert all(v["reclaim"] == "Retain" and v["mounted_by"] for v in volumes), volumes
    db_node = next(n for n in raw["nodes"] if n["hostname"] == "rack-db-1")
    for v in volumes:
        assert v["path"].startswith(db_node["storage"]["path"] + "/"), v
    # the database's StatefulSet mounts a volume of the database's size
    pg = [v for v in volumes if "data/postgres" in v["mounted_by"]]
    assert [v["size_gib"] for v in pg] == [storage_gib(raw["databases"]["postgres"]["size"])]
    for node in plan["nodes"]:
        spec = next(n for n in raw["nodes"] if n["hostname"] == node["hostname"])
        assert node["address"] == spec["address"]
        if "storage" not in spec:
            assert node["storage"] is None, node["hostname"]
            continue
        assert node["storage"] == {
            "path": spec["storage"]["path"],
            "size_gib": storage_gib(spec["storage"]["size"]),
            "requested_gib": sum(expected[node["hostname"]]),
        }
    assert next(n for n in plan["nodes"] if n["hostname"] == "rack-db-1")["storage"]["requested_gib"] == 144


def expected_routes(raw: dict[str, Any]) -> dict[str, str]:
    """host -> the workload behind it: every app with a `host`, Gitea and Grafana."""
    domain = raw["domain"]
    routes = {
        f"{a['host']}.{domain}": f"{'experimental' if a.get('category') == 'experimental' else 'apps'}/{a['name']}"
        for a in raw["apps"]
        if a.get("host")
    }
    routes[f"{raw['gitea'].get('host', 'git')}.{domain}"] = "ci/gitea"
    routes[f"{raw['monitoring'].get('host', 'grafana')}.{domain}"] = "monitoring/grafana"
    return routes


def test_ingress_routes_each_host_to_its_workload(raw: dict[str, Any], plan: dict[str, Any]) -> None:
    ingress = plan["ingress"]
    assert {r["host"]: r["workloads"] for r in ingress["routes"]} == {
        host: [workload] for host, workload in expected_routes(raw).items()
    }
    assert len(ingress["routes"]) == 6
    assert ingress["address"] == raw["ingress"]["address"]
    at = next(n["hostname"] for n in raw["nodes"] if n["address"] == raw["ingress"]["address"])
    assert ingress["address_of"] == ingress["node"] == at == "rack-pi-1"


@pytest.mark.parametrize(
    ("hostname", "serves"),
    [
        ("rack-cp-1", True),  # svclb tolerates the control-plane taint
        ("rack-db-1", True),  # no taint
        ("rack-lab-1", False),  # rack.homelab.io/experimental: not in svclb's tolerations
        (None, False),  # an address that is no node's
    ],
)
def test_the_node_serving_the_ingress_is_where_servicelb_runs(
    raw: dict[str, Any], hostname: str | None, serves: bool
) -> None:
    changed = stack_raw("homelab")
    address = next((n["address"] for n in raw["nodes"] if n["hostname"] == hostname), "192.168.10.99")
    changed["ingress"]["address"] = address
    ingress = plan_json(changed)["ingress"]
    assert ingress["address"] == address
    assert ingress["address_of"] == hostname
    assert ingress["node"] == (hostname if serves else None)


def test_the_lan_dns_server_is_the_node_at_dns_address_with_the_services_ports(
    raw: dict[str, Any], plan: dict[str, Any]
) -> None:
    """From the stack file: dns.address 192.168.10.21 is rack-pi-1; ports from the registered Service."""
    assert raw["dns"]["address"] == "192.168.10.21"
    assert plan["dns"] == {
        "address": "192.168.10.21",
        "node": "rack-pi-1",
        "zone": "lab.home.arpa",
        "ports": ["53/tcp", "53/udp"],
        "upstream": ["1.1.1.1", "9.9.9.9"],
    }
    changed = stack_raw("homelab")
    del changed["dns"]["address"]
    assert plan_json(changed)["dns"] is None


def test_gitea_links_to_the_postgres_its_env_names(raw: dict[str, Any], plan: dict[str, Any]) -> None:
    gitea_links = [link for link in plan["links"] if link["from"] == "ci/gitea"]
    assert gitea_links == [{"from": "ci/gitea", "to": "data/postgres", "uses": "postgres", "kind": "database"}]
    # and it comes from the rendered Deployment: the env names the postgres Service in `data`
    dep = next(
        r for r in plan["resources"] if r["type"] == "kubernetes:apps/v1:Deployment" and r["name"] == "gitea-deployment"
    )
    env = {
        e["name"]: e.get("value")
        for c in dep["inputs"]["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
    }
    assert env["GITEA__database__HOST"].startswith("postgres.data.")
    assert "postgres" in raw["databases"]
