"""The rack CA in CI jobs, with real TLS clients: the `ca-bundle` init container's own script
builds the bundle (the public roots plus the rack CA), and curl, git, Python and Node, given the
variables act_runner puts into every job, verify a TLS server whose certificate the rack CA
signed and still verify one signed by a public root.

Stand-ins, because nothing here reaches the internet: a "public" root made for the test plays
the job image's /etc/ssl/certs/ca-certificates.crt; both servers listen on loopback ports.
"""

from __future__ import annotations

import http.server
import os
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from components.ci import gitea_runners as r
from tests.components.ci.test_gitea_runners import container, settings
from tests.prereq import need


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            cwd=d)  # fmt: skip


def make_leaf(d: Path, ca: str, name: str) -> None:
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
    (d / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)  # fmt: skip


class Ok(http.server.BaseHTTPRequestHandler):
    """200 for `/`, 404 for anything else (git asks for /repo.git/info/refs)."""

    protocol_version = "HTTP/1.1"  # a Content-Length, so a client reads the whole answer

    def do_GET(self) -> None:
        body = b"ok\n" if self.path == "/" else b"no such repository\n"
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Two HTTPS servers on loopback: `rack` (leaf signed by the rack CA), `public` (by the stand-in root)."""
    need("openssl", "openssl")
    for ca in ("rack-ca", "public-root"):
        make_ca(tmp_path, ca)
    make_leaf(tmp_path, "rack-ca", "rack-leaf")
    make_leaf(tmp_path, "public-root", "public-leaf")
    running, urls = [], {}
    for key, leaf in (("rack", "rack-leaf"), ("public", "public-leaf")):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp_path / f"{leaf}.crt", tmp_path / f"{leaf}.key")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        running.append(server)
        urls[key] = f"https://127.0.0.1:{server.server_address[1]}/"
    try:
        yield urls
    finally:
        for server in running:
            server.shutdown()
            server.server_close()


def job_environment(tmp_path: Path) -> dict[str, str]:
    """Run the ca-bundle init container's script with its paths moved under tmp_path, and return
    the job variables of the rendered config.yaml pointing at the same files."""
    pod = r.render_deployment(settings(), config_map="c", secret="s", ca_config_map="ca")["spec"]["template"]["spec"]
    script = container(pod, "ca-bundle")["command"][-1]
    moved = {
        "/etc/ssl/certs/ca-certificates.crt": str(tmp_path / "system.pem"),
        r.CA_DIR: str(tmp_path / "rack-ca-dir"),
        r.TOOLS_DIR: str(tmp_path / "opt-rack"),
    }
    for old, new in moved.items():
        script = script.replace(old, new)
    shutil.copy(tmp_path / "public-root.crt", tmp_path / "system.pem")  # the image's public roots
    (tmp_path / "rack-ca-dir").mkdir()
    shutil.copy(tmp_path / "rack-ca.crt", tmp_path / "rack-ca-dir" / r.CA_KEY)  # the ConfigMap
    (tmp_path / "opt-rack").mkdir()
    subprocess.run(["sh", "-c", script], check=True, timeout=30)
    envs = yaml.safe_load(r.render_config(["x"], with_ca=True))["runner"]["envs"]
    return {k: v.replace(r.TOOLS_DIR, moved[r.TOOLS_DIR]) for k, v in envs.items() if k != "BUILDKIT_HOST"}


def run(cmd: list[str], env: dict[str, str], home: Path) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": str(home)}
    return subprocess.run(cmd, env={**base, **env}, capture_output=True, text=True, timeout=60)


def test_job_clients_trust_the_rack_ca_and_keep_the_public_roots(servers: dict[str, str], tmp_path: Path) -> None:
    env = job_environment(tmp_path)
    python = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)"
    for key, url in servers.items():
        curl = run(["curl", "-sS", "-o", "/dev/null", url], env, tmp_path)
        assert curl.returncode == 0, (key, curl.stderr)
        py = run(["python3", "-c", python, url], env, tmp_path)
        assert py.returncode == 0, (key, py.stderr[-500:])
        # git's TLS verification passes; what follows is our server's answer (no repository here)
        git = run(["git", "ls-remote", f"{url}repo.git"], env, tmp_path)
        assert "certificate" not in git.stderr.lower() and "ssl" not in git.stderr.lower(), (key, git.stderr)
        assert f"repository '{url}repo.git/' not found" in git.stderr, (key, git.stderr)


def test_node_adds_the_rack_ca_to_its_own_roots(servers: dict[str, str], tmp_path: Path) -> None:
    node = need("node", "nodejs")
    env = job_environment(tmp_path)
    script = (
        "require('https').get(process.argv[1], r => process.exit(r.statusCode === 200 ? 0 : 3))"
        ".on('error', e => { console.error(e.message); process.exit(1) })"
    )
    assert (
        run(
            [node, "-e", script, servers["rack"]], {"NODE_EXTRA_CA_CERTS": env["NODE_EXTRA_CA_CERTS"]}, tmp_path
        ).returncode
        == 0
    )
    assert run([node, "-e", script, servers["rack"]], {}, tmp_path).returncode == 1


def test_without_the_variables_or_with_the_ca_alone_a_client_fails(servers: dict[str, str], tmp_path: Path) -> None:
    """The controls: no variables, and the rack CA alone instead of the bundle (these variables
    replace the default roots, which is why the jobs get a bundle)."""
    env = job_environment(tmp_path)
    curl = run(["curl", "-sS", "-o", "/dev/null", servers["rack"]], {}, tmp_path)
    assert curl.returncode == 60, curl.stderr  # CURLE_PEER_FAILED_VERIFICATION
    ca_only = {"SSL_CERT_FILE": env["NODE_EXTRA_CA_CERTS"]}
    py = run(["python3", "-c", "import sys, urllib.request; urllib.request.urlopen(sys.argv[1])", servers["public"]],
             ca_only, tmp_path)  # fmt: skip
    assert py.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in py.stderr
