"""OffsiteTarget: what every off-node copy needs, made once per rack.

Creates, under `homelab:data:OffsiteTarget`:
- `GeneratedSecret` `<name>-password` (made on the first `up`), unless the user set
  `homelab:backup-password`: the restic repositories' password. Losing it loses every copy, so
  docs/restore.md says how to read it back and keep it off the rack;
- with an sftp repository, `GeneratedSshKey` `<name>-ssh-key` unless the user set
  `homelab:backup-ssh-key`: its public half (`public_key`, exported as `backup_ssh_public_key`)
  goes into the SFTP server's `authorized_keys`;
- per namespace whose pods copy off-node (`data`, and `ci` for Gitea): `Secret` `backup-offsite`
  (the password, and the SSH key or S3 keys the target needs) and `ConfigMap`
  `backup-offsite-passwd` (the /etc/passwd line OpenSSH's client needs for the pods' uid);
- with `offsite.node` (the repository on another reliable node), protected like every data
  component: `PinnedVolume` `backup-repository` on that node, `Deployment` and `Service`
  `backup-repository` (rest-server, port 8000) and its `NetworkPolicy` (in: the copy pods only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.core.generated_secret import GeneratedSecret, GeneratedSecretArgs
from components.core.generated_ssh_key import GeneratedSshKey, GeneratedSshKeyArgs
from components.core.kubernetes_object import KubernetesObject
from components.core.layout import LABEL_PREFIX
from components.metal.k3s_cluster import NodeAccess
from components.platform.offsite_backup import (
    REPOSITORY_SERVICE,
    render_passwd_configmap,
    render_repository_policy,
    render_repository_service,
    render_rest_server,
    render_secret,
    secret_keys_for,
)
from components.platform.pinned_volume import PinnedVolume, PinnedVolumeArgs
from rack.config import Offsite

LABELS = {f"{LABEL_PREFIX}/backup": "offsite"}


@dataclass(frozen=True, kw_only=True)
class OffsiteNamespace:
    """A namespace whose pods copy off-node."""

    name: str
    """The namespace."""
    uid: int
    """The uid its copy pods run as (the /etc/passwd line)."""
    depends_on: Sequence[pulumi.Resource] = ()
    """What its objects wait for (the Namespace)."""


@dataclass(frozen=True, kw_only=True)
class OffsiteTargetArgs:
    offsite: Offsite
    """`rack.backup.offsite`."""
    namespaces: Sequence[OffsiteNamespace]
    """Where the copy pods run."""
    data_namespace: str
    """The data namespace (the in-cluster repository's, with `offsite.node`)."""
    password: pulumi.Input[str] | None = None
    """`homelab:backup-password`; None: generated on the first `up`."""
    credentials: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Secret key (`ssh-key`, `aws-access-key-id`, ...) -> the user's secret."""
    storage_path: str | None = None
    """With `offsite.node`: that node's storage.path."""
    node_access: NodeAccess | None = None
    """With `offsite.node`: SSH to it, so the volume's directory is made before use."""
    repository_clients: Sequence[dict[str, Any]] = ()
    """With `offsite.node`: pod peers admitted to the rest-server (the copy pods)."""


class OffsiteTarget(pulumi.ComponentResource):
    password: pulumi.Output[str]
    """The repositories' password (always a Pulumi secret)."""
    ssh_public_key: pulumi.Output[str] | None
    """With an sftp repository and a generated key: the line for the server's authorized_keys."""
    secrets: dict[str, KubernetesObject]
    """`backup-offsite` Secret per namespace."""
    passwd: dict[str, KubernetesObject]
    """`backup-offsite-passwd` ConfigMap per namespace."""
    volume: PinnedVolume | None
    """With `offsite.node`: the repository's volume."""
    server: KubernetesObject | None
    """With `offsite.node`: rest-server."""
    service: KubernetesObject | None
    """With `offsite.node`: its Service."""
    network_policy: KubernetesObject | None
    """With `offsite.node`: its allow-list."""

    def __init__(self, name: str, args: OffsiteTargetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:data:OffsiteTarget", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        offsite = args.offsite
        generated = GeneratedSecret(
            f"{name}-password", GeneratedSecretArgs(length=48, override=args.password), child
        )
        self.password = generated.value
        values: dict[str, pulumi.Output[str]] = {"password": self.password}
        self.ssh_public_key = None
        for key in secret_keys_for(offsite):
            if key == "password":
                continue
            if key == "ssh-key":
                ssh = GeneratedSshKey(
                    f"{name}-ssh-key",
                    GeneratedSshKeyArgs(comment="homelab-backup", override=args.credentials.get(key)),
                    child,
                )
                values[key] = ssh.private_key
                self.ssh_public_key = ssh.public_key
                continue
            if key not in args.credentials:
                raise ValueError(f"the off-node target needs the secret {key}")
            values[key] = pulumi.Output.secret(args.credentials[key])
        self.secrets, self.passwd = {}, {}
        for ns in args.namespaces:
            after = pulumi.ResourceOptions(parent=self, depends_on=list(ns.depends_on))
            self.secrets[ns.name] = KubernetesObject(
                f"{name}-secret-{ns.name}", render_secret(values, namespace=ns.name, labels=LABELS), after
            )
            self.passwd[ns.name] = KubernetesObject(
                f"{name}-passwd-{ns.name}",
                render_passwd_configmap(ns.uid, namespace=ns.name, labels=LABELS),
                after,
            )
        self.volume = self.server = self.service = self.network_policy = None
        if offsite.node is not None:
            if args.storage_path is None:
                raise ValueError("offsite.node needs its storage path")
            data = pulumi.ResourceOptions(parent=self, protect=True)
            self.volume = PinnedVolume(
                f"{name}-volume",
                PinnedVolumeArgs(
                    volume_name=REPOSITORY_SERVICE,
                    namespace=args.data_namespace,
                    node=offsite.node,
                    storage_path=args.storage_path,
                    size=offsite.size,
                    access=args.node_access,
                ),
                data,
            )
            self.service = KubernetesObject(
                f"{name}-service", render_repository_service(namespace=args.data_namespace), child
            )
            self.server = KubernetesObject(
                f"{name}-server",
                render_rest_server(offsite, namespace=args.data_namespace),
                pulumi.ResourceOptions(parent=self, depends_on=[self.volume.claim, self.service]),
            )
            self.network_policy = KubernetesObject(
                f"{name}-netpol",
                render_repository_policy(list(args.repository_clients), namespace=args.data_namespace),
                child,
            )
        self.register_outputs(
            {
                "ssh_public_key": self.ssh_public_key,
                "secrets": self.secrets,
                "passwd": self.passwd,
                "volume": self.volume,
                "server": self.server,
                "service": self.service,
                "network_policy": self.network_policy,
            }
        )
