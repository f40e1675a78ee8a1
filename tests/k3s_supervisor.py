"""lab/k3s-supervisor.py (the lab's double of a k3s server's :6443) for tests that need a server to
join or an API to reach through it: a PKI made with openssl, the supervisor process, and the token
that pins the PKI's CA as k3s writes it (`K10` + the sha256 of the CA file's bytes)."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.prereq import free_port, need

SUPERVISOR = Path(__file__).resolve().parents[1] / "lab" / "k3s-supervisor.py"


def make_pki(tmp: Path, name: str) -> Path:
    """A directory as the supervisor reads it: `ca.crt`, `apiserver.crt`/`.key` (serving
    127.0.0.1) and `front-proxy-client.crt`/`.key`, all ECDSA P-256 and signed by that CA."""
    openssl = need("openssl", "openssl")
    d = tmp / name
    d.mkdir()

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
        "-subj", f"/CN={name}-ca", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))  # fmt: skip
    for leaf, subject, ext in (
        ("apiserver", "/CN=kube-apiserver", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        ("front-proxy-client", "/CN=front-proxy-client", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{leaf}.ext").write_text(ext)
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", subject,
            "-keyout", str(d / f"{leaf}.key"), "-out", str(d / f"{leaf}.csr"))  # fmt: skip
        run("x509", "-req", "-in", str(d / f"{leaf}.csr"), "-CA", str(d / "ca.crt"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
            "-extfile", str(d / f"{leaf}.ext"), "-out", str(d / f"{leaf}.crt"))  # fmt: skip
    return d


def token(pki: Path, user: str, password: str) -> str:
    """The secure-format token pinning `pki`'s CA: k3s' FormatTokenBytes (the sha256 of the CA
    file's bytes, for a one-certificate bundle)."""
    return f"K10{hashlib.sha256((pki / 'ca.crt').read_bytes()).hexdigest()}::{user}:{password}"


@contextlib.contextmanager
def supervisor(pki: Path, upstream: str = "127.0.0.1:9", *, log: Path | None = None) -> Iterator[str]:
    """The supervisor on a free loopback port in front of `upstream` (by default a port nothing
    listens on: only /cacerts and /ping answer); yields its https:// URL."""
    port = free_port()
    log_path = log or pki / "supervisor.log"
    url = f"https://127.0.0.1:{port}"
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # up is all this asks: TLS answers
    probe.check_hostname = False
    probe.verify_mode = ssl.CERT_NONE
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, str(SUPERVISOR), f"127.0.0.1:{port}", upstream, str(pki)], stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                    probe.wrap_socket(raw, server_hostname="127.0.0.1"),
                ):
                    break
            except OSError as err:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"k3s-supervisor did not start: {log_path.read_text()}") from err
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
