"""AppWorkload: pure renderers against the 1.31 schema, and the component under recording mocks.

Endpoints are built here (as the platform layer would hand them over), so these tests do not
depend on the data layer.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import kubernetes_validate
import pulumi
import pytest

from components.apps.app_workload import (
    AppWorkload,
    AppWorkloadArgs,
    render_deployment,
    render_env,
    render_network_policy,
    render_pdb,
    render_secret,
    render_service,
    reports_rollout,
    rollout_report_script,
    skips_await,
)
from components.core.layout import CLASS_LABEL, EXPERIMENTAL_TAINT_KEY
from components.core.remote_command import connection
from components.metal.k3s_cluster import NodeAccess
from plan.engine import Recording
from rack.config import App
from rack.endpoints import ServiceEndpoint
from rack.vocabulary import Category
from tests.stacks.test_apps import manifest

PG = ServiceEndpoint(
    name="postgres",
    kind="postgres",
    namespace="data",
    service="postgres",
    port=5432,
    pod_labels={"app.kubernetes.io/name": "postgres"},
    database="app",
    user="app",
    password=None,
)
REDIS = ServiceEndpoint(
    name="redis",
    kind="redis",
    namespace="data",
    service="redis",
    port=6379,
    pod_labels={"app.kubernetes.io/name": "redis"},
)
GPU = ServiceEndpoint(
    name="inference",
    kind="http",
    namespace="ai",
    service="inference",
    port=11434,
    external_ip=IPv4Address("192.168.10.50"),
)


def app(**kw: Any) -> App:
    base: dict[str, Any] = {
        "name": "web",
        "image": "registry.lab.test/web:1.0.0",
        "port": 8080,
        "cpu": "100m",
        "memory": "128Mi",
    }
    return App.model_validate({**base, **kw})


def validate(m: dict[str, Any] | None) -> dict[str, Any]:
    assert m is not None
    kubernetes_validate.validate(m, "1.31", strict=True)
    return m


def with_password(ep: ServiceEndpoint) -> ServiceEndpoint:
    return ServiceEndpoint(**{**ep.__dict__, "password": pulumi.Output.secret("s3cret-value")})


@pytest.mark.parametrize("category", [Category.APPLICATION, Category.EXPERIMENTAL])
def test_deployment_is_restricted_probed_and_bounded(category: Category) -> None:
    a = app(replicas=2, category=category, uses=["postgres"])
    dep = validate(render_deployment(a, namespace="apps", failover_seconds=45, env=render_env(a, [PG])))
    spec = dep["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}} in pod["volumes"]
    assert c["resources"]["requests"] == c["resources"]["limits"] == {"cpu": "100m", "memory": "128Mi"}
    assert c["readinessProbe"]["tcpSocket"] == {"port": "http"} == c["livenessProbe"]["tcpSocket"]
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    tolerations = {t["key"]: t for t in pod["tolerations"]}
    assert tolerations["node.kubernetes.io/unreachable"]["tolerationSeconds"] == 45
    assert tolerations["node.kubernetes.io/not-ready"]["tolerationSeconds"] == 45
    assert (EXPERIMENTAL_TAINT_KEY in tolerations) is (category == Category.EXPERIMENTAL)
    classes = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert classes["nodeSelectorTerms"][0]["matchExpressions"][0]["key"] == CLASS_LABEL
    assert ("topologySpreadConstraints" in pod) is (category == Category.APPLICATION)


def test_health_path_probes_over_http() -> None:
    c = render_deployment(app(health_path="/healthz"), namespace="apps")["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_env_from_uses_never_carries_a_password() -> None:
    a = app(uses=["postgres", "redis", "inference"])
    env = render_env(a, [with_password(PG), with_password(REDIS), GPU])
    by_name = {e["name"]: e for e in env}
    assert by_name["POSTGRES_HOST"]["value"] == "postgres.data.svc.cluster.local"
    assert by_name["POSTGRES_PORT"]["value"] == "5432"
    assert by_name["POSTGRES_DATABASE"]["value"] == "app"
    assert by_name["POSTGRES_USER"]["value"] == "app"
    assert by_name["POSTGRES_PASSWORD"] == {
        "name": "POSTGRES_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "web-uses", "key": "postgres-password"}},
    }
    assert by_name["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"
    assert "REDIS_USER" not in by_name and "REDIS_DATABASE" not in by_name
    assert by_name["INFERENCE_URL"]["value"] == "http://inference.ai.svc.cluster.local:11434"
    assert [e["name"] for e in env if "value" in e and "s3cret" in str(e["value"])] == []


def test_pdb_only_for_replicated_apps() -> None:
    assert render_pdb(app(replicas=1), namespace="apps") is None
    pdb = validate(render_pdb(app(replicas=3), namespace="apps"))
    assert pdb["spec"]["minAvailable"] == 2


def test_service_and_secret_validate() -> None:
    validate(render_service(app(), namespace="apps"))
    sec = validate(render_secret(app(), namespace="apps", string_data={"postgres-password": "x"}))
    assert sec["metadata"] == {"name": "web-uses", "namespace": "apps", "labels": sec["metadata"]["labels"]}
    assert render_secret(app(), namespace="apps", string_data={}) is None


def test_network_policy_ingress_only_with_host_and_egress_only_to_uses() -> None:
    hosted = validate(
        render_network_policy(app(host="web", uses=["postgres", "inference"]), namespace="apps", endpoints=[PG, GPU])
    )
    spec = hosted["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "web"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": "http"}],
        }
    ]
    egress = spec["egress"]
    assert len(egress) == 3
    assert egress[0]["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert egress[1]["to"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "postgres"}}
    assert egress[1]["ports"] == [{"protocol": "TCP", "port": 5432}]
    assert egress[2] == {
        "to": [{"ipBlock": {"cidr": "192.168.10.50/32"}}],
        "ports": [{"protocol": "TCP", "port": 11434}],
    }
    internal = validate(render_network_policy(app(uses=[]), namespace="apps", endpoints=[]))
    assert internal["spec"]["ingress"] == [] and len(internal["spec"]["egress"]) == 1


def test_component_creates_secret_in_app_namespace(record: Callable[..., Recording]) -> None:
    a = app(replicas=2, host="web", uses=["postgres", "redis"])

    def program() -> None:
        AppWorkload(
            "app-web",
            AppWorkloadArgs(app=a, namespace="apps", failover_seconds=60, endpoints=[with_password(PG), REDIS]),
        )

    rec = record(program, preview=False)
    secret = rec.by_name("app-web-secret")
    assert secret.secret_paths == ["stringData"]
    assert manifest(secret)["stringData"] == {"postgres-password": "s3cret-value"}
    assert manifest(secret)["metadata"]["namespace"] == "apps"
    dep = rec.by_name("app-web-deployment")
    assert secret.urn in dep.depends_on
    assert "s3cret-value" not in str(dep.inputs)
    kinds = sorted(r.type.split(":")[-1] for r in rec if r.custom)
    assert kinds == ["Deployment", "NetworkPolicy", "PodDisruptionBudget", "Secret", "Service"]
    for r in rec:
        if r.custom:
            kubernetes_validate.validate(manifest(r), "1.31", strict=True)


def test_component_without_passwords_makes_no_secret(record: Callable[..., Recording]) -> None:
    def program() -> None:
        AppWorkload("app-web", AppWorkloadArgs(app=app(uses=["inference"]), namespace="apps", endpoints=[GPU]))

    rec = record(program)
    assert sorted(r.type.split(":")[-1] for r in rec if r.custom) == ["Deployment", "NetworkPolicy", "Service"]


# --- the rollout wait (pulumi-kubernetes' skipAwait) --------------------------------------------

RACK_REGISTRY = "git.lab.home.arpa"


@pytest.mark.parametrize(
    ("wait", "image", "registry", "skipped"),
    [
        # auto: only images of the rack's own registry, which CI may not have built yet
        ("auto", "git.lab.home.arpa/bible/api:1.8.0", RACK_REGISTRY, True),
        ("auto", "ghcr.io/example/api:3.2.1", RACK_REGISTRY, False),
        ("auto", "docker.io/library/nginx:1.27.3", RACK_REGISTRY, False),
        ("auto", "git.lab.home.arpa.example.com/x/y:1.0.0", RACK_REGISTRY, False),  # another host
        ("auto", "git.lab.home.arpa/bible/api:1.8.0", None, False),  # no Gitea: nothing is the rack's
        # explicit settings win either way
        (True, "git.lab.home.arpa/bible/api:1.8.0", RACK_REGISTRY, False),
        (False, "ghcr.io/example/api:3.2.1", RACK_REGISTRY, True),
    ],
)
def test_which_apps_skip_the_rollout_wait(wait: Any, image: str, registry: str | None, skipped: bool) -> None:
    a = app(wait=wait, image=image)
    assert skips_await(a, registry) is skipped
    dep = validate(render_deployment(a, namespace="apps", skip_await=skips_await(a, registry)))
    annotations = dep["metadata"].get("annotations", {})
    # pulumi-kubernetes reads exactly this key and value (the provider's await logic is skipped)
    assert (annotations.get("pulumi.com/skipAwait") == "true") is skipped
    assert "annotations" not in dep["spec"]["template"]["metadata"]  # never the pods': no restart


def test_wait_is_true_false_or_auto() -> None:
    with pytest.raises(ValueError, match="wait"):
        app(wait="sometimes")
    assert app().wait == "auto"


def test_auto_rack_registry_apps_get_a_rollout_report_on_the_bootstrap_server(
    record: Callable[..., Recording],
) -> None:
    boot = connection(host="192.168.10.11", user="ops")

    def program() -> None:
        after = pulumi.CustomResource("test:index:Bootstrap", "boot")
        access = NodeAccess(connection=boot, user="ops", after=after)
        for name, wait in (("auto", "auto"), ("never", False), ("always", True)):
            AppWorkload(
                f"app-{name}",
                AppWorkloadArgs(
                    app=app(name=name, image=f"{RACK_REGISTRY}/bible/{name}:1.0.0", wait=wait),
                    namespace="apps",
                    registry_host=RACK_REGISTRY,
                    rollout_access=access,
                ),
            )

    rec = record(program)
    reports = [r for r in rec if r.name.endswith("-rollout")]
    # only `wait: auto` reports in place of the provider's wait; false waits for nothing, true
    # leaves the wait to the provider
    assert [r.name for r in reports] == ["app-auto-rollout"]
    report = reports[0]
    assert report.inputs["connection"]["host"] == "192.168.10.11"
    assert report.inputs["create"] == report.inputs["update"]  # a changed image re-runs it
    assert f"IMAGE={RACK_REGISTRY}/bible/auto:1.0.0" in report.inputs["create"]
    assert "sudo -n bash -c" in report.inputs["create"]  # the SSH user is not root
    deps = {d.split("::")[-1] for d in report.depends_on}
    assert {"app-auto-deployment", "boot"} <= deps
    assert "delete" not in report.inputs
    assert reports_rollout(app(wait="auto", image=f"{RACK_REGISTRY}/x/y:1.0.0"), RACK_REGISTRY)
    assert not reports_rollout(app(wait="auto", image="ghcr.io/x/y:1.0.0"), RACK_REGISTRY)


def test_the_rollout_report_passes_shellcheck() -> None:
    from components.metal.k3s_scripts import HostLayout
    from tests.components.metal.test_k3s_scripts import shellcheck

    for layout in (HostLayout(), HostLayout(root="/tmp/hosts/a b")):
        shellcheck(
            rollout_report_script(
                app="bible-api",
                namespace="apps",
                image=f"{RACK_REGISTRY}/bible/api:1.8.0",
                revision="0123456789abcdef",
                timeout_s=600,
                layout=layout,
            )
        )
