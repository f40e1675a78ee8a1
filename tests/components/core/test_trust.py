"""The node trust script, run for real: Debian's `update-ca-certificates` on this machine, inside a
private mount namespace whose /usr/local/share/ca-certificates is an empty tmpfs and whose
/etc/ssl/certs is a copy (so the machine's own store is never touched).

The exact command RackCa sends (`remote_command(trust_script(), user="root")`, the CA on stdin) is
run; then real clients that read only the system store (curl without `--cacert`, Python's default
`ssl` context, `openssl verify` without `-CAfile`) reach a real HTTPS server on 127.0.0.1 serving
the rack's chain. Before the script they refuse it; after it they trust it; a second run leaves
the store alone; the delete command takes the CA out again.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.core.trust import LOCAL_CA_DIR, RACK_CA_NAME, RACK_CA_PATH, trust_script, untrust_script
from components.metal.k3s_scripts import remote_command
from tests.components.core.test_certificates import HOSTS
from tests.components.core.tls_chain import Chain, sample_chain, serve
from tests.prereq import need, unmet


@pytest.fixture(autouse=True)
def _tools() -> None:
    """Root, util-linux's unshare, Debian's ca-certificates and the clients (tests/prereq.py)."""
    need("unshare", "util-linux", root=True)
    need("update-ca-certificates", "ca-certificates")
    need("curl", "curl")
    need("openssl", "openssl")
    if not Path(LOCAL_CA_DIR).is_dir():
        unmet(f"{LOCAL_CA_DIR} is missing: apt-get install ca-certificates")


CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE")}
"""The clients must read the system store, not a bundle named in the environment."""


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return sample_chain(tmp_path_factory.mktemp("trust-chain"))


@pytest.fixture(scope="module")
def port(chain: Chain) -> Iterator[int]:
    with serve(chain) as served:
        yield served


def in_private_store(tmp_path: Path, steps: str) -> subprocess.CompletedProcess[str]:
    """Run `steps` (bash) in a mount namespace with a private, empty local CA directory and a
    private copy of /etc/ssl/certs."""
    certs = tmp_path / "etc-ssl-certs"
    setup = f"""set -u
mount -t tmpfs rack-ca-test {shlex.quote(LOCAL_CA_DIR)}
cp -a /etc/ssl/certs {shlex.quote(str(certs))}
mount --bind {shlex.quote(str(certs))} /etc/ssl/certs
"""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", setup + steps],
        capture_output=True,
        text=True,
        timeout=120,
        env=CLEAN_ENV,
        check=False,
    )


def test_the_node_trusts_the_rack_after_the_script(chain: Chain, port: int, tmp_path: Path) -> None:
    host = HOSTS[1]
    url = f"https://{host}:{port}/"
    curl = f"curl --silent --show-error --fail --max-time 10 --noproxy '*' --resolve {host}:{port}:127.0.0.1 {url}"
    py = f"{shlex.quote(sys.executable)} -c " + shlex.quote(
        "import socket, ssl, sys\n"
        "ctx = ssl.create_default_context()\n"
        f"s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', {port})), server_hostname={host!r})\n"
        "print(s.version())\n"
    )
    trust = remote_command(trust_script(), user="root")
    untrust = remote_command(untrust_script(), user="root")
    bundle = "/etc/ssl/certs/ca-certificates.crt"
    ca, leaf = shlex.quote(str(chain.ca)), shlex.quote(str(chain.cert))
    steps = f"""
step() {{ echo "STEP $1 rc=$2"; }}
{curl} >/dev/null 2>&1; step curl-before $?
{trust} < {ca} > trust1.out 2>&1; step trust-1 $?; tail -n1 trust1.out
stat -c 'MODE %a' {RACK_CA_PATH}
{curl} >/dev/null; step curl-after $?
{py} >/dev/null; step python-after $?
openssl verify -purpose sslserver -verify_hostname {host} {leaf} >/dev/null; step openssl-after $?
before=$(stat -c %Y.%s {bundle})
sleep 1.1
{trust} < {ca} > trust2.out 2>&1; step trust-2 $?; tail -n1 trust2.out
[ "$(stat -c %Y.%s {bundle})" = "$before" ]; step bundle-untouched $?
echo 'not a certificate' | {trust} > bad.out 2>&1; step trust-garbage $?; tail -n1 bad.out
{untrust} > untrust.out 2>&1; step untrust $?; tail -n1 untrust.out
[ ! -e {RACK_CA_PATH} ] && [ ! -e /etc/ssl/certs/{RACK_CA_NAME}.pem ]; step files-gone $?
{curl} >/dev/null 2>&1; step curl-removed $?
"""
    done = in_private_store(tmp_path, f"cd {shlex.quote(str(tmp_path))}\n" + steps)
    out = done.stdout
    assert done.returncode == 0, done.stderr
    rcs = dict(line.split()[1:3] for line in out.splitlines() if line.startswith("STEP "))
    assert rcs == {
        "curl-before": "rc=60",  # the rack is not trusted yet
        "trust-1": "rc=0",
        "curl-after": "rc=0",
        "python-after": "rc=0",
        "openssl-after": "rc=0",
        "trust-2": "rc=0",
        "bundle-untouched": "rc=0",  # the second run did not rebuild the store
        "trust-garbage": "rc=1",
        "untrust": "rc=0",
        "files-gone": "rc=0",
        "curl-removed": "rc=60",
    }, out + done.stderr
    lines = out.splitlines()
    assert "rack CA: installed" in lines and "rack CA: unchanged" in lines and "rack CA: removed" in lines
    assert "rack CA: stdin is not a PEM certificate" in lines
    assert "MODE 644" in lines
    # the machine's own store never saw it
    assert not Path(RACK_CA_PATH).exists()
    assert chain.ca.read_text().splitlines()[1] not in Path("/etc/ssl/certs/ca-certificates.crt").read_text()
