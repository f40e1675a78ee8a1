"""The apps layer, and the reachability of the whole rendered stack.

The composition runs under the recording mocks; every manifest it registers is read back from the
recording (what `pulumi up` would send). The reachability tests evaluate the rendered
NetworkPolicies with `components.core.network_policy.Cluster` and compare, for every pair of
workloads and every port, the result with an expectation derived from the config alone (`uses`,
`host`, Gitea's documented needs).

`platform_with_endpoints` is a test double of the platform layer's hand-over: where the real
platform layer has not (yet) provided a database endpoint, it adds one built here, so the apps
and CI layers can be exercised against the interface. Endpoints the real layer provides win.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from typing import Any

import kubernetes_validate
import pulumi
import pytest

import stacks.composition as composition
from components.ci import gitea as gitea_mod
from components.ci import gitea_runners as runners_mod
from components.core.layout import CLASS_LABEL, CONTROL_PLANE_TAINT_KEY, NAMESPACES, workload_labels
from components.core.network_policy import (
    DNS_POD_LABELS,
    NAMESPACE_NAME_LABEL,
    TRAEFIK_POD_LABELS,
    Cluster,
    ContainerPort,
    Endpoint,
)
from components.gpu import inference_gateway
from plan.engine import Recording, Registration
from rack.config import Rack
from rack.endpoints import ServiceEndpoint, inference_endpoint
from rack.loader import Loaded
from rack.vocabulary import Category
from stacks.ci import CI_NAMESPACE, RUNNERS_NAMESPACE
from tests.components.core.dynamic_mocks import ProviderRunningMocks

NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
POD_OWNERS = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:batch/v1:Job",
}
DB_PORTS = {"postgres": 5432, "mysql": 3306, "redis": 6379}


# --- helpers shared with the other CI/apps tests ----------------------------------------------


def double_endpoint(kind: str) -> ServiceEndpoint:
    """A database endpoint as the platform layer hands it over (built here: a test double)."""
    return ServiceEndpoint(
        name=kind,
        kind=kind,
        namespace=NAMESPACES[Category.DATA],
        service=kind,
        port=DB_PORTS[kind],
        pod_labels=workload_labels(kind, Category.DATA),
        database=None if kind == "redis" else "app",
        user=None if kind == "redis" else "admin",
        password=pulumi.Output.secret(f"double-{kind}-password"),
    )


@pytest.fixture
def platform_with_endpoints(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """Wraps the real build_platform; fills in any missing database endpoint with a double.
    Returns, per database, whether the real layer provided it (filled once the program ran)."""
    real = composition.build_platform
    provided: dict[str, bool] = {}

    def build(loaded: Loaded, metal: Any, system: Any) -> Any:
        layer = real(loaded, metal, system)
        endpoints = dict(layer.endpoints)
        for kind in loaded.rack.databases.configured():
            provided[kind.value] = kind.value in endpoints
            endpoints.setdefault(kind.value, double_endpoint(kind.value))
        return dataclasses.replace(layer, endpoints=endpoints)

    monkeypatch.setattr(composition, "build_platform", build)
    return provided


def plain(value: Any) -> Any:
    """Recorded inputs travel as protobuf Structs: integral floats back to ints."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def manifest(reg: Registration) -> dict[str, Any]:
    return plain(reg.inputs)


def k8s_manifests(rec: Recording) -> Iterator[tuple[Registration, dict[str, Any]]]:
    for reg in rec:
        if reg.type.startswith("kubernetes:") and reg.custom and not reg.type.startswith("pulumi:providers"):
            yield reg, manifest(reg)


CRD_GROUPS = ("helm.cattle.io/",)
"""k3s' own CRDs (HelmChartConfig): not in the Kubernetes OpenAPI schema."""


def validate(m: dict[str, Any]) -> bool:
    """Validate against the 1.31 schema; False for a k3s CRD the schema cannot know."""
    if m["apiVersion"].startswith(CRD_GROUPS):
        return False
    kubernetes_validate.validate(m, "1.31", strict=True)
    return True


class KnownSecrets(ProviderRunningMocks):
    """Dynamic resources answered by their own provider (the rack CA's certificate is a real one,
    as `pulumi up` stores it), and a test string as every generated secret's value, so the Secrets'
    stringData is known and can be validated and inspected."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        rid, state = super().new_resource(args)
        if args.typ == "pulumi-python:dynamic:Resource":
            state["value"] = f"generated-{args.name}"
        return rid, state


def record_stack(record: Callable[..., Recording], loaded: Loaded) -> Recording:
    return record(lambda: composition.build(loaded), preview=False, mocks=KnownSecrets())


def record_with_endpoints(
    record: Callable[..., Recording], loaded: Loaded
) -> tuple[Recording, dict[str, ServiceEndpoint]]:
    """Run the composition; also return the database endpoints the platform layer handed over."""
    seen: dict[str, Any] = {}

    def program() -> None:
        seen["stack"] = composition.build(loaded)

    rec = record(program, preview=False, mocks=KnownSecrets())
    endpoints = {k: v for k, v in seen["stack"].platform.endpoints.items() if v.pod_labels is not None}
    return rec, endpoints


def pod_spec(m: dict[str, Any]) -> dict[str, Any]:
    return m["spec"]["template"]["spec"]


# --- reachability -------------------------------------------------------------------------------


INTERNET = IPv4Address("203.0.113.10")


@dataclasses.dataclass
class World:
    """Every endpoint of the rendered stack plus the outside peers, and the policies."""

    cluster: Cluster
    endpoints: dict[str, Endpoint]
    db_endpoints: dict[str, ServiceEndpoint]


def build_world(rec: Recording, rack: Rack, db_endpoints: dict[str, ServiceEndpoint]) -> World:
    policies = [manifest(r) for r in rec.of_type(NETPOL)]
    ns_labels: dict[str, dict[str, str]] = {}
    for reg in rec.of_type("kubernetes:core/v1:Namespace"):
        m = manifest(reg)
        name = m["metadata"]["name"]
        ns_labels[name] = {NAMESPACE_NAME_LABEL: name, **(m["metadata"].get("labels") or {})}
    ns_labels.setdefault("kube-system", {NAMESPACE_NAME_LABEL: "kube-system"})
    ns_labels.setdefault("data", {NAMESPACE_NAME_LABEL: "data"})

    endpoints: dict[str, Endpoint] = {}
    counter = iter(range(10, 250))

    def pod_ip() -> IPv4Address:
        return IPv4Address(int(rack.k3s.cluster_cidr.network_address) + next(counter))

    for reg in rec:
        if reg.type not in POD_OWNERS:
            continue
        m = manifest(reg)
        ns = m["metadata"]["namespace"]
        template = m["spec"]["template"]
        ports = tuple(
            ContainerPort(p["containerPort"], p.get("name"), p.get("protocol", "TCP"))
            for c in template["spec"]["containers"]
            for p in c.get("ports") or []
        )
        key = f"{ns}/{m['metadata']['name']}"
        endpoints[key] = Endpoint(key, pod_ip(), ns, template["metadata"]["labels"], ports)
    for ep in db_endpoints.values():
        assert ep.pod_labels is not None
        if not any(
            e.namespace == ep.namespace and all(e.labels.get(k) == v for k, v in ep.pod_labels.items())
            for e in endpoints.values()
        ):
            key = f"{ep.namespace}/{ep.service}"
            endpoints[key] = Endpoint(key, pod_ip(), ep.namespace, ep.pod_labels, (ContainerPort(ep.port),))
    endpoints["kube-system/traefik"] = Endpoint(
        "kube-system/traefik",
        pod_ip(),
        "kube-system",
        TRAEFIK_POD_LABELS,
        (ContainerPort(8000, "web"), ContainerPort(8443, "websecure")),
    )
    endpoints["kube-system/kube-dns"] = Endpoint(
        "kube-system/kube-dns",
        pod_ip(),
        "kube-system",
        DNS_POD_LABELS,
        (ContainerPort(53, "dns", "UDP"), ContainerPort(53, "dns-tcp", "TCP")),
    )
    if rack.gpu_host is not None:
        key = f"external/{rack.gpu_host.hostname}"
        gpu_ports = (ContainerPort(rack.gpu_host.service.port), ContainerPort(rack.gpu_host.ssh_port))
        endpoints[key] = Endpoint(key, rack.gpu_host.address, ports=gpu_ports)
    backend = rack.gitea.runners.state_backend if rack.gitea is not None else None
    backend_ip = rack.state_backend_ip()
    if backend is not None and backend_ip is not None:
        endpoints["external/state-backend"] = Endpoint(
            "external/state-backend", backend_ip, ports=(ContainerPort(backend.port), ContainerPort(22))
        )
    endpoints["external/ingress-address"] = Endpoint(
        "external/ingress-address", rack.ingress.address, ports=(ContainerPort(80), ContainerPort(443))
    )
    for node in rack.nodes:  # every Pi: SSH, the API port, and a database port nothing should reach
        endpoints[f"external/{node.hostname}"] = Endpoint(
            f"external/{node.hostname}",
            node.address,
            ports=(ContainerPort(rack.ssh.port), ContainerPort(6443), ContainerPort(5432)),
        )
    endpoints["external/internet"] = Endpoint("external/internet", INTERNET, ports=(ContainerPort(443),))
    return World(Cluster(policies, ns_labels), endpoints, db_endpoints)


def expected(rack: Rack, world: World, src: Endpoint, dst: Endpoint, port: ContainerPort) -> bool:
    """What the config says, independent of the rendered policies: `uses` and `host` for apps;
    Gitea takes HTTP from Traefik and the runners and SSH from anyone, and uses PostgreSQL; the
    runners reach Gitea, the ingress and the internet; a database admits exactly the apps that
    use it (and Gitea, PostgreSQL). What no one restricts (the databases' and Traefik's egress)
    stays open, as Kubernetes does without policies."""
    apps = {f"{NAMESPACES[a.category]}/{a.name}": a for a in rack.apps}
    governed = {NAMESPACES[a.category] for a in rack.apps}
    if rack.gitea is not None:
        governed |= {CI_NAMESPACE, RUNNERS_NAMESPACE}
    gitea = f"{CI_NAMESPACE}/{gitea_mod.NAME}"
    db_init = f"{CI_NAMESPACE}/{gitea_mod.DB_INIT_NAME}"
    runner = f"{RUNNERS_NAMESPACE}/{runners_mod.NAME}"
    gpu = inference_endpoint(rack)
    # The inference gateway (HAProxy pods in front of the GPU host): in from anyone on the
    # service and its health port, out to the GPU host's model server only.
    gateway = f"{gpu.namespace}/{gpu.service}-gateway" if gpu is not None else None
    gpu_host = f"external/{rack.gpu_host.hostname}" if rack.gpu_host is not None else None

    def is_db(key: str, name: str) -> bool:
        ep = world.db_endpoints.get(name)
        if ep is None or ep.pod_labels is None:
            return False
        d = world.endpoints[key]
        return d.namespace == ep.namespace and all(d.labels.get(k) == v for k, v in ep.pod_labels.items())

    def egress_ok() -> bool:
        if gpu is not None and src.key == gateway:
            return dst.key == gpu_host and port.number == gpu.port
        if src.key.endswith("/postgres-vector-setup"):  # the pgvector setup Job: PostgreSQL and DNS only
            if dst.key == "kube-system/kube-dns" and port.number == 53:
                return True
            return is_db(dst.key, "postgres") and port.number == world.db_endpoints["postgres"].port
        if src.namespace not in governed:
            return True
        if dst.key == "kube-system/kube-dns" and port.number == 53:
            return True
        if src.key in apps:
            app = apps[src.key]
            for use in app.uses:
                if use in world.db_endpoints and is_db(dst.key, use) and port.number == world.db_endpoints[use].port:
                    return True
                if gpu is not None and use == gpu.name and dst.key == gateway and port.number == gpu.port:
                    return True
            return False
        if src.key in (gitea, db_init):
            return is_db(dst.key, "postgres") and port.number == world.db_endpoints["postgres"].port
        if src.key == runner:
            if dst.key == gitea:
                return port.number == gitea_mod.HTTP_PORT
            if dst.key == "kube-system/traefik":
                return True
            if dst.key == "external/ingress-address":
                return port.number in (80, 443)
            # What a deploy dials on the LAN, read off the config: the servers' API (and
            # k3s.api-address), every node's SSH, the GPU host's SSH, the state backend.
            lan = {(n.address, 6443) for n in rack.servers()} | {(n.address, rack.ssh.port) for n in rack.nodes}
            if rack.k3s.api_address is not None:
                lan.add((rack.k3s.api_address, 6443))
            if rack.gpu_host is not None:
                lan.add((rack.gpu_host.address, rack.gpu_host.ssh_port))
            if rack.gitea is not None and rack.gitea.runners.state_backend is not None:
                lan.add((rack.state_backend_ip(), rack.gitea.runners.state_backend.port))
            if dst.namespace is None and (dst.ip, port.number) in lan:
                return True
            return dst.key == "external/internet"
        raise AssertionError(f"unexpected workload {src.key} in a governed namespace")

    def ingress_ok() -> bool:
        if gpu is not None and dst.key == gateway:
            return port.number in (gpu.port, inference_gateway.HEALTH_PORT)
        for name, ep in world.db_endpoints.items():
            if is_db(dst.key, name):  # the platform layer's side: exactly the users of the database
                if port.number != ep.port:
                    return False
                users = {k for k, a in apps.items() if name in a.uses}
                if name == "postgres" and rack.gitea is not None:
                    users |= {gitea, db_init}
                if name == "postgres" and rack.databases.postgres is not None and rack.databases.postgres.vector:
                    users |= {f"{ep.namespace}/postgres-vector-setup"}  # the pgvector setup Job
                return src.key in users
        if dst.namespace not in governed:
            return True
        if dst.key in apps:
            app = apps[dst.key]
            return src.key == "kube-system/traefik" and app.host is not None and port.number == app.port
        if dst.key == gitea:
            if port.number == gitea_mod.SSH_PORT:
                return True
            return port.number == gitea_mod.HTTP_PORT and src.key in ("kube-system/traefik", runner)
        if dst.key in (db_init, runner):
            return False
        raise AssertionError(f"unexpected workload {dst.key} in a governed namespace")

    return egress_ok() and ingress_ok()


def matrix(world: World) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for s in world.endpoints.values():
        for d in world.endpoints.values():
            if s.key != d.key:
                out[(s.key, d.key)] = [
                    f"{p.number}{'' if p.protocol == 'TCP' else '/' + p.protocol.lower()}"
                    for p in d.ports
                    if world.cluster.allowed(s, d, p)
                ]
    return out


def mismatches(rack: Rack, world: World) -> list[str]:
    out = []
    for s in world.endpoints.values():
        for d in world.endpoints.values():
            if s.key == d.key:
                continue
            for p in d.ports:
                got = world.cluster.allowed(s, d, p)
                want = expected(rack, world, s, d, p)
                if got != want:
                    out.append(f"{s.key} -> {d.key}:{p.number}/{p.protocol}: policies say {got}, config says {want}")
    return out


def format_matrix(world: World) -> str:
    keys = list(world.endpoints)
    m = matrix(world)
    lines = []
    for s in keys:
        allowed = [f"{d}:{','.join(m[(s, d)])}" for d in keys if d != s and m[(s, d)]]
        lines.append(f"{s:32} -> {'; '.join(allowed) if allowed else '(nothing)'}")
    return "\n".join(lines)


# --- tests --------------------------------------------------------------------------------------


def test_homelab_manifests_are_valid_and_counted(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    """Every Kubernetes object of the homelab stack validates against the 1.31 schema."""
    rec = record_stack(record, homelab)
    kinds: Counter[str] = Counter()
    for _, m in k8s_manifests(rec):
        validate(m)
        kinds[m["kind"]] += 1
    assert kinds["HelmChartConfig"] <= 1
    print("\nmanifests by kind:", dict(sorted(kinds.items())))
    assert kinds["NetworkPolicy"] >= 2 + len(homelab.rack.apps)
    assert kinds["Deployment"] >= len(homelab.rack.apps) + 2  # apps, gitea, runners


def test_homelab_app_placement(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    """Every app replica on general nodes (the RAG service on the experimental node), spread by
    host, tolerating a dead node for failover-seconds; nothing tolerates the control plane."""
    rec = record_stack(record, homelab)
    rack = homelab.rack
    for app in rack.apps:
        m = manifest(rec.by_name(f"app-{app.name}-deployment"))
        spec = pod_spec(m)
        expr = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        classes = expr["nodeSelectorTerms"][0]["matchExpressions"][0]
        assert classes["key"] == CLASS_LABEL
        want = ["experimental"] if app.category == Category.EXPERIMENTAL else ["general"]
        assert classes["values"] == want, app.name
        keys = {t["key"] for t in spec["tolerations"]}
        assert CONTROL_PLANE_TAINT_KEY not in keys
        seconds = {t["key"]: t.get("tolerationSeconds") for t in spec["tolerations"]}
        assert seconds["node.kubernetes.io/not-ready"] == rack.failover_seconds < 300
        assert seconds["node.kubernetes.io/unreachable"] == rack.failover_seconds
        if app.category == Category.APPLICATION:
            assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    for reg, m in k8s_manifests(rec):
        # Per-node agents (DaemonSets such as node-exporter) run on every node by design.
        if reg.type in POD_OWNERS and reg.type != "kubernetes:apps/v1:DaemonSet":
            for t in pod_spec(m).get("tolerations") or []:
                assert t["key"] != CONTROL_PLANE_TAINT_KEY, reg.name


def test_homelab_apps_are_wired_from_uses(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    """Env from `uses` with passwords only by secretKeyRef to a Secret in the app's namespace."""
    rec = record_stack(record, homelab)
    for app in homelab.rack.apps:
        ns = NAMESPACES[app.category]
        container = pod_spec(manifest(rec.by_name(f"app-{app.name}-deployment")))["containers"][0]
        env = {e["name"]: e for e in container.get("env", [])}
        for use in app.uses:
            if use == "inference":
                assert env["INFERENCE_URL"]["value"] == "http://inference.ai.svc.cluster.local:11434"
                continue
            assert env[f"{use.upper()}_HOST"]["value"] == f"{use}.data.svc.cluster.local"
            ref = env[f"{use.upper()}_PASSWORD"]["valueFrom"]["secretKeyRef"]
            assert "value" not in env[f"{use.upper()}_PASSWORD"]
            secret = manifest(rec.by_name(f"app-{app.name}-secret"))
            assert secret["metadata"]["namespace"] == ns and secret["metadata"]["name"] == ref["name"]
            assert ref["key"] in secret["stringData"]
            assert rec.by_name(f"app-{app.name}-secret").secret_paths == ["stringData"]
        assert not any(u not in app.uses for u in ("postgres", "mysql", "redis") if f"{u.upper()}_HOST" in env)


def test_default_deny_per_app_namespace(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    rec = record_stack(record, homelab)
    denies = {
        m["metadata"]["namespace"]
        for m in (manifest(r) for r in rec.of_type(NETPOL))
        if m["spec"]["podSelector"] == {} and not m["spec"].get("ingress") and not m["spec"].get("egress")
    }
    assert {NAMESPACES[a.category] for a in homelab.rack.apps} <= denies
    assert {CI_NAMESPACE, RUNNERS_NAMESPACE} <= denies


def without_monitoring(loaded: Loaded) -> Loaded:
    rack = loaded.rack.model_copy(update={"monitoring": None})
    return Loaded(rack, loaded.secrets, loaded.skip_layers, loaded.warnings)


def test_homelab_reachability_matches_config(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    """For every pair of workloads and every port: allowed by the rendered policies exactly
    where `uses`, `host` and Gitea's wiring say so. Monitoring is left out here: its scrape
    allow-lists are proven by tests/components/test_{victoria_metrics,kube_state_metrics,...}."""
    homelab = without_monitoring(homelab)
    rec, dbs = record_with_endpoints(record, homelab)
    rack = homelab.rack
    world = build_world(rec, rack, dbs)
    print("\nreachability (homelab):\n" + format_matrix(world))
    assert mismatches(rack, world) == []
    m = matrix(world)
    # spot checks the expectation itself must get right
    assert m[("apps/bible-api", "data/postgres")] == ["5432"]
    assert m[("apps/devotional", "data/postgres")] == []
    # inference goes through the gateway, which alone reaches the GPU host
    assert m[("apps/bible-api", "ai/inference-gateway")] == ["11434"]
    assert m[("apps/bible-api", "external/gpu-3090")] == []
    assert m[("ai/inference-gateway", "external/gpu-3090")] == ["11434"]
    assert m[("ai/inference-gateway", "data/postgres")] == []
    assert m[("apps/bible-auth", "ai/inference-gateway")] == []
    assert m[("kube-system/traefik", "apps/bible-api")] == ["8080"]
    assert m[("kube-system/traefik", "experimental/rag-playground")] == []
    assert m[("apps/bible-api", "apps/bible-auth")] == []
    assert m[("ci-runners/gitea-runner", "ci/gitea")] == ["3000"]
    assert m[("ci-runners/gitea-runner", "data/postgres")] == []
    # the runners reach what a deploy dials, each on its own port only
    assert m[("ci-runners/gitea-runner", "external/rack-cp-1")] == ["22", "6443"]
    assert m[("ci-runners/gitea-runner", "external/rack-db-1")] == ["22"]
    assert m[("ci-runners/gitea-runner", "external/gpu-3090")] == ["22"]
    assert m[("ci-runners/gitea-runner", "external/state-backend")] == ["9000", "22"]
    assert m[("apps/bible-api", "external/rack-cp-1")] == []
    assert m[("ci/gitea", "data/mysql")] == []


def test_lab_reachability_matches_config(
    record: Callable[..., Recording], lab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    """The same proof on the lab rack (Gitea, no GPU host, a 3-replica app)."""
    lab = without_monitoring(lab)
    rec, dbs = record_with_endpoints(record, lab)
    world = build_world(rec, lab.rack, dbs)
    assert mismatches(lab.rack, world) == []
    assert matrix(world)[("apps/worker", "data/redis")] == ["6379"]
    assert matrix(world)[("apps/worker", "data/postgres")] == []


def test_a_widened_policy_is_caught(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    """The comparison is not vacuous: widening one rendered policy on either side shows up."""
    homelab = without_monitoring(homelab)
    rec, dbs = record_with_endpoints(record, homelab)
    rack = homelab.rack
    world = build_world(rec, rack, dbs)
    assert mismatches(rack, world) == []
    for policy in world.cluster.policies:
        if policy["metadata"]["name"] == "devotional":
            policy["spec"]["egress"].append({"to": [{"namespaceSelector": {}, "podSelector": {}}]})
    found = mismatches(rack, world)
    assert "apps/devotional -> kube-system/traefik:8000/TCP: policies say True, config says False" in found
    # the database's own side still holds: devotional does not use postgres
    assert not any(f.startswith("apps/devotional -> data/postgres") for f in found)
    for policy in world.cluster.policies:
        if policy["spec"]["podSelector"].get("matchLabels") == dbs["postgres"].pod_labels:
            policy["spec"]["ingress"] = [{}]
    assert any(f.startswith("apps/devotional -> data/postgres:5432") for f in mismatches(rack, world))


@pytest.fixture
def platform_without_endpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """A double of a platform layer that hands no endpoint over (its resources stay)."""
    real = composition.build_platform
    monkeypatch.setattr(
        composition,
        "build_platform",
        lambda loaded, metal, system: dataclasses.replace(real(loaded, metal, system), endpoints={}),
    )


def test_missing_endpoint_is_left_out_with_a_warning(
    record: Callable[..., Recording], homelab: Loaded, platform_without_endpoints: None
) -> None:
    """Without an endpoint an app is wired to what exists only, and the layer says which."""
    seen: dict[str, Any] = {}

    def program() -> None:
        seen["stack"] = composition.build(homelab)

    rec = record(program)
    assert seen["stack"].apps.unwired == {
        "bible-api": ["postgres", "redis"],
        "bible-auth": ["postgres", "redis"],
        "bible-social": ["postgres", "redis"],
        "devotional": ["mysql"],
        "rag-playground": ["postgres"],
    }
    env = {e["name"] for e in pod_spec(manifest(rec.by_name("app-bible-api-deployment")))["containers"][0]["env"]}
    assert env == {"INFERENCE_URL"}
    assert not [r for r in rec if r.name == "app-bible-auth-secret"]


def test_every_app_gets_a_policy_selecting_only_it(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    rec = record_stack(record, homelab)
    for app in homelab.rack.apps:
        pol = manifest(rec.by_name(f"app-{app.name}-netpol"))
        assert pol["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": app.name}}
        assert bool(pol["spec"]["ingress"]) == (app.host is not None)


def test_homelab_apps_from_the_rack_registry_skip_the_rollout_wait(
    record: Callable[..., Recording], homelab: Loaded, platform_with_endpoints: dict[str, bool]
) -> None:
    """`wait: auto` (the sample's default): Deployments of images under `<gitea.host>.<domain>/`
    (from the stack file) carry pulumi-kubernetes' skipAwait; every other Deployment waits."""
    rack = homelab.rack
    assert rack.gitea is not None
    prefix = f"{rack.gitea.host}.{rack.domain}/"
    rec = record_stack(record, homelab)
    expected = {f"app-{a.name}-deployment": a.image.startswith(prefix) for a in rack.apps}
    assert any(expected.values())
    for reg in rec.of_type("kubernetes:apps/v1:Deployment"):
        annotations = manifest(reg)["metadata"].get("annotations", {})
        assert (annotations.get("pulumi.com/skipAwait") == "true") is expected.get(reg.name, False), reg.name
    # each of them reports its rollout over SSH on the bootstrap server instead
    reports = {r.name: r for r in rec.of_type("command:remote:Command") if r.name.endswith("-rollout")}
    assert sorted(reports) == sorted(f"app-{a.name}-rollout" for a in rack.apps if a.image.startswith(prefix))
    for r in reports.values():
        assert r.inputs["connection"]["host"] == str(rack.bootstrap().address)
