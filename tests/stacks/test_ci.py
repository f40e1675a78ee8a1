"""The CI layer: the homelab composition under recording mocks (Gitea on its volume's node,
runners on general/reliable nodes, namespaces with Pod Security levels, protection), and the
config rule that Gitea needs PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import kubernetes_validate
import pytest
import yaml

import stacks.composition as composition
from components.core.layout import CLASS_LABEL, CONTROL_PLANE_TAINT_KEY, HOSTNAME_LABEL
from components.core.network_policy import Cluster, ContainerPort, Endpoint
from plan.engine import Recording
from rack.config import ConfigError, parse_rack
from rack.loader import Loaded, RackSecrets, unknown_secret
from stacks.ci import CI_NAMESPACE, RUNNERS_NAMESPACE
from tests.conftest import ROOT
from tests.stacks.test_apps import KnownSecrets, manifest, platform_with_endpoints, pod_spec, record_stack

__all__ = ["platform_with_endpoints"]  # a fixture, used by name below


def affinity(m: dict[str, Any]) -> dict[str, list[str]]:
    terms = pod_spec(m)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    return {e["key"]: e["values"] for e in terms["nodeSelectorTerms"][0]["matchExpressions"]}


def test_gitea_on_its_volume_node_runners_on_infrastructure_nodes(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    rec = record_stack(record, homelab)
    gitea = manifest(rec.by_name("gitea-deployment"))
    assert affinity(gitea) == {CLASS_LABEL: ["reliable"], HOSTNAME_LABEL: ["rack-db-1"]}
    pv = manifest(rec.by_name("gitea-volume-pv"))
    pinned = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
    assert pinned == ["rack-db-1"] and pv["spec"]["local"]["path"] == "/mnt/ssd/gitea-data"
    runners = manifest(rec.by_name("gitea-runners-deployment"))
    assert affinity(runners) == {CLASS_LABEL: ["general", "reliable"]}
    assert homelab.rack.gitea is not None
    assert runners["spec"]["replicas"] == homelab.rack.gitea.runners.replicas == 2
    for m in (gitea, runners, manifest(rec.by_name("gitea-db-init"))):
        assert CONTROL_PLANE_TAINT_KEY not in {t["key"] for t in pod_spec(m).get("tolerations") or []}


def test_namespaces_and_pod_security(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    rec = record_stack(record, homelab)
    ns = {m["metadata"]["name"]: m for m in (manifest(r) for r in rec.of_type("kubernetes:core/v1:Namespace"))}
    assert ns[CI_NAMESPACE]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert ns[RUNNERS_NAMESPACE]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    for name in (CI_NAMESPACE, RUNNERS_NAMESPACE):
        kubernetes_validate.validate(ns[name], "1.31", strict=True)
    # the only privileged container of the stack lives in the runners' namespace
    for reg in rec:
        if reg.type in ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet", "kubernetes:batch/v1:Job"):
            m = manifest(reg)
            spec = pod_spec(m)
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                if (c.get("securityContext") or {}).get("privileged"):
                    assert m["metadata"]["namespace"] == RUNNERS_NAMESPACE, reg.name


def test_gitea_is_protected_and_wired_to_postgres(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    rec = record_stack(record, homelab)
    assert rec.by_name("gitea").protect and rec.by_name("gitea-deployment").protect
    assert rec.by_name("gitea-volume").protect
    # the real platform layer hands postgres over; Gitea waits for its StatefulSet
    assert platform_with_endpoints["postgres"]
    assert any(u.endswith("::db-postgres-statefulset") for u in rec.by_name("gitea").depends_on)
    runner_secret = manifest(rec.by_name("gitea-runners-secret"))["stringData"]["registration-token"]
    gitea_secret = manifest(rec.by_name("gitea-secret"))["stringData"]["runner-token"]
    assert runner_secret == gitea_secret == "generated-gitea-runner-token-value"


def test_no_runners_when_replicas_is_zero(
    record: Callable[..., Recording], homelab_raw: dict[str, Any], platform_with_endpoints: dict[str, bool]
) -> None:
    homelab_raw["gitea"]["runners"]["replicas"] = 0
    loaded = Loaded(rack=parse_rack(homelab_raw), secrets=RackSecrets())
    rec = record_stack(record, loaded)
    assert not [r for r in rec if r.type == "homelab:ci:GiteaRunners"]
    namespaces = {manifest(r)["metadata"]["name"] for r in rec.of_type("kubernetes:core/v1:Namespace")}
    assert RUNNERS_NAMESPACE not in namespaces and CI_NAMESPACE in namespaces
    ingress = manifest(rec.by_name("gitea-netpol-gitea"))["spec"]["ingress"]
    assert len(ingress) == 2  # Traefik's HTTP and SSH; no runners to admit


def test_configured_admin_password_reaches_gitea(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    loaded = Loaded(rack=homelab.rack, secrets=RackSecrets({"gitea-admin-password": unknown_secret}))
    rec = record(lambda: composition.build(loaded), preview=True, mocks=KnownSecrets())
    assert not [r for r in rec if r.name == "gitea-admin-password-value"]
    assert "gitea-admin-password" in {r.name for r in rec if r.type == "homelab:secrets:GeneratedSecret"}


def test_a_rack_without_gitea_has_no_ci(record: Callable[..., Recording], lab_bare: Loaded) -> None:
    rec = record_stack(record, lab_bare)
    assert not [r for r in rec if r.type.startswith("homelab:ci:")]


def test_lab_rack_has_gitea_and_runners(record: Callable[..., Recording], lab: Loaded) -> None:
    rec = record_stack(record, lab)
    assert sorted(r.name for r in rec if r.type.startswith("homelab:ci:")) == ["gitea", "gitea-runners"]


def test_gitea_without_postgres_is_a_config_error(homelab_raw: dict[str, Any]) -> None:
    del homelab_raw["databases"]["postgres"]
    for app in homelab_raw["apps"]:
        app["uses"] = [u for u in app["uses"] if u != "postgres"]
    with pytest.raises(ConfigError) as err:
        parse_rack(homelab_raw)
    assert [str(i) for i in err.value.issues] == [
        "rack.gitea: needs rack.databases.postgres: Gitea keeps its database there"
    ]


def test_reserved_admin_name_is_a_config_error(homelab_raw: dict[str, Any]) -> None:
    homelab_raw["gitea"]["admin-user"] = "admin"
    with pytest.raises(ConfigError) as err:
        parse_rack(homelab_raw)
    assert [i.path for i in err.value.issues] == ["rack.gitea.admin-user"]


def test_runner_labels_are_validated(homelab_raw: dict[str, Any]) -> None:
    homelab_raw["gitea"]["runners"]["labels"] = ["ubuntu:docker://node:latest"]
    with pytest.raises(ConfigError) as err:
        parse_rack(homelab_raw)
    assert err.value.issues[0].path == "rack.gitea.runners.labels[0]"
    assert "latest" in err.value.issues[0].message


ALLOWED_RESTRICTED_VOLUMES = {"configMap", "emptyDir", "persistentVolumeClaim", "secret", "projected", "downwardAPI"}


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """The Pod Security `restricted` profile (v1.31), checked on a rendered pod spec."""
    out = []
    pod_sc = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(key)
    for v in spec.get("volumes") or []:
        if not set(v) - {"name"} <= ALLOWED_RESTRICTED_VOLUMES:
            out.append(f"volume {v['name']}")
    for c in [*spec.get("initContainers", []), *spec["containers"]]:
        sc = c.get("securityContext") or {}
        name = c["name"]
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation")
        if "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
            out.append(f"{name}: capabilities not dropped")
        if set((sc.get("capabilities") or {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities added")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            out.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            out.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccomp")
    return out


def test_pods_in_restricted_namespaces_meet_the_restricted_profile(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    """Apps, experimental and Gitea's namespace enforce `restricted`: every pod there passes it
    (else admission would refuse it on the real cluster)."""
    rec = record_stack(record, homelab)
    restricted = {
        m["metadata"]["name"]
        for m in (manifest(r) for r in rec.of_type("kubernetes:core/v1:Namespace"))
        if (m["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce") == "restricted"
    }
    assert {"apps", "experimental", CI_NAMESPACE} <= restricted
    checked = 0
    for reg in rec:
        if reg.type in ("kubernetes:apps/v1:Deployment", "kubernetes:batch/v1:Job"):
            m = manifest(reg)
            if m["metadata"]["namespace"] in restricted:
                assert restricted_violations(pod_spec(m)) == [], reg.name
                checked += 1
    monitoring = 3 if homelab.rack.monitoring is not None else 0  # Grafana, kube-state-metrics, vmalert
    gateway = 1 if homelab.rack.gpu_host is not None else 0  # the inference gateway, in `ai`
    assert checked == len(homelab.rack.apps) + 2 + monitoring + gateway  # the apps, Gitea, its init Job
    runners = pod_spec(manifest(rec.by_name("gitea-runners-deployment")))
    assert restricted_violations(runners) == [
        "docker: privileged",
        "docker: allowPrivilegeEscalation",
        "docker: capabilities not dropped",
        # rootless BuildKit: its setuid newuidmap needs escalation and SETUID/SETGID in the
        # bounding set; creating the user namespace needs seccomp unconfined. Not privileged.
        "buildkitd: allowPrivilegeEscalation",
        "buildkitd: capabilities not dropped",
        "buildkitd: seccomp",
    ]


def test_gitea_init_job_uses_the_postgres_servers_own_image() -> None:
    """With `vector: true` (the homelab stack) the server runs pgvector's image: the init Job's
    psql is that same build, not a second image of another PostgreSQL."""
    from components.platform import server_image
    from plan.engine import run_program
    from rack.config import DatabaseKind, parse_rack
    from rack.loader import Loaded, RackSecrets
    from stacks.composition import build
    from tests.conftest import stack_raw

    rack = parse_rack(stack_raw("homelab"))
    assert rack.databases.postgres is not None and rack.databases.postgres.vector
    rec = run_program(lambda: build(Loaded(rack, RackSecrets())), preview=True)
    jobs = [r for r in rec if r.type == "kubernetes:batch/v1:Job"]
    job = next(r for r in jobs if r.inputs["metadata"]["name"] == "gitea-db-init")
    image = job.inputs["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == server_image(DatabaseKind.POSTGRES, rack.databases.postgres)
    assert image.startswith("docker.io/pgvector/pgvector:")


# --- what CI may reach -----------------------------------------------------------------------------

HOMELAB_RUNNER_LAN_PEERS = {
    # the ingress (Gitea's external URL and registry): ingress.address
    ("192.168.10.21/32", 80),
    ("192.168.10.21/32", 443),
    # the k3s API: the one server's address (no k3s.api-address in the file)
    ("192.168.10.11/32", 6443),
    # SSH (ssh.port 22) to every node, and to the GPU host (gpu-host.ssh-port defaults to 22)
    ("192.168.10.11/32", 22),
    ("192.168.10.21/32", 22),
    ("192.168.10.22/32", 22),
    ("192.168.10.31/32", 22),
    ("192.168.10.41/32", 22),
    ("192.168.10.50/32", 22),
    # the state backend: gitea.runners.state-backend
    ("192.168.10.50/32", 9000),
}
"""Read off Pulumi.homelab.yaml by hand (the oracle): every address and port CI may reach on the LAN."""


def test_the_homelab_file_holds_the_oracle_s_addresses() -> None:
    text = (ROOT / "Pulumi.homelab.yaml").read_text()
    for address in {cidr.removesuffix("/32") for cidr, _ in HOMELAB_RUNNER_LAN_PEERS}:
        assert f"address: {address}" in text, address
    assert "state-backend: {address: 192.168.10.50, port: 9000}" in text
    assert "role: server" in text and text.count("role: server") == 1


def test_runner_egress_lists_exactly_the_lan_peers_of_the_stack_file(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    rec = record_stack(record, homelab)
    policy = manifest(rec.by_name("gitea-runners-netpol"))
    lan: set[tuple[str, int]] = set()
    internet = []
    for rule in policy["spec"]["egress"]:
        for peer in rule.get("to", []):
            block = peer.get("ipBlock")
            if block is None:
                continue
            if block.get("except"):
                internet.append((block, rule.get("ports")))
                continue
            lan |= {(block["cidr"], port["port"]) for port in rule["ports"]}
    assert lan == HOMELAB_RUNNER_LAN_PEERS
    ((block, ports),) = internet
    assert block["cidr"] == "0.0.0.0/0" and ports is None
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(block["except"])


def test_runner_reaches_what_it_deploys_and_nothing_else_on_the_lan(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    """The policies evaluated the way the API defines them: the runner pod against every LAN
    address of the stack file, two it does not name (the router, a stray host), a public address
    and a database pod, on the ports that matter."""
    rec = record_stack(record, homelab)
    runner_ns = [manifest(r) for r in rec.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")]
    policies = [p for p in runner_ns if p["metadata"]["namespace"] == RUNNERS_NAMESPACE]
    assert {p["metadata"]["name"] for p in policies} == {"default-deny", "gitea-runner"}
    labels = manifest(rec.by_name("gitea-runners-deployment"))["spec"]["template"]["metadata"]["labels"]
    runner = Endpoint(
        "ci-runners/gitea-runner",
        ip=IPv4Address("10.42.1.5"),
        namespace=RUNNERS_NAMESPACE,
        labels=labels,
    )
    ports = tuple(ContainerPort(p) for p in (22, 80, 443, 3306, 5432, 6443, 9000))
    cluster = Cluster(policies)

    def reachable(ip: str, namespace: str | None = None) -> set[int]:
        dst = Endpoint(
            ip,
            ip=IPv4Address(ip),
            namespace=namespace,
            labels={"app.kubernetes.io/name": "postgres"} if namespace else {},
            ports=ports,
        )
        return {p.number for p in ports if cluster.allowed(runner, dst, p)}

    assert reachable("192.168.10.11") == {22, 6443}
    assert reachable("192.168.10.21") == {22, 80, 443}
    for agent in ("192.168.10.22", "192.168.10.31", "192.168.10.41"):
        assert reachable(agent) == {22}, agent
    assert reachable("192.168.10.50") == {22, 9000}
    assert reachable("192.168.10.1") == set()
    assert reachable("192.168.10.99") == set()
    assert reachable("10.42.2.7", namespace="data") == set()
    assert reachable("93.184.215.14") == {p.number for p in ports}


def test_api_address_and_gpu_ssh_port_reach_the_policy(homelab_raw: dict[str, Any]) -> None:
    from stacks.ci import api_addresses, ssh_peers

    homelab_raw["k3s"]["api-address"] = "192.168.10.5"
    homelab_raw["gpu-host"]["ssh-port"] = 2222
    homelab_raw["ssh"]["port"] = 2200
    rack = parse_rack(homelab_raw)
    assert api_addresses(rack) == ["192.168.10.11", "192.168.10.5"]
    peers = ssh_peers(rack)
    assert ("192.168.10.50", 2222) in peers
    assert sorted(a for a, p in peers if p == 2200) == [
        "192.168.10.11",
        "192.168.10.21",
        "192.168.10.22",
        "192.168.10.31",
        "192.168.10.41",
    ]


def test_a_state_backend_name_resolves_through_dns_records(homelab_raw: dict[str, Any]) -> None:
    homelab_raw["dns"]["records"]["minio"] = "192.168.10.60"
    for written in ("minio", "minio.lab.home.arpa"):
        homelab_raw["gitea"]["runners"]["state-backend"] = {"address": written, "port": 9000}
        assert str(parse_rack(homelab_raw).state_backend_ip()) == "192.168.10.60", written


@pytest.mark.parametrize(
    ("written", "message"),
    [
        # digits and dots are an address, never a name, though RFC 1123 would let a label be digits
        ("300.1.1.1", "'300.1.1.1' is not an IPv4 address"),
        ("192.168.10", "'192.168.10' is not an IPv4 address"),
        ("minio_1:9000", "'minio_1:9000' is neither an IPv4 address nor a DNS name"),
        (3232238140, "must be an IPv4 address written as text"),  # YAML's int, not 192.168.10.60
    ],
)
def test_a_state_backend_address_is_an_ip_or_a_name(homelab_raw: dict[str, Any], written: Any, message: str) -> None:
    homelab_raw["gitea"]["runners"]["state-backend"] = {"address": written, "port": 9000}
    with pytest.raises(ConfigError) as err:
        parse_rack(homelab_raw)
    (issue,) = err.value.issues
    assert issue.path == "rack.gitea.runners.state-backend.address" and message in issue.message, issue


def test_runners_trust_the_rack_ca_of_the_system_layer(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    # The composition hands the system layer's CA to the runners: the CA ConfigMap holds the
    # certificate the CA's own provider made, the runner pods mount it, and their template carries
    # its digest (a new CA rolls them).
    mocks = KnownSecrets()
    rec = record(lambda: composition.build(homelab), preview=False, mocks=mocks)
    ca_pem = mocks.created["rack-ca-ca"]["cert_pem"]
    assert ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    ca = manifest(rec.by_name("gitea-runners-ca"))
    assert ca["metadata"]["name"] == "gitea-runner-ca" and ca["data"] == {"ca.crt": ca_pem}
    template = manifest(rec.by_name("gitea-runners-deployment"))["spec"]["template"]
    assert {"name": "rack-ca", "configMap": {"name": "gitea-runner-ca"}} in template["spec"]["volumes"]
    digest = hashlib.sha256(ca_pem.encode()).hexdigest()
    assert template["metadata"]["annotations"] == {"homelab.rack/ca-sha256": digest}


def test_the_pull_account_and_every_node_share_one_generated_password(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    rack = homelab.rack
    assert rack.gitea is not None
    registry = f"{rack.gitea.host}.{rack.domain}"  # from the stack file: git.lab.home.arpa
    rec = record_stack(record, homelab)
    password = manifest(rec.by_name("gitea-secret"))["stringData"]["pull-password"]
    assert password == "generated-gitea-pull-password-value"
    assert "stringData" in rec.by_name("gitea-secret").secret_paths
    for node in rack.nodes:
        upgrade = rec.by_name(f"k3s-{node.hostname}-upgrade")
        assert "stdin" in upgrade.secret_paths
        registries = yaml.safe_load(base64.b64decode(upgrade.inputs["stdin"].split("\n")[2]))
        assert registries["configs"][registry]["auth"] == {"username": "rack-puller", "password": password}
    deployment = manifest(rec.by_name("gitea-deployment"))
    spec = pod_spec(deployment)
    init = {c["name"]: c for c in spec["initContainers"]}
    env = {e["name"]: e for e in init["pull-account"]["env"]}
    assert env["GITEA_PULL_USERNAME"]["value"] == "rack-puller"
    assert env["GITEA_PULL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "gitea", "key": "pull-password"}
    main = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    # the ingress serves HTTPS only: jobs' checkout and the registry's token realm use this URL
    assert main["GITEA__server__ROOT_URL"] == f"https://{registry}/"
    assert password not in str(deployment)


def test_a_rack_without_gitea_writes_no_registries(record: Callable[..., Recording], lab_bare: Loaded) -> None:
    rec = record_stack(record, lab_bare)
    assert not [r for r in rec if r.name == "gitea-pull-password"]
    for node in lab_bare.rack.nodes:
        lines = rec.by_name(f"k3s-{node.hostname}-upgrade").inputs["stdin"].split("\n")
        # the tokens only (the join token; a server's agent token too): no registries.yaml, no CA
        assert len(lines) == (3 if node.role == "server" else 2) and lines[-1] == ""
