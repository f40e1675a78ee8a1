"""GiteaRunners: act_runner instances that run CI jobs in containers, without the host's Docker.

Creates, under `homelab:ci:GiteaRunners`:
- `Secret` `gitea-runner` holding the shared registration token (the same value Gitea is
  started with), referenced by secretKeyRef only; act_runner's entrypoint unsets it once
  registered, so jobs never see it;
- `ConfigMap` `gitea-runner` with act_runner's `config.yaml` (labels from config, one job at a
  time, the Docker socket never mounted into job containers);
- `Deployment` `gitea-runner` (`gitea.runners.replicas` pods) placed by the infrastructure rules
  (general or reliable nodes, the short failover toleration: a runner holds no state). Each pod:
  - `docker`: a rootless Docker-in-Docker daemon (`docker:<v>-dind-rootless`) as a native
    sidecar (an init container with restartPolicy Always, so it is up before the runner and
    stops after it), listening only on a unix socket in a pod-local emptyDir;
  - `runner`: act_runner, non-root, restricted profile, talking to that socket.
  Every work directory (runner state, job images and checkouts, /tmp) is an emptyDir: a
  restarted pod starts clean and re-registers with the shared token.
- `NetworkPolicy` `gitea-runner`: nothing may connect in; out to DNS, Gitea's HTTP, the ingress
  (the clone URL jobs use is the external one) and public addresses (images, actions), never to
  the LAN, the Pis, the databases or other pods.

Why rootless DinD: the host's Docker/containerd socket would make every job root on the node;
rootful DinD is the same with extra steps. Rootless dockerd runs as uid 1000 inside a user
namespace, so a job that escapes its container, and then the daemon, is uid 1000 on the Pi, not
root. It still needs `privileged: true` (to mount /proc and set up the user namespace; Docker
documents this for dind-rootless), which is why the runners get their own namespace whose Pod
Security level allows it, while Gitea's namespace enforces `restricted`. Alternatives: Kaniko/
buildah only build images (no `container:` jobs or services); sysbox needs a runtime installed
on every Pi; Kubernetes user namespaces (`hostUsers: false`) are off by default in k3s 1.31.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import yaml

from components.core.kubernetes_object import KubernetesObject
from components.core.layout import WORKLOAD_LABEL, pod_placement, restricted_container_security, workload_labels
from components.core.network_policy import (
    SYSTEM_NAMESPACE,
    TRAEFIK_POD_LABELS,
    TRAEFIK_PORTS,
    cidr_peer,
    dns_egress,
    host_network,
    internet_egress,
    pods_peer,
    render_workload_policy,
    rule,
    tcp,
)
from rack.vocabulary import Category

NAME = "gitea-runner"
UID = 1000
"""The dind-rootless image's `rootless` user; the runner runs as the same uid to use its socket."""
SOCKET_DIR = f"/run/user/{UID}"
DOCKER_HOST = f"unix://{SOCKET_DIR}/docker.sock"
CONFIG_DIR = "/etc/act_runner"
TOKEN_KEY = "registration-token"


def runner_image(version: str) -> str:
    return f"docker.io/gitea/act_runner:{version}"


def docker_image(version: str) -> str:
    return f"docker.io/library/docker:{version}-dind-rootless"


def runner_labels() -> dict[str, str]:
    return workload_labels(NAME, Category.INFRASTRUCTURE)


def render_config(labels: Sequence[str]) -> str:
    """act_runner's config.yaml (pure). `docker_host: "-"` finds the daemon through DOCKER_HOST
    but does not mount its socket into job containers: jobs cannot drive the daemon."""
    config = {
        "log": {"level": "info"},
        "runner": {
            "file": "/data/.runner",
            "capacity": 1,
            "timeout": "3h",
            "fetch_timeout": "5s",
            "fetch_interval": "2s",
            "labels": list(labels),
        },
        "cache": {"enabled": True, "dir": "/data/cache"},
        "container": {
            "network": "",
            "privileged": False,
            "options": "",
            "valid_volumes": [],
            "docker_host": "-",
            "force_pull": False,
        },
        "host": {"workdir_parent": "/data/host"},
    }
    return yaml.safe_dump(config, sort_keys=False)


@dataclass(frozen=True, kw_only=True)
class RunnerSettings:
    """The plain (non-secret) settings the renderers need."""

    namespace: str
    """The runners' namespace."""
    replicas: int
    """How many runners."""
    version: str
    """act_runner release."""
    docker_version: str
    """docker:<v>-dind-rootless release."""
    labels: Sequence[str]
    """Runner labels."""
    cpu: str
    """Job daemon CPU request and limit."""
    memory: str
    """Job daemon memory request and limit."""
    work_size: str
    """Size limit of the job daemon's work directory."""
    gitea_url: str
    """Gitea as the runner reaches it (in-cluster)."""
    gitea_namespace: str
    """Gitea's namespace (for the egress rule)."""
    gitea_pod_labels: Mapping[str, str]
    """Gitea's pod labels (for the egress rule)."""
    ingress_address: str
    """Where `*.domain` resolves: the external clone URL jobs use."""
    failover_seconds: int | None = None
    """Not-ready/unreachable toleration (runners are stateless)."""


def render_deployment(s: RunnerSettings, *, config_map: str, secret: str) -> dict[str, Any]:
    """The runners' Deployment (pure)."""
    labels = runner_labels()
    docker_env = [{"name": "DOCKER_HOST", "value": DOCKER_HOST}]
    docker = {
        "name": "docker",
        "image": docker_image(s.docker_version),
        # Native sidecar: started (and ready) before the runner, stopped after it.
        "restartPolicy": "Always",
        # Only the unix socket: no TCP listener (the entrypoint adds tcp://0.0.0.0:2375/2376 otherwise).
        "args": ["dockerd", f"--host={DOCKER_HOST}"],
        "env": [*docker_env, {"name": "DOCKER_TLS_CERTDIR", "value": ""}],
        "securityContext": {
            "privileged": True,
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
        },
        "startupProbe": {
            "exec": {"command": ["docker", "info"]},
            "periodSeconds": 2,
            "failureThreshold": 60,
            "timeoutSeconds": 5,
        },
        "resources": {
            "requests": {"cpu": s.cpu, "memory": s.memory},
            "limits": {"cpu": s.cpu, "memory": s.memory},
        },
        "volumeMounts": [
            {"name": "docker-run", "mountPath": SOCKET_DIR},
            {"name": "docker-data", "mountPath": "/home/rootless/.local/share/docker"},
        ],
    }
    runner = {
        "name": "runner",
        "image": runner_image(s.version),
        "env": [
            {"name": "GITEA_INSTANCE_URL", "value": s.gitea_url},
            {
                "name": "GITEA_RUNNER_REGISTRATION_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": TOKEN_KEY}},
            },
            {"name": "GITEA_RUNNER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "GITEA_RUNNER_LABELS", "value": ",".join(s.labels)},
            {"name": "CONFIG_FILE", "value": f"{CONFIG_DIR}/config.yaml"},
            {"name": "HOME", "value": "/data"},
            *docker_env,
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "runner-data", "mountPath": "/data"},
            {"name": "docker-run", "mountPath": SOCKET_DIR},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": s.namespace, "labels": labels},
        "spec": {
            "replicas": s.replicas,
            "selector": {"matchLabels": {WORKLOAD_LABEL: NAME}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    # A running job gets a chance to finish before the pod goes.
                    "terminationGracePeriodSeconds": 300,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "fsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "initContainers": [docker],
                    "containers": [runner],
                    "volumes": [
                        {"name": "runner-data", "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": "docker-run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                        {"name": "docker-data", "emptyDir": {"sizeLimit": s.work_size}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                        {"name": "config", "configMap": {"name": config_map}},
                    ],
                    **pod_placement(NAME, Category.INFRASTRUCTURE, failover_seconds=s.failover_seconds),
                },
            },
        },
    }


def render_config_map(s: RunnerSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": s.namespace, "labels": runner_labels()},
        "data": {"config.yaml": render_config(s.labels)},
    }


def render_secret(s: RunnerSettings, token: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": NAME, "namespace": s.namespace, "labels": runner_labels()},
        "type": "Opaque",
        "stringData": {TOKEN_KEY: token},
    }


def render_network_policy(s: RunnerSettings) -> dict[str, Any]:
    return render_workload_policy(
        name=NAME,
        namespace=s.namespace,
        pod_labels={WORKLOAD_LABEL: NAME},
        labels=runner_labels(),
        ingress=[],
        egress=[
            dns_egress(),
            rule([pods_peer(s.gitea_namespace, s.gitea_pod_labels)], tcp("http"), egress=True),
            # The external URL resolves to the ingress address; after the LoadBalancer's DNAT the
            # policy sees Traefik's pods, before it (outside the cluster) the address itself.
            rule([pods_peer(SYSTEM_NAMESPACE, TRAEFIK_POD_LABELS)], tcp(*TRAEFIK_PORTS), egress=True),
            rule([cidr_peer(host_network(s.ingress_address))], tcp(80, 443), egress=True),
            internet_egress(),
        ],
    )


@dataclass(frozen=True, kw_only=True)
class GiteaRunnersArgs:
    settings: RunnerSettings
    """Plain settings."""
    registration_token: pulumi.Input[str]
    """The shared registration token Gitea is started with (a secret)."""


class GiteaRunners(pulumi.ComponentResource):
    secret: KubernetesObject
    """The registration token in the runners' namespace."""
    config_map: KubernetesObject
    """act_runner's config.yaml."""
    deployment: KubernetesObject
    """The runner pods."""
    network_policy: KubernetesObject
    """Their allow-list."""

    def __init__(self, name: str, args: GiteaRunnersArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:ci:GiteaRunners", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        sec = render_secret(s, pulumi.Output.secret(args.registration_token))
        self.secret = KubernetesObject(f"{name}-secret", sec, child)
        cm = render_config_map(s)
        self.config_map = KubernetesObject(f"{name}-config", cm, child)
        dep = render_deployment(s, config_map=cm["metadata"]["name"], secret=sec["metadata"]["name"])
        self.deployment = KubernetesObject(
            f"{name}-deployment", dep, pulumi.ResourceOptions(parent=self, depends_on=[self.secret, self.config_map])
        )
        pol = render_network_policy(s)
        self.network_policy = KubernetesObject(f"{name}-netpol", pol, child)
        self.register_outputs(
            {
                "secret": self.secret,
                "config_map": self.config_map,
                "deployment": self.deployment,
                "network_policy": self.network_policy,
            }
        )
