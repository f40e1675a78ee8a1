"""The k3s double (lab/k3s-double) refuses what k3s refuses: each join contract broken once.

The double runs as the program's air-gap path installs it (make-airgap.sh stamps it) in a
directory-rooted host under tmp_path, without systemd (it starts once in the foreground). No lab
is needed: the server a lab agent validates is lab/k3s-supervisor.py on loopback, started here. Upstream behaviour,
and where it is stated:
- `k3s agent` passes every config.yaml key to its flag parser: an unknown key fails the start
  (k3s-io/k3s pkg/configfilearg/defaultparser.go: ValidFlags covers only `server` and
  `etcd-snapshot`; `k3s server` warns "Unknown flag ... skipping" instead, parser.go
  stripInvalidFlags). The key list: lab/k3s-double/flags-agent.txt (docs.k3s.io/cli/agent).
- registries.yaml is YAML with the top-level keys `mirrors` and `configs`
  (docs.k3s.io/installation/private-registry); a file that does not parse fails the start.
- the token's password must match the server's (agents present user `node`; k3s docs cli/token).
- the `server:` URL is dialled first: `GET /cacerts`, the server's certificate validated against
  the bundle it serves, a full token's hash compared with the sha256 of those bytes, each failure
  "Failed to validate connection to cluster at <url>: ..." (k3s-io/k3s pkg/clientaccess/token.go
  getCACerts, validateCAHash; pkg/agent/config; docs.k3s.io/cli/token, "TLS Bootstrapping").
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k3s_supervisor import free_port, make_pki, supervisor, token
from tests.prereq import need

REPO = Path(__file__).resolve().parents[3]
DOUBLE = REPO / "lab" / "k3s-double"
SERVER_SECRET = "contract-server-secret-0f3b"
AGENT_SECRET = "contract-agent-secret-77c1"


def _host(tmp: Path, name: str, env: str) -> Path:
    airgap = tmp / "airgap"
    if not (airgap / "k3s-amd64").exists():
        subprocess.run(["sh", str(DOUBLE / "make-airgap.sh"), str(airgap), "v1.35.8+k3s1"], check=True)
    root = tmp / name
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "etc/rancher/k3s").mkdir(parents=True)
    (root / "usr/local/bin/k3s").write_bytes((airgap / "k3s-amd64").read_bytes())
    (root / "usr/local/bin/k3s").chmod(0o755)
    (root / "etc/k3s-double.env").write_text(env)
    return root


def _configure(root: Path, config: str, token: str, registries: str | None = None) -> None:
    (root / "etc/rancher/k3s/join-token").write_text(token + "\n")
    (root / "etc/rancher/k3s/config.yaml").write_text(config.format(root=root))
    if registries is not None:
        (root / "etc/rancher/k3s/registries.yaml").write_text(registries)


def _start(root: Path, role: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(root / "usr/local/bin/k3s"), role],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


AGENT_CONFIG = """\
node-name: agent-1
node-ip: 10.0.0.21
server: https://10.0.0.11:6443
token-file: {root}/etc/rancher/k3s/join-token
node-label:
- rack.homelab.io/class=general
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A started server (registry mode: the hosts share a directory, as k3s servers share their
    datastore) and an agent root not yet started."""
    need("python3", "python3")
    env = f"K3S_DOUBLE_REGISTRY={tmp_path / 'registry'}\n"
    server = _host(tmp_path, "server", env)
    (server / "etc/rancher/k3s/agent-token").write_text(AGENT_SECRET + "\n")
    _configure(
        server,
        "node-name: server-1\nnode-ip: 10.0.0.11\ntoken-file: {root}/etc/rancher/k3s/join-token\n"
        "agent-token-file: {root}/etc/rancher/k3s/agent-token\ncluster-cidr: 10.42.0.0/16\n",
        SERVER_SECRET,
    )
    started = _start(server, "server")
    assert started.returncode == 0, started.stderr
    yield server, _host(tmp_path, "agent", env)


def _agent_token(server: Path) -> str:
    return (server / "var/lib/rancher/k3s/server/agent-token").read_text().strip()


def test_the_agent_token_joins(cluster: tuple[Path, Path]) -> None:
    server, agent = cluster
    _configure(agent, AGENT_CONFIG, _agent_token(server))
    started = _start(agent, "agent")
    assert started.returncode == 0, started.stderr


def test_a_wrong_token_is_refused(cluster: tuple[Path, Path]) -> None:
    server, agent = cluster
    wrong = _agent_token(server).replace(AGENT_SECRET, "not-the-agent-secret")
    _configure(agent, AGENT_CONFIG, wrong)
    started = _start(agent, "agent")
    assert started.returncode != 0
    assert "401 Unauthorized" in started.stderr


def test_an_agent_token_for_another_cluster_is_refused(cluster: tuple[Path, Path]) -> None:
    """The agent token (`K10<hash>::node:<password>`) pins the cluster CA as a server token does:
    the right password under another cluster's CA hash is refused (k3s pkg/clientaccess/token.go
    validateCAHash)."""
    server, agent = cluster
    token = _agent_token(server)
    ca_hash = token.removeprefix("K10").split("::", 1)[0]
    foreign = "K10" + "0" * len(ca_hash) + token.removeprefix("K10" + ca_hash)
    _configure(agent, AGENT_CONFIG, foreign)
    started = _start(agent, "agent")
    assert started.returncode != 0
    assert "token CA hash does not match the Cluster CA certificate hash" in started.stderr


def test_an_agent_refuses_a_config_key_k3s_agent_does_not_know(cluster: tuple[Path, Path]) -> None:
    """`cluster-cidr` is a server flag: in an agent's config.yaml k3s agent fails to start."""
    server, agent = cluster
    _configure(agent, AGENT_CONFIG + "cluster-cidr: 10.42.0.0/16\n", _agent_token(server))
    started = _start(agent, "agent")
    assert started.returncode != 0
    assert "flag provided but not defined: -cluster-cidr" in started.stderr


def test_a_server_skips_a_key_it_does_not_know(tmp_path: Path) -> None:
    """`k3s server` warns and skips (stripInvalidFlags): the start goes on."""
    server = _host(tmp_path, "server", f"K3S_DOUBLE_REGISTRY={tmp_path / 'registry'}\n")
    _configure(server, "node-name: s\ntoken-file: {root}/etc/rancher/k3s/join-token\nno-such-key: 1\n", SERVER_SECRET)
    started = _start(server, "server")
    assert started.returncode == 0, started.stderr


@pytest.mark.parametrize(
    ("registries", "why"),
    [
        (
            'mirrors:\n  registry.lab.test:\n    endpoint:\n      - "https://10.0.0.5:5000\n',
            "while scanning a quoted scalar",
        ),
        ("mirror:\n  registry.lab.test:\n    endpoint: [https://10.0.0.5:5000]\n", "field mirror not found"),
        ("mirrors:\n\tregistry.lab.test: {}\n", "found character '\\t'"),
        ("mirrors:\n- registry.lab.test\n", "mirrors: cannot unmarshal list into a map"),
    ],
)
def test_a_malformed_registries_yaml_fails_the_start(cluster: tuple[Path, Path], registries: str, why: str) -> None:
    server, agent = cluster
    _configure(agent, AGENT_CONFIG, _agent_token(server), registries)
    started = _start(agent, "agent")
    assert started.returncode != 0
    assert why in started.stderr


def test_a_well_formed_registries_yaml_is_accepted(cluster: tuple[Path, Path]) -> None:
    server, agent = cluster
    good = (
        'mirrors:\n  registry.lab.test:\n    endpoint:\n      - "https://10.0.0.5:5000"\n'
        'configs:\n  "10.0.0.5:5000":\n    tls:\n      ca_file: /etc/ssl/lab-ca.crt\n'
    )
    _configure(agent, AGENT_CONFIG, _agent_token(server), good)
    started = _start(agent, "agent")
    assert started.returncode == 0, started.stderr


# --- the server URL is dialled ------------------------------------------------------------------


def _lab_agent(tmp: Path, server_url: str, token: str) -> Path:
    """An agent configured as in the lab (K3S_DOUBLE_KUBECONFIG: validate the server, then
    register; the registration fails here: no API)."""
    root = _host(tmp, "lab-agent", "K3S_DOUBLE_KUBECONFIG=/nonexistent/node.kubeconfig\n")
    (root / "etc/lab").mkdir(parents=True)
    (root / "etc/lab/apiserver.env").write_text(
        "LAB_NODE_KUBECONFIG=/nonexistent/node.kubeconfig\nLAB_NODE_ADDRESS=127.0.0.1\nLAB_KUBECTL=/bin/false\n"
    )
    _configure(root, AGENT_CONFIG.replace("https://10.0.0.11:6443", server_url), token)
    return root


@pytest.fixture
def server_pki(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A k3s server's :6443 as the lab runs it (lab/k3s-supervisor.py, serving /cacerts) with its
    cluster PKI; yields (URL, PKI directory)."""
    pki = make_pki(tmp_path, "cluster")
    with supervisor(pki) as url:
        yield url, pki


def _failure(started: subprocess.CompletedProcess[str]) -> str:
    assert started.returncode != 0, started.stderr
    return started.stderr


def test_an_unreachable_server_url_fails_the_start(tmp_path: Path, server_pki: tuple[str, Path]) -> None:
    _, pki = server_pki
    url = f"https://127.0.0.1:{free_port()}"
    stderr = _failure(_start(_lab_agent(tmp_path, url, token(pki, "node", "secret")), "agent"))
    assert f"Failed to validate connection to cluster at {url}: failed to get CA certs" in stderr


def test_a_server_of_another_cluster_fails_the_start(tmp_path: Path, server_pki: tuple[str, Path]) -> None:
    """The token pins this cluster's CA; the server at the URL serves another's on /cacerts."""
    url, _ = server_pki
    ours = make_pki(tmp_path, "ours")
    stderr = _failure(_start(_lab_agent(tmp_path, url, token(ours, "node", "secret")), "agent"))
    assert f"Failed to validate connection to cluster at {url}: token CA hash does not match" in stderr


def test_a_server_whose_certificate_its_own_bundle_does_not_validate_fails_the_start(tmp_path: Path) -> None:
    """getCACerts' second request: the server's certificate must validate against the bundle it
    serves ("CA cert validation failed"): a supervisor serving another CA's file."""
    pki = make_pki(tmp_path, "cluster")
    other = make_pki(tmp_path, "other")
    (pki / "ca.crt").rename(pki / "own-ca.crt")
    (pki / "ca.crt").write_bytes((other / "ca.crt").read_bytes())
    with supervisor(pki) as url:
        stderr = _failure(_start(_lab_agent(tmp_path, url, token(other, "node", "secret")), "agent"))
    assert f"Failed to validate connection to cluster at {url}: CA cert validation failed" in stderr


def test_a_malformed_token_ca_hash_fails_the_start(tmp_path: Path, server_pki: tuple[str, Path]) -> None:
    """parseToken: a hash is empty or 64 hex digits."""
    url, _ = server_pki
    stderr = _failure(_start(_lab_agent(tmp_path, url, "K10abc::node:secret"), "agent"))
    assert "invalid token CA hash length" in stderr


def test_a_reachable_server_of_this_cluster_is_validated(tmp_path: Path, server_pki: tuple[str, Path]) -> None:
    """/cacerts fetched, the hash matches: the start goes on to register the Node (which fails
    here: no API)."""
    url, pki = server_pki
    started = _start(_lab_agent(tmp_path, url, token(pki, "node", "secret")), "agent")
    assert "Failed to validate connection to cluster" not in started.stderr
    assert "registering Node agent-1" in started.stderr
    fetched = tmp_path / "lab-agent/var/lib/rancher/k3s/double/cacerts"
    assert fetched.read_bytes() == (pki / "ca.crt").read_bytes()


def test_a_token_without_a_ca_hash_trusts_what_the_server_serves_with_a_warning(
    tmp_path: Path, server_pki: tuple[str, Path]
) -> None:
    """validateCAHash: no hash in the token, a CA not in the host's bundle: k3s warns and goes on."""
    url, _ = server_pki
    started = _start(_lab_agent(tmp_path, url, "secret"), "agent")
    assert "the token does not include a CA hash" in started.stderr
    assert "registering Node agent-1" in started.stderr


def test_the_supervisor_serves_cacerts_to_any_method(server_pki: tuple[str, Path]) -> None:
    """k3s routes /cacerts with no method matcher (pkg/server/handlers/router.go `router.Handle`),
    and Go's server answers HEAD with the GET's headers and no body."""
    url, pki = server_pki
    ctx = ssl.create_default_context(cafile=pki / "ca.crt")
    ca = (pki / "ca.crt").read_bytes()
    for method in ("GET", "POST"):
        with urllib.request.urlopen(urllib.request.Request(f"{url}/cacerts", method=method), context=ctx) as resp:
            assert resp.read() == ca
    # HEAD on a raw connection (an HTTP client would not read a body after HEAD): everything sent.
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        tls.sendall(b"HEAD /cacerts HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert f"Content-Length: {len(ca)}".encode() in head.split(b"\r\n")
    assert body == b""
