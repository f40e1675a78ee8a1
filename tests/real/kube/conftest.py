"""A real Kubernetes control plane on loopback for the tests that need Kubernetes' own semantics
(server-side apply field ownership, the node lifecycle controller's taints, eviction and
PodDisruptionBudgets, ServiceAccount tokens).

Started once per session from the lab's build (`make lab-build`: etcd, kube-apiserver and
kube-controller-manager v1.31 from Go modules): etcd, the API server and the controller manager
(node lifecycle, ServiceAccount and disruption controllers only) on 127.0.0.1 with free ports, in a temp dir,
all stopped and removed after. No scheduler and no kubelet: tests create Nodes and bind Pods
themselves. Authentication is a static token file (an admin in `system:masters`), the serving
certificate the API server's self-signed one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.prereq import free_port, lab_binary, need

ADMIN_TOKEN = "kube-test-admin-token-7d2f3a91c4e8"
NODE_MONITOR_GRACE = 12
"""Seconds without a kubelet status before the node lifecycle controller taints a Node (kept short)."""


@dataclass
class KubeApi:
    url: str
    kubeconfig: Path
    kubectl_bin: str
    tmp: Path

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: rc={result.returncode}\n{result.stderr}")
        return result

    def get(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", *args, "-o", "json").stdout))

    def wait(self, what: str, check: Any, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.5)

    def k3s_root(self, name: str) -> Path:
        """A host root whose `usr/local/bin/k3s kubectl ...` is this cluster's kubectl: what
        `k3s kubectl` (k3s' embedded kubectl, admin credentials) is on a server. A stand-in for the
        k3s binary at that one boundary; the program's scripts run unchanged against it."""
        root = self.tmp / "roots" / name
        binary = root / "usr/local/bin/k3s"
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text(
            "#!/bin/sh\n# stand-in for `k3s kubectl` (tests/real/kube): the real kubectl, admin kubeconfig\n"
            '[ "$1" = kubectl ] || { echo "only k3s kubectl" >&2; exit 1; }\nshift\n'
            f'exec {self.kubectl_bin} --kubeconfig {self.kubeconfig} "$@"\n'
        )
        binary.chmod(0o755)
        return root


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, headers: dict[str, str] | None = None) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited: {log.read_text()[-2000:]}")
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready: {log.read_text()[-2000:]}")
        time.sleep(0.3)


def _own_copy(binary: str, directory: Path) -> str:
    target = directory / Path(binary).name
    try:
        os.link(binary, target)
    except OSError:
        shutil.copy2(binary, target)
    return str(target)


@pytest.fixture(scope="session")
def kube_api() -> Iterator[KubeApi]:
    openssl = need("openssl", "openssl")
    tmp = Path(tempfile.mkdtemp(prefix="hl-kube-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # Run from links of our own: `make lab-down` (another checkout's lab) kills whatever runs
        # from the lab's cache path.
        (tmp / "bin").mkdir()
        etcd, apiserver, kcm, kubectl = (
            _own_copy(lab_binary(b), tmp / "bin")
            for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
        )
        client, peer, secure = free_port(), free_port(), free_port()
        subprocess.run(
            [openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(tmp / "sa.key")],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [openssl, "pkey", "-in", str(tmp / "sa.key"), "-pubout", "-out", str(tmp / "sa.pub")],
            check=True,
            capture_output=True,
        )
        (tmp / "tokens.csv").write_text(f'{ADMIN_TOKEN},kube-test-admin,kube-test-admin,"system:masters"\n')

        def start(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
            log = open(tmp / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            procs.append(proc)
            return proc

        etcd_proc = start(
            "etcd",
            [
                etcd, "--name", "test", "--data-dir", str(tmp / "etcd"),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"test=http://127.0.0.1:{peer}",
                "--listen-metrics-urls", "", "--unsafe-no-fsync", "--log-level", "warn",
            ],
        )  # fmt: skip
        _wait_ready(f"http://127.0.0.1:{client}/health", etcd_proc, tmp / "etcd.log")
        api_proc = start(
            "kube-apiserver",
            [
                apiserver, "--etcd-servers", f"http://127.0.0.1:{client}",
                "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(secure),
                "--cert-dir", str(tmp / "certs"), "--token-auth-file", str(tmp / "tokens.csv"),
                "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                "--service-account-key-file", str(tmp / "sa.pub"),
                "--service-account-signing-key-file", str(tmp / "sa.key"),
                "--service-cluster-ip-range", "10.43.0.0/16", "--authorization-mode", "RBAC",
                "--profiling=false", "--v=1",
            ],
        )  # fmt: skip
        url = f"https://127.0.0.1:{secure}"
        _wait_ready(f"{url}/readyz", api_proc, tmp / "kube-apiserver.log", {"Authorization": f"Bearer {ADMIN_TOKEN}"})
        kubeconfig = tmp / "admin.kubeconfig"
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "test", "cluster": {"server": url, "insecure-skip-tls-verify": True}}],
                    "users": [{"name": "admin", "user": {"token": ADMIN_TOKEN}}],
                    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
                    "current-context": "test",
                }
            )
        )
        kubeconfig.chmod(0o600)
        start(
            "kube-controller-manager",
            [
                kcm, "--kubeconfig", str(kubeconfig), "--leader-elect=false",
                "--bind-address", "127.0.0.1", "--secure-port", str(free_port()),
                "--controllers", "nodelifecycle,serviceaccount,serviceaccount-token,disruption",
                "--service-account-private-key-file", str(tmp / "sa.key"),
                "--root-ca-file", str(tmp / "certs" / "apiserver.crt"),
                "--node-monitor-period", "2s", "--node-monitor-grace-period", f"{NODE_MONITOR_GRACE}s",
                "--node-startup-grace-period", f"{NODE_MONITOR_GRACE}s",
                "--profiling=false", "--v=1",
            ],
        )  # fmt: skip
        yield KubeApi(url=url, kubeconfig=kubeconfig, kubectl_bin=kubectl, tmp=tmp)
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait(timeout=5)
        shutil.rmtree(tmp, ignore_errors=True)
