"""K3sCluster under recording mocks: the graph the engine would get.

Ordering (bootstrap -> join token -> other servers and agents in parallel -> provider; upgrades
servers one at a time then agents), secrets (stdin, read-backs with logging off and secret
stdout, the provider's kubeconfig), no uninstall reachable from a trigger or a config change on a
node that stays, names stable when rack.nodes is reordered, and the number of sequential SSH
steps on the critical path, computed from the recorded depends_on graph.
"""

from __future__ import annotations

import base64
import copy
import functools
import itertools
import math
import re
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import kubernetes_validate
import pulumi
import pytest
import yaml

from components.core.layout import CONTROL_PLANE_TAINT, EXPERIMENTAL_TAINT, node_labels
from components.metal.k3s_cluster import (
    K3sCluster,
    K3sClusterArgs,
    render_node_layout,
    upgrade_batches,
    upgrade_order,
)
from components.metal.k3s_node import RegistryAccess
from components.metal.k3s_scripts import (
    PROGRAM_ACCOUNT,
    REGISTRY_CA_PATH,
    RENEW_EVERY_DAYS,
    TOKEN_DAYS,
    credential_period,
)
from plan.engine import DefaultMocks, Recording, Registration
from rack.config import Rack, parse_rack
from tests.conftest import stack_raw

COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
SSH_TYPES = (COMMAND, COPY)
NODE_PATCH = "kubernetes:core/v1:NodePatch"
PROVIDER = "pulumi:providers:kubernetes"

FULL_TOKEN = "K10" + "ab" * 32 + "::server:read-back-secret-token-0123456789"
AGENT_SECRET = "generated-agent-secret-0123456789abcdefghijklmn"
AGENT_FULL_TOKEN = "K10" + "ab" * 32 + "::node:" + AGENT_SECRET
GENERATED = {"k3s-token-value": "generated-cluster-token-0123456789abcdefghij", "k3s-agent-token-value": AGENT_SECRET}
USER_TOKEN = "user-supplied-k3s-token-0123456789abcdef"
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key-but-secret\n-----END OPENSSH PRIVATE KEY-----\n"
KUBECONFIG = (
    "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0EtREFUQQ==\n"
    "    server: https://127.0.0.1:6443\n  name: default\nusers:\n- name: default\n  user:\n"
    "    client-key-data: S0VZLURBVEEtU0VDUkVU\n"
)


class ReadBackMocks(DefaultMocks):
    """The read-back commands print what a k3s server would; generated secrets get a value."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        rid, state = super().new_resource(args)
        if args.typ == COMMAND and args.name.endswith("-agent-join-token"):
            state["stdout"] = AGENT_FULL_TOKEN + "\n"
        elif args.typ == COMMAND and args.name.endswith("-join-token"):
            state["stdout"] = FULL_TOKEN + "\n"
        elif args.typ == COMMAND and args.name.endswith("-kubeconfig"):
            state["stdout"] = KUBECONFIG
        elif args.typ == "pulumi-python:dynamic:Resource":
            state["value"] = GENERATED[args.name]
        return rid, state


def raw_rack(**k3s: Any) -> dict[str, Any]:
    raw = stack_raw("homelab")
    raw["apps"] = []  # the cluster alone; keeps class changes valid
    raw["k3s"].update(k3s)
    return raw


def with_agents(raw: dict[str, Any], count: int) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for i in range(count):
        raw["nodes"].append(
            {
                "hostname": f"rack-extra-{i}",
                "address": f"192.168.11.{10 + i}",
                "role": "agent",
                "class": "general",
                "arch": "arm64",
                "capacity": {"cpu": "4", "memory": "8Gi"},
            }
        )
    return raw


def etcd_raw() -> dict[str, Any]:
    raw = raw_rack(datastore="etcd", **{"bootstrap-server": "rack-cp-2"})
    cp = {k: v for k, v in raw["nodes"][0].items() if k != "host-key"}
    raw["nodes"].insert(1, {**cp, "hostname": "rack-cp-3", "address": "192.168.10.13"})
    raw["nodes"].append({**cp, "hostname": "rack-cp-2", "address": "192.168.10.12"})
    return raw


def build(record: Callable[..., Recording], raw: dict[str, Any], **kw: Any) -> Recording:
    rack = parse_rack(raw)
    secrets = kw.pop("secrets", {})

    def program() -> None:
        args = K3sClusterArgs(
            rack=rack,
            ssh_private_key=pulumi.Output.secret(SSH_KEY) if secrets.get("ssh") else None,
            token=pulumi.Output.secret(USER_TOKEN) if secrets.get("token") else None,
        )
        K3sCluster("k3s", args)

    return record(program, **kw)


def short(urn: str) -> str:
    return urn.split("::")[-1]


def graph(rec: Recording) -> dict[str, set[str]]:
    return {r.name: {short(d) for d in r.depends_on} for r in rec}


def reaches(g: dict[str, set[str]], start: str, target: str) -> bool:
    seen: set[str] = set()
    stack = [start]
    while stack:
        cur = stack.pop()
        if cur == target:
            return True
        if cur not in seen:
            seen.add(cur)
            stack.extend(g.get(cur, ()))
    return False


def ssh_depth(rec: Recording) -> dict[str, int]:
    """Per resource: the most SSH steps (Commands, copies) that must run one after another up to
    and including it, following the recorded depends_on edges."""
    by_name = {r.name: r for r in rec}
    g = graph(rec)

    @functools.cache
    def depth(name: str) -> int:
        own = 1 if by_name[name].type in SSH_TYPES else 0
        return own + max((depth(d) for d in g[name] if d in by_name), default=0)

    return {name: depth(name) for name in by_name}


def critical_path(rec: Recording) -> tuple[int, int]:
    """(sequential SSH steps until the cluster is ready, i.e. every NodePatch and taints step; the
    longest SSH chain overall)."""
    depths = ssh_depth(rec)
    ready = max(depths[r.name] for r in rec if r.type == NODE_PATCH or r.name.endswith("-taints"))
    return ready, max(depths.values())


def commands(rec: Recording) -> list[Registration]:
    return rec.of_type(COMMAND)


# --- ordering --------------------------------------------------------------------------------


def test_bootstrap_then_join_token_then_everyone_else_in_parallel(record: Callable[..., Recording]) -> None:
    rec = build(record, raw_rack())
    g = graph(rec)
    assert g["k3s-join-token"] >= {"k3s-rack-cp-1-install"}
    joiners = ["rack-pi-1", "rack-pi-2", "rack-db-1", "rack-lab-1"]
    # agents join with the agent token, read back after the bootstrap server's upgrade step set it
    assert g["k3s-agent-join-token"] >= {"k3s-rack-cp-1-upgrade"}
    for host in joiners:
        assert "k3s-agent-join-token" in g[f"k3s-{host}-install"]
        assert not reaches(g, f"k3s-{host}-install", "k3s-join-token")
        assert reaches(g, f"k3s-{host}-install", "k3s-rack-cp-1-install")
        for other in joiners:
            if other != host:
                assert not reaches(g, f"k3s-{host}-install", f"k3s-{other}-install"), (host, other)
    # the bootstrap server waits for nobody else
    assert not any(reaches(g, "k3s-rack-cp-1-install", f"k3s-{h}-install") for h in joiners)
    # provider after the kubeconfig read-back, which follows the bootstrap server's upgrade step
    provider = rec.of_type(PROVIDER)[0]
    assert "k3s-kubeconfig" in {short(d) for d in provider.depends_on}
    assert "k3s-rack-cp-1-upgrade" in g["k3s-kubeconfig"]
    # layout after registration, registration after install and membership
    for host in ["rack-cp-1", *joiners]:
        assert g[f"k3s-{host}-layout"] == {f"k3s-{host}-registration"}
        assert {f"k3s-{host}-install", f"k3s-{host}-membership"} <= g[f"k3s-{host}-registration"]
        assert rec.by_name(f"k3s-{host}-layout").provider.split("::")[-1].startswith("k3s-provider")


def test_the_explicit_bootstrap_server_starts_the_cluster_not_the_first_in_the_list(
    record: Callable[..., Recording],
) -> None:
    raw = etcd_raw()
    assert raw["nodes"][0]["hostname"] == "rack-cp-1"
    rec = build(record, raw)
    g = graph(rec)
    assert "k3s-join-token" not in g["k3s-rack-cp-2-install"]
    assert "k3s-rack-cp-2-install" in g["k3s-join-token"]
    assert "cluster-init: true" in rec.by_name("k3s-rack-cp-2-install").inputs["create"]
    for other in ("rack-cp-1", "rack-cp-3"):
        assert "k3s-join-token" in g[f"k3s-{other}-install"]  # servers join with the server token
        assert not reaches(g, f"k3s-{other}-install", "k3s-agent-join-token")
        assert "cluster-init" not in rec.by_name(f"k3s-{other}-install").inputs["create"]
    read_back = rec.by_name("k3s-join-token").inputs["connection"]
    assert read_back["host"] == "192.168.10.12"


def test_the_rollout_is_servers_one_at_a_time_then_agent_batches_each_after_the_last_gate(
    record: Callable[..., Recording],
) -> None:
    rack = parse_rack(etcd_raw())
    assert [n.hostname for n in upgrade_order(rack)] == [
        "rack-cp-2", "rack-cp-1", "rack-cp-3", "rack-db-1", "rack-lab-1", "rack-pi-1", "rack-pi-2",
    ]  # fmt: skip
    servers = [["rack-cp-2"], ["rack-cp-1"], ["rack-cp-3"]]
    for at_once, agents in (
        (1, [["rack-db-1"], ["rack-lab-1"], ["rack-pi-1"], ["rack-pi-2"]]),
        (2, [["rack-db-1", "rack-lab-1"], ["rack-pi-1", "rack-pi-2"]]),
        (3, [["rack-db-1", "rack-lab-1", "rack-pi-1"], ["rack-pi-2"]]),
    ):
        raw = etcd_raw()
        raw["k3s"]["upgrade"] = {"agents-at-once": at_once}
        batches = [[n.hostname for n in b] for b in upgrade_batches(parse_rack(raw))]
        assert batches == servers + agents, at_once
        rec = build(record, raw)
        g = graph(rec)
        for host in (h for b in batches for h in b):
            # per node: drain -> upgrade -> gate, the drain and the gate on the bootstrap server
            assert f"k3s-{host}-drain" in g[f"k3s-{host}-upgrade"]
            assert f"k3s-{host}-upgrade" in g[f"k3s-{host}-ready"]
            for step in ("drain", "ready"):
                assert rec.by_name(f"k3s-{host}-{step}").inputs["connection"]["host"] == "192.168.10.12"
        for before, after in itertools.pairwise(batches):
            for host in after:
                assert {f"k3s-{b}-ready" for b in before} <= g[f"k3s-{host}-drain"], (at_once, host)
        for batch in batches:
            for host in batch:
                for other in batch:
                    assert other == host or not reaches(g, f"k3s-{host}-ready", f"k3s-{other}-drain")
    for r in commands(rec):
        if r.name.endswith("-upgrade"):
            assert r.inputs["create"] == r.inputs["update"]
        if r.name.endswith(("-upgrade", "-drain", "-ready")):
            assert "delete" not in r.inputs


# --- critical path ---------------------------------------------------------------------------


def upgrade_path(record: Callable[..., Recording], raw: dict[str, Any]) -> int:
    """Sequential SSH steps a version bump runs: the longest chain among the commands whose
    inputs change (the engine runs only those), following the recorded depends_on edges."""
    before = build(record, raw)
    bumped = copy.deepcopy(raw)
    bumped["k3s"]["version"] = "v1.36.5+k3s1"
    after = build(record, bumped)
    old = {r.name: r.inputs for r in before}
    by_name = {r.name: r for r in after}
    changed = {
        r.name for r in after if r.type == COMMAND and old[r.name] != r.inputs and not r.name.endswith("-install")
    }
    g = graph(after)

    @functools.cache
    def depth(name: str) -> int:
        own = 1 if name in changed else 0
        return own + max((depth(d) for d in g[name] if d in by_name), default=0)

    return max(depth(n) for n in changed)


def test_the_upgrade_critical_path_is_three_steps_per_server_and_per_agent_batch(
    record: Callable[..., Recording],
) -> None:
    """3 x (servers + ceil(agents / agents-at-once)): drain, upgrade, gate for each server, then
    for each batch of agents (the homelab: 1 server + 4 agents, one at a time = 15 steps)."""
    for extra, at_once in ((0, 1), (0, 2), (3, 1), (3, 2), (4, 4)):
        raw = with_agents(raw_rack(upgrade={"agents-at-once": at_once}), extra)
        agents = 4 + extra
        assert upgrade_path(record, raw) == 3 * (1 + math.ceil(agents / at_once)), (extra, at_once)
    assert upgrade_path(record, etcd_raw()) == 3 * (3 + 4)


def test_the_first_install_waits_for_no_agent_batch(record: Callable[..., Recording]) -> None:
    """Workloads wait for the nodes' layout (NodePatch, taints), not for the rollout's gates."""
    homelab = critical_path(build(record, raw_rack()))
    many = critical_path(build(record, with_agents(raw_rack(), 20)))
    # ready: preflight, bootstrap install, drain, upgrade (sets the agent token), agent-join-token,
    # agent install, registration, taints (after the NodePatch)
    assert homelab[0] == many[0] == 8
    airgap = raw_rack(install={"source": "airgap", "airgap-dir": "./airgap"})
    assert critical_path(build(record, with_agents(airgap, 20)))[0] == 8  # copies run beside the preflight


# --- secrets ---------------------------------------------------------------------------------


def test_secrets_are_marked_and_never_in_command_text(record: Callable[..., Recording]) -> None:
    rec = build(record, raw_rack(), preview=False, mocks=ReadBackMocks(), secrets={"ssh": True, "token": True})
    installs = [r for r in commands(rec) if r.name.endswith("-install")]
    assert len(installs) == 5
    for r in installs:
        assert "stdin" in r.secret_paths
        assert r.redacted["stdin"] == "[secret]"
    # the bootstrap server: the cluster token and the agent token's secret (agent-token-file)
    assert rec.by_name("k3s-rack-cp-1-install").inputs["stdin"] == f"{USER_TOKEN}\n{AGENT_SECRET}\n"
    # agents get the read-back full agent token, which pins the cluster CA, never the server token
    for agent in ("rack-pi-1", "rack-pi-2", "rack-db-1", "rack-lab-1"):
        for step in ("install", "upgrade"):
            r = rec.by_name(f"k3s-{agent}-{step}")
            assert r.inputs["stdin"] == AGENT_FULL_TOKEN + "\n" and "stdin" in r.secret_paths
    assert rec.by_name("k3s-rack-cp-1-upgrade").inputs["stdin"] == f"{USER_TOKEN}\n{AGENT_SECRET}\n"
    for name in ("k3s-join-token", "k3s-agent-join-token", "k3s-kubeconfig"):
        r = rec.by_name(name)
        assert r.inputs["logging"] == "none"
        assert "stdout" in r.additional_secret_outputs
    provider = rec.of_type(PROVIDER)[0]
    assert "kubeconfig" in provider.secret_paths
    assert "https://192.168.10.11:6443" in provider.inputs["kubeconfig"]
    assert "127.0.0.1" not in provider.inputs["kubeconfig"]
    assert provider.inputs["clusterIdentifier"] == "lab.home.arpa"
    for r in commands(rec):
        assert "connection" in r.secret_paths  # holds the private key
        assert r.inputs["connection"]["privateKey"] == SSH_KEY
        for field in ("create", "update", "delete"):
            text = str(r.inputs.get(field, ""))
            for secret in (USER_TOKEN, FULL_TOKEN, AGENT_SECRET, "read-back-secret", "S0VZLURBVEEtU0VDUkVU"):
                assert secret not in text, (r.name, field)
            assert "not-a-real-key" not in text, (r.name, field)
    for r in rec:
        for secret in (USER_TOKEN, FULL_TOKEN, AGENT_SECRET, SSH_KEY, "S0VZLURBVEEtU0VDUkVU"):
            assert secret not in repr(r.redacted), r.name


def test_no_user_token_generates_one_and_no_key_uses_the_agent(record: Callable[..., Recording]) -> None:
    rec = build(record, raw_rack())
    generated = {r.name for r in rec.of_type("pulumi-python:dynamic:Resource")}
    assert generated == {"k3s-token-value", "k3s-agent-token-value"}
    for r in commands(rec):
        assert "privateKey" not in r.inputs["connection"]
    with_token = build(record, raw_rack(), secrets={"token": True})
    # the agent token is always generated: it is the program's, never the user's server token
    assert [r.name for r in with_token.of_type("pulumi-python:dynamic:Resource")] == ["k3s-agent-token-value"]


# Test input, not any host's key: the sample stack pins none (a made-up key there would be a lie).
# Generated once with `ssh-keygen -t ed25519`; its private half was thrown away.
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFrp+CMpPNRXFpEcpWb0cD+AzxQB5QxdhRiuci2BxgRU"


def test_ssh_user_is_always_the_configured_one_and_host_keys_are_pinned(record: Callable[..., Recording]) -> None:
    raw = raw_rack()
    raw["nodes"][0]["host-key"] = HOST_KEY  # pinned on rack-cp-1 only
    rec = build(record, raw)
    for r in [*commands(rec), *rec.of_type(COPY)]:
        conn = r.inputs["connection"]
        assert conn["user"] == "pi"
        assert conn["port"] == 22
        if conn["host"] == "192.168.10.11":
            assert conn["hostKey"] == HOST_KEY
        else:
            assert "hostKey" not in conn


# --- no uninstall from a trigger -------------------------------------------------------------


def capture_options(record: Callable[..., Recording], raw: dict[str, Any]) -> tuple[Recording, dict[str, Any]]:
    """Resource options are invisible to the mock monitor: read them in a stack transformation."""
    seen: dict[str, Any] = {}
    rack = parse_rack(raw)

    def transformation(args: pulumi.ResourceTransformationArgs) -> None:
        seen[args.name] = args.opts
        return None

    def program() -> None:
        pulumi.runtime.register_stack_transformation(transformation)
        K3sCluster("k3s", K3sClusterArgs(rack=rack))

    return record(program), seen


def test_only_membership_deletes_uninstall_and_nothing_with_a_delete_has_triggers(
    record: Callable[..., Recording],
) -> None:
    rec, opts = capture_options(record, raw_rack(install={"source": "airgap", "airgap-dir": "./airgap"}))
    # what only the uninstall does: run k3s' uninstaller and wipe k3s' state
    markers = ('sh "$uninstaller"', 'rm -rf "$R/etc/rancher/k3s" "$R/var/lib/rancher/k3s"')
    for r in commands(rec):
        for field in ("create", "update"):
            for marker in markers:
                assert marker not in str(r.inputs.get(field, "")), (r.name, field)
        if r.inputs.get("delete"):
            assert not r.inputs.get("triggers"), r.name
            # the SDK makes every Command replace on `triggers[*]` alone; with no triggers, nothing replaces it
            assert (opts[r.name].replace_on_changes or []) == ["triggers[*]"], r.name
            assert r.name.endswith(("-membership", "-registration")), r.name
            for marker in markers:
                assert (marker in r.inputs["delete"]) == r.name.endswith("-membership")
        if r.inputs.get("triggers"):
            assert "delete" not in r.inputs, r.name
    members = [r for r in commands(rec) if r.name.endswith("-membership")]
    assert len(members) == 5
    for r in commands(rec):
        if r.name.endswith("-install"):
            assert opts[r.name].ignore_changes == ["create", "stdin"]
        if r.name.endswith(("-join-token", "-kubeconfig")):
            assert "stdout" in (opts[r.name].additional_secret_outputs or [])


def variants() -> dict[str, dict[str, Any]]:
    base = raw_rack()
    out: dict[str, dict[str, Any]] = {}
    bumped = copy.deepcopy(base)
    bumped["k3s"]["version"] = "v1.36.5+k3s1"
    out["version bump"] = bumped
    reclass = copy.deepcopy(base)
    lab = next(n for n in reclass["nodes"] if n["hostname"] == "rack-lab-1")
    lab["class"] = "general"
    out["class change"] = reclass
    reserve = copy.deepcopy(base)
    reserve["k3s"]["system-reserved"] = {"cpu": "500m", "memory": "1Gi"}
    out["system-reserved change"] = reserve
    reordered = copy.deepcopy(base)
    reordered["nodes"] = list(reversed(reordered["nodes"]))
    out["reordered nodes"] = reordered
    fewer = copy.deepcopy(base)
    fewer["nodes"] = [n for n in fewer["nodes"] if n["hostname"] != "rack-pi-2"]
    fewer["ingress"]["address"] = "192.168.10.21"
    out["another node removed"] = fewer
    return out


@pytest.mark.parametrize("change", list(variants()))
def test_a_config_change_on_nodes_that_stay_leaves_their_uninstall_untouched(
    record: Callable[..., Recording], change: str
) -> None:
    """Membership (delete = uninstall) and registration (delete = drain) of every node that stays
    get identical inputs, so neither is updated, replaced or deleted: no uninstall can run."""
    before = build(record, raw_rack())
    after = build(record, variants()[change])
    guarded = {r.name: r.inputs for r in commands(before) if r.name.endswith(("-membership", "-registration"))}
    kept = {r.name: r.inputs for r in commands(after) if r.name in guarded}
    removed = set(guarded) - set(kept)
    assert removed <= {"k3s-rack-pi-2-membership", "k3s-rack-pi-2-registration"}
    assert (change == "another node removed") == bool(removed)
    for name, inputs in kept.items():
        assert inputs == guarded[name], (change, name)


def test_a_version_bump_changes_upgrades_and_copies_only(record: Callable[..., Recording]) -> None:
    airgap = {"install": {"source": "airgap", "airgap-dir": "./airgap"}}
    before = build(record, raw_rack(**airgap))
    bumped_raw = raw_rack(**airgap)
    bumped_raw["k3s"]["version"] = "v1.36.5+k3s1"
    after = build(record, bumped_raw)
    old = {r.name: r.inputs for r in before}
    changed = {r.name for r in after if old.get(r.name) != r.inputs}
    upgrades = {f"k3s-{h}-upgrade" for h in ("rack-cp-1", "rack-pi-1", "rack-pi-2", "rack-db-1", "rack-lab-1")}
    copies = {f"k3s-{h}-{s}" for h in ("rack-cp-1", "rack-pi-1", "rack-pi-2", "rack-db-1", "rack-lab-1")
              for s in ("binary", "installer")}  # fmt: skip
    installs = {f"k3s-{h}-install" for h in ("rack-cp-1", "rack-pi-1", "rack-pi-2", "rack-db-1", "rack-lab-1")}
    gates = {f"k3s-{h}-{s}" for h in ("rack-cp-1", "rack-pi-1", "rack-pi-2", "rack-db-1", "rack-lab-1")
             for s in ("drain", "ready")}  # fmt: skip
    # install's create text changes too, but ignore_changes=["create"] keeps it out of the diff;
    # the provider's credential is not tied to the version (it is renewed by period)
    assert changed == upgrades | copies | installs | gates


def test_names_are_stable_when_the_node_list_is_reordered(record: Callable[..., Recording]) -> None:
    raw = etcd_raw()
    a = build(record, raw)
    reordered = copy.deepcopy(raw)
    reordered["nodes"] = list(reversed(reordered["nodes"]))
    b = build(record, reordered)

    def key(rec: Recording) -> dict[str, tuple[str, Any, list[str]]]:
        return {r.name: (r.type, r.redacted, sorted(short(d) for d in r.depends_on)) for r in rec}

    assert key(a) == key(b)
    assert len(key(a)) == len(a)  # names unique


# --- layout through the API ------------------------------------------------------------------


def test_node_patches_carry_the_layout_and_validate_against_kubernetes_1_31(record: Callable[..., Recording]) -> None:
    rack: Rack = parse_rack(raw_rack())
    rec = build(record, raw_rack())
    assert str(rack.dns.address) == "192.168.10.21"  # rack-pi-1
    for node in rack.nodes:
        manifest = render_node_layout(node, lan_dns_address=rack.dns.address)
        kubernetes_validate.validate(manifest, "1.31", strict=True)
        patch = rec.by_name(f"k3s-{node.hostname}-layout")
        assert patch.inputs["metadata"]["name"] == node.hostname
        # With rack.dns.address every node is in ServiceLB's enablelb set (so Traefik and Gitea's
        # SSH keep every node), and only the node at the address is in the LAN DNS pool.
        servicelb = {"svccontroller.k3s.cattle.io/enablelb": "true"}
        if node.hostname == "rack-pi-1":
            servicelb["svccontroller.k3s.cattle.io/lbpool"] = "rack-lan-dns"
        assert patch.inputs["metadata"]["labels"] == {
            **node_labels(node_class=node.node_class, role=node.role, arch=node.arch),
            **servicelb,
        }
        # Forced over k3s' own labels, as the stack's one field manager (the recording's homelab/homelab).
        assert patch.inputs["metadata"]["annotations"] == {
            "pulumi.com/patchForce": "true",
            "pulumi.com/patchFieldManager": "pulumi-homelab-homelab",
        }
        # never spec.taints: an atomic list, a server-side apply would own (and replace) all of it
        assert "spec" not in patch.inputs
        taints = rec.by_name(f"k3s-{node.hostname}-taints")
        assert taints.inputs["connection"]["host"] == "192.168.10.11"  # kubectl on the bootstrap server
        assert f"k3s-{node.hostname}-layout" in {short(d) for d in taints.depends_on}
    assert (
        "want_args=(node-role.kubernetes.io/control-plane:NoSchedule)"
        in (rec.by_name("k3s-rack-cp-1-taints").inputs["create"])
    )
    assert (
        "want_args=(rack.homelab.io/experimental=true:NoSchedule)"
        in (rec.by_name("k3s-rack-lab-1-taints").inputs["create"])
    )
    assert "want_args=()" in rec.by_name("k3s-rack-pi-1-taints").inputs["create"]
    assert CONTROL_PLANE_TAINT.to_k3s() == "node-role.kubernetes.io/control-plane:NoSchedule"
    assert EXPERIMENTAL_TAINT.to_k3s() == "rack.homelab.io/experimental=true:NoSchedule"


def test_a_class_change_patches_the_live_node_and_reconfigures_without_reinstalling(
    record: Callable[..., Recording],
) -> None:
    before = build(record, raw_rack())
    after = build(record, variants()["class change"])
    old = {r.name: r.inputs for r in before}
    changed = {r.name for r in after if old.get(r.name) != r.inputs}
    # labels through the API, taints by kubectl; config.yaml (for a future re-registration) via the
    # upgrade step; the install's create changes but is ignored (ignore_changes): nothing reinstalls
    # the gate follows the upgrade step (which restarts k3s for config.yaml); no drain: same version
    assert changed == {
        "k3s-rack-lab-1-layout",
        "k3s-rack-lab-1-taints",
        "k3s-rack-lab-1-upgrade",
        "k3s-rack-lab-1-ready",
        "k3s-rack-lab-1-install",
    }
    assert "want_args=()" in after.by_name("k3s-rack-lab-1-taints").inputs["create"]


# --- the provider's credential ---------------------------------------------------------------


def build_on(record: Callable[..., Recording], day: date) -> Recording:
    rack = parse_rack(raw_rack())
    return record(lambda: K3sCluster("k3s", K3sClusterArgs(rack=rack, today=day)))


def test_the_credential_is_renewed_once_a_period_and_a_second_up_changes_nothing(
    record: Callable[..., Recording],
) -> None:
    day = date(2026, 12, 6)
    first, again = build_on(record, day), build_on(record, day)
    assert {r.name: r.inputs for r in first} == {r.name: r.inputs for r in again}
    # the period is RENEW_EVERY_DAYS long: the same trigger until it ends, a new one after
    start = next(
        day - timedelta(days=n)
        for n in range(RENEW_EVERY_DAYS)
        if credential_period(day - timedelta(days=n + 1)) != credential_period(day)
    )
    assert credential_period(start + timedelta(days=RENEW_EVERY_DAYS - 1)) == credential_period(day)
    later = build_on(record, start + timedelta(days=RENEW_EVERY_DAYS))
    old = {r.name: r.inputs for r in first}
    assert {r.name for r in later if old[r.name] != r.inputs} == {"k3s-kubeconfig"}
    # a token outlives its period, so one in use has not expired while its period lasts
    assert TOKEN_DAYS > RENEW_EVERY_DAYS


def test_the_provider_gets_a_service_account_token_never_the_admin_certificate(
    record: Callable[..., Recording],
) -> None:
    rec = build(record, raw_rack())
    script = rec.by_name("k3s-kubeconfig").inputs["create"]
    assert f"create token {PROGRAM_ACCOUNT} --duration={TOKEN_DAYS * 24}h" in script
    assert "name: cluster-admin" in script and "client-certificate" not in script
    assert rec.by_name("k3s-kubeconfig").inputs["logging"] == "none"


def test_without_a_lan_dns_address_every_node_stays_in_servicelb_s_set(record: Callable[..., Recording]) -> None:
    """Without rack.dns.address every node still carries enablelb=true and none the pool: the
    labels never come and go with the key, since k3s keeps an svclb DaemonSet's enablelb selector
    once no node carries the label (`onChangeNode`, pkg/cloudprovider/servicelb.go), which would
    leave Traefik's and Gitea's SSH svclb pods on no node."""
    raw = raw_rack()
    del raw["dns"]["address"]
    rack: Rack = parse_rack(raw)
    rec = build(record, raw)
    for node in rack.nodes:
        labels = rec.by_name(f"k3s-{node.hostname}-layout").inputs["metadata"]["labels"]
        assert labels == {
            **node_labels(node_class=node.node_class, role=node.role, arch=node.arch),
            "svccontroller.k3s.cattle.io/enablelb": "true",
        }


# --- the rack's registry: registries.yaml and the CA file on every node ------------------------

PULL_PASSWORD = "pull-password-0123456789abcdefghij"
CA_ONE = "-----BEGIN CERTIFICATE-----\nMIIBrackCAone\n-----END CERTIFICATE-----\n"
CA_TWO = "-----BEGIN CERTIFICATE-----\nMIIBrackCAtwo\n-----END CERTIFICATE-----\n"
HOSTS = ("rack-cp-1", "rack-pi-1", "rack-pi-2", "rack-db-1", "rack-lab-1")


def build_with_registry(record: Callable[..., Recording], ca: str | None) -> Recording:
    rack = parse_rack(raw_rack())

    def program() -> None:
        registry = RegistryAccess(
            host="git.lab.home.arpa",
            username="rack-puller",
            password=pulumi.Output.secret(PULL_PASSWORD),
            ca_cert_pem=ca,
        )
        K3sCluster("k3s", K3sClusterArgs(rack=rack, registry=registry))

    return record(program, preview=False, mocks=ReadBackMocks())


def test_every_node_gets_registries_and_the_ca_on_stdin_never_in_command_text(
    record: Callable[..., Recording],
) -> None:
    rec = build_with_registry(record, CA_ONE)
    for host in HOSTS:
        for step in ("install", "upgrade"):
            r = rec.by_name(f"k3s-{host}-{step}")
            assert "stdin" in r.secret_paths and r.redacted["stdin"] == "[secret]"
            lines = r.inputs["stdin"].split("\n")
            # line 1 the join token; line 2 the agent token's secret on servers, empty on agents
            assert (lines[1] == AGENT_SECRET) == (host == "rack-cp-1") and (lines[1] == "") == (host != "rack-cp-1")
            registries = yaml.safe_load(base64.b64decode(lines[2]))
            # the shape of k3s' registries.yaml (k3s docs, Private Registry Configuration)
            assert registries["configs"] == {
                "git.lab.home.arpa": {
                    "auth": {"username": "rack-puller", "password": PULL_PASSWORD},
                    "tls": {"ca_file": REGISTRY_CA_PATH},
                }
            }
            assert base64.b64decode(lines[3]).decode() == CA_ONE
    for r in rec:
        assert PULL_PASSWORD not in repr(r.redacted), r.name
        for field in ("create", "update", "delete"):
            assert PULL_PASSWORD not in str(r.inputs.get(field, "")), (r.name, field)


def test_a_new_ca_rolls_through_the_upgrade_steps_and_their_gates_only(record: Callable[..., Recording]) -> None:
    before = build_with_registry(record, CA_ONE)
    after = build_with_registry(record, CA_TWO)
    old = {r.name: r.inputs for r in before}
    changed = {r.name for r in after if old.get(r.name) != r.inputs}
    # install's stdin changes too, but ignore_changes=["stdin"] keeps it out of the diff; the gate
    # ("ready") re-runs so each node is Ready again before the next one restarts
    expected = {f"k3s-{h}-{s}" for h in HOSTS for s in ("upgrade", "install", "ready")}
    assert changed == expected


def test_without_a_registry_stdin_and_gates_are_what_they_were(record: Callable[..., Recording]) -> None:
    """A rack without Gitea sees no change at all from this feature (no spurious restart)."""
    plain = build(record, raw_rack(), preview=False, mocks=ReadBackMocks())
    for host in HOSTS[1:]:
        assert plain.by_name(f"k3s-{host}-upgrade").inputs["stdin"] == AGENT_FULL_TOKEN + "\n"
    gate = plain.by_name("k3s-rack-pi-1-ready").inputs["create"]
    # the digest of the upgrade text alone, as before registries (no "+<registry digest>")
    assert re.search(r"# gate for the upgrade step converging to [0-9a-f]{16}\n", gate)
