"""GiteaBackup: Gitea's files copied off the node with restic, on their own schedule.

Creates, under `homelab:ci:GiteaBackup`:
- `CronJob` `gitea-backup` in Gitea's namespace: on Gitea's node (its volume is a local PV; a
  ReadWriteOnce claim is shared by pods of one node), as Gitea's uid, the volume mounted read-only,
  runs `offsite_script` over the whole data directory — repositories, LFS objects, packages,
  attachments, avatars and `gitea/conf/app.ini` — leaving out what Gitea rebuilds or discards
  (`queues`, `indexers`, `log`). Gitea's database is in PostgreSQL's dumps;
- `NetworkPolicy` `gitea-backup`: out only to DNS, the repository and the metrics store.

Gitea keeps running while its files are read. A git repository's objects never change once
written and refs are replaced by rename, so each copied repository is a state Gitea had, at
worst missing a push that landed during the copy (it is in the next night's copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.ci.gitea import DATA_DIR, UID, VOLUME_NAME
from components.core.kubernetes_object import KubernetesObject
from components.core.layout import WORKLOAD_LABEL, pod_placement, restricted_pod_security, workload_labels
from components.core.network_policy import render_workload_policy
from components.platform.offsite_backup import (
    GITEA_BACKUP_NAME,
    Source,
    backup_pods_egress,
    metrics_egress,
    offsite_container,
    passwd_volume,
)
from rack.config import Offsite
from rack.vocabulary import Category

NAME = GITEA_BACKUP_NAME
DATASET = "gitea"
EXCLUDES = ("queues", "indexers", "log")
"""Under the data directory: rebuilt on start (indexers), transient (queues, log)."""


def source() -> Source:
    return Source(DATA_DIR, newest_dump=False, excludes=tuple(f"{DATA_DIR}/{e}" for e in EXCLUDES))


def labels() -> dict[str, str]:
    return workload_labels(NAME, Category.DATA)


def render_cronjob(
    offsite: Offsite, *, schedule: str, node: str, namespace: str, data_namespace: str, metrics_url: str | None
) -> dict[str, Any]:
    """The CronJob copying Gitea's volume off-node (pure)."""
    container = offsite_container(
        DATASET,
        source(),
        offsite,
        data_namespace=data_namespace,
        metrics_url=metrics_url,
        source_mount={"name": "data", "mountPath": DATA_DIR},
    )
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": restricted_pod_security(UID, fs_group=True),
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "containers": [container],
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": VOLUME_NAME, "readOnly": True}},
            {"name": "tmp", "emptyDir": {}},
            passwd_volume(),
        ],
        **pod_placement(NAME, Category.DATA, hostname=node),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": NAME, "namespace": namespace, "labels": labels()},
        "spec": {
            "schedule": schedule,
            "timeZone": "Etc/UTC",
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": labels()},
                "spec": {
                    "backoffLimit": 2,
                    "activeDeadlineSeconds": 6 * 3600,
                    "template": {"metadata": {"labels": labels()}, "spec": pod_spec},
                },
            },
        },
    }


def render_network_policy(
    offsite: Offsite, *, namespace: str, data_namespace: str, metrics_url: str | None
) -> dict[str, Any]:
    """Out: DNS, the repository and (with monitoring) the metrics store. In: nothing."""
    return render_workload_policy(
        name=NAME,
        namespace=namespace,
        pod_labels={WORKLOAD_LABEL: NAME},
        labels=labels(),
        ingress=[],
        egress=backup_pods_egress(offsite, data_namespace, metrics_egress(metrics_url)),
    )


@dataclass(frozen=True, kw_only=True)
class GiteaBackupArgs:
    offsite: Offsite
    """`rack.backup.offsite`."""
    schedule: str
    """`rack.gitea.backup.schedule`."""
    node: str
    """Gitea's volume's node."""
    namespace: str
    """Gitea's namespace."""
    data_namespace: str
    """The data namespace (the in-cluster repository's, with `offsite.node`)."""
    metrics_url: str | None = None
    """The metrics store's base URL; None: no monitoring, nothing pushed."""
    depends_on: tuple[pulumi.Resource, ...] = ()
    """The Secret/ConfigMap the pod reads, Gitea's volume."""


class GiteaBackup(pulumi.ComponentResource):
    cronjob: KubernetesObject
    """The scheduled copy."""
    network_policy: KubernetesObject
    """Its allow-list."""

    def __init__(self, name: str, args: GiteaBackupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:ci:GiteaBackup", name, None, opts)
        pol = render_network_policy(
            args.offsite, namespace=args.namespace, data_namespace=args.data_namespace, metrics_url=args.metrics_url
        )
        self.network_policy = KubernetesObject(
            f"{name}-netpol", pol, pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        )
        cron = render_cronjob(
            args.offsite,
            schedule=args.schedule,
            node=args.node,
            namespace=args.namespace,
            data_namespace=args.data_namespace,
            metrics_url=args.metrics_url,
        )
        self.cronjob = KubernetesObject(
            f"{name}-cronjob",
            cron,
            pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, self.network_policy]),
        )
        self.register_outputs({"cronjob": self.cronjob, "network_policy": self.network_policy})
