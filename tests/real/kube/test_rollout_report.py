"""The rollout report of `wait: auto` apps against a real API server, controller manager and kubectl.

The script runs by bash with `k3s kubectl` = the real kubectl, whose `rollout status` decides
when a rollout is done. Written here as the missing parts would (no kubelet, and the session's
controller manager runs only the controllers other tests rely on, not the deployment and
replica-set controllers, whose pod management would fight theirs): the app's pod, created with
its labels as its ReplicaSet creates it; the pod's status through the status subresource as a
kubelet reports it: waiting on ErrImagePull / ImagePullBackOff with the pull error containerd
gives (its wording measured in tests/real/registry: `...: not found` for a tag the registry does
not have, `...: 401 Unauthorized` for a refused password); the Deployment's status as its
controller reports a finished rollout. What is shown: an image not pushed yet ends the report
successfully and says so; any other pull error fails it naming the error; a finished rollout is
reported; a rollout that never finishes fails at the timeout.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest

from components.apps.app_workload import rollout_report_script
from components.core.layout import WORKLOAD_LABEL
from components.metal.k3s_scripts import HostLayout

from .conftest import KubeApi

pytestmark = [pytest.mark.realkube, pytest.mark.slow]

NS = "rollout-test"
NOT_FOUND = 'failed to pull and unpack image "{image}": failed to resolve reference "{image}": {image}: not found'
UNAUTHORIZED = (
    'failed to pull and unpack image "{image}": failed to resolve reference "{image}": '
    "pulling from host git.rack.test failed with status code [manifests 1.0.0]: 401 Unauthorized"
)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def deploy(api: KubeApi, app: str, image: str) -> dict[str, Any]:
    """A Deployment as the program renders one (the app label selects it); returns its pod."""
    if api.kubectl("get", "namespace", NS, check=False).returncode != 0:
        api.kubectl("create", "namespace", NS)
    labels = {WORKLOAD_LABEL: app}
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": app, "namespace": NS, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"automountServiceAccountToken": False, "containers": [{"name": app, "image": image}]},
            },
        },
    }
    api.kubectl("create", "-f", "-", stdin=json.dumps(manifest))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{app}-7d9f8-x2x4q", "namespace": NS, "labels": labels},
        "spec": manifest["spec"]["template"]["spec"],  # type: ignore[index]
    }
    api.kubectl("create", "-f", "-", stdin=json.dumps(pod))
    return api.get("pod", "-n", NS, f"{app}-7d9f8-x2x4q")


def report(api: KubeApi, pod: dict[str, Any], status: dict[str, Any]) -> None:
    name = pod["metadata"]["name"]
    api.kubectl("-n", NS, "patch", "pod", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def waiting(app: str, image: str, reason: str, message: str) -> dict[str, Any]:
    """What a kubelet reports while the image cannot be pulled."""
    container = {
        "name": app,
        "image": image,
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": reason, "message": message}},
    }
    return {"status": {"phase": "Pending", "containerStatuses": [container]}}


def run_report(api: KubeApi, app: str, image: str, timeout_s: int = 30) -> subprocess.CompletedProcess[str]:
    layout = HostLayout(root=str(api.k3s_root("rollout")))
    script = rollout_report_script(
        app=app, namespace=NS, image=image, revision="test", timeout_s=timeout_s, layout=layout
    )
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, check=False)


def test_an_image_nobody_pushed_yet_ends_the_report_and_says_so(kube_api: KubeApi) -> None:
    image = "git.rack.test/bible/api:1.8.0"
    pod = deploy(kube_api, "api", image)
    message = "rpc error: code = NotFound desc = " + NOT_FOUND.format(image=image)
    report(kube_api, pod, waiting("api", image, "ErrImagePull", message))
    result = run_report(kube_api, "api", image)
    assert result.returncode == 0, result.stderr
    assert f"api: {image} is not in the registry yet" in result.stdout


def test_after_back_off_the_newest_pull_event_decides(kube_api: KubeApi) -> None:
    """ImagePullBackOff's message need not carry the error: the kubelet's Failed event does."""
    image = "git.rack.test/bible/auth:1.3.0"
    pod = deploy(kube_api, "auth", image)
    report(kube_api, pod, waiting("auth", image, "ImagePullBackOff", f'Back-off pulling image "{image}"'))
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "auth-pull-failed", "namespace": NS},
        "involvedObject": {"kind": "Pod", "namespace": NS, "name": pod["metadata"]["name"]},
        "reason": "Failed",
        "type": "Warning",
        "message": f'Failed to pull image "{image}": {UNAUTHORIZED.format(image=image)}',
        "firstTimestamp": now(),
        "lastTimestamp": now(),
        "count": 1,
        "source": {"component": "kubelet"},
    }
    kube_api.kubectl("create", "-f", "-", stdin=json.dumps(event))
    result = run_report(kube_api, "auth", image)
    assert result.returncode == 1
    assert f"auth: cannot pull {image}: Failed to pull image" in result.stderr
    assert "401 Unauthorized" in result.stderr


def test_the_pull_error_that_happened_last_decides_not_the_first_one(kube_api: KubeApi) -> None:
    """The kubelet folds a repeated error into its first event (count and lastTimestamp go up,
    client-go's event correlator), so the event created last is not always the newest error: a
    401 while the registry was briefly refusing, then the image's "not found" again, which an
    event created first carries. The newest by lastTimestamp decides."""
    image = "git.rack.test/bible/notes:0.4.0"
    pod = deploy(kube_api, "notes", image)
    report(kube_api, pod, waiting("notes", image, "ImagePullBackOff", f'Back-off pulling image "{image}"'))
    earlier = datetime.fromtimestamp(datetime.now(UTC).timestamp() - 120, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name, error, first, last in (
        ("notes-not-found", NOT_FOUND, earlier, now()),  # created first, repeated until now
        ("notes-refused", UNAUTHORIZED, earlier, earlier),  # created second, once, two minutes ago
    ):
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": NS},
            "involvedObject": {"kind": "Pod", "namespace": NS, "name": pod["metadata"]["name"]},
            "reason": "Failed",
            "type": "Warning",
            "message": f'Failed to pull image "{image}": {error.format(image=image)}',
            "firstTimestamp": first,
            "lastTimestamp": last,
            "count": 1 if first == last else 12,
            "source": {"component": "kubelet"},
        }
        kube_api.kubectl("create", "-f", "-", stdin=json.dumps(event))
    result = run_report(kube_api, "notes", image)
    assert result.returncode == 0, result.stderr
    assert f"notes: {image} is not in the registry yet" in result.stdout


def test_a_finished_rollout_is_reported(kube_api: KubeApi) -> None:
    image = "git.rack.test/bible/social:0.9.2"
    pod = deploy(kube_api, "social", image)
    container = {
        "name": "social",
        "image": image,
        "imageID": f"{image}@sha256:" + "0" * 64,
        "ready": True,
        "started": True,
        "restartCount": 0,
        "state": {"running": {"startedAt": now()}},
    }
    ready = {
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now()}],
            "containerStatuses": [container],
        }
    }
    report(kube_api, pod, ready)
    # what the deployment controller then reports: the new generation observed, one updated
    # replica, available
    generation = kube_api.get("deployment", "-n", NS, "social")["metadata"]["generation"]
    done = {
        "status": {
            "observedGeneration": generation,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "lastUpdateTime": now()},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "lastUpdateTime": now()},
            ],
        }
    }
    kube_api.kubectl(
        "-n", NS, "patch", "deployment", "social", "--subresource=status", "--type=merge", "-p", json.dumps(done)
    )
    result = run_report(kube_api, "social", image)
    assert result.returncode == 0, result.stderr
    assert f"social: rolled out: {image}" in result.stdout


def test_a_rollout_that_never_finishes_fails_at_the_timeout(kube_api: KubeApi) -> None:
    image = "git.rack.test/bible/devotional:2.1.0"
    deploy(kube_api, "devotional", image)  # Pending: no pull error, never ready
    result = run_report(kube_api, "devotional", image, timeout_s=6)
    assert result.returncode == 1
    assert "devotional: not rolled out after 6 s" in result.stderr
