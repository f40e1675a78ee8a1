"""GiteaRunners: act_runner instances that run CI jobs in containers, without the host's Docker.

Creates, under `homelab:ci:GiteaRunners`:
- `Secret` `gitea-runner` holding the shared registration token (the same value Gitea is
  started with), referenced by secretKeyRef only; act_runner's entrypoint unsets it once
  registered, so jobs never see it;
- `ConfigMap` `gitea-runner` with act_runner's `config.yaml` (labels from config, one job at a
  time, the Docker socket never mounted into job containers; the builder's socket, `buildctl`
  and the CA bundle mounted read-only into every job, and the variables that point at them) and
  BuildKit's `buildkitd.toml` (the rack CA for pushes to Gitea's registry);
- with a rack CA, `ConfigMap` `gitea-runner-ca` holding its certificate (`ca.crt`);
- `Deployment` `gitea-runner` (`gitea.runners.replicas` pods) placed by the infrastructure rules
  (general or reliable nodes, the short failover toleration: a runner holds no state). Each pod:
  - `tools` and (with a CA) `ca-bundle`: init containers that copy `buildctl` out of the BuildKit
    image and write the public CA bundle plus the rack CA into a pod-local `/opt/rack`;
  - `docker`: a rootless Docker-in-Docker daemon (`docker:<v>-dind-rootless`) as a native
    sidecar (an init container with restartPolicy Always, so it is up before the runner and
    stops after it), listening only on a unix socket in a pod-local emptyDir;
  - `buildkitd`: rootless BuildKit (`moby/buildkit:v<v>-rootless`) as a native sidecar on a unix
    socket in another emptyDir, which the job daemon bind-mounts into jobs (`BUILDKIT_HOST`);
  - `runner`: act_runner, non-root, restricted profile, talking to the Docker socket.
  Every work directory (runner state, job images and checkouts, build cache, /tmp) is an
  emptyDir: a restarted pod starts clean and re-registers with the shared token.
- `NetworkPolicy` `gitea-runner`: nothing may connect in; out to exactly what a deploy needs:
  DNS, Gitea (in-cluster and through the ingress), the k3s API port of every server (and
  `k3s.api-address`), SSH to every node and to the GPU host, the state backend
  (`gitea.runners.state-backend`), and public addresses; nothing else on the LAN, no other pod.

Why rootless DinD for the jobs: the host's Docker/containerd socket would make every job root
on the node; rootful DinD is the same with extra steps. Rootless dockerd runs as uid 1000 inside
a user namespace, so a job that escapes its container, and then the daemon, is uid 1000 on the
Pi, not root. It still needs `privileged: true` (to mount /proc and set up the user namespace;
Docker documents this for dind-rootless), which is why the runners get their own namespace whose
Pod Security level allows it, while Gitea's namespace enforces `restricted`. Alternatives:
sysbox needs a runtime installed on every Pi; Kubernetes user namespaces (`hostUsers: false`)
are off by default in k3s.

Why a BuildKit sidecar for image builds rather than handing jobs the Docker socket: a job with
the socket drives the daemon that runs it (any container, any mount of the daemon's world);
with only BuildKit's socket it can build and push, nothing else. Rootless BuildKit runs as uid
1000 in its own user namespace and is not privileged: it needs seccomp and AppArmor unconfined
(to create that namespace and mount inside it) and `--oci-worker-no-process-sandbox` (no new
/proc without `procMount: Unmasked`), as BuildKit's Kubernetes examples do; the cost is that a
build step shares buildkitd's PID namespace and could signal it (one job per pod, so only its
own build). Images are built for the runner's own architecture (arm64 on the Pis), natively:
no QEMU, which would need a privileged binfmt registration on every node.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
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
CA_NAME = f"{NAME}-ca"
UID = 1000
"""The dind-rootless image's `rootless` user and the BuildKit image's `user`; the runner runs as
the same uid to use the Docker socket."""
SOCKET_DIR = f"/run/user/{UID}"
DOCKER_HOST = f"unix://{SOCKET_DIR}/docker.sock"
BUILDKIT_DIR = "/run/buildkit"
BUILDKIT_HOST = f"unix://{BUILDKIT_DIR}/buildkitd.sock"
BUILDKIT_SOURCE = "/opt/buildkit"
"""The builder's socket directory as the job daemon sees it: not under /run or /etc, which
rootless dockerd's rootlesskit copies up (tmpfs and links) in its own mount namespace."""
TOOLS_DIR = "/opt/rack"
"""Pod-local: `buildctl`, the rack CA and the CA bundle, mounted read-only into every job."""
BUILDCTL = f"{TOOLS_DIR}/buildctl"
CA_DIR = "/etc/rack-ca"
CA_FILE = f"{TOOLS_DIR}/ca.crt"
CA_BUNDLE = f"{TOOLS_DIR}/ca-bundle.pem"
CONFIG_DIR = "/etc/act_runner"
BUILDKIT_CONFIG_DIR = "/etc/buildkit"
TOKEN_KEY = "registration-token"
CA_KEY = "ca.crt"
CA_DIGEST_ANNOTATION = "homelab.rack/ca-sha256"
API_PORT = 6443
"""The k3s API server's port on every server node (and on `k3s.api-address`)."""
JOB_MOUNTS: tuple[tuple[str, str], ...] = (
    (TOOLS_DIR, f"{TOOLS_DIR}:ro"),
    (BUILDCTL, "/usr/local/bin/buildctl:ro"),
    (BUILDKIT_SOURCE, BUILDKIT_DIR),
)
"""What the job daemon bind-mounts into every job container: (source in the daemon's pod, target)."""


def runner_image(version: str) -> str:
    return f"docker.io/gitea/act_runner:{version}"


def docker_image(version: str) -> str:
    return f"docker.io/library/docker:{version}-dind-rootless"


def buildkit_image(version: str) -> str:
    return f"docker.io/moby/buildkit:v{version}-rootless"


def runner_labels() -> dict[str, str]:
    return workload_labels(NAME, Category.INFRASTRUCTURE)


def job_env(*, with_ca: bool) -> dict[str, str]:
    """What every job sees: the builder, and (with a rack CA) the trust that includes it. The
    bundle is the public roots plus the rack CA, because SSL_CERT_FILE, GIT_SSL_CAINFO,
    CURL_CA_BUNDLE and REQUESTS_CA_BUNDLE replace the default roots; NODE_EXTRA_CA_CERTS adds."""
    env = {"BUILDKIT_HOST": BUILDKIT_HOST}
    if with_ca:
        for name in ("SSL_CERT_FILE", "GIT_SSL_CAINFO", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE"):
            env[name] = CA_BUNDLE
        env["NODE_EXTRA_CA_CERTS"] = CA_FILE
    return env


def render_config(labels: Sequence[str], *, with_ca: bool = False) -> str:
    """act_runner's config.yaml (pure). `docker_host: "-"` finds the daemon through DOCKER_HOST
    but does not mount its socket into job containers: jobs cannot drive the daemon. `options`
    bind-mounts the builder's socket, `buildctl` and the CA files; act_runner drops any bind whose
    source `valid_volumes` does not list, so exactly those sources are listed."""
    options = " ".join(f"-v {source}:{target}" for source, target in JOB_MOUNTS)
    config = {
        "log": {"level": "info"},
        "runner": {
            "file": "/data/.runner",
            "capacity": 1,
            "envs": job_env(with_ca=with_ca),
            "timeout": "3h",
            "fetch_timeout": "5s",
            "fetch_interval": "2s",
            "labels": list(labels),
        },
        "cache": {"enabled": True, "dir": "/data/cache"},
        "container": {
            "network": "",
            "privileged": False,
            "options": options,
            "valid_volumes": [source for source, _ in JOB_MOUNTS],
            "docker_host": "-",
            "force_pull": False,
        },
        "host": {"workdir_parent": "/data/host"},
    }
    return yaml.safe_dump(config, sort_keys=False)


def render_buildkitd_config(registry_host: str, *, with_ca: bool) -> str:
    """buildkitd.toml (pure): the OCI worker only (no containerd in the pod); pushes to Gitea's
    registry verify its certificate against the rack CA."""
    lines = ["[worker.oci]", "  enabled = true", "", "[worker.containerd]", "  enabled = false"]
    if with_ca:
        lines += ["", f'[registry."{registry_host}"]', f'  ca = ["{CA_DIR}/{CA_KEY}"]']
    return "\n".join(lines) + "\n"


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
    """Job daemon CPU request and limit (and the builder's limit)."""
    memory: str
    """Job daemon memory request and limit (and the builder's limit)."""
    work_size: str
    """Size limit of the job daemon's work directory (and of the build cache)."""
    gitea_url: str
    """Gitea as the runner reaches it (in-cluster)."""
    gitea_namespace: str
    """Gitea's namespace (for the egress rule)."""
    gitea_pod_labels: Mapping[str, str]
    """Gitea's pod labels (for the egress rule)."""
    ingress_address: str
    """Where `*.domain` resolves: the external clone URL jobs use, and the registry."""
    registry_host: str
    """Gitea's host name (`git.<domain>`), whose registry BuildKit pushes to."""
    buildkit_version: str
    """moby/buildkit:v<v>-rootless release."""
    api_addresses: Sequence[str] = ()
    """Where jobs reach the k3s API (port 6443): every server node's address and `k3s.api-address`."""
    ssh_peers: Sequence[tuple[str, int]] = ()
    """(address, port) of every node's and the GPU host's SSH."""
    state_backend: tuple[str, int] | None = None
    """(address, port) of the Pulumi state backend on the LAN."""
    failover_seconds: int | None = None
    """Not-ready/unreachable toleration (runners are stateless)."""


def render_deployment(
    s: RunnerSettings, *, config_map: str, secret: str, ca_config_map: str | None = None
) -> dict[str, Any]:
    """The runners' Deployment (pure). `ca_config_map`: the ConfigMap holding the rack CA, if any."""
    labels = runner_labels()
    with_ca = ca_config_map is not None
    docker_env = [{"name": "DOCKER_HOST", "value": DOCKER_HOST}]
    tools_mount = {"name": "job-tools", "mountPath": TOOLS_DIR}
    ca_mount = {"name": "rack-ca", "mountPath": CA_DIR, "readOnly": True}
    small = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}}
    init: list[dict[str, Any]] = [
        {
            # buildctl is a static Go binary: it runs in any job image of the node's architecture.
            "name": "tools",
            "image": buildkit_image(s.buildkit_version),
            "command": ["cp", "/usr/bin/buildctl", BUILDCTL],
            "resources": small,
            "securityContext": restricted_container_security(),
            "volumeMounts": [tools_mount],
        }
    ]
    if with_ca:
        init.append(
            {
                # The job daemon's image carries Alpine's public roots; the bundle is those plus the rack CA.
                "name": "ca-bundle",
                "image": docker_image(s.docker_version),
                "command": [
                    "sh",
                    "-ec",
                    f"cat /etc/ssl/certs/ca-certificates.crt {CA_DIR}/{CA_KEY} > {CA_BUNDLE}\n"
                    f"cp {CA_DIR}/{CA_KEY} {CA_FILE}",
                ],
                "resources": small,
                "securityContext": restricted_container_security(),
                "volumeMounts": [tools_mount, ca_mount],
            }
        )
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
            # The sources of the job containers' binds (JOB_MOUNTS) live in the daemon's world.
            {**tools_mount, "readOnly": True},
            {"name": "buildkit-run", "mountPath": BUILDKIT_SOURCE},
        ],
    }
    buildkitd_mounts = [
        {"name": "buildkit-run", "mountPath": BUILDKIT_DIR},
        {"name": "buildkit-data", "mountPath": "/home/user/.local/share/buildkit"},
        {"name": "buildkit-config", "mountPath": BUILDKIT_CONFIG_DIR, "readOnly": True},
    ]
    if with_ca:
        buildkitd_mounts.append(ca_mount)
    buildkitd = {
        "name": "buildkitd",
        "image": buildkit_image(s.buildkit_version),
        "restartPolicy": "Always",
        # The image's entrypoint is `rootlesskit buildkitd`; these are buildkitd's flags.
        "args": [
            f"--addr={BUILDKIT_HOST}",
            f"--config={BUILDKIT_CONFIG_DIR}/buildkitd.toml",
            "--oci-worker-no-process-sandbox",
        ],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            # rootlesskit maps the user namespace with the setuid newuidmap/newgidmap.
            "allowPrivilegeEscalation": True,
            "seccompProfile": {"type": "Unconfined"},
            "appArmorProfile": {"type": "Unconfined"},
        },
        "startupProbe": {
            "exec": {"command": ["buildctl", f"--addr={BUILDKIT_HOST}", "debug", "workers"]},
            "periodSeconds": 2,
            "failureThreshold": 60,
            "timeoutSeconds": 5,
        },
        # Idle but for a job's build, while that job's container waits on buildctl: a small
        # request, and up to the job daemon's own limit while it builds.
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": s.cpu, "memory": s.memory},
        },
        "volumeMounts": buildkitd_mounts,
    }
    runner_env: list[dict[str, Any]] = [
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
    ]
    if with_ca:
        # act_runner itself clones `uses: https://git.<domain>/...` actions: Go reads SSL_CERT_FILE.
        runner_env.append({"name": "SSL_CERT_FILE", "value": CA_BUNDLE})
    runner = {
        "name": "runner",
        "image": runner_image(s.version),
        "env": runner_env,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": "runner-data", "mountPath": "/data"},
            {"name": "docker-run", "mountPath": SOCKET_DIR},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
            {**tools_mount, "readOnly": True},
        ],
    }
    volumes: list[dict[str, Any]] = [
        {"name": "runner-data", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "docker-run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {"name": "docker-data", "emptyDir": {"sizeLimit": s.work_size}},
        {"name": "buildkit-run", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        {"name": "buildkit-data", "emptyDir": {"sizeLimit": s.work_size}},
        {"name": "job-tools", "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": "config", "configMap": {"name": config_map, "items": [{"key": "config.yaml", "path": "config.yaml"}]}},
        {
            "name": "buildkit-config",
            "configMap": {"name": config_map, "items": [{"key": "buildkitd.toml", "path": "buildkitd.toml"}]},
        },
    ]
    if with_ca:
        volumes.append({"name": "rack-ca", "configMap": {"name": ca_config_map}})
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
                    "initContainers": [*init, docker, buildkitd],
                    "containers": [runner],
                    "volumes": volumes,
                    **pod_placement(NAME, Category.INFRASTRUCTURE, failover_seconds=s.failover_seconds),
                },
            },
        },
    }


def render_config_map(s: RunnerSettings, *, with_ca: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": NAME, "namespace": s.namespace, "labels": runner_labels()},
        "data": {
            "config.yaml": render_config(s.labels, with_ca=with_ca),
            "buildkitd.toml": render_buildkitd_config(s.registry_host, with_ca=with_ca),
        },
    }


def render_ca_config_map(s: RunnerSettings, ca_cert_pem: Any) -> dict[str, Any]:
    """The rack CA's certificate (public: a ConfigMap, not a Secret)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CA_NAME, "namespace": s.namespace, "labels": runner_labels()},
        "data": {CA_KEY: ca_cert_pem},
    }


def render_secret(s: RunnerSettings, token: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": NAME, "namespace": s.namespace, "labels": runner_labels()},
        "type": "Opaque",
        "stringData": {TOKEN_KEY: token},
    }


def lan_egress(s: RunnerSettings) -> list[dict[str, Any]]:
    """The LAN peers a deploy needs, each address with exactly its port: the API servers on 6443,
    SSH (the Pis share `ssh.port`, the GPU host has its own), the state backend. One rule per port,
    listing the addresses that are reached on it."""
    backend = [s.state_backend] if s.state_backend is not None else []
    by_port: dict[int, set[str]] = defaultdict(set)
    for address, port in [*((a, API_PORT) for a in s.api_addresses), *s.ssh_peers, *backend]:
        by_port[port].add(address)
    return [
        rule([cidr_peer(host_network(a)) for a in sorted(by_port[port])], tcp(port), egress=True)
        for port in sorted(by_port)
    ]


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
            *lan_egress(s),
            internet_egress(),
        ],
    )


@dataclass(frozen=True, kw_only=True)
class GiteaRunnersArgs:
    settings: RunnerSettings
    """Plain settings."""
    registration_token: pulumi.Input[str]
    """The shared registration token Gitea is started with (a secret)."""
    ca_cert_pem: pulumi.Input[str] | None = None
    """The rack CA's certificate (PEM) that jobs, act_runner and BuildKit trust besides the public
    roots; None: only the public roots (the ingress's certificate is then not verifiable)."""


class GiteaRunners(pulumi.ComponentResource):
    secret: KubernetesObject
    """The registration token in the runners' namespace."""
    config_map: KubernetesObject
    """act_runner's config.yaml and BuildKit's buildkitd.toml."""
    ca_config_map: KubernetesObject | None
    """The rack CA (None without one)."""
    deployment: KubernetesObject
    """The runner pods."""
    network_policy: KubernetesObject
    """Their allow-list."""

    def __init__(self, name: str, args: GiteaRunnersArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:ci:GiteaRunners", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        with_ca = args.ca_cert_pem is not None
        sec = render_secret(s, pulumi.Output.secret(args.registration_token))
        self.secret = KubernetesObject(f"{name}-secret", sec, child)
        cm = render_config_map(s, with_ca=with_ca)
        self.config_map = KubernetesObject(f"{name}-config", cm, child)
        ca_cm = render_ca_config_map(s, args.ca_cert_pem) if args.ca_cert_pem is not None else None
        dep = render_deployment(
            s,
            config_map=cm["metadata"]["name"],
            secret=sec["metadata"]["name"],
            ca_config_map=ca_cm["metadata"]["name"] if ca_cm is not None else None,
        )
        configs = [self.config_map]
        self.ca_config_map = None
        if ca_cm is not None:
            self.ca_config_map = KubernetesObject(f"{name}-ca", ca_cm, child)
            configs.append(self.ca_config_map)
            # The bundle is written at pod start: a new CA rolls the pods.
            digest = pulumi.Output.from_input(ca_cm["data"][CA_KEY]).apply(
                lambda pem: hashlib.sha256(pem.encode()).hexdigest()
            )
            dep["spec"]["template"]["metadata"]["annotations"] = {CA_DIGEST_ANNOTATION: digest}
        self.deployment = KubernetesObject(
            f"{name}-deployment", dep, pulumi.ResourceOptions(parent=self, depends_on=[self.secret, *configs])
        )
        pol = render_network_policy(s)
        self.network_policy = KubernetesObject(f"{name}-netpol", pol, child)
        self.register_outputs(
            {
                "secret": self.secret,
                "config_map": self.config_map,
                "ca_config_map": self.ca_config_map,
                "deployment": self.deployment,
                "network_policy": self.network_policy,
            }
        )
