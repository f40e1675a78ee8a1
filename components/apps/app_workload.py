"""AppWorkload: one app of `rack.apps`, deployed the way a careful operator would.

Creates, under the component `homelab:apps:AppWorkload`:
- `Secret` `<app>-uses` in the app's namespace holding the passwords of what it `uses` (databases
  live in `data`, and a pod can only reference a Secret in its own namespace) — only when a used
  service has a password;
- `Deployment`: placed by its category (layout.pod_placement: class affinity, spread across
  hosts, the experimental toleration, and the short not-ready/unreachable toleration that moves
  stateless pods off a dead Pi in about a minute); rolling updates that never drop below the
  desired count (maxUnavailable 0, maxSurge 1); readiness and liveness probes on the app port;
  the restricted Pod Security profile (non-root, no privilege escalation, all capabilities
  dropped, RuntimeDefault seccomp, read-only root filesystem with an emptyDir for /tmp, no API
  token); requests and limits from config (equal: Guaranteed QoS, the last to be evicted when a
  Pi runs short); environment wired from `uses`, passwords only by secretKeyRef;
  `pulumi.com/skipAwait: "true"` when `pulumi up` should not wait for its rollout (`wait`, see
  `skips_await`: by default, images from the rack's own registry, which CI may not have built yet);
- with `wait: auto` and an image from the rack's own registry, `<app>-rollout` (remote.Command on
  the bootstrap server, after the Deployment): reports the rollout in place of the provider's wait
  (`rollout_report_script`): it waits for the rollout of this Deployment and fails the way the
  provider's wait would, except when the image is not in the registry yet (CI has not pushed it):
  then it says so and succeeds, and the Deployment starts the pods once the image is there. Its
  text names the image and a digest of the manifest, so it re-runs with every change that rolls
  the pods. No delete;
- `Service` (ClusterIP) on the app port;
- `PodDisruptionBudget` (minAvailable: replicas - 1) when replicas >= 2;
- `NetworkPolicy` `<app>`: ingress from Traefik only when the app has a `host`, egress only to
  what `uses` names plus DNS. (The namespace's default deny is the apps layer's, one per namespace.)

The manifests are built by pure `render_*` functions so tests can validate them against the
Kubernetes OpenAPI schema without a cluster.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.core.kubernetes_object import KubernetesObject
from components.core.layout import WORKLOAD_LABEL, pod_placement, restricted_container_security, workload_labels
from components.core.network_policy import (
    cidr_peer,
    dns_egress,
    from_traefik,
    host_network,
    pods_peer,
    render_workload_policy,
    rule,
    tcp,
)
from components.core.remote_command import RemoteCommand
from components.metal.k3s_cluster import NodeAccess
from components.metal.k3s_scripts import HostLayout, remote_command
from rack.config import App, image_registry
from rack.endpoints import ServiceEndpoint
from rack.vocabulary import Category

SKIP_AWAIT = "pulumi.com/skipAwait"
"""pulumi-kubernetes' annotation: create and update return once the API server accepted the
object, without waiting for the rollout (the provider's await logic is skipped)."""

RUN_AS_USER = 65532
"""The uid apps run as when the image does not say: the distroless `nonroot` convention."""


def as_secret(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """A value that stays a Pulumi secret, whatever it was handed over as."""
    return pulumi.Output.secret(value)


def env_prefix(name: str) -> str:
    """`inference` -> `INFERENCE`, `my-db` -> `MY_DB`."""
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def secret_name(app: App) -> str:
    return f"{app.name}-uses"


def password_key(endpoint: ServiceEndpoint) -> str:
    return f"{endpoint.name}-password"


def render_env(app: App, endpoints: Sequence[ServiceEndpoint]) -> list[dict[str, Any]]:
    """The environment an app gets from `uses`, in `uses` order (pure).

    Per database `<NAME>_HOST`, `_PORT`, `_DATABASE`, `_USER` (where the kind has them) and
    `_PASSWORD` by secretKeyRef; per HTTP service `<NAME>_URL`. No secret value appears here."""
    env: list[dict[str, Any]] = []
    for ep in endpoints:
        prefix = env_prefix(ep.name)
        if ep.kind == "http":
            env.append({"name": f"{prefix}_URL", "value": ep.url})
            continue
        env.append({"name": f"{prefix}_HOST", "value": ep.host})
        env.append({"name": f"{prefix}_PORT", "value": str(ep.port)})
        if ep.database is not None:
            env.append({"name": f"{prefix}_DATABASE", "value": ep.database})
        if ep.user is not None:
            env.append({"name": f"{prefix}_USER", "value": ep.user})
        if ep.password is not None:
            env.append(
                {
                    "name": f"{prefix}_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": secret_name(app), "key": password_key(ep)}},
                }
            )
    return env


def skips_await(app: App, registry_host: str | None) -> bool:
    """Whether `pulumi up` skips waiting for the app's rollout (pure): `wait: false` always,
    `wait: true` never, `wait: auto` when the image comes from the rack's own registry
    (`registry_host`, Gitea's): on a fresh rack nobody has built it yet, and waiting on an
    ImagePullBackOff would stall the first `up` for the provider's 10 minutes, then fail it."""
    if app.wait == "auto":
        return registry_host is not None and image_registry(app.image) == registry_host
    return not app.wait


ROLLOUT_TIMEOUT_S = 600
"""How long the rollout report waits: the provider's own default for a Deployment (10 minutes)."""
NOT_IN_REGISTRY = "not found"
"""What containerd's pull error says when the registry has no such image or tag: every endpoint
answered 404, so the resolver returns `<ref>: not found` (containerd remotes/docker/resolver.go,
`fmt.Errorf("%s: %w", ref, errdefs.ErrNotFound)`), as opposed to `401 Unauthorized` or an x509
error. The kubelet passes that text on unchanged: as the waiting container's ErrImagePull message
and in its Warning event, reason `Failed`, `Failed to pull image "<image>": <error>`; while it
backs off the reason is ImagePullBackOff, message `Back-off pulling image "<image>"`
(kubernetes pkg/kubelet/images/image_manager.go). tests/real/registry measures containerd's."""


def reports_rollout(app: App, registry_host: str | None) -> bool:
    """Whether the `<app>-rollout` step reports the rollout in place of the provider's wait (pure):
    `wait: auto` and an image of the rack's own registry."""
    return app.wait == "auto" and skips_await(app, registry_host)


def rollout_report_script(
    *, app: str, namespace: str, image: str, revision: str, timeout_s: int, layout: HostLayout
) -> str:
    """Runs on the bootstrap server (`k3s kubectl`) after the Deployment is applied: waits up to
    `timeout_s` for `kubectl rollout status` to succeed. While a pod of the app waits on pulling
    `image` (ErrImagePull / ImagePullBackOff), the newest pull error decides: "not found" (the
    registry has no such image yet) ends the wait successfully, saying what to push; any other
    (401, certificate) fails naming it. `revision` (a digest of the Deployment) is only there to
    make the text change with every change that rolls the pods."""
    q = shlex.quote
    waiting = (
        '{range .items[*]}{range .status.containerStatuses[*]}{.image}{"\\t"}{.state.waiting.reason}'
        '{"\\t"}{.state.waiting.message}{"\\n"}{end}{end}'
    )
    events = '{range .items[*]}{.message}{"\\n"}{end}'
    return f"""set -euo pipefail
R={q(layout.root)}
K="$R/usr/local/bin/k3s"
APP={q(app)}
NS={q(namespace)}
IMAGE={q(image)}
# rollout report for Deployment revision {revision}
say() {{ printf '%s: %s\\n' "$APP" "$*"; }}
fail() {{ printf '%s: %s\\n' "$APP" "$*" >&2; exit 1; }}
pull_error() {{
  # The newest pull error of this image, while a pod of the app waits on pulling it.
  local waiting
  waiting="$("$K" kubectl -n "$NS" get pods -l {q(WORKLOAD_LABEL)}="$APP" -o jsonpath={q(waiting)} |
    awk -F '\\t' -v image="$IMAGE" '$1 == image && ($2 == "ErrImagePull" || $2 == "ImagePullBackOff")')" ||
    return 0  # the API did not answer this time: the next round asks again
  [ -n "$waiting" ] || return 0
  {{
    printf '%s\\n' "$waiting" | awk -F '\\t' '$2 == "ErrImagePull" {{ print $3 }}'
    # by lastTimestamp: the kubelet folds a repeated error into its first event (client-go's
    # event correlator: client-go tools/record/events_cache.go, eventObserve patches count and
    # lastTimestamp onto the same object), so the event created last need not hold the newest error
    "$K" kubectl -n "$NS" get events --field-selector reason=Failed --sort-by=.lastTimestamp \\
      -o jsonpath={q(events)} | grep -F "\\"$IMAGE\\"" || :
  }} | tail -n 1
}}
waited=0
while :; do
  if "$K" kubectl -n "$NS" rollout status deployment/"$APP" --timeout=5s >/dev/null 2>&1; then
    say "rolled out: $IMAGE"
    exit 0
  fi
  error="$(pull_error)"
  if [ -n "$error" ]; then
    case "$error" in
      *{q(NOT_IN_REGISTRY)}*)
        say "$IMAGE is not in the registry yet: push it (docs/images.md); the pods start once it is there"
        exit 0 ;;
      *) fail "cannot pull $IMAGE: $error" ;;
    esac
  fi
  [ "$waited" -lt {timeout_s} ] ||
    fail "not rolled out after {timeout_s} s: see kubectl -n $NS describe deployment $APP"
  sleep 2
  waited=$((waited + 7))
done
"""


def _probe(app: App, *, period: int, failures: int) -> dict[str, Any]:
    action: dict[str, Any] = (
        {"httpGet": {"path": app.health_path, "port": "http"}} if app.health_path else {"tcpSocket": {"port": "http"}}
    )
    return {**action, "periodSeconds": period, "failureThreshold": failures, "timeoutSeconds": 2}


def render_deployment(
    app: App,
    *,
    namespace: str,
    failover_seconds: int | None = None,
    env: list[dict[str, Any]] | None = None,
    skip_await: bool = False,
) -> dict[str, Any]:
    """The Deployment manifest of an app (pure)."""
    labels = workload_labels(app.name, app.category)
    container: dict[str, Any] = {
        "name": app.name,
        "image": app.image,
        "ports": [{"name": "http", "containerPort": app.port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": app.cpu, "memory": app.memory},
            "limits": {"cpu": app.cpu, "memory": app.memory},
        },
        "readinessProbe": _probe(app, period=5, failures=3),
        # Liveness is deliberately slower than readiness: an overloaded Pi should shed traffic
        # before it starts killing pods.
        "livenessProbe": {**_probe(app, period=10, failures=6), "initialDelaySeconds": 10},
        "securityContext": restricted_container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if env:
        container["env"] = env
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
        **pod_placement(app.name, app.category, failover_seconds=failover_seconds),
    }
    metadata: dict[str, Any] = {"name": app.name, "namespace": namespace, "labels": labels}
    if skip_await:
        metadata["annotations"] = {SKIP_AWAIT: "true"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": app.replicas,
            "selector": {"matchLabels": {WORKLOAD_LABEL: app.name}},
            # Never below the desired count during a rollout: one extra pod comes up (and turns
            # ready) before an old one goes.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def render_service(app: App, *, namespace: str) -> dict[str, Any]:
    """The ClusterIP Service in front of an app (pure)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app.name, "namespace": namespace, "labels": workload_labels(app.name, app.category)},
        "spec": {
            "selector": {WORKLOAD_LABEL: app.name},
            "ports": [{"name": "http", "port": app.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_pdb(app: App, *, namespace: str) -> dict[str, Any] | None:
    """A PodDisruptionBudget keeping all but one replica up during drains; none below 2 replicas."""
    if app.replicas < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": app.name, "namespace": namespace, "labels": workload_labels(app.name, app.category)},
        "spec": {
            "minAvailable": app.replicas - 1,
            "selector": {"matchLabels": {WORKLOAD_LABEL: app.name}},
        },
    }


def render_secret(app: App, *, namespace: str, string_data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The app's copy of the passwords it uses (values may be secret Outputs); None if none."""
    if not string_data:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(app),
            "namespace": namespace,
            "labels": workload_labels(app.name, app.category),
        },
        "type": "Opaque",
        "stringData": dict(string_data),
    }


def egress_to(endpoint: ServiceEndpoint) -> dict[str, Any]:
    """Egress to one used service: its pods on its port, or (outside the cluster) its address.

    Policies see the destination after the Service's DNAT, so a selector-less Service (the GPU
    host) is allowed by the real address behind it, as a /32."""
    if endpoint.pod_labels is not None:
        return rule([pods_peer(endpoint.namespace, endpoint.pod_labels)], tcp(endpoint.port), egress=True)
    if endpoint.external_ip is None:
        raise ValueError(f"endpoint {endpoint.name!r} has neither pod labels nor an external address")
    return rule([cidr_peer(host_network(endpoint.external_ip))], tcp(endpoint.port), egress=True)


def render_network_policy(app: App, *, namespace: str, endpoints: Sequence[ServiceEndpoint]) -> dict[str, Any]:
    """Ingress from Traefik only with a `host`; egress to DNS and exactly what `uses` names."""
    ingress = [from_traefik("http")] if app.host else []
    return render_workload_policy(
        name=app.name,
        namespace=namespace,
        pod_labels={WORKLOAD_LABEL: app.name},
        labels=workload_labels(app.name, app.category),
        ingress=ingress,
        egress=[dns_egress(), *(egress_to(ep) for ep in endpoints)],
    )


@dataclass(frozen=True, kw_only=True)
class AppWorkloadArgs:
    app: App
    """The validated app config."""
    namespace: str
    """Namespace of the app's category."""
    failover_seconds: int | None = None
    """Not-ready/unreachable toleration for stateless pods (None: Kubernetes' 300 s)."""
    endpoints: list[ServiceEndpoint] = field(default_factory=list)
    """What the app `uses`, resolved (in `uses` order): wires env, the Secret and egress."""
    registry_host: str | None = None
    """The rack's own image registry (`rack.registry_host()`): `wait: auto` skips the rollout wait for its images."""
    rollout_access: NodeAccess | None = None
    """SSH to the bootstrap server, where the rollout report runs `k3s kubectl` (None: no report step)."""


class AppWorkload(pulumi.ComponentResource):
    secret: KubernetesObject | None
    """The passwords of the services it uses (None when none has one)."""
    deployment: KubernetesObject
    """The app's Deployment."""
    service: KubernetesObject
    """Its ClusterIP Service."""
    pdb: KubernetesObject | None
    """Its disruption budget (replicas >= 2), else None."""
    network_policy: KubernetesObject
    """Its allow-list."""
    rollout: RemoteCommand | None
    """The rollout report (`wait: auto`, an image of the rack's registry, with `rollout_access`), else None."""

    def __init__(self, name: str, args: AppWorkloadArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:apps:AppWorkload", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        app, ns = args.app, args.namespace
        failover = args.failover_seconds if app.category != Category.DATA else None

        passwords: dict[str, pulumi.Output[str]] = {
            password_key(ep): as_secret(ep.password) for ep in args.endpoints if ep.password is not None
        }
        sec = render_secret(app, namespace=ns, string_data=passwords)
        self.secret = KubernetesObject(f"{name}-secret", sec, child) if sec is not None else None

        dep = render_deployment(
            app,
            namespace=ns,
            failover_seconds=failover,
            env=render_env(app, args.endpoints),
            skip_await=skips_await(app, args.registry_host),
        )
        self.deployment = KubernetesObject(
            f"{name}-deployment",
            dep,
            pulumi.ResourceOptions(parent=self, depends_on=[self.secret] if self.secret is not None else []),
        )
        self.rollout = None
        access = args.rollout_access
        if access is not None and reports_rollout(app, args.registry_host):
            revision = hashlib.sha256(json.dumps(dep, sort_keys=True).encode()).hexdigest()[:16]
            script = rollout_report_script(
                app=app.name,
                namespace=ns,
                image=app.image,
                revision=revision,
                timeout_s=ROLLOUT_TIMEOUT_S,
                layout=HostLayout(),  # the bootstrap server is a real host
            )
            self.rollout = RemoteCommand(
                f"{name}-rollout",
                connection=access.connection,
                create=remote_command(script, user=access.user),
                update=remote_command(script, user=access.user),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.deployment, access.after]),
            )
        svc = render_service(app, namespace=ns)
        self.service = KubernetesObject(f"{name}-service", svc, child)
        pdb = render_pdb(app, namespace=ns)
        self.pdb = KubernetesObject(f"{name}-pdb", pdb, child) if pdb is not None else None
        pol = render_network_policy(app, namespace=ns, endpoints=args.endpoints)
        self.network_policy = KubernetesObject(f"{name}-netpol", pol, child)
        self.register_outputs(
            {
                "secret": self.secret,
                "deployment": self.deployment,
                "service": self.service,
                "pdb": self.pdb,
                "network_policy": self.network_policy,
                "rollout": self.rollout,
            }
        )
