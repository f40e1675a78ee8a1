"""Loading a rack: from Pulumi config (`pulumi up`) or straight from a stack file (the plan).

Creates nothing. Both paths end in `parse_rack`, so `pulumi up` and `make plan` accept and reject
exactly the same configs. Secrets are never read into the pydantic models: they stay
`pulumi.Output` secrets, or, in the plan, present-but-unknown secrets.
"""

from __future__ import annotations

import asyncio
import functools
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

from rack.config import ConfigError, Issue, Rack, format_loc, parse_rack, parse_repository, short_repr

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


MAX_STACK_FILE_BYTES = 256 * 1024
"""A stack file is a few KiB (the sample: 5 KiB); past this the loader does not parse it (PyYAML
reads ~0.3 MiB/s here, and every byte could become an error line)."""

MAX_DEPTH = 32
"""How deep a config value may nest; the rack's own keys go 6 deep."""

MAX_EXPANDED = 1_000_000
"""How many values and characters one config value may hold once YAML aliases are expanded:
PyYAML shares an aliased node instead of copying it, so a 1 KiB file of aliases of aliases (the
"billion laughs") stands for 10^9 values, which validation, error messages or JSON would expand."""


def shape_issues(value: Any, root: str) -> list[Issue]:
    """A value nested past MAX_DEPTH (or containing itself through an alias), text with a lone
    surrogate (`"\\ud800"`, which no encoder takes), or more than MAX_EXPANDED values and characters
    once aliases are expanded: one issue naming where; else none.

    Each shared node is measured once, so a bomb costs what its file costs."""
    sizes: dict[int, int] = {}

    def size(node: Any, loc: tuple[int | str, ...]) -> int:
        if isinstance(node, str) and not node.isascii():
            try:
                node.encode("utf-8")
            except UnicodeEncodeError as exc:  # "\ud800" in YAML or JSON: no character, nothing can print it
                raise _ShapeError(loc, f"holds {node[exc.start]!r}, half of a UTF-16 pair: not text") from None
        if isinstance(node, (str, bytes)):
            return 1 + len(node)
        if not isinstance(node, (dict, list, set)):
            return 1
        if id(node) in sizes:
            return sizes[id(node)]
        if len(loc) >= MAX_DEPTH:
            raise _ShapeError(
                loc, f"nested more than {MAX_DEPTH} levels deep (or an alias inside itself): not a rack value"
            )
        total = 1
        if isinstance(node, dict):
            for key, child in node.items():
                total += size(key, loc) + size(child, (*loc, key if isinstance(key, (int, str)) else str(key)))
        else:
            for i, child in enumerate(node):
                total += size(child, (*loc, i))
        sizes[id(node)] = total
        return total

    try:
        total = size(value, ())
    except _ShapeError as bad:
        return [Issue(format_loc(bad.loc, root), bad.message)]
    if total > MAX_EXPANDED:
        # name the smallest part holding the bulk: down into any child that holds over half of it
        node: Any = value
        loc: tuple[int | str, ...] = ()
        while True:
            children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
            big = [(k, c) for k, c in children if sizes.get(id(c), 0) * 2 > sizes[id(node)]]
            if not big:
                break
            key, node = big[0]
            loc = (*loc, key if isinstance(key, (int, str)) else str(key))
        return [
            Issue(
                format_loc(loc, root),
                f"holds {sizes.get(id(node), total)} values and characters once YAML aliases (*name) are "
                f"expanded, more than the {MAX_EXPANDED} a stack file may: write the values out",
            )
        ]
    return []


class _ShapeError(Exception):
    def __init__(self, loc: tuple[int | str, ...], message: str):
        self.loc = loc
        self.message = message


class _StackLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with the Python errors its constructors raise on values that look
    like ints, floats, booleans or timestamps but are not (`2001-13-45`, `!!int x`, `!!bool maybe`,
    5000-digit integers) turned into YAML errors with the line and column."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        # PyYAML composes recursively and scans flow nesting in quadratic time: 3000 `[` take
        # seconds and then hit Python's recursion limit; stop at a depth no rack comes near
        self._depth += 1
        try:
            if self._depth > 2 * MAX_DEPTH:
                problem = f"nested more than {2 * MAX_DEPTH} levels deep: not a stack file"
                raise yaml.composer.ComposerError(None, None, problem, self.peek_event().start_mark)
            return super().compose_node(parent, index)  # type: ignore[return-value]  # None only past the end
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # ValueError, KeyError (`!!bool maybe`), OverflowError, ...: all the value's
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this {tag} value: {exc}", node.start_mark
            ) from None


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
    try:
        raw = config.get_object(RACK_KEY)
    except pulumi.ConfigTypeError:
        raise ConfigError([Issue("homelab:rack", "must be a mapping of keys, got text that is not one")]) from None
    except RecursionError:
        too_deep = f"nested more than {MAX_DEPTH} levels deep: not a rack value"
        raise ConfigError([Issue("homelab:rack", too_deep)]) from None
    if raw is None:
        raise ConfigError([Issue("homelab:rack", "required: the stack config has no homelab:rack")])
    if shapes := shape_issues(raw, "rack"):
        raise ConfigError(shapes)
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
            with path.open("rb") as file:
                raw = file.read(MAX_STACK_FILE_BYTES + 1)
        except FileNotFoundError:
            raise ConfigError([Issue(str(path), "no such stack file")]) from None
        except OSError as exc:
            raise ConfigError([Issue(str(path), f"cannot be read: {exc.strerror or exc}")]) from None
        if len(raw) > MAX_STACK_FILE_BYTES:
            too_big = f"is larger than {MAX_STACK_FILE_BYTES // 1024} KiB: not a stack file (they are a few KiB)"
            raise ConfigError([Issue(str(path), too_big)])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            not_utf8 = f"is not UTF-8 text: byte {exc.start} (line {line}) is {raw[exc.start]:#04x}"
            raise ConfigError([Issue(str(path), not_utf8)]) from None
        try:
            stream = io.StringIO(text)
            stream.name = str(path)  # the marks of YAML errors name the file
            loader = _StackLoader(stream)
            try:
                data = loader.get_single_data() or {}
            finally:
                loader.dispose()
        except yaml.YAMLError as exc:
            raise ConfigError([Issue(str(path), f"is not valid YAML: {exc}")]) from None
        if not isinstance(data, dict) or not isinstance(data.get("config", {}), dict):
            raise ConfigError([Issue(str(path), "must be a mapping with a `config:` mapping")])
        odd = [key for key in (data.get("config") or {}) if not isinstance(key, str)]
        if odd:
            keys = ", ".join(short_repr(key) for key in odd[:5])
            raise ConfigError([Issue(f"{path}: config", f"keys must be text like `homelab:rack`, got {keys}")])
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
        shapes = [i for k, v in ours.items() for i in shape_issues(v, "rack" if k == RACK_KEY else f"{prefix}{k}")]
        if shapes:
            raise ConfigError(issues + shapes)
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
