"""The rack config (`homelab:rack`): strict pydantic models and the rules across keys.

Creates nothing. `parse_rack` is the one boundary: it turns the raw stack-config value into a
frozen `Rack`, or raises `ConfigError` carrying every problem found, each with its key path
(`rack.nodes[3].address`). Secrets never pass through these models (see `rack/loader.py`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
import reprlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal

from croniter import croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
)

from rack.k3s_releases import LATEST as LATEST_K3S
from rack.quantity import cpu_millis, memory_mib, storage_gib
from rack.vocabulary import Arch, Category, NodeClass, Role

# --- value types -------------------------------------------------------------------------------

_HOSTNAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$")
_K3S_VERSION = re.compile(r"^v1\.\d+\.\d+\+k3s\d+$")
_VERSION = re.compile(r"^\d+(\.\d+){1,2}$")
_IMAGE = re.compile(
    r"^(?:(?P<registry>[a-z0-9]([-a-z0-9.]*[a-z0-9])?(?::\d+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
_HOST_KEY = re.compile(r"^(?P<kind>[a-z0-9@.-]+) (?P<blob>[A-Za-z0-9+/]+={0,3})( .*)?$")
HOST_KEY_TYPES: dict[str, tuple[str, int] | None] = {
    "ssh-ed25519": None,
    "ecdsa-sha2-nistp256": ("nistp256", 65),
    "ecdsa-sha2-nistp384": ("nistp384", 97),
    "ecdsa-sha2-nistp521": ("nistp521", 133),
}
"""Host-key types a pin may have -> (curve, uncompressed point size) for ECDSA. Not `ssh-rsa`:
pulumi-command restricts the host-key algorithms to the pinned key's type (`HostKeyAlgorithms =
[key.Type()]`, connection.go v1.2.1), and an RSA key's type is `ssh-rsa`, i.e. SHA-1 signatures,
which OpenSSH 8.8 and later refuse by default (OpenSSH 8.8 release notes)."""
RSA_PIN = (
    "is an ssh-rsa pin, which cannot connect: pulumi-command restricts the host-key algorithms to "
    "the pinned key's type, and for RSA that is ssh-rsa (SHA-1 signatures), refused by OpenSSH 8.8 "
    "and later; pin the host's ed25519 key instead, read with `ssh-keyscan -t ed25519 <address>`"
)
_CRON = re.compile(r"^(@(hourly|daily|weekly|monthly)|(\S+\s+){4}\S+)$")
_ABS_PATH = re.compile(r"^/[^\0]*$")


def _hostname(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise ValueError(f"'{value}' is not an RFC 1123 hostname (lowercase letters, digits and '-', at most 63)")
    return value


def _domain(value: str) -> str:
    if not _DOMAIN.match(value):
        raise ValueError(f"'{value}' is not a DNS domain (e.g. lab.home.arpa)")
    return value


def _k3s_version(value: str) -> str:
    if not _K3S_VERSION.match(value):
        raise ValueError(f"'{value}' is not a pinned k3s release v1.X.Y+k3sN (e.g. {LATEST_K3S})")
    return value


def _version(value: str) -> str:
    if not _VERSION.match(value):
        raise ValueError(f"'{value}' is not a pinned version (e.g. 16.6 or 1.22.6)")
    return value


def _image(value: str) -> str:
    match = _IMAGE.match(value)
    if not match:
        raise ValueError(f"'{value}' is not an image reference (registry/name:tag)")
    if not match["tag"] and not match["digest"]:
        raise ValueError(f"'{value}' has no tag: pin a version (name:1.2.3) or a digest")
    if match["tag"] == "latest" and not match["digest"]:
        raise ValueError(f"'{value}' uses the tag 'latest': pin a version")
    return value


def image_registry(image: str) -> str | None:
    """The registry host of an image reference, as Docker and containerd read it: the first path
    component when it has a `.` or a `:` or is `localhost` (`git.lab.home.arpa/bible/api:1` ->
    `git.lab.home.arpa`), else None (Docker Hub: `nginx:1.27`, `grafana/grafana:11`)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def _cpu(value: str) -> str:
    cpu_millis(value)
    return value


def _memory(value: str) -> str:
    memory_mib(value)
    return value


def _ssh_strings(blob: bytes) -> list[bytes]:
    """The SSH wire-format strings (uint32 length + bytes) a public-key blob is made of (RFC 4253)."""
    out: list[bytes] = []
    while blob:
        if len(blob) < 4 or len(blob) < 4 + (n := int.from_bytes(blob[:4], "big")):
            raise ValueError("truncated")
        out.append(blob[4 : 4 + n])
        blob = blob[4 + n :]
    return out


def _host_key(value: str) -> str:
    """An OpenSSH public key line whose blob is the key it names, as pulumi-command parses it
    (`ssh.ParseAuthorizedKey`): a malformed pin would only fail at the first connection."""
    bad = "is not an OpenSSH public host key ('ssh-ed25519 AAAA...', from `ssh-keyscan -t ed25519 <address>`)"
    match = _HOST_KEY.match(value.strip())
    if not match:
        raise ValueError(bad)
    kind = match["kind"]
    if kind == "ssh-rsa":
        raise ValueError(RSA_PIN)
    if kind not in HOST_KEY_TYPES:
        raise ValueError(f"{bad}: type {kind} is not one of {', '.join(HOST_KEY_TYPES)}")
    try:
        parts = _ssh_strings(base64.b64decode(match["blob"], validate=True))
    except (ValueError, binascii.Error):
        raise ValueError(f"{bad}: its base64 is not a key") from None
    curve = HOST_KEY_TYPES[kind]
    want = [32] if curve is None else [len(curve[0]), curve[1]]
    if not parts or parts[0] != kind.encode() or [len(p) for p in parts[1:]] != want or (
        curve is not None and parts[1] != curve[0].encode()
    ):
        raise ValueError(f"{bad}: its base64 is not a {kind} key")
    return value.strip()


def _cron(value: str) -> str:
    if not _CRON.match(value.strip()) or not croniter.is_valid(value.strip()):
        raise ValueError(f"'{value}' is not a cron schedule (e.g. '15 3 * * *')")
    return value.strip()


@functools.lru_cache(maxsize=64)
def cron_period_seconds(schedule: str) -> int:
    """The longest gap between two runs of a cron schedule (UTC), over a year of its runs: what
    "one schedule period" means for an alert on a backup's age (`15 3 * * *` -> 86400). A year of
    croniter steps costs ~35 ms; the datasets mostly share one schedule, so it is walked once."""
    it = croniter(schedule, datetime(2026, 1, 1, tzinfo=UTC))
    previous = it.get_next(float)
    longest = 0.0
    for _ in range(2000):
        nxt = it.get_next(float)
        longest = max(longest, nxt - previous)
        previous = nxt
        if previous > 1798761600:  # 2027-01-01: a year of runs is enough
            break
    return int(longest)


def _abs_path(value: str) -> str:
    if not _ABS_PATH.match(value) or "/../" in f"{value}/":
        raise ValueError(f"'{value}' is not an absolute path")
    return value


_RETENTION = re.compile(r"^[1-9][0-9]{0,3}(d|w|y)$")
_INTERVAL = re.compile(r"^(?P<n>[1-9][0-9]{0,3})(?P<unit>s|m)$")
_HTTP_URL = re.compile(r"^https?://[^\s/?#]+(:[0-9]{1,5})?(/\S*)?$")


def _retention(value: str) -> str:
    if not _RETENTION.match(value):
        raise ValueError(f"'{value}' is not a retention period (e.g. 30d, 12w, 1y)")
    return value


def _interval(value: str) -> str:
    match = _INTERVAL.match(value)
    seconds = int(match["n"]) * (60 if match["unit"] == "m" else 1) if match else 0
    if not match or not 5 <= seconds <= 300:
        raise ValueError(f"'{value}' is not a scrape interval between 5s and 5m (e.g. 30s, 1m)")
    return value


def _http_url(value: str) -> str:
    if not _HTTP_URL.match(value):
        raise ValueError(f"'{value}' is not an http(s) URL (e.g. http://alertmanager.example:9093)")
    return value


@dataclass(frozen=True)
class RepositoryUrl:
    """A restic repository URL, taken apart (what the validation and the NetworkPolicy need)."""

    scheme: Literal["sftp", "s3", "rest"]
    host: str
    port: int
    user: str | None
    path: str
    url: str
    """The URL as written (restic's own syntax)."""

    def joined(self, leaf: str) -> str:
        """The repository of one dataset: `<url>/<leaf>` (one repository per dataset, so that
        their `forget --prune` runs never wait on each other's exclusive lock)."""
        return f"{self.url.rstrip('/')}/{leaf}"


_SFTP_SHORT = re.compile(r"^sftp:(?P<user>[a-z_][-a-z0-9_.]{0,31})@(?P<host>[A-Za-z0-9.-]+):(?P<path>/\S*)$")
_SFTP_LONG = re.compile(
    r"^sftp://(?P<user>[a-z_][-a-z0-9_.]{0,31})@(?P<host>[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?/(?P<path>/\S*)$"
)
_HTTP_REPO = re.compile(
    r"^(?P<scheme>s3|rest):(?P<proto>https?://)?(?P<userinfo>[^@/\s]*@)?(?P<host>[A-Za-z0-9.-]+)"
    r"(?::(?P<port>[0-9]{1,5}))?(?P<path>/\S*)?$"
)
REPOSITORY_EXAMPLES = "sftp:user@host:/path, s3:https://host/bucket/path or rest:http://host:8000/path"


def parse_repository(value: str) -> RepositoryUrl:
    """A restic repository URL of a kind the rack supports, else ValueError saying what is wrong."""
    m = _SFTP_SHORT.match(value) or _SFTP_LONG.match(value)
    if m:
        port = int(m.groupdict().get("port") or 22)
        if not 1 <= port <= 65535:
            raise ValueError(f"'{value}': port {port} is out of range")
        return RepositoryUrl("sftp", m["host"], port, m["user"], m["path"], value)
    if value.startswith("sftp:"):
        raise ValueError(f"'{value}' is not an sftp repository (sftp:user@host:/absolute/path)")
    m = _HTTP_REPO.match(value)
    if not m:
        raise ValueError(f"'{value}' is not a restic repository URL ({REPOSITORY_EXAMPLES})")
    if m["userinfo"]:
        raise ValueError(
            f"'{value}' carries credentials in the URL, which would sit in the stack file in clear text: "
            "give S3 keys as the secrets homelab:backup-s3-access-key-id / homelab:backup-s3-secret-access-key"
        )
    if m["scheme"] == "rest" and not m["proto"]:
        raise ValueError(f"'{value}' needs http:// or https:// after rest: (rest:http://host:8000/path)")
    if m["scheme"] == "s3" and not (m["path"] or "").strip("/"):
        raise ValueError(f"'{value}' names no bucket (s3:https://host/bucket/path)")
    https = (m["proto"] or "https://") == "https://"
    port = int(m["port"] or (443 if https else 80))
    if not 1 <= port <= 65535:
        raise ValueError(f"'{value}': port {port} is out of range")
    scheme: Literal["s3", "rest"] = "s3" if m["scheme"] == "s3" else "rest"
    return RepositoryUrl(scheme, m["host"], port, None, m["path"] or "/", value)


def _repository(value: str) -> str:
    parse_repository(value)
    return value


def _keep(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be at least 1 (got {value}): a retention of 0 would let restic forget every copy")
    return value


def _to_str(value: Any) -> Any:
    """YAML reads `cpu: 4` as an int; quantities are strings in the Kubernetes API."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _version_text(value: Any) -> Any:
    """YAML reads `version: 16.10` as the float 16.1: refuse it instead of pinning the wrong release."""
    if isinstance(value, float):
        raise ValueError(f'{value!r} is a YAML number, not a version: quote it ("{value}")')
    return _to_str(value)


def _ipv4(value: Any) -> Any:
    """An address written as text; pydantic alone would also take an int (3232238091)."""
    if isinstance(value, IPv4Address):
        return value
    if not isinstance(value, str):
        got = f"{type(value).__name__} {value!r}"
        raise ValueError(f"must be an IPv4 address written as text, e.g. 192.168.10.11 (got {got})")
    try:
        return IPv4Address(value)
    except ValueError:
        raise ValueError(f"'{value}' is not an IPv4 address (e.g. 192.168.10.11)") from None


def _cidr(value: Any) -> Any:
    """A network written as `address/prefix` with no host bits set (10.42.0.0/16)."""
    if isinstance(value, IPv4Network):
        return value
    if not isinstance(value, str):
        raise ValueError(f"must be an IPv4 CIDR like 10.42.0.0/16 (got {type(value).__name__} {value!r})")
    try:
        if "/" not in value:
            raise ValueError("no /prefix")
        return IPv4Network(value)
    except ValueError as exc:
        raise ValueError(f"'{value}' is not an IPv4 CIDR (e.g. 10.42.0.0/16): {exc}") from None


Hostname = Annotated[str, AfterValidator(_hostname)]
DnsLabel = Annotated[str, AfterValidator(_hostname)]
Domain = Annotated[str, AfterValidator(_domain)]
K3sVersion = Annotated[str, AfterValidator(_k3s_version)]
Version = Annotated[str, BeforeValidator(_version_text, json_schema_input_type=str), AfterValidator(_version)]
Image = Annotated[str, AfterValidator(_image)]
Cpu = Annotated[str, BeforeValidator(_to_str, json_schema_input_type=str | int | float), AfterValidator(_cpu)]
Memory = Annotated[str, BeforeValidator(_to_str, json_schema_input_type=str | int), AfterValidator(_memory)]
Size = Annotated[str, BeforeValidator(_to_str, json_schema_input_type=str | int), AfterValidator(_memory)]
Ipv4 = Annotated[IPv4Address, BeforeValidator(_ipv4, json_schema_input_type=IPv4Address)]
Cidr = Annotated[IPv4Network, BeforeValidator(_cidr, json_schema_input_type=IPv4Network)]
HostKey = Annotated[str, AfterValidator(_host_key)]
Cron = Annotated[str, AfterValidator(_cron)]
AbsPath = Annotated[str, AfterValidator(_abs_path)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
Retention = Annotated[str, AfterValidator(_retention)]
Interval = Annotated[str, AfterValidator(_interval)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Repository = Annotated[str, AfterValidator(_repository)]
Keep = Annotated[StrictInt, AfterValidator(_keep), Field(le=1000)]


class Datastore(StrEnum):
    SQLITE = "sqlite"
    ETCD = "etcd"


class InstallSource(StrEnum):
    ONLINE = "online"
    AIRGAP = "airgap"


class DatabaseKind(StrEnum):
    POSTGRES = "postgres"
    MYSQL = "mysql"
    REDIS = "redis"


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class Model(BaseModel):
    """Strict, frozen, kebab-case: an unknown key is an error, not a silent no-op."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=_kebab,
        populate_by_name=True,
        frozen=True,
        use_attribute_docstrings=True,
    )


# --- sections ----------------------------------------------------------------------------------


class Ssh(Model):
    user: str = "pi"
    """The login user on every Pi (pulumi-command would otherwise default to root)."""
    port: Port = 22
    """The SSH port on every Pi."""


class Install(Model):
    source: InstallSource = InstallSource.ONLINE
    """online: the official installer pinned to k3s.version | airgap: binary copied from airgap-dir."""
    airgap_dir: str | None = None
    """With source: airgap, the laptop folder holding `k3s-<arch>` binaries and `install.sh`."""


class Reserve(Model):
    cpu: Cpu = "250m"
    """CPU kept for the OS and the k3s agent (kubelet --system-reserved)."""
    memory: Memory = "512Mi"
    """Memory kept for the OS and the k3s agent (kubelet --system-reserved)."""


class Upgrade(Model):
    agents_at_once: Annotated[StrictInt, Field(ge=1, le=50)] = 1
    """Agents upgraded together, after the servers (one at a time); a batch starts once the last is Ready."""
    drain_timeout_seconds: Annotated[StrictInt, Field(ge=30, le=3600)] = 300
    """How long draining a node before its upgrade may take (evictions honour PodDisruptionBudgets)."""
    ready_timeout_seconds: Annotated[StrictInt, Field(ge=10, le=3600)] = 600
    """How long an upgraded node has to report Ready on the new version before the rollout stops."""


class K3s(Model):
    version: K3sVersion
    """Pinned k3s release v1.X.Y+k3sN; a change upgrades in place (see k3s.upgrade); a line past end of life warns."""
    datastore: Datastore = Datastore.SQLITE
    """sqlite: exactly one server | etcd: an odd number of servers (1, 3, 5)."""
    cluster_cidr: Cidr = IPv4Network("10.42.0.0/16")
    """The pod network."""
    service_cidr: Cidr = IPv4Network("10.43.0.0/16")
    """The Service network."""
    secrets_encryption: StrictBool = True
    """Encrypt Secrets at rest; can only be chosen at first install."""
    install: Install = Install()
    """Where the k3s binary comes from."""
    bootstrap_server: Hostname | None = None
    """The server that initialises the cluster; required with more than one server, never changes."""
    api_address: Ipv4 | None = None
    """The API address in the kubeconfig and tls-san (default: the bootstrap server's address)."""
    system_reserved: Reserve = Reserve()
    """Per node, kept out of what pods may request; the plan subtracts it from capacity."""
    upgrade: Upgrade = Upgrade()
    """How a version change rolls through the nodes: cordon, drain, upgrade, wait for Ready, uncordon."""


class Capacity(Model):
    cpu: Cpu
    """CPU cores of the node (`4`)."""
    memory: Memory
    """Memory of the node (`8Gi`)."""


class Storage(Model):
    path: AbsPath
    """Mounted filesystem where pinned volumes live."""
    size: Size
    """Its size; the volumes placed on the node must fit in it."""


class Node(Model):
    hostname: Hostname
    """RFC 1123 hostname; also the Kubernetes node name."""
    address: Ipv4
    """Static IPv4 address reached over SSH."""
    role: Role
    """server | agent."""
    node_class: NodeClass = Field(alias="class")
    """control-plane | general | reliable | experimental."""
    arch: Arch = Arch.ARM64
    """arm64 | amd64 | arm; checked on the host before install."""
    capacity: Capacity
    """What the node offers to pods before the system reserve."""
    host_key: HostKey | None = None
    """Optional: pin the node's SSH host key (ed25519 or ECDSA; `ssh-keyscan -t ed25519 <address>`)."""
    storage: Storage | None = None
    """Where pinned volumes live (reliable nodes)."""


class Dns(Model):
    upstream: list[Ipv4] = Field(
        default_factory=lambda: [IPv4Address("1.1.1.1"), IPv4Address("9.9.9.9")], min_length=1, max_length=3
    )
    """Resolvers CoreDNS forwards to (every node's k3s `resolv-conf`; the kubelet passes pods at most 3)."""
    records: dict[DnsLabel, Ipv4] = Field(default_factory=dict)
    """Extra names under `domain`, served by the cluster's CoreDNS."""
    address: Ipv4 | None = None
    """Optional: a node's address where the LAN asks for the names under `domain` (port 53; docs/lan-dns.md)."""


class Ingress(Model):
    controller: Literal["traefik"] = "traefik"
    """The k3s-bundled Traefik, configured through a HelmChartConfig."""
    address: Ipv4
    """Where *.domain resolves."""


class VolumeRef(Model):
    node: Hostname
    """The reliable node whose storage holds the volume."""
    size: Size
    """The volume's size."""


_RUNNER_LABEL = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*(:(host|docker://\S+))?$")


def _runner_label(value: str) -> str:
    if not _RUNNER_LABEL.match(value):
        raise ValueError(f"'{value}' is not a runner label (name, name:host or name:docker://image:tag)")
    image = value.split(":docker://", 1)[1] if ":docker://" in value else None
    if image is not None:
        _image(image)
    return value


RunnerLabel = Annotated[str, AfterValidator(_runner_label)]


def _backend_address(value: Any) -> Any:
    """A DNS name, which `rack.dns.records` must give an address (rack_problems), or an IPv4
    address as `_ipv4` reads one (text of digits and dots, or not text at all, is meant as one)."""
    if not isinstance(value, str) or re.fullmatch(r"[\d.]+", value):
        return _ipv4(value)
    if not (_HOSTNAME.match(value) or _DOMAIN.match(value)):
        raise ValueError(f"'{value}' is neither an IPv4 address nor a DNS name (e.g. 192.168.10.60 or minio)")
    return value


BackendAddress = Annotated[IPv4Address | str, BeforeValidator(_backend_address, json_schema_input_type=str)]


class StateBackend(Model):
    address: BackendAddress
    """Its IPv4 address, or a `rack.dns.records` name (`minio`, `minio.<domain>`): egress policies need addresses."""
    port: Port
    """The port the state backend listens on (9000 for MinIO's S3 API)."""


class Runners(Model):
    replicas: Annotated[StrictInt, Field(ge=0, le=20)] = 1
    """How many act_runner instances."""
    # renovate: datasource=docker depName=gitea/act_runner
    version: Version = "0.2.13"
    """act_runner release."""
    labels: list[RunnerLabel] = Field(default_factory=lambda: ["ubuntu-latest:docker://node:24-bookworm"])
    """Runner labels (`name:docker://image`)."""
    # renovate: datasource=docker depName=docker
    docker_version: Version = "28.5.2"
    """Release of the rootless Docker-in-Docker sidecar (`docker:<version>-dind-rootless`) that runs jobs."""
    # renovate: datasource=docker depName=moby/buildkit extractVersion=^v(?<version>\d+\.\d+\.\d+)-rootless$
    buildkit_version: Version = "0.29.0"
    """Release of the rootless BuildKit sidecar (`moby/buildkit:v<version>-rootless`) jobs build images with."""
    cpu: Cpu = "1"
    """CPU request (and limit) of each runner's job daemon."""
    memory: Memory = "2Gi"
    """Memory request (and limit) of each runner's job daemon."""
    work_size: Size = "10Gi"
    """Size limit of each runner's ephemeral work directory (job images, checkouts)."""
    state_backend: StateBackend | None = None
    """The Pulumi state server on the LAN (MinIO...): the one LAN address CI reaches besides the nodes and GPU host."""


class GiteaBackup(Model):
    schedule: Cron = "45 3 * * *"
    """When Gitea's files (repositories, LFS, packages, app.ini) are copied to `rack.backup.offsite` (cron, UTC)."""


class Gitea(Model):
    version: Version
    """Gitea release."""
    host: DnsLabel = "git"
    """Name under `domain` (git -> git.lab.home.arpa)."""
    volume: VolumeRef
    """Gitea's state on a pinned volume."""
    runners: Runners = Runners()
    """CI runners."""
    admin_user: Annotated[str, Field(pattern=r"^[a-z0-9][-a-z0-9_.]{1,38}$")] = "gitea-admin"
    """Login of the admin account (its password: secret gitea-admin-password, else generated)."""
    cpu: Cpu = "250m"
    """CPU request (and limit) of the Gitea pod."""
    memory: Memory = "512Mi"
    """Memory request (and limit) of the Gitea pod."""
    backup: GiteaBackup = GiteaBackup()
    """Copies of Gitea's volume (with `rack.backup.offsite`; its database is in PostgreSQL's dumps)."""


class Backup(Model):
    schedule: Cron = "15 3 * * *"
    """When the logical dump runs (cron, UTC); with `rack.backup.offsite` it is copied there right after."""
    keep: Annotated[StrictInt, Field(ge=1, le=365)] = 7
    """How many dumps are kept."""
    size: Size | None = None
    """Size of the backup volume beside the data volume on the same node (default: the database's size)."""


class Database(Model):
    version: Version
    """Pinned server version; a minor change updates in place, never replaces the volume; a change the server
    cannot make on its data (a PostgreSQL major, a MySQL series skipped or stepped down, Redis stepped down) is
    refused by preview and up."""
    node: Hostname
    """The reliable node holding its volume."""
    size: Size
    """Volume size."""
    cpu: Cpu = "250m"
    """CPU request (and limit)."""
    memory: Memory = "512Mi"
    """Memory request (and limit)."""
    backup: Backup = Backup()
    """Scheduled logical dumps."""
    vector: StrictBool = False
    """PostgreSQL only: run the pgvector image and enable the `vector` extension (similarity search)."""
    # renovate: datasource=docker depName=pgvector/pgvector extractVersion=^(?<version>\d+\.\d+\.\d+)-pg16$
    vector_version: Version = "0.8.6"
    """PostgreSQL only, with vector: the pgvector release (image pgvector/pgvector:<it>-pg<major>)."""


class Databases(Model):
    postgres: Database | None = None
    """PostgreSQL."""
    mysql: Database | None = None
    """MySQL."""
    redis: Database | None = None
    """Redis."""

    def configured(self) -> dict[DatabaseKind, Database]:
        return {kind: db for kind in DatabaseKind if (db := getattr(self, kind.value)) is not None}


class GpuContainer(Model):
    name: DnsLabel
    """Container name on the GPU host."""
    image: Image
    """Pinned image."""
    gpus: Annotated[str, Field(pattern=r"^(all|[0-9]+|device=[0-9a-zA-Z,:-]+)$")] = "all"
    """all | a count | device=<ids>."""
    port: Port
    """Port published on the host."""
    volumes: dict[AbsPath, AbsPath] = Field(default_factory=dict)
    """Host path -> container path."""
    health_path: Annotated[str, Field(pattern=r"^/")] = "/"
    """HTTP path the healthcheck polls."""
    health_cmd: list[str] | None = None
    """Exec-form probe run in the container instead of the default HTTP check (images without a shell)."""


class GpuService(Model):
    namespace: DnsLabel = "ai"
    """Namespace of the in-cluster Service."""
    name: DnsLabel = "inference"
    """Service name; also the name apps put in `uses`."""
    port: Port
    """Service port (a container's published port)."""


class GpuHost(Model):
    hostname: Hostname
    """The GPU machine's hostname (also a DNS record under `domain`)."""
    address: Ipv4
    """Its static address."""
    ssh_user: str = "ops"
    """SSH user with access to Docker."""
    ssh_port: Port = 22
    """SSH port of the GPU machine."""
    gpu_driver: Literal["nvidia", "cdi"] = "nvidia"
    """How containers get GPUs: nvidia (Container Toolkit hook) | cdi (CDI devices, Docker 25+)."""
    host_key: HostKey | None = None
    """Optional: pin its SSH host key (ed25519 or ECDSA; `ssh-keyscan -t ed25519 <address>`)."""
    containers: list[GpuContainer] = Field(default_factory=list)
    """Model servers."""
    service: GpuService
    """How pods reach it."""


class App(Model):
    name: DnsLabel
    """Deployment/Service name."""
    category: Category = Category.APPLICATION
    """infrastructure | application | data | experimental."""
    image: Image
    """Pinned image."""
    replicas: Annotated[StrictInt, Field(ge=1, le=100)] = 1
    """Pod count; 2 or more get a PodDisruptionBudget."""
    port: Port
    """Container port."""
    cpu: Cpu
    """CPU request."""
    memory: Memory
    """Memory request."""
    host: DnsLabel | None = None
    """Name under `domain` routed through the ingress."""
    uses: list[str] = Field(default_factory=list)
    """Databases / the GPU service it talks to (wires env and allows exactly this traffic)."""
    health_path: Annotated[str, Field(pattern=r"^/")] | None = None
    """HTTP path the readiness/liveness probes GET (default: a TCP connect to the port)."""
    wait: Literal["auto"] | StrictBool = "auto"
    """Does `pulumi up` wait for the rollout: true | false | auto (true, tolerating unpushed Gitea images)."""


GPU_EXPORTER_NAME = "dcgm-exporter"
GPU_EXPORTER_PORT = 9400
"""With monitoring and a gpu-host: the container name and port the DCGM exporter takes there."""


class Monitoring(Model):
    enabled: StrictBool = True
    """Off-switch: false keeps the section but builds nothing (a protected store still refuses deletion)."""
    node: Hostname
    """The reliable node whose storage holds the metrics store's pinned volume."""
    size: Size = "10Gi"
    """Size of the metrics store's volume (counted against the node's storage.size)."""
    retention: Retention = "30d"
    """How long metrics are kept (d, w or y: 30d, 12w, 1y)."""
    host: DnsLabel = "grafana"
    """Name of Grafana under `domain` (grafana -> grafana.lab.home.arpa), through the ingress."""
    # renovate: datasource=docker depName=grafana/grafana
    grafana_version: Version = "13.2.0"
    """Grafana release (image grafana/grafana:<version>)."""
    # renovate: datasource=docker depName=victoriametrics/victoria-metrics extractVersion=^v(?<version>\d+\.\d+\.\d+)$
    store_version: Version = "1.153.0"
    """VictoriaMetrics release of the store and of vmalert (images victoriametrics/*:v<version>)."""
    scrape_interval: Interval = "30s"
    """How often every target is scraped and every rule evaluated (5s to 5m)."""
    disk_alert_percent: Annotated[StrictInt, Field(ge=50, le=99)] = 85
    """A node filesystem fuller than this (percent) raises the NodeDiskFilling alert."""
    store_cpu: Cpu = "250m"
    """CPU request (and limit) of the metrics store."""
    store_memory: Memory = "512Mi"
    """Memory request (and limit) of the metrics store; its caches size themselves to 60% of it."""
    alertmanager_url: HttpUrl | None = None
    """Where vmalert sends firing alerts (an Alertmanager); unset: alerts stay in vmalert and Grafana."""


class OffsiteRetention(Model):
    daily: Keep = 7
    """Off-node copies kept one per day for this many days (restic forget --keep-daily)."""
    weekly: Keep = 4
    """...then one per week for this many weeks (--keep-weekly)."""
    monthly: Keep = 6
    """...then one per month for this many months (--keep-monthly)."""


class Offsite(Model):
    repository: Repository | None = None
    """restic repository off the data's node: sftp:user@host:/path, s3:https://host/bucket, rest:http://host:8000/."""
    node: Hostname | None = None
    """Instead of `repository`: another reliable node whose storage holds it (served by rest-server)."""
    size: Size = "50Gi"
    """With `node`: the size of the repository's pinned volume on that node."""
    host_key: HostKey | None = None
    """With an sftp repository: the server's SSH host key (`ssh-keyscan -t ed25519 <host>`); without it the plan
    warns and the copies accept whatever key the server shows."""
    retention: OffsiteRetention = OffsiteRetention()
    """How many off-node copies of each dataset are kept."""
    # renovate: datasource=docker depName=restic/restic
    restic_version: Version = "0.17.3"
    """restic release of the copy step (image restic/restic:<version>)."""
    # renovate: datasource=docker depName=restic/rest-server
    rest_server_version: Version = "0.13.0"
    """With `node`: rest-server release (image restic/rest-server:<version>)."""


class BackupSection(Model):
    offsite: Offsite | None = None
    """Encrypted, deduplicated copies of every dump and of Gitea's files off the data's node (restic)."""


@dataclass(frozen=True)
class BackupDataset:
    """One thing the rack backs up (derived from the config, not a key)."""

    name: str
    """postgres | mysql | redis | gitea: the metric's `dataset` label and the repository's leaf."""
    node: str
    """The node holding its data."""
    schedule: str
    """Its cron schedule (UTC)."""
    key: str
    """Its config section, for messages."""


class Rack(Model):
    domain: Domain
    """Every ingress host and DNS record lives under it."""
    ssh: Ssh = Ssh()
    """How to reach the Pis."""
    k3s: K3s
    """The cluster."""
    nodes: Annotated[list[Node], Field(min_length=1)]
    """The Pis."""
    dns: Dns = Dns()
    """CoreDNS settings."""
    ingress: Ingress
    """The ingress controller."""
    gitea: Gitea | None = None
    """Gitea and its runners."""
    databases: Databases = Databases()
    """Stateful services on pinned volumes."""
    gpu_host: GpuHost | None = None
    """The external GPU machine."""
    apps: list[App] = Field(default_factory=list)
    """The user's workloads."""
    monitoring: Monitoring | None = None
    """Metrics store, node/cluster/GPU exporters, alert rules and Grafana."""
    backup: BackupSection = BackupSection()
    """Where backups are copied off the node that holds the data."""
    failover_seconds: Annotated[StrictInt, Field(ge=10, le=300)] = 60
    """How long stateless pods wait on a not-ready/unreachable node before moving."""

    # -- derived views (pure) --

    def servers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == Role.SERVER]

    def node(self, hostname: str) -> Node | None:
        return next((n for n in self.nodes if n.hostname == hostname), None)

    def bootstrap(self) -> Node:
        """The explicit, stable bootstrap server (validated to exist)."""
        name = self.k3s.bootstrap_server or self.servers()[0].hostname
        node = self.node(name)
        assert node is not None, "validated by rack_problems"
        return node

    def backup_datasets(self) -> list[BackupDataset]:
        """What is backed up, each with its node and schedule: every database, and Gitea's volume
        when there is an off-node target (Gitea has no local dump)."""
        out = [
            BackupDataset(kind.value, db.node, db.backup.schedule, f"rack.databases.{kind.value}")
            for kind, db in self.databases.configured().items()
        ]
        if self.gitea is not None and self.backup.offsite is not None:
            out.append(BackupDataset("gitea", self.gitea.volume.node, self.gitea.backup.schedule, "rack.gitea"))
        return out

    def state_backend_ip(self) -> IPv4Address | None:
        """The runners' state backend as an address: an IP as written, a name through `dns.records`
        (None without one, or for a name the records do not hold: rack_problems reports that)."""
        backend = self.gitea.runners.state_backend if self.gitea is not None else None
        if backend is None:
            return None
        if isinstance(backend.address, IPv4Address):
            return backend.address
        label = backend.address.removesuffix(f".{self.domain}")
        return self.dns.records.get(label)

    def dns_node(self) -> Node | None:
        """The node at `dns.address`, where the LAN asks for the names under the domain (None
        without the key, or for an address no node has: rack_problems reports that)."""
        if self.dns.address is None:
            return None
        return next((n for n in self.nodes if n.address == self.dns.address), None)

    def registry_host(self) -> str | None:
        """The rack's own image registry, Gitea's (`<gitea.host>.<domain>`); None without Gitea."""
        return f"{self.gitea.host}.{self.domain}" if self.gitea is not None else None

    def service_names(self) -> list[str]:
        """Names an app may put in `uses`."""
        names = [k.value for k in self.databases.configured()]
        if self.gpu_host is not None:
            names.append(self.gpu_host.service.name)
        return names


# --- errors ------------------------------------------------------------------------------------


def clip(text: str, limit: int = 400) -> str:
    """Text cut to `limit` characters, keeping its start and its end (where a hint usually is)."""
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]} …({len(text) - limit + 40} characters left out)… {text[-(limit // 2 - 40) :]}"


def _visible(text: str) -> str:
    return "".join(c if c.isprintable() or c == "\n" else c.encode("unicode_escape").decode() for c in text)


@dataclass(frozen=True)
class Issue:
    path: str
    message: str

    def __post_init__(self) -> None:
        # a validator quotes what it refused: never a whole 200 KiB scalar, or a key as long; and
        # a control character shows as its escape (a terminal would drop `\b` and print `''`)
        object.__setattr__(self, "path", _visible(clip(self.path, 200)))
        object.__setattr__(self, "message", _visible(clip(self.message)))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """Every problem in a rack config, each naming its key path."""

    def __init__(self, issues: list[Issue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


_SHORT = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxset = 3, 4, 4, 4, 4
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 60


def short_repr(value: Any) -> str:
    """`repr` cut to a line: an error quotes what it got, never a 200 KiB scalar or an alias bomb."""
    try:
        return _SHORT.repr(value)
    except ValueError:  # an int past Python's 4300-digit limit for str() (YAML's 0b111... has none)
        return f"<a number of {value.bit_length()} bits>" if isinstance(value, int) else f"<a {type(value).__name__}>"


def format_loc(loc: tuple[int | str, ...], root: str = "rack") -> str:
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            path += " (key)"
        else:
            path += f".{part}"
    return path


def _pydantic_issues(exc: ValidationError, root: str) -> list[Issue]:
    issues = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p and p != "[key]"))
        kind = err["type"]
        if kind == "invalid_key" and loc:  # `1:` or `2001-01-01:` read by YAML as a number or date
            issues.append(Issue(format_loc(loc[:-1], root), f"has a key that is not text: {loc[-1]} (quote it)"))
            continue
        if kind == "extra_forbidden":
            message = "unknown key"
        elif kind == "missing":
            message = "required key is missing"
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            if kind in ("string_type", "int_type", "bool_type", "list_type", "dict_type", "model_type"):
                message += f" (got {type(err['input']).__name__} {short_repr(err['input'])})"
            elif kind in ("less_than_equal", "greater_than_equal", "enum", "literal_error", "string_pattern_mismatch"):
                message += f" (got {short_repr(err['input'])})"
        issues.append(Issue(format_loc(loc, root), message))
    return issues


def rack_problems(rack: Rack) -> list[Issue]:
    """The rules across keys that single fields cannot check."""
    issues: list[Issue] = []
    nodes = rack.nodes

    # identity
    for key in ("hostname", "address"):
        seen: dict[str, int] = {}
        for i, node in enumerate(nodes):
            value = str(getattr(node, key))
            if value in seen:
                issues.append(Issue(f"rack.nodes[{i}].{key}", f"'{value}' is also nodes[{seen[value]}].{key}"))
            else:
                seen[value] = i
    if rack.gpu_host is not None:
        for i, node in enumerate(nodes):
            if node.address == rack.gpu_host.address:
                issues.append(Issue("rack.gpu-host.address", f"'{node.address}' is also nodes[{i}].address"))
            if node.hostname == rack.gpu_host.hostname:
                issues.append(Issue("rack.gpu-host.hostname", f"'{node.hostname}' is also nodes[{i}].hostname"))

    # networks
    k3s = rack.k3s
    if k3s.cluster_cidr.overlaps(k3s.service_cidr):
        issues.append(Issue("rack.k3s.service-cidr", f"{k3s.service_cidr} overlaps cluster-cidr {k3s.cluster_cidr}"))
    for i, node in enumerate(nodes):
        for key, net in (("cluster-cidr", k3s.cluster_cidr), ("service-cidr", k3s.service_cidr)):
            if node.address in net:
                issues.append(Issue(f"rack.nodes[{i}].address", f"{node.address} is inside k3s.{key} {net}"))
    if rack.gpu_host is not None:
        for key, net in (("cluster-cidr", k3s.cluster_cidr), ("service-cidr", k3s.service_cidr)):
            if rack.gpu_host.address in net:
                issues.append(Issue("rack.gpu-host.address", f"{rack.gpu_host.address} is inside k3s.{key} {net}"))

    # servers and datastore
    servers = rack.servers()
    if not servers:
        issues.append(Issue("rack.nodes", "no node has role: server; a cluster needs one"))
    elif k3s.datastore == Datastore.SQLITE and len(servers) > 1:
        issues.append(
            Issue("rack.k3s.datastore", f"sqlite supports exactly one server, found {len(servers)}: use etcd")
        )
    elif k3s.datastore == Datastore.ETCD and len(servers) % 2 == 0:
        issues.append(
            Issue("rack.k3s.datastore", f"etcd needs an odd number of servers (1, 3, 5), found {len(servers)}")
        )
    if k3s.bootstrap_server is not None:
        boot = rack.node(k3s.bootstrap_server)
        if boot is None or boot.role != Role.SERVER:
            issues.append(Issue("rack.k3s.bootstrap-server", f"'{k3s.bootstrap_server}' is not a server node"))
    elif len(servers) > 1:
        issues.append(
            Issue(
                "rack.k3s.bootstrap-server",
                "required with more than one server: name the one that initialises the cluster",
            )
        )
    if k3s.install.source == InstallSource.AIRGAP and not k3s.install.airgap_dir:
        issues.append(Issue("rack.k3s.install.airgap-dir", "required with source: airgap"))
    for i, node in enumerate(nodes):
        if node.role == Role.SERVER and node.node_class != NodeClass.CONTROL_PLANE:
            issues.append(Issue(f"rack.nodes[{i}].class", "a server's class must be control-plane"))
        if node.role == Role.AGENT and node.node_class == NodeClass.CONTROL_PLANE:
            issues.append(
                Issue(
                    f"rack.nodes[{i}].class",
                    "control-plane is for servers; an agent is general, reliable or experimental",
                )
            )

    # volumes on reliable nodes
    volumes: list[tuple[str, str, str]] = []  # (path, node, size)
    if rack.gitea is not None:
        volumes.append(("rack.gitea.volume", rack.gitea.volume.node, rack.gitea.volume.size))
    for kind, db in rack.databases.configured().items():
        volumes.append((f"rack.databases.{kind.value}", db.node, db.size))
    if rack.monitoring is not None and rack.monitoring.enabled:
        volumes.append(("rack.monitoring", rack.monitoring.node, rack.monitoring.size))
    used: dict[str, float] = defaultdict(float)
    for path, hostname, size in volumes:
        target = rack.node(hostname)
        if target is None:
            issues.append(Issue(f"{path}.node", f"'{hostname}' is not a node in rack.nodes"))
        elif target.node_class != NodeClass.RELIABLE:
            issues.append(Issue(f"{path}.node", f"'{hostname}' is {target.node_class}, not reliable"))
        elif target.storage is None:
            issues.append(Issue(f"{path}.node", f"'{hostname}' has no storage: set nodes[].storage"))
        else:
            used[hostname] += storage_gib(size)
    for i, node in enumerate(nodes):
        if node.storage is not None and used[node.hostname] > storage_gib(node.storage.size):
            issues.append(
                Issue(
                    f"rack.nodes[{i}].storage.size",
                    f"volumes on {node.hostname} need {used[node.hostname]:g}Gi, storage.size is {node.storage.size}",
                )
            )

    issues += _offsite_problems(rack, used)

    # only PostgreSQL has a vector extension
    for kind, db in rack.databases.configured().items():
        if kind != DatabaseKind.POSTGRES and db.vector:
            issues.append(
                Issue(f"rack.databases.{kind.value}.vector", "only postgres has a vector extension (pgvector)")
            )

    # gitea keeps its metadata in the rack's PostgreSQL
    if rack.gitea is not None and rack.databases.postgres is None:
        issues.append(Issue("rack.gitea", "needs rack.databases.postgres: Gitea keeps its database there"))
    if rack.gitea is not None and rack.gitea.admin_user == "admin":
        issues.append(Issue("rack.gitea.admin-user", "'admin' is a name Gitea reserves: pick another"))

    # apps
    services = rack.service_names()
    seen_apps: dict[str, int] = {}
    has_experimental = any(n.node_class == NodeClass.EXPERIMENTAL for n in nodes)
    for i, app in enumerate(rack.apps):
        if app.name in seen_apps:
            issues.append(Issue(f"rack.apps[{i}].name", f"'{app.name}' is also apps[{seen_apps[app.name]}].name"))
        seen_apps.setdefault(app.name, i)
        for j, use in enumerate(app.uses):
            if use not in services:
                known = ", ".join(services) or "none configured"
                issues.append(
                    Issue(f"rack.apps[{i}].uses[{j}]", f"'{use}' is not a database or the GPU service (known: {known})")
                )
        if app.category == Category.EXPERIMENTAL and not has_experimental:
            issues.append(Issue(f"rack.apps[{i}].category", "experimental, but no node has class: experimental"))
        if app.category == Category.DATA:
            issues.append(
                Issue(
                    f"rack.apps[{i}].category",
                    "data workloads are the databases and Gitea; an app cannot pin a volume",
                )
            )
    for i, app in enumerate(rack.apps):
        if len(set(app.uses)) != len(app.uses):
            issues.append(Issue(f"rack.apps[{i}].uses", "lists a name twice"))
    # images from the rack's own registry need the Gitea that serves it
    default_registry = f"{Gitea.model_fields['host'].default}.{rack.domain}"
    if rack.gitea is None:
        for i, app in enumerate(rack.apps):
            if image_registry(app.image) == default_registry:
                issues.append(
                    Issue(
                        f"rack.apps[{i}].image",
                        f"'{app.image}' is in the rack's own registry {default_registry}, but rack.gitea is not "
                        "configured, so nothing serves it: add rack.gitea or use another registry",
                    )
                )

    # the LAN DNS address: ServiceLB answers only on node addresses, and not on a node whose
    # taint its pods do not tolerate (components/system/coredns_config.py)
    if rack.dns.address is not None:
        at = rack.dns_node()
        if at is None:
            problem = f"'{rack.dns.address}' is no node's address: k3s ServiceLB answers only there"
            issues.append(Issue("rack.dns.address", problem))
        elif at.node_class == NodeClass.EXPERIMENTAL:
            issues.append(
                Issue(
                    "rack.dns.address",
                    f"'{rack.dns.address}' is {at.hostname}, an experimental node: its taint keeps ServiceLB off it",
                )
            )

    # names under the domain
    claimed: dict[str, str] = {}

    def claim(name: str, path: str) -> None:
        if name in claimed:
            issues.append(Issue(path, f"'{name}.{rack.domain}' is already {claimed[name]}"))
        else:
            claimed[name] = path

    if rack.gpu_host is not None:
        claim(rack.gpu_host.hostname, "rack.gpu-host.hostname")
    for record in rack.dns.records:
        claim(record, f"rack.dns.records.{record}")
    if rack.gitea is not None:
        claim(rack.gitea.host, "rack.gitea.host")
    for i, app in enumerate(rack.apps):
        if app.host is not None:
            claim(app.host, f"rack.apps[{i}].host")
    if rack.monitoring is not None and rack.monitoring.enabled:
        claim(rack.monitoring.host, "rack.monitoring.host")

    # the runners' state backend: a NetworkPolicy allows addresses, so a name must be one the rack serves
    backend = rack.gitea.runners.state_backend if rack.gitea is not None else None
    if backend is not None and isinstance(backend.address, str) and rack.state_backend_ip() is None:
        issues.append(
            Issue(
                "rack.gitea.runners.state-backend.address",
                f"'{backend.address}' is not a name in rack.dns.records (a label, or the label under "
                f"{rack.domain}): the runners' egress policy needs its address; write the IP or add the record",
            )
        )

    # gpu host
    if rack.gpu_host is not None:
        gpu = rack.gpu_host
        seen_names: set[str] = set()
        seen_ports: set[int] = set()
        for i, c in enumerate(gpu.containers):
            if c.name in seen_names:
                issues.append(Issue(f"rack.gpu-host.containers[{i}].name", f"'{c.name}' is used twice"))
            if c.port in seen_ports:
                issues.append(Issue(f"rack.gpu-host.containers[{i}].port", f"port {c.port} is published twice"))
            seen_names.add(c.name)
            seen_ports.add(c.port)
        if gpu.service.port not in seen_ports:
            issues.append(
                Issue("rack.gpu-host.service.port", f"{gpu.service.port} is not the port of any gpu-host container")
            )
        if rack.monitoring is not None and rack.monitoring.enabled:
            for i, c in enumerate(gpu.containers):
                if c.name == GPU_EXPORTER_NAME:
                    issues.append(
                        Issue(f"rack.gpu-host.containers[{i}].name", f"'{c.name}' is monitoring's GPU exporter")
                    )
                if c.port == GPU_EXPORTER_PORT:
                    issues.append(
                        Issue(
                            f"rack.gpu-host.containers[{i}].port",
                            f"{c.port} is the port of monitoring's GPU exporter (dcgm-exporter)",
                        )
                    )
        if gpu.service.name in [k.value for k in rack.databases.configured()]:
            issues.append(Issue("rack.gpu-host.service.name", f"'{gpu.service.name}' is also a database name"))

    return issues


def _offsite_problems(rack: Rack, used: dict[str, float]) -> list[Issue]:
    """The off-node backup target: exactly one of repository/node, never on a dataset's node,
    a node the plan can place (known, reliable, with storage room), an sftp host key."""
    offsite = rack.backup.offsite
    if offsite is None:
        return []
    key = "rack.backup.offsite"
    issues: list[Issue] = []
    datasets = rack.backup_datasets()

    def same_node(hostname: str, where: str) -> None:
        for ds in datasets:
            if ds.node == hostname:
                issues.append(
                    Issue(
                        where,
                        f"'{hostname}' holds {ds.name}'s data ({ds.key}.node): a copy on the same node dies with "
                        "its disk; name another reliable node, a NAS, the GPU box or S3",
                    )
                )

    if (offsite.repository is None) == (offsite.node is None):
        issues.append(Issue(key, "set exactly one of repository (a restic URL) or node (a reliable node)"))
        return issues
    if offsite.node is not None:
        where = f"{key}.node"
        target = rack.node(offsite.node)
        if target is None:
            issues.append(Issue(where, f"'{offsite.node}' is not a node in rack.nodes"))
        elif target.node_class != NodeClass.RELIABLE:
            issues.append(Issue(where, f"'{offsite.node}' is {target.node_class}, not reliable"))
        elif target.storage is None:
            issues.append(Issue(where, f"'{offsite.node}' has no storage: set nodes[].storage"))
        else:
            same_node(offsite.node, where)
            used[offsite.node] += storage_gib(offsite.size)
            i = next(i for i, n in enumerate(rack.nodes) if n.hostname == offsite.node)
            if used[offsite.node] > storage_gib(target.storage.size):
                issues.append(
                    Issue(
                        f"rack.nodes[{i}].storage.size",
                        f"volumes on {offsite.node} need {used[offsite.node]:g}Gi (with {key}.size), "
                        f"storage.size is {target.storage.size}",
                    )
                )
        if offsite.host_key is not None:
            issues.append(Issue(f"{key}.host-key", "only for an sftp repository"))
        return issues
    assert offsite.repository is not None
    where = f"{key}.repository"
    repo = parse_repository(offsite.repository)
    names = {str(n.address): n for n in rack.nodes} | {n.hostname: n for n in rack.nodes}
    names |= {f"{n.hostname}.{rack.domain}": n for n in rack.nodes}
    node = names.get(repo.host)
    if node is not None:
        if node.node_class != NodeClass.RELIABLE:
            issues.append(Issue(where, f"'{repo.host}' is node {node.hostname}, {node.node_class}, not reliable"))
        same_node(node.hostname, where)
    if repo.scheme != "sftp" and offsite.host_key is not None:
        issues.append(Issue(f"{key}.host-key", "only for an sftp repository"))
    return issues


def parse_rack(raw: Any, root: str = "rack") -> Rack:
    """Validate the raw `homelab:rack` value: a `Rack`, or `ConfigError` with every problem."""
    if not isinstance(raw, dict):
        raise ConfigError([Issue(root, f"must be a mapping of keys, got {type(raw).__name__}")])
    try:
        rack = Rack.model_validate(raw, by_alias=True, by_name=False)  # YAML keys are kebab-case only
    except ValidationError as exc:
        raise ConfigError(_pydantic_issues(exc, root)) from None
    issues = rack_problems(rack)
    if issues:
        raise ConfigError(issues)
    return rack
