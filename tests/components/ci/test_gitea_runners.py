"""GiteaRunners: rootless Docker-in-Docker sidecar, no host socket, a rootless BuildKit sidecar
jobs build with, the rack CA in jobs, ephemeral work directories, infrastructure placement, its
allow-list; renderers against the 1.31 schema, component under mocks."""

from __future__ import annotations

import hashlib
import itertools
import tomllib
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
        "registry_host": "git.lab.home.arpa",
        "buildkit_version": "0.29.0",
        "api_addresses": ["192.168.10.11"],
        "ssh_peers": [("192.168.10.11", 22), ("192.168.10.21", 22), ("192.168.10.50", 2222)],
        "state_backend": ("192.168.10.60", 9000),
        "failover_seconds": 60,
    }
    return r.RunnerSettings(**{**base, **kw})


def deployment(ca: bool = False) -> dict[str, Any]:
    dep = r.render_deployment(
        settings(), config_map="gitea-runner", secret="gitea-runner", ca_config_map="gitea-runner-ca" if ca else None
    )
    kubernetes_validate.validate(dep, "1.31", strict=True)
    return dep


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in pod["initContainers"] + pod["containers"] if c["name"] == name]
    return found


def mounted_at(c: dict[str, Any], path: str) -> str | None:
    """The volume whose mount in container `c` holds `path` (the deepest mount), or None."""
    best = None
    for m in c.get("volumeMounts", []):
        if (path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")) and (
            best is None or len(m["mountPath"]) > len(best["mountPath"])
        ):
            best = m
    return best["name"] if best else None


def test_rootless_dind_sidecar_without_host_socket() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    docker = container(pod, "docker")
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


def test_config_labels_and_no_docker_socket_in_jobs() -> None:
    cm = r.render_config_map(settings())
    kubernetes_validate.validate(cm, "1.31", strict=True)
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config["runner"]["labels"] == settings().labels
    assert config["container"]["docker_host"] == "-"  # act_runner: "-" never mounts the daemon into jobs
    assert config["container"]["privileged"] is False
    assert "docker.sock" not in config["container"]["options"]
    assert config["runner"]["envs"] == {"BUILDKIT_HOST": "unix:///run/buildkit/buildkitd.sock"}


def binds(options: str) -> list[tuple[str, str]]:
    """The `-v source:target[:mode]` binds of a docker-run option string, parsed as docker does."""
    words = options.split()
    out = []
    for flag, value in itertools.pairwise(words):
        if flag == "-v":
            source, target = value.split(":", 2)[:2]
            out.append((source, target))
    return out


def test_jobs_get_the_builder_and_only_what_valid_volumes_lets_through() -> None:
    config = yaml.safe_load(r.render_config_map(settings(), with_ca=True)["data"]["config.yaml"])
    mounts = binds(config["container"]["options"])
    assert mounts == [
        ("/opt/rack", "/opt/rack"),
        ("/opt/rack/buildctl", "/usr/local/bin/buildctl"),
        ("/opt/buildkit", "/run/buildkit"),
    ]
    # act_runner drops a bind whose source valid_volumes does not list (its config docs).
    assert sorted(config["container"]["valid_volumes"]) == sorted(source for source, _ in mounts)
    # The sources are paths in the job daemon's world: each on a volume of the docker container,
    # the builder's socket on the same volume buildkitd listens on.
    pod = deployment(ca=True)["spec"]["template"]["spec"]
    docker, buildkitd = container(pod, "docker"), container(pod, "buildkitd")
    for source, _ in mounts:
        assert mounted_at(docker, source) is not None, source
    socket = config["runner"]["envs"]["BUILDKIT_HOST"].removeprefix("unix://")
    assert f"--addr=unix://{socket}" in buildkitd["args"]
    # the job's socket path, back through its bind to the daemon's path, lands on buildkitd's volume
    ((source, target),) = [(s, t) for s, t in mounts if socket.startswith(t + "/")]
    assert mounted_at(docker, source + socket.removeprefix(target)) == mounted_at(buildkitd, socket) == "buildkit-run"
    # buildctl is copied there from the builder's own image, so client and daemon are one release.
    tools = container(pod, "tools")
    assert tools["image"] == buildkitd["image"] == "docker.io/moby/buildkit:v0.29.0-rootless"
    assert tools["command"][-1] == "/opt/rack/buildctl"
    assert mounted_at(tools, "/opt/rack/buildctl") == mounted_at(docker, "/opt/rack/buildctl") == "job-tools"


def test_buildkit_sidecar_is_rootless_and_unprivileged() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    bk = container(pod, "buildkitd")
    assert bk["restartPolicy"] == "Always"
    sc = bk["securityContext"]
    assert "privileged" not in sc and sc["runAsUser"] == 1000 and sc["runAsNonRoot"] is True
    # BuildKit's Kubernetes example for rootless: seccomp and AppArmor unconfined, no process sandbox.
    assert sc["seccompProfile"] == {"type": "Unconfined"} and sc["appArmorProfile"] == {"type": "Unconfined"}
    assert "--oci-worker-no-process-sandbox" in bk["args"]
    assert mounted_at(bk, "/home/user/.local/share/buildkit") == "buildkit-data"
    work = {v["name"]: v for v in pod["volumes"]}
    assert work["buildkit-data"]["emptyDir"] == {"sizeLimit": "10Gi"}
    # the only privileged container is still the job daemon
    privileged = [
        c["name"] for c in pod["initContainers"] + pod["containers"] if c["securityContext"].get("privileged")
    ]
    assert privileged == ["docker"]


def test_without_a_ca_jobs_keep_the_default_roots() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["tools", "docker", "buildkitd"]
    assert "rack-ca" not in {v["name"] for v in pod["volumes"]}
    toml = tomllib.loads(r.render_config_map(settings())["data"]["buildkitd.toml"])
    assert "registry" not in toml and toml["worker"]["oci"]["enabled"] is True


def test_with_a_ca_jobs_act_runner_and_buildkit_trust_it() -> None:
    pod = deployment(ca=True)["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["tools", "ca-bundle", "docker", "buildkitd"]
    assert {"name": "rack-ca", "configMap": {"name": "gitea-runner-ca"}} in pod["volumes"]
    config = yaml.safe_load(r.render_config_map(settings(), with_ca=True)["data"]["config.yaml"])
    envs = config["runner"]["envs"]
    # The variables OpenSSL/Python, git, curl and requests read replace the default roots: the bundle.
    for name in ("SSL_CERT_FILE", "GIT_SSL_CAINFO", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE"):
        assert envs[name] == "/opt/rack/ca-bundle.pem", name
    assert envs["NODE_EXTRA_CA_CERTS"] == "/opt/rack/ca.crt"  # Node adds these to its roots
    script = container(pod, "ca-bundle")["command"][-1]
    assert "/etc/ssl/certs/ca-certificates.crt /etc/rack-ca/ca.crt > /opt/rack/ca-bundle.pem" in script
    assert "cp /etc/rack-ca/ca.crt /opt/rack/ca.crt" in script
    runner = container(pod, "runner")
    assert {"name": "SSL_CERT_FILE", "value": "/opt/rack/ca-bundle.pem"} in runner["env"]
    assert mounted_at(runner, "/opt/rack/ca-bundle.pem") == "job-tools"
    # BuildKit pushes to Gitea's registry verifying against the CA file it has mounted.
    bk = container(pod, "buildkitd")
    toml = tomllib.loads(r.render_config_map(settings(), with_ca=True)["data"]["buildkitd.toml"])
    assert toml["registry"]["git.lab.home.arpa"]["ca"] == ["/etc/rack-ca/ca.crt"]
    assert mounted_at(bk, "/etc/rack-ca/ca.crt") == "rack-ca"
    assert f"--config={mounted_path(bk, 'buildkit-config')}/buildkitd.toml" in bk["args"]


def mounted_path(c: dict[str, Any], volume: str) -> str:
    (path,) = [m["mountPath"] for m in c["volumeMounts"] if m["name"] == volume]
    return path


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


def test_lan_egress_is_each_address_with_its_own_port() -> None:
    rules = r.lan_egress(settings())
    got = {(p["ipBlock"]["cidr"], port["port"]) for rule in rules for p in rule["to"] for port in rule["ports"]}
    assert got == {
        ("192.168.10.11/32", 6443),
        ("192.168.10.11/32", 22),
        ("192.168.10.21/32", 22),
        ("192.168.10.50/32", 2222),
        ("192.168.10.60/32", 9000),
    }
    assert r.lan_egress(settings(api_addresses=(), ssh_peers=(), state_backend=None)) == []


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


def test_component_mounts_the_ca_and_rolls_the_pods_when_it_changes(record: Callable[..., Recording]) -> None:
    pem = "-----BEGIN CERTIFICATE-----\nMIIBrackCA\n-----END CERTIFICATE-----\n"

    def program() -> None:
        r.GiteaRunners(
            "gitea-runners",
            r.GiteaRunnersArgs(settings=settings(), registration_token="t", ca_cert_pem=pulumi.Output.from_input(pem)),
        )

    rec = record(program, preview=False)
    ca = manifest(rec.by_name("gitea-runners-ca"))
    kubernetes_validate.validate(ca, "1.31", strict=True)
    assert ca["kind"] == "ConfigMap" and ca["data"] == {"ca.crt": pem}
    dep = rec.by_name("gitea-runners-deployment")
    template = manifest(dep)["spec"]["template"]
    assert template["metadata"]["annotations"] == {"homelab.rack/ca-sha256": hashlib.sha256(pem.encode()).hexdigest()}
    assert {"name": "rack-ca", "configMap": {"name": ca["metadata"]["name"]}} in template["spec"]["volumes"]
    assert rec.by_name("gitea-runners-ca").urn in dep.depends_on
