"""GiteaRunners: rootless Docker-in-Docker sidecar, no host socket, ephemeral work directories,
infrastructure placement, its allow-list; renderers against the 1.31 schema, component under mocks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pulumi
import yaml

from components.ci import gitea_runners as r
from components.core.layout import CLASS_LABEL
from plan.engine import Recording
from tests.stacks.test_apps import manifest


def settings(**kw: Any) -> r.RunnerSettings:
    base: dict[str, Any] = {
        "namespace": "ci-runners",
        "replicas": 2,
        "version": "0.2.11",
        "docker_version": "27.4.1",
        "labels": ["ubuntu-latest:docker://node:20-bookworm", "debian:docker://debian:12"],
        "cpu": "1",
        "memory": "2Gi",
        "work_size": "10Gi",
        "gitea_url": "http://gitea.ci.svc.cluster.local:3000",
        "gitea_namespace": "ci",
        "gitea_pod_labels": {"app.kubernetes.io/name": "gitea"},
        "ingress_address": "192.168.10.21",
        "failover_seconds": 60,
    }
    return r.RunnerSettings(**{**base, **kw})


def deployment() -> dict[str, Any]:
    dep = r.render_deployment(settings(), config_map="gitea-runner", secret="gitea-runner")
    kubernetes_validate.validate(dep, "1.31", strict=True)
    return dep


def test_rootless_dind_sidecar_without_host_socket() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    docker = pod["initContainers"][0]
    assert docker["restartPolicy"] == "Always"  # native sidecar: up before the runner
    assert docker["image"] == "docker.io/library/docker:27.4.1-dind-rootless"
    assert docker["securityContext"]["runAsUser"] == 1000 and docker["securityContext"]["runAsNonRoot"] is True
    assert docker["args"] == ["dockerd", "--host=unix:///run/user/1000/docker.sock"]
    for volume in pod["volumes"]:
        assert "hostPath" not in volume, volume
        assert set(volume) - {"name"} <= {"emptyDir", "configMap"}, volume
    work = {v["name"]: v for v in pod["volumes"]}
    assert work["docker-data"]["emptyDir"] == {"sizeLimit": "10Gi"}
    assert "emptyDir" in work["runner-data"]


def test_runner_container_is_restricted_and_gets_the_token_by_reference() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    runner = pod["containers"][0]
    assert runner["securityContext"]["allowPrivilegeEscalation"] is False
    assert runner["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in runner["env"]}
    assert env["GITEA_RUNNER_REGISTRATION_TOKEN"] == {
        "name": "GITEA_RUNNER_REGISTRATION_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "gitea-runner", "key": "registration-token"}},
    }
    assert env["GITEA_RUNNER_LABELS"]["value"] == "ubuntu-latest:docker://node:20-bookworm,debian:docker://debian:12"
    assert env["GITEA_INSTANCE_URL"]["value"] == "http://gitea.ci.svc.cluster.local:3000"
    assert env["DOCKER_HOST"]["value"] == "unix:///run/user/1000/docker.sock"
    assert env["GITEA_RUNNER_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_placed_by_infrastructure_rules() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    expr = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert expr["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": CLASS_LABEL, "operator": "In", "values": ["general", "reliable"]}
    ]
    assert {t["key"]: t["tolerationSeconds"] for t in pod["tolerations"]} == {
        "node.kubernetes.io/not-ready": 60,
        "node.kubernetes.io/unreachable": 60,
    }


def test_config_labels_and_no_socket_in_jobs() -> None:
    cm = r.render_config_map(settings())
    kubernetes_validate.validate(cm, "1.31", strict=True)
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config["runner"]["labels"] == settings().labels
    assert config["container"]["docker_host"] == "-"
    assert config["container"]["privileged"] is False
    assert config["container"]["valid_volumes"] == []


def test_network_policy_admits_nothing_and_fences_egress() -> None:
    pol = r.render_network_policy(settings())
    kubernetes_validate.validate(pol, "1.31", strict=True)
    spec = pol["spec"]
    assert spec["ingress"] == []
    to_gitea = spec["egress"][1]
    assert to_gitea["to"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "gitea"}}
    assert to_gitea["ports"] == [{"protocol": "TCP", "port": "http"}]
    internet = spec["egress"][-1]["to"][0]["ipBlock"]
    assert internet["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12"} <= set(internet["except"])


def test_component_keeps_the_token_secret(record: Callable[..., Recording]) -> None:
    def program() -> None:
        r.GiteaRunners(
            "gitea-runners",
            r.GiteaRunnersArgs(settings=settings(), registration_token=pulumi.Output.secret("shared-token-value")),
        )

    rec = record(program, preview=False)
    secret = rec.by_name("gitea-runners-secret")
    assert secret.secret_paths == ["stringData"]
    assert manifest(secret)["stringData"] == {"registration-token": "shared-token-value"}
    for reg in rec:
        if reg.custom and reg is not secret:
            assert "shared-token-value" not in str(reg.inputs), reg.name
            kubernetes_validate.validate(manifest(reg), "1.31", strict=True)
    dep = rec.by_name("gitea-runners-deployment")
    assert manifest(dep)["spec"]["replicas"] == 2
    assert secret.urn in dep.depends_on
