"""The rack's registry path with real parts: the registries.yaml every node gets, read the way k3s
hands it to containerd, pulls an image over TLS with basic auth; a wrong password or CA does not.

Real: Debian's `docker-registry` (distribution v2) serving TLS with a chain made here by the
openssl CLI and htpasswd (bcrypt, apache2-utils' `htpasswd`) auth; `skopeo` pushing an image;
Debian's `containerd` pulling it through its CRI image service, as the kubelet asks it to for a
pod without imagePullSecrets (`runtime.v1.ImageService/PullImage`, no auth in the request).
Double: k3s' rendering of registries.yaml into containerd's config (`k3s_render_containerd`,
below), written after k3s' own templates: `configs.<host>.auth` into config.toml's
`plugins."io.containerd.grpc.v1.cri".registry.configs."<host>".auth` with `config_path` set to
the hosts directory, and `configs.<host>.tls.ca_file` into `certs.d/<host>/hosts.toml` as the
default endpoint's `ca` (k3s pkg/agent/templates; pkg/agent/containerd/config.go and its tests).
k3s itself is not packaged for Debian.

Everything runs inside a network namespace made here, whose /etc/hosts (`ip netns exec` mounts
/etc/netns/<ns>/hosts over it) names the registry `git.rack.test` at 127.0.0.1: the image is
`git.rack.test/bible/hello:1.0.0`, as in production, the registry on the namespace's own port
443. Servers and the namespace are removed afterwards, also on failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from components.apps.app_workload import NOT_IN_REGISTRY
from components.ci.gitea import PULL_USER
from components.metal.k3s_scripts import REGISTRY_CA_PATH, HostLayout, render_registries
from tests.prereq import need, unmet

pytestmark = [pytest.mark.realregistry]

HOST = "git.rack.test"
IMAGE = f"{HOST}/bible/hello:1.0.0"
PUSHER = "ci-pusher"
PULL_PASSWORD = "pull-pw-4b1e9c"
PUSH_PASSWORD = "push-pw-77aa01"
OCI = "application/vnd.oci.image"


def run(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False, **kw)


# --- the chain ---------------------------------------------------------------------------------


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    result = run(
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return key, cert


def make_server_cert(directory: Path, ca_key: Path, ca_cert: Path, host: str) -> tuple[Path, Path]:
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text(f"subjectAltName=DNS:{host}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")
    result = run(
        "openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={host}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = run(
        "openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return key, cert


# --- an image built here: busybox-static's binary in one layer ---------------------------------


def build_oci_layout(directory: Path) -> str:
    """An OCI image layout with one layer holding /bin/busybox; returns its config's digest
    (what the CRI reports as the pulled image's id)."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layer_tar = directory.parent / "layer.tar"
    with tarfile.open(layer_tar, "w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")

    def put(data: bytes) -> tuple[str, int]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return f"sha256:{digest}", len(data)

    layer, layer_size = put(layer_tar.read_bytes())
    config, config_size = put(
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Entrypoint": ["/bin/busybox"], "Cmd": ["true"]},
                "rootfs": {"type": "layers", "diff_ids": [layer]},
            }
        ).encode()
    )
    manifest, manifest_size = put(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": f"{OCI}.config.v1+json", "digest": config, "size": config_size},
                "layers": [{"mediaType": f"{OCI}.layer.v1.tar", "digest": layer, "size": layer_size}],
            }
        ).encode()
    )
    index = {
        "schemaVersion": 2,
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest, "size": manifest_size}
        ],
    }
    (directory / "index.json").write_text(json.dumps(index))
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return config


# --- the k3s double: registries.yaml -> containerd's config ------------------------------------


def k3s_render_containerd(registries_yaml: str, directory: Path) -> Path:
    """TEST DOUBLE of k3s' agent: containerd's config.toml and hosts directory from a
    registries.yaml, as k3s renders them at start. Returns the config.toml path."""
    registries = yaml.safe_load(registries_yaml)
    assert set(registries) <= {"mirrors", "configs"}, registries
    hosts = directory / "certs.d"
    hosts.mkdir()
    lines = [
        "version = 2",
        f'root = "{directory / "root"}"',
        f'state = "{directory / "state"}"',
        "[grpc]",
        f'  address = "{directory / "containerd.sock"}"',
        '[plugins."io.containerd.grpc.v1.cri"]',
        # No cgroups or AppArmor in a test container; pulls need neither.
        "  disable_cgroup = true",
        "  disable_apparmor = true",
        '[plugins."io.containerd.grpc.v1.cri".containerd]',
        '  snapshotter = "native"',
        '[plugins."io.containerd.grpc.v1.cri".registry]',
        f'  config_path = "{hosts}"',
    ]
    for host, config in sorted((registries.get("configs") or {}).items()):
        auth = config.get("auth")
        if auth:
            lines.append(f'[plugins."io.containerd.grpc.v1.cri".registry.configs."{host}".auth]')
            lines += [f"  {key} = {json.dumps(auth[key])}" for key in ("username", "password") if auth.get(key)]
        tls = config.get("tls") or {}
        # hosts.toml: k3s makes a `configs` entry without a mirror the host's default endpoint
        # `https://<host>/v2` carrying the entry's TLS settings (config.go getHostConfigs, "private
        # registry with only creds"), written as `server` with its `ca`. Debian's containerd 1.6
        # refuses a hosts.toml without a `[host]` table ("invalid `host` tree"), so the same
        # endpoint is written once more as one, with the same settings: every attempt carries
        # the CA, as with k3s' file on its own containerd.
        settings = ['capabilities = ["pull", "resolve"]']
        if tls.get("ca_file"):
            settings.append(f"ca = [{json.dumps(tls['ca_file'])}]")
        host_lines = [f'server = "https://{host}/v2"', *settings, "", f'[host."https://{host}/v2"]']
        host_lines += [f"  {line}" for line in settings]
        (hosts / host).mkdir()
        (hosts / host / "hosts.toml").write_text("\n".join(host_lines) + "\n")
    config_path = directory / "config.toml"
    config_path.write_text("\n".join(lines) + "\n")
    return config_path


# --- CRI over gRPC -----------------------------------------------------------------------------


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2)."""
    key, size, out = (number << 3) | 2, len(payload), b""
    out += bytes([key])
    while True:
        byte, size = size & 0x7F, size >> 7
        out += bytes([byte | 0x80]) if size else bytes([byte])
        if not size:
            return out + payload


def cri_pull(socket: Path, image: str) -> str:
    """`PullImage` of the CRI image service, as the kubelet sends it for a pod without
    imagePullSecrets: `PullImageRequest{image: ImageSpec{image}}`, no auth. Returns the image
    ref containerd reports (`PullImageResponse.image_ref`, field 1)."""
    request = _field(1, _field(1, image.encode()))
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        pull = channel.unary_unary(
            "/runtime.v1.ImageService/PullImage",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        response: bytes = pull(request, timeout=60)
    assert response[0] == (1 << 3) | 2, response
    return response[2 : 2 + response[1]].decode()


# --- the namespace and the servers -------------------------------------------------------------


@dataclass
class Registry:
    netns: str
    directory: Path
    ca_cert: Path
    other_ca_cert: Path
    image_id: str

    def exec(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *args]


@contextlib.contextmanager
def started(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(check: Any, what: str, log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come up: {log.read_text()[-1500:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    for binary, package in (
        ("docker-registry", "docker-registry"),
        ("containerd", "containerd"),
        ("skopeo", "skopeo"),
        ("htpasswd", "apache2-utils"),
        ("openssl", "openssl"),
    ):
        need(binary, package)
    need("ip", "iproute2", root=True)
    if not os.path.exists("/bin/busybox"):
        unmet("/bin/busybox not found: apt-get install busybox-static")
    directory = tmp_path_factory.mktemp("registry")
    ca_key, ca_cert = make_ca(directory, "rack-ca")
    _, other_ca_cert = make_ca(directory, "other-ca")
    server_key, server_cert = make_server_cert(directory, ca_key, ca_cert, HOST)
    htpasswd = directory / "htpasswd"
    for i, (user, password) in enumerate(((PUSHER, PUSH_PASSWORD), (PULL_USER, PULL_PASSWORD))):
        flags = "-Bbc" if i == 0 else "-Bb"
        result = run("htpasswd", flags, str(htpasswd), user, password)
        assert result.returncode == 0, result.stderr
    (directory / "store").mkdir()
    config = {
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": str(directory / "store")}},
        "http": {"addr": "127.0.0.1:443", "tls": {"certificate": str(server_cert), "key": str(server_key)}},
        "auth": {"htpasswd": {"realm": "rack", "path": str(htpasswd)}},
    }
    (directory / "registry.yml").write_text(yaml.safe_dump(config))
    image_id = build_oci_layout(directory / "image")

    netns = f"rackreg-{uuid.uuid4().hex[:8]}"
    etc = Path("/etc/netns") / netns
    assert run("ip", "netns", "add", netns).returncode == 0
    try:
        etc.mkdir(parents=True)
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.0.1 {HOST}\n")
        assert run("ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up").returncode == 0
        reg = Registry(netns, directory, ca_cert, other_ca_cert, image_id)
        log = directory / "registry.log"
        with started(reg.exec("docker-registry", "serve", str(directory / "registry.yml")), log):
            probe = reg.exec("openssl", "s_client", "-connect", f"{HOST}:443", "-CAfile", str(ca_cert))
            wait_until(
                lambda: run(*probe, input="").returncode == 0,
                "docker-registry",
                log,
            )
            certs = directory / "push-certs"
            certs.mkdir()
            shutil.copy(ca_cert, certs / "ca.crt")
            push = run(
                *reg.exec(
                    "skopeo", "copy", "--dest-creds", f"{PUSHER}:{PUSH_PASSWORD}", "--dest-cert-dir", str(certs),
                    f"oci:{directory / 'image'}", f"docker://{IMAGE}",
                )
            )  # fmt: skip
            assert push.returncode == 0, push.stderr
            yield reg
    finally:
        run("ip", "netns", "pids", netns)
        run("ip", "netns", "del", netns)
        shutil.rmtree(etc, ignore_errors=True)


class PullError(Exception):
    """containerd refused the pull (the CRI's error message)."""


def node_pull(reg: Registry, name: str, *, password: str, ca_pem: bytes, image: str = IMAGE) -> str:
    """One node: the registries.yaml the program renders (its CA file written where it names it),
    containerd started from what k3s makes of it, one CRI pull. Returns the image ref, or raises
    the pull's gRPC error."""
    node = reg.directory / name
    node.mkdir()
    layout = HostLayout(root=str(node))
    Path(layout.path(REGISTRY_CA_PATH)).parent.mkdir(parents=True)
    Path(layout.path(REGISTRY_CA_PATH)).write_bytes(ca_pem)
    text = render_registries(host=HOST, username=PULL_USER, password=password, ca_file=REGISTRY_CA_PATH, layout=layout)
    config = k3s_render_containerd(text, node)
    socket = node / "containerd.sock"
    log = node / "containerd.log"
    with started(reg.exec("containerd", "--config", str(config)), log):
        wait_until(socket.exists, "containerd", log)
        try:
            return cri_pull(socket, image)
        except grpc.RpcError as exc:
            raise PullError(str(exc.details())) from None


def test_a_node_pulls_with_the_rendered_credentials_and_ca(registry: Registry) -> None:
    ref = node_pull(registry, "good", password=PULL_PASSWORD, ca_pem=registry.ca_cert.read_bytes())
    # The id of the image pushed: the digest of the config blob built above.
    assert ref == registry.image_id


def test_a_wrong_password_is_refused(registry: Registry) -> None:
    with pytest.raises(PullError, match="401 Unauthorized"):
        node_pull(registry, "bad-password", password="not-" + PULL_PASSWORD, ca_pem=registry.ca_cert.read_bytes())


def test_a_registry_certificate_from_another_ca_is_refused(registry: Registry) -> None:
    with pytest.raises(PullError, match="x509: certificate signed by unknown authority"):
        node_pull(registry, "bad-ca", password=PULL_PASSWORD, ca_pem=registry.other_ca_cert.read_bytes())


def test_a_tag_nobody_pushed_reads_as_not_in_the_registry(registry: Registry) -> None:
    """The wording the rollout report of `wait: auto` apps tells "not pushed yet" by, from the
    other pull errors above."""
    with pytest.raises(PullError) as error:
        node_pull(
            registry,
            "not-pushed",
            password=PULL_PASSWORD,
            ca_pem=registry.ca_cert.read_bytes(),
            image=f"{HOST}/bible/hello:9.9.9",
        )
    assert NOT_IN_REGISTRY in str(error.value)
    assert "401" not in str(error.value) and "x509" not in str(error.value)
