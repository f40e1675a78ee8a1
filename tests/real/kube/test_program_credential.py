"""The provider's credential against a real API server: the kubeconfig step's script (run by bash,
`k3s kubectl` = the real kubectl) makes the program's ServiceAccount and binding, mints a token
that lives TOKEN_DAYS, and prints a kubeconfig that verifies the server with the cluster CA and
is cluster-admin, until the binding is deleted (revocable, unlike k3s' system:masters cert)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from components.metal.k3s_scripts import PROGRAM_ACCOUNT, TOKEN_DAYS, HostLayout, program_kubeconfig_script

from .conftest import KubeApi

pytestmark = [pytest.mark.realkube, pytest.mark.slow]


def k3s_yaml(api: KubeApi, root: Path) -> None:
    """What k3s writes to /etc/rancher/k3s/k3s.yaml: the cluster CA and the local API address."""
    ca = (api.tmp / "certs" / "apiserver.crt").read_bytes()
    path = root / "etc/rancher/k3s/k3s.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "default", "cluster": {"certificate-authority-data": base64.b64encode(ca).decode()}}
                ],
            }
        )
    )


def mint(api: KubeApi, root: Path) -> str:
    script = program_kubeconfig_script(hostname="cred-1", layout=HostLayout(root=str(root)))
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def claims(token: str) -> dict[str, int]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_the_program_kubeconfig_is_a_lasting_revocable_cluster_admin_token(kube_api: KubeApi, tmp_path: Path) -> None:
    root = kube_api.k3s_root("cred")
    k3s_yaml(kube_api, root)
    text = mint(kube_api, root)
    config = yaml.safe_load(text)
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"  # rewritten by the caller
    assert "client-certificate-data" not in text and "client-key-data" not in text
    token = config["users"][0]["user"]["token"]
    got = claims(token)
    assert got["exp"] - got["iat"] == TOKEN_DAYS * 24 * 3600
    assert got["sub"] == f"system:serviceaccount:kube-system:{PROGRAM_ACCOUNT}"

    # the kubeconfig as the provider gets it: server pointed at the API, CA verified (no skip)
    config["clusters"][0]["cluster"]["server"] = kube_api.url
    kubeconfig = tmp_path / "program.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [kube_api.kubectl_bin, "--kubeconfig", str(kubeconfig), *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    assert kubectl("auth", "can-i", "*", "*", "--all-namespaces").stdout.strip() == "yes"
    assert kubectl("get", "namespaces").returncode == 0

    # run again (the next period): the objects are kept, a new token is minted, the old one works on
    second = yaml.safe_load(mint(kube_api, root))["users"][0]["user"]["token"]
    assert second != token
    assert kubectl("get", "namespaces").returncode == 0

    # revocable: without the binding the token is no longer an admin
    kube_api.kubectl("delete", "clusterrolebinding", PROGRAM_ACCOUNT)
    assert kube_api.wait("the binding's removal", lambda: kubectl("auth", "can-i", "*", "*").stdout.strip() == "no")
