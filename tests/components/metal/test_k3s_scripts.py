"""The pure k3s builders: config.yaml from the layout vocabulary, every generated script through
shellcheck, the preflight's messages (run by a real bash against fake cgroup/boot files), the
uninstall guard, the command wrapper and the kubeconfig rewrite."""

from __future__ import annotations

import base64
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.core.layout import CONTROL_PLANE_TAINT, EXPERIMENTAL_TAINT, node_labels
from components.metal.k3s_scripts import (
    REGISTRIES_HEADER,
    REGISTRIES_PATH,
    REGISTRY_CA_PATH,
    HostLayout,
    airgap_binary_name,
    config_yaml,
    dns_upstream_script,
    drain_script,
    install_script,
    membership_script,
    preflight_script,
    read_file_script,
    registration_script,
    remote_command,
    render_config,
    render_registries,
    render_resolv_conf,
    rewrite_kubeconfig,
    staging_dir,
    taints_script,
    uninstall_script,
    upgrade_script,
)
from rack.config import InstallSource, Rack, parse_rack
from rack.vocabulary import Arch, Role
from tests.conftest import stack_raw
from tests.prereq import lab_binary

ROOT = Path(__file__).resolve().parents[3]
SHELLCHECK = ROOT / ".venv" / "bin" / "shellcheck"
VERSION = "v1.36.4+k3s1"


def homelab() -> Rack:
    return parse_rack(stack_raw("homelab"))


def etcd_rack() -> Rack:
    """Three etcd servers; the bootstrap server is deliberately not first in the list."""
    raw = stack_raw("homelab")
    raw["k3s"]["datastore"] = "etcd"
    raw["k3s"]["bootstrap-server"] = "rack-cp-2"
    cp = raw["nodes"][0]
    for i, address in ((2, "192.168.10.12"), (3, "192.168.10.13")):
        extra = {k: v for k, v in cp.items() if k != "host-key"}
        raw["nodes"].append({**extra, "hostname": f"rack-cp-{i}", "address": address})
    return parse_rack(raw)


def shellcheck(script: str, shell: str = "bash") -> None:
    result = subprocess.run(
        [str(SHELLCHECK), "-s", shell, "-S", "style", "-"], input=script, text=True, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout


# --- config.yaml -----------------------------------------------------------------------------


def test_bootstrap_server_config_carries_layout_network_and_reserve() -> None:
    rack = homelab()
    cfg = render_config(rack, rack.bootstrap())
    assert cfg["node-name"] == "rack-cp-1"
    labels = node_labels(node_class=rack.nodes[0].node_class, role=Role.SERVER, arch=Arch.ARM64)
    assert cfg["node-label"] == sorted(f"{k}={v}" for k, v in labels.items())
    assert cfg["node-taint"] == [CONTROL_PLANE_TAINT.to_k3s()]
    assert cfg["tls-san"] == ["192.168.10.11"]
    assert cfg["cluster-cidr"] == "10.42.0.0/16"
    assert cfg["service-cidr"] == "10.43.0.0/16"
    assert cfg["secrets-encryption"] is True
    assert cfg["kubelet-arg"] == ["system-reserved=cpu=250m,memory=512Mi"]
    assert cfg["token-file"] == "/etc/rancher/k3s/join-token"
    # sqlite: no cluster-init, no server to join
    assert "cluster-init" not in cfg
    assert "server" not in cfg


def test_agent_config_joins_the_bootstrap_server_with_its_class_taint() -> None:
    rack = homelab()
    lab = rack.node("rack-lab-1")
    assert lab is not None
    cfg = render_config(rack, lab)
    assert cfg["server"] == "https://192.168.10.11:6443"
    assert cfg["node-taint"] == [EXPERIMENTAL_TAINT.to_k3s()]
    assert "rack.homelab.io/class=experimental" in cfg["node-label"]
    assert not {"cluster-cidr", "secrets-encryption", "tls-san", "cluster-init"} & set(cfg)
    general = rack.node("rack-pi-1")
    assert general is not None
    assert "node-taint" not in render_config(rack, general)


def test_every_node_names_the_resolv_conf_that_lists_dns_upstream() -> None:
    raw = stack_raw("homelab")
    assert raw["dns"]["upstream"] == ["1.1.1.1", "9.9.9.9"]
    rack = parse_rack(raw)
    assert render_resolv_conf(rack) == "nameserver 1.1.1.1\nnameserver 9.9.9.9\n"
    for node in rack.nodes:
        assert render_config(rack, node)["resolv-conf"] == "/etc/rancher/k3s/resolv.conf"
        assert render_config(rack, node, HostLayout(root="/h"))["resolv-conf"] == "/h/etc/rancher/k3s/resolv.conf"
    raw["dns"]["upstream"] = ["192.168.10.1"]
    assert render_resolv_conf(parse_rack(raw)) == "nameserver 192.168.10.1\n"


def test_the_coredns_patch_and_read_back_mean_the_same_key_to_real_kubectl(tmp_path: Path) -> None:
    """The script's merge patch and jsonpath, run by the lab's kubectl (v1.31) offline on a
    Deployment shaped like k3s' packaged CoreDNS: the patch sets the pod-template annotation the
    read-back finds, so a second run sees its own value and restarts nothing."""
    kubectl = lab_binary("kubectl")
    script = dns_upstream_script(hostname="rack-cp-1", upstream=["1.1.1.1", "9.9.9.9"])
    [patch] = shlex.split(re.search(r" -p ('[^']*')", script)[1])  # type: ignore[index]
    [jsonpath] = shlex.split(re.search(r"-o (jsonpath='[^']*')", script)[1])  # type: ignore[index]
    deployment = tmp_path / "coredns.yaml"
    deployment.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "coredns", "namespace": "kube-system"},
                "spec": {
                    "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                    "template": {
                        "metadata": {"labels": {"k8s-app": "kube-dns"}},
                        "spec": {"containers": [{"name": "coredns", "image": "rancher/mirrored-coredns-coredns:1.12"}]},
                    },
                },
            }
        )
    )
    env = {"KUBECONFIG": "/dev/null", "PATH": "/usr/bin:/bin"}

    def local(path: Path, patch_text: str, output: str) -> str:
        return subprocess.run(
            [kubectl, "patch", "--local", "-f", str(path), "--type", "merge", "-p", patch_text, "-o", output],
            capture_output=True, text=True, check=True, env=env,
        ).stdout  # fmt: skip

    assert local(deployment, "{}", jsonpath) == ""  # k3s' own manifest carries no such annotation
    patched = tmp_path / "patched.yaml"
    patched.write_text(local(deployment, patch, "yaml"))
    assert local(patched, "{}", jsonpath) == "1.1.1.1,9.9.9.9"


def test_etcd_only_the_explicit_bootstrap_server_initialises_the_cluster() -> None:
    rack = etcd_rack()
    assert rack.nodes[0].hostname == "rack-cp-1"  # first in the list, but not the bootstrap server
    configs = {n.hostname: render_config(rack, n) for n in rack.servers()}
    assert configs["rack-cp-2"]["cluster-init"] is True
    assert "server" not in configs["rack-cp-2"]
    for other in ("rack-cp-1", "rack-cp-3"):
        assert "cluster-init" not in configs[other]
        assert configs[other]["server"] == "https://192.168.10.12:6443"


def test_api_address_goes_into_tls_san_and_reserve_follows_config() -> None:
    raw = stack_raw("homelab")
    raw["k3s"]["api-address"] = "192.168.10.5"
    raw["k3s"]["system-reserved"] = {"cpu": "500m", "memory": "1Gi"}
    rack = parse_rack(raw)
    cfg = render_config(rack, rack.bootstrap())
    assert cfg["tls-san"] == ["192.168.10.11", "192.168.10.5"]
    assert cfg["kubelet-arg"] == ["system-reserved=cpu=500m,memory=1Gi"]


def test_config_yaml_is_deterministic_and_sorted() -> None:
    rack = homelab()
    cfg = render_config(rack, rack.bootstrap())
    shuffled = dict(reversed(list(cfg.items())))
    text = config_yaml(cfg)
    assert text == config_yaml(shuffled)
    keys = [line.split(":")[0] for line in text.splitlines() if not line.startswith(("-", " "))]
    assert keys == sorted(keys)
    assert yaml.safe_load(text) == cfg


def test_config_and_scripts_never_carry_the_token() -> None:
    rack = homelab()
    for node in rack.nodes:
        text = config_yaml(render_config(rack, node))
        assert "token:" not in text  # only token-file
        script = install_script(
            hostname=node.hostname,
            role=node.role,
            version=VERSION,
            config_text=text,
            resolv_conf_text=render_resolv_conf(rack),
            source=InstallSource.ONLINE,
        )
        assert "K10" not in script and "K3S_TOKEN" not in script


# --- every script through shellcheck ----------------------------------------------------------

LAYOUTS = [HostLayout(), HostLayout(root="/tmp/hosts/a b")]


def all_scripts(layout: HostLayout) -> dict[str, str]:
    rack = homelab()
    out: dict[str, str] = {}
    for node in (rack.bootstrap(), rack.node("rack-db-1")):
        assert node is not None
        text = config_yaml(render_config(rack, node, layout))
        for source in InstallSource:
            common: dict[str, Any] = {
                "hostname": node.hostname,
                "role": node.role,
                "version": VERSION,
                "config_text": text,
                "resolv_conf_text": render_resolv_conf(rack),
                "source": source,
                "layout": layout,
            }
            out[f"install-{node.role}-{source}"] = install_script(**common)
            out[f"upgrade-{node.role}-{source}"] = upgrade_script(**common)
        out[f"preflight-{node.role}"] = preflight_script(
            hostname=node.hostname,
            role=node.role,
            arch=node.arch,
            storage_path=node.storage.path if node.storage else None,
            layout=layout,
        )
    out["membership"] = membership_script(hostname="rack-pi-1", layout=layout)
    out["uninstall"] = uninstall_script(hostname="rack-pi-1", layout=layout)
    out["registration"] = registration_script(hostname="rack-pi-1", layout=layout)
    out["drain"] = drain_script(hostname="rack-pi-1", layout=layout)
    out["read"] = read_file_script(hostname="rack-cp-1", path="/etc/rancher/k3s/k3s.yaml", layout=layout)
    out["dns-upstream"] = dns_upstream_script(hostname="rack-cp-1", upstream=["1.1.1.1", "9.9.9.9"], layout=layout)
    out["taints-none"] = taints_script(hostname="rack-pi-1", taints=[], layout=layout)
    both = [CONTROL_PLANE_TAINT, EXPERIMENTAL_TAINT]
    out["taints-two"] = taints_script(hostname="rack-cp-1", taints=both, layout=layout)
    return out


def test_install_and_upgrade_wait_for_the_k3s_unit_on_a_real_host_only() -> None:
    """A real host (root "", the lab's systemd hosts too) is ready when its k3s unit is active;
    a directory-rooted test host runs no init system, so its scripts never ask systemctl."""
    real, rooted = (all_scripts(layout) for layout in LAYOUTS)
    steps = [name for name in real if name.startswith(("install-", "upgrade-"))]
    assert len(steps) == 8
    for name in steps:
        unit = "k3s" if "-server-" in name else "k3s-agent"
        assert f"systemctl is-active --quiet {unit};" in real[name], name
        assert "systemctl" not in rooted[name], name


@pytest.mark.parametrize("layout", LAYOUTS, ids=["real-host", "test-root"])
def test_every_generated_script_passes_shellcheck(layout: HostLayout) -> None:
    scripts = all_scripts(layout)
    assert len(scripts) == 18
    for name, script in scripts.items():
        try:
            shellcheck(script)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def test_the_k3s_double_passes_shellcheck() -> None:
    double = ROOT / "lab" / "k3s-double"
    shellcheck((double / "k3s").read_text(), "bash")
    shellcheck((double / "install.sh").read_text(), "sh")
    shellcheck((double / "make-airgap.sh").read_text(), "sh")


def test_remote_command_quotes_the_script_as_one_word_and_uses_sudo_unless_root() -> None:
    script = uninstall_script(hostname="rack-pi-1")
    as_pi = shlex.split(remote_command(script, user="pi"))
    assert as_pi == ["sudo", "-n", "bash", "-c", script]
    assert shlex.split(remote_command(script, user="root")) == ["bash", "-c", script]


def test_airgap_names_and_staging_are_per_arch_and_version() -> None:
    assert airgap_binary_name(Arch.ARM64) == "k3s-arm64"
    assert staging_dir(VERSION) == f"/var/tmp/homelab-k3s/{VERSION}"
    assert staging_dir(VERSION, HostLayout(root="/r")) == f"/r/var/tmp/homelab-k3s/{VERSION}"


def test_rewrite_kubeconfig_points_at_the_api_address() -> None:
    text = "clusters:\n- cluster:\n    server: https://127.0.0.1:6443\n"
    assert (
        rewrite_kubeconfig(text, "192.168.10.11") == "clusters:\n- cluster:\n    server: https://192.168.10.11:6443\n"
    )


# --- the preflight's messages, run by bash against fake files -------------------------------------


def run_bash(script: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], input=stdin, text=True, capture_output=True, check=False)


def host_arch() -> Arch:
    machine = subprocess.run(["uname", "-m"], capture_output=True, text=True, check=True).stdout.strip()
    return {"x86_64": Arch.AMD64, "aarch64": Arch.ARM64}.get(machine, Arch.ARM)


def fake_preflight(
    tmp_path: Path, *, controllers: str, boot_file: str | None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    if boot_file is not None:
        (root / boot_file.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / boot_file.lstrip("/")).write_text("console=serial0,115200 root=PARTUUID=1234 rootwait\n")
    cg2 = tmp_path / "cgroup.controllers"
    cg2.write_text(controllers + "\n")
    kw.setdefault("arch", host_arch())
    script = preflight_script(
        hostname="rack-pi-1",
        role=Role.AGENT,
        layout=HostLayout(root=str(root)),
        cgroup_v2=str(cg2),
        cgroup_v1=str(tmp_path / "absent"),
        **kw,
    )
    return run_bash(script)


def test_preflight_passes_with_memory_cgroup(tmp_path: Path) -> None:
    result = fake_preflight(tmp_path, controllers="cpuset cpu io memory pids", boot_file=None)
    assert result.returncode == 0, result.stderr
    assert "rack-pi-1: preflight ok" in result.stdout


def test_preflight_names_the_bookworm_boot_file(tmp_path: Path) -> None:
    result = fake_preflight(tmp_path, controllers="cpuset cpu io pids", boot_file="/boot/firmware/cmdline.txt")
    assert result.returncode == 1
    flags = "'cgroup_memory=1 cgroup_enable=memory'"
    assert f"append {flags} to the single line in /boot/firmware/cmdline.txt" in result.stderr
    assert "Bookworm" in result.stderr


def test_preflight_names_the_pre_bookworm_boot_file(tmp_path: Path) -> None:
    result = fake_preflight(tmp_path, controllers="cpuset cpu io pids", boot_file="/boot/cmdline.txt")
    assert result.returncode == 1
    assert "to the single line in /boot/cmdline.txt (Raspberry Pi OS before Bookworm)" in result.stderr
    assert "/boot/firmware" not in result.stderr


def test_preflight_without_a_pi_boot_file_points_at_grub(tmp_path: Path) -> None:
    result = fake_preflight(tmp_path, controllers="cpu pids", boot_file=None)
    assert result.returncode == 1
    assert "GRUB_CMDLINE_LINUX" in result.stderr


def test_preflight_lists_every_problem_with_what_to_do(tmp_path: Path) -> None:
    wrong = Arch.ARM if host_arch() != Arch.ARM else Arch.AMD64
    result = fake_preflight(
        tmp_path,
        controllers="cpu",
        boot_file="/boot/firmware/cmdline.txt",
        arch=wrong,
        storage_path="/mnt/ssd",
        min_memory_mib=10**9,
        min_available_mib=10**9,
        min_disk_mib=10**12,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("rack-pi-1: preflight: ")]
    assert len(lines) == 6, result.stderr
    text = result.stderr
    assert f"rack.nodes[].arch says {wrong}" in text
    assert "needs at least 1000000000 MiB" in text
    assert "available (need 1000000000 MiB)" in text
    assert "free for /var/lib/rancher" in text
    assert "storage path /mnt/ssd does not exist" in text


def test_preflight_rejects_a_storage_path_that_is_not_a_mount(tmp_path: Path) -> None:
    (tmp_path / "root" / "mnt" / "ssd").mkdir(parents=True)
    result = fake_preflight(tmp_path, controllers="memory", boot_file=None, storage_path="/mnt/ssd")
    assert result.returncode == 1
    assert "storage path /mnt/ssd is not a mounted filesystem" in result.stderr


# --- the uninstall guard ------------------------------------------------------------------------


def test_uninstall_leaves_k3s_that_belongs_to_another_node_name(tmp_path: Path) -> None:
    etc = tmp_path / "etc" / "rancher" / "k3s"
    etc.mkdir(parents=True)
    (etc / "config.yaml").write_text("node-name: rack-pi-9\n")
    (tmp_path / "usr" / "local" / "bin").mkdir(parents=True)
    (tmp_path / "usr" / "local" / "bin" / "k3s").write_text("binary")
    result = run_bash(uninstall_script(hostname="rack-pi-1", layout=HostLayout(root=str(tmp_path))))
    assert result.returncode == 0, result.stderr
    assert "belongs to node 'rack-pi-9'" in result.stdout
    assert (etc / "config.yaml").exists() and (tmp_path / "usr" / "local" / "bin" / "k3s").exists()


def test_uninstall_on_a_clean_host_is_a_no_op(tmp_path: Path) -> None:
    script = uninstall_script(hostname="rack-pi-1", layout=HostLayout(root=str(tmp_path)))
    for _ in range(2):
        result = run_bash(script)
        assert result.returncode == 0, result.stderr
        assert "not installed here: nothing to do" in result.stdout


# --- registries.yaml: rendered, then written by the upgrade step's real bash ---------------------


def test_registries_yaml_has_the_shape_k3s_documents() -> None:
    """k3s docs, Private Registry Configuration: `configs.<host>.auth.{username,password}` and
    `configs.<host>.tls.ca_file`; no mirror is needed for images named after the registry."""
    text = render_registries(host="git.lab.home.arpa", username="puller", password="pw", ca_file=REGISTRY_CA_PATH)
    assert text.startswith(REGISTRIES_HEADER)
    assert yaml.safe_load(text) == {
        "configs": {
            "git.lab.home.arpa": {
                "auth": {"username": "puller", "password": "pw"},
                "tls": {"ca_file": "/etc/rancher/k3s/rack-ca.crt"},
            }
        }
    }
    no_ca = yaml.safe_load(render_registries(host="git.x.test", username="u", password="p", ca_file=None))
    assert no_ca == {"configs": {"git.x.test": {"auth": {"username": "u", "password": "p"}}}}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class FakeAgent:
    """An installed k3s agent under a root directory, for the upgrade step's real bash: a stand-in
    `k3s` that prints the version and an air-gap `install.sh` that counts its runs (each run is
    k3s' restart) and writes the kubelet kubeconfig the step waits for. TEST DOUBLES of k3s and its
    installer, as small as the script's checks allow."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.layout = HostLayout(root=str(root))
        binary = f"#!/bin/sh\necho 'k3s version {VERSION} (fake)'\n"
        for path, text in (
            ("usr/local/bin/k3s", binary),
            ("usr/local/bin/k3s-agent-uninstall.sh", "#!/bin/sh\n"),
            (f"var/tmp/homelab-k3s/{VERSION}/k3s", binary),
            (
                f"var/tmp/homelab-k3s/{VERSION}/install.sh",
                f"echo restart >>'{root}/restarts'\n"
                f"mkdir -p '{root}/var/lib/rancher/k3s/agent'\n"
                f"echo kubeconfig >'{root}/var/lib/rancher/k3s/agent/kubelet.kubeconfig'\n",
            ),
        ):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
            (root / path).chmod(0o755)
        (root / "etc/rancher/k3s").mkdir(parents=True, exist_ok=True)
        (root / "etc/rancher/k3s/join-token").write_text("K10agent::node:secret\n")
        rack = homelab()
        node = rack.node("rack-pi-1")
        assert node is not None
        self.script = upgrade_script(
            hostname=node.hostname,
            role=node.role,
            version=VERSION,
            config_text=config_yaml(render_config(rack, node, self.layout)),
            resolv_conf_text=render_resolv_conf(rack),
            source=InstallSource.AIRGAP,
            layout=self.layout,
        )

    def upgrade(self, registries: str | None, ca: str | None) -> subprocess.CompletedProcess[str]:
        # Agents' stdin: the agent token, an empty line 2, registries.yaml and the CA (base64).
        stdin = "K10agent::node:secret\n"
        if registries is not None:
            stdin += f"\n{_b64(registries)}\n{_b64(ca) if ca else ''}\n"
        result = run_bash(self.script, stdin)
        assert result.returncode == 0, result.stderr
        return result

    def restarts(self) -> int:
        path = self.root / "restarts"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def file(self, path: str) -> Path:
        return Path(self.layout.path(path))


CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def registries(password: str, layout: HostLayout) -> str:
    return render_registries(
        host="git.lab.home.arpa", username="rack-puller", password=password, ca_file=REGISTRY_CA_PATH, layout=layout
    )


def test_upgrade_writes_registries_and_ca_and_restarts_k3s_only_when_they_change(tmp_path: Path) -> None:
    agent = FakeAgent(tmp_path)
    agent.upgrade(None, None)  # config.yaml and resolv.conf are new: one restart, no registry yet
    assert agent.restarts() == 1 and not agent.file(REGISTRIES_PATH).exists()

    text = registries("pw-1", agent.layout)
    agent.upgrade(text, CA_PEM)
    assert agent.restarts() == 2
    assert agent.file(REGISTRIES_PATH).read_text() == text
    assert agent.file(REGISTRY_CA_PATH).read_text() == CA_PEM
    # The password is in registries.yaml: root only. The CA is public.
    assert agent.file(REGISTRIES_PATH).stat().st_mode & 0o777 == 0o600
    assert agent.file(REGISTRY_CA_PATH).stat().st_mode & 0o777 == 0o644

    agent.upgrade(text, CA_PEM)  # nothing changed: k3s keeps running
    assert agent.restarts() == 2

    agent.upgrade(registries("pw-2", agent.layout), CA_PEM)  # a new password: k3s must re-read it
    assert agent.restarts() == 3 and "pw-2" in agent.file(REGISTRIES_PATH).read_text()

    agent.upgrade(registries("pw-2", agent.layout), CA_PEM.replace("fake", "other"))  # a new CA
    assert agent.restarts() == 4 and "other" in agent.file(REGISTRY_CA_PATH).read_text()

    agent.upgrade(None, None)  # Gitea left the config: our files go, k3s restarts without them
    assert agent.restarts() == 5
    assert not agent.file(REGISTRIES_PATH).exists() and not agent.file(REGISTRY_CA_PATH).exists()


def test_upgrade_without_a_registry_leaves_a_registries_yaml_it_did_not_write(tmp_path: Path) -> None:
    agent = FakeAgent(tmp_path)
    agent.upgrade(None, None)
    own = "mirrors:\n  docker.io:\n    endpoint: [https://mirror.example]\n"
    agent.file(REGISTRIES_PATH).write_text(own)
    agent.upgrade(None, None)
    assert agent.file(REGISTRIES_PATH).read_text() == own
    assert agent.restarts() == 1

