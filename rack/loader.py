"""Loading a rack: from Pulumi config (`pulumi up`) or straight from a stack file (the plan).

Creates nothing. Both paths end in `parse_rack`, so `pulumi up` and `make plan` accept and reject
exactly the same configs. Secrets are never read into the pydantic models: they stay
`pulumi.Output` secrets, or, in the plan, present-but-unknown secrets.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

from rack.config import ConfigError, Issue, Rack, parse_rack, parse_repository

PROJECT = "homelab"
RACK_KEY = "rack"

SECRET_KEYS: dict[str, str] = {
    "ssh-private-key": "SSH private key for the Pis (else the running ssh-agent)",
    "k3s-token": "k3s join token (else generated on first up)",
    "postgres-password": "PostgreSQL password (else generated)",
    "mysql-password": "MySQL password (else generated)",
    "redis-password": "Redis password (else generated)",
    "gitea-admin-password": "Gitea admin password (else generated)",
    "grafana-admin-password": "Grafana admin password (else generated)",
    "backup-password": "password of the off-node restic repositories (else generated; keep a copy off the rack)",
    "backup-ssh-key": (
        "SSH key for an sftp backup repository (else generated: put the stack output "
        "backup_ssh_public_key in the server's authorized_keys)"
    ),
    "backup-s3-access-key-id": "access key id of an s3 backup repository (required with one)",
    "backup-s3-secret-access-key": "secret access key of an s3 backup repository (required with one)",
}
"""Optional secrets beside `homelab:rack`; each is `pulumi config set --secret homelab:<key>`."""

OPTION_KEYS: dict[str, str] = {
    "skip-layers": "layers left out of this run (e.g. [gpu] where pulumi-resource-docker is missing)",
}
"""Non-secret settings beside `homelab:rack` that are not part of the rack itself."""

SKIPPABLE_LAYERS: tuple[str, ...] = ("gpu",)
"""The layers `homelab:skip-layers` may name."""

@dataclass(frozen=True)
class ConfigWarning:
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


@dataclass(frozen=True)
class RackSecrets:
    """The optional secrets: for each key present, a factory of its `pulumi.Output` (secret).

    Factories, because Outputs can only exist inside a running Pulumi program."""

    present: dict[str, Callable[[], pulumi.Output[str]]] = field(default_factory=dict)

    def get(self, key: str) -> pulumi.Output[str] | None:
        if key not in SECRET_KEYS:
            raise KeyError(key)
        factory = self.present.get(key)
        return factory() if factory is not None else None


@dataclass(frozen=True)
class Loaded:
    """A validated rack with everything that rides along with it."""

    rack: Rack
    secrets: RackSecrets
    skip_layers: frozenset[str] = frozenset()
    warnings: tuple[ConfigWarning, ...] = ()


def missing_secret_warnings(secret_keys: set[str], env: dict[str, str] | None = None) -> list[ConfigWarning]:
    """Secrets the program cannot generate: today only the SSH identity (key or agent)."""
    env = dict(os.environ) if env is None else env
    out = []
    if "ssh-private-key" not in secret_keys and not env.get("SSH_AUTH_SOCK"):
        out.append(
            ConfigWarning(
                "homelab:ssh-private-key",
                "no SSH key and no ssh-agent: run `pulumi config set --secret homelab:ssh-private-key "
                "< ~/.ssh/id_ed25519` or start ssh-agent and `ssh-add` the key",
            )
        )
    return out


def unpinned_host_warnings(rack: Rack) -> list[ConfigWarning]:
    """An sftp backup target without `host-key`: the copies cannot verify the server (restic's
    encryption still keeps the data from it, but a stranger could take the copies' place)."""
    offsite = rack.backup.offsite if rack.backup is not None else None
    if offsite is None or offsite.repository is None or offsite.host_key is not None:
        return []
    repo = parse_repository(offsite.repository)  # validated with the rack: it parses
    if repo.scheme != "sftp":
        return []
    return [
        ConfigWarning(
            "rack.backup.offsite.host-key",
            f"not set: the backup copies accept whatever key {repo.host} shows; pin it with the output of "
            f"`ssh-keyscan -t ed25519 {'-p ' + str(repo.port) + ' ' if repo.port != 22 else ''}{repo.host}`",
        )
    ]


REPOSITORY_SECRETS: dict[str, tuple[str, ...]] = {
    "sftp": (),
    "s3": ("backup-s3-access-key-id", "backup-s3-secret-access-key"),
    "rest": (),
}
"""The secrets each kind of off-node repository needs to be reached."""


def required_secret_issues(rack: Rack, secret_keys: set[str]) -> list[Issue]:
    """Secrets the rack cannot work without (the program cannot generate them)."""
    offsite = rack.backup.offsite
    if offsite is None or offsite.repository is None:
        return []
    scheme = parse_repository(offsite.repository).scheme
    return [
        Issue(
            f"{PROJECT}:{key}",
            f"required with a {scheme} backup repository (rack.backup.offsite.repository): "
            f"`pulumi config set --secret {PROJECT}:{key}`",
        )
        for key in REPOSITORY_SECRETS[scheme]
        if key not in secret_keys
    ]


@dataclass(frozen=True)
class Options:
    skip_layers: frozenset[str] = frozenset()


def _options(raw: dict[str, Any]) -> Options:
    """The settings of OPTION_KEYS from their raw values (absent keys take their defaults)."""
    issues = []
    layers = raw.get("skip-layers") or []
    valid = set(SKIPPABLE_LAYERS)
    if not isinstance(layers, list) or not all(isinstance(x, str) and x in valid for x in layers):
        issues.append(Issue("homelab:skip-layers", f"must be a list of layer names from {sorted(valid)}"))
        layers = []
    if issues:
        raise ConfigError(issues)
    return Options(frozenset(layers))


def load_from_pulumi() -> Loaded:
    """Inside `pulumi up`/`preview`: read `homelab:rack`, the options and the optional secrets."""
    config = pulumi.Config(PROJECT)
    raw = config.get_object(RACK_KEY)
    if raw is None:
        raise ConfigError([Issue("homelab:rack", "required: the stack config has no homelab:rack")])
    rack = parse_rack(raw)
    present_keys = {key for key in SECRET_KEYS if config.get(key) is not None}
    missing = required_secret_issues(rack, present_keys)
    if missing:
        raise ConfigError(missing)
    raw_options: dict[str, Any] = {
        "skip-layers": config.get_object("skip-layers"),
    }
    options = _options({k: v for k, v in raw_options.items() if v is not None})
    present: dict[str, Callable[[], pulumi.Output[str]]] = {
        key: functools.partial(config.require_secret, key) for key in sorted(present_keys)
    }
    warnings = tuple(missing_secret_warnings(set(present)) + unpinned_host_warnings(rack))
    return Loaded(rack, RackSecrets(present), options.skip_layers, warnings)


def unknown_secret() -> pulumi.Output[str]:
    """A secret whose value is not known (a `secure:` value the plan cannot decrypt)."""
    loop = asyncio.get_event_loop()

    def resolved(value: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = loop.create_future()
        fut.set_result(value)
        return fut

    return pulumi.Output(set(), resolved(None), resolved(False), resolved(True))


@dataclass(frozen=True)
class StackFile:
    """A `Pulumi.<stack>.yaml` read without the CLI."""

    path: Path
    stack: str
    config: dict[str, Any]

    @classmethod
    def read(cls, path: Path) -> StackFile:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError([Issue(str(path), "no such stack file")]) from None
        except yaml.YAMLError as exc:
            raise ConfigError([Issue(str(path), f"is not valid YAML: {exc}")]) from None
        if not isinstance(data, dict) or not isinstance(data.get("config", {}), dict):
            raise ConfigError([Issue(str(path), "must be a mapping with a `config:` mapping")])
        stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml").removesuffix(".yml")
        return cls(path, stack, data.get("config") or {})

    def load(self) -> Loaded:
        prefix = f"{PROJECT}:"
        ours = {k.removeprefix(prefix): v for k, v in self.config.items() if k.startswith(prefix)}
        unknown = sorted(set(ours) - {RACK_KEY} - set(SECRET_KEYS) - set(OPTION_KEYS))
        issues = [Issue(f"{prefix}{k}", "unknown config key") for k in unknown]
        for key in SECRET_KEYS:
            value = ours.get(key)
            if value is not None and not (isinstance(value, dict) and set(value) == {"secure"}):
                issues.append(Issue(f"{prefix}{key}", f"must be a secret: `pulumi config set --secret {prefix}{key}`"))
        if RACK_KEY not in ours:
            issues.append(Issue(f"{prefix}{RACK_KEY}", "required: the stack file has no homelab:rack"))
        rack: Rack | None = None
        try:
            rack = parse_rack(ours.get(RACK_KEY)) if RACK_KEY in ours else None
        except ConfigError as exc:
            issues.extend(exc.issues)
        options = Options()
        try:
            options = _options(ours)
        except ConfigError as exc:
            issues.extend(exc.issues)
        present_keys = {k for k in SECRET_KEYS if k in ours}
        if rack is not None:
            issues.extend(required_secret_issues(rack, present_keys))
        if issues or rack is None:
            raise ConfigError(issues)
        secrets = RackSecrets({k: unknown_secret for k in present_keys})
        warnings = tuple(missing_secret_warnings(present_keys) + unpinned_host_warnings(rack))
        return Loaded(rack, secrets, options.skip_layers, warnings)
