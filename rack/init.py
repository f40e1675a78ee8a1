"""`python -m rack.init` (`make init`): write a new stack file, `Pulumi.<stack>.yaml`.

Creates nothing but that file. Its values come from flags (CI, tests) or, for each one missing
while stdin is a terminal, a prompt: the stack name, the domain, the nodes (hostname, address,
class), the GPU host's address. The text is read back through the loader `python -m plan` uses
(`StackFile.load`, which ends in `parse_rack`) before it is written, so a stack `init` writes is
one the plan accepts. An existing file is never overwritten. `--scan-host-keys` pins each host's
ed25519 key as `ssh-keyscan -t ed25519` reads it.

Exit 0: written. 1: not written because of the machine or the network (the file exists, a host
did not answer, no ssh-keyscan). 2: invalid input, each problem naming its flag and key path.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import TypeAdapter, ValidationError

from rack.config import ConfigError, Domain, Hostname, Ipv4
from rack.loader import PROJECT, RACK_KEY, StackFile
from rack.vocabulary import NodeClass, Role

K3S_VERSION = "v1.36.4+k3s1"
"""The k3s release a new stack pins: the sample stack's (tests/rack/test_init.py keeps them equal)."""

GPU_CONTAINER: dict[str, Any] = {
    "name": "ollama",
    # renovate: datasource=docker depName=ollama/ollama
    "image": "ollama/ollama:0.32.15",
    "gpus": "all",
    "port": 11434,
    "volumes": {"/srv/ollama": "/root/.ollama"},
    "health-path": "/api/tags",
}
"""The model server a new GPU host runs: the sample stack's (a test keeps them equal)."""

GPU_SERVICE: dict[str, Any] = {"namespace": "ai", "name": "inference", "port": 11434}
"""How pods reach it (`uses: [inference]`)."""

DEFAULT_CPU = "4"
DEFAULT_MEMORY = "8Gi"
"""A node's capacity unless its `--node` says otherwise (a Raspberry Pi 5 with 8 GB)."""

DEFAULT_DOMAIN = "lab.home.arpa"
DEFAULT_STACK = "home"
SCAN_TIMEOUT = 5
"""Seconds ssh-keyscan waits for each host."""

_STACK_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_NODE_KEYS = ("cpu", "memory", "arch", "storage")
NODE_FORM = "HOSTNAME,ADDRESS[,CLASS][,cpu=N][,memory=Q][,arch=A][,storage=PATH:SIZE]"
_PLAIN = re.compile(r"^[A-Za-z0-9/][A-Za-z0-9._/+@-]*$")
_ROOT = Path(__file__).resolve().parent.parent

EXIT_WRITTEN, EXIT_NOT_WRITTEN, EXIT_INVALID = 0, 1, 2


class InputError(Exception):
    """Problems with the flags or answers, each naming the flag (and key path when there is one)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class NotWrittenError(Exception):
    """The file was not written for a reason outside the input (it exists, a host is down)."""


@dataclass(frozen=True)
class NodeSpec:
    """One `--node HOSTNAME,ADDRESS[,CLASS][,cpu=N][,memory=Q][,arch=A][,storage=PATH:SIZE]`."""

    hostname: str
    address: str
    node_class: str
    source: str
    """The flag's text (or the answers), quoted back in error messages."""
    cpu: str = DEFAULT_CPU
    memory: str = DEFAULT_MEMORY
    arch: str = "arm64"
    storage: tuple[str, str] | None = None

    @property
    def role(self) -> str:
        # The config allows exactly this pairing (rack_problems): a server is control-plane.
        return Role.SERVER.value if self.node_class == NodeClass.CONTROL_PLANE.value else Role.AGENT.value


def parse_node(text: str, index: int) -> NodeSpec:
    """`index` is 0-based; the first node defaults to control-plane, the others to general."""
    where = f"--node #{index + 1} ({text!r})"
    parts = [p.strip() for p in text.split(",")]
    positional = [p for p in parts if "=" not in p]
    named = [p for p in parts if "=" in p]
    if len(positional) < 2 or not all(positional[:2]):
        raise InputError([f"{where}: expected {NODE_FORM}"])
    if len(positional) > 3 or parts[: len(positional)] != positional:
        raise InputError([f"{where}: after HOSTNAME,ADDRESS[,CLASS] only key=value parts ({', '.join(_NODE_KEYS)})"])
    default_class = NodeClass.CONTROL_PLANE if index == 0 else NodeClass.GENERAL
    node_class = positional[2] if len(positional) == 3 else default_class.value
    values: dict[str, str] = {}
    problems = []
    for part in named:
        key, _, value = part.partition("=")
        if key not in _NODE_KEYS:
            problems.append(f"{where}: unknown part {key!r} (known: {', '.join(_NODE_KEYS)})")
        elif key in values:
            problems.append(f"{where}: {key} given twice")
        else:
            values[key] = value
    storage = None
    if "storage" in values:
        path, sep, size = values["storage"].rpartition(":")
        if not sep or not path or not size:
            problems.append(f"{where}: storage=PATH:SIZE, e.g. storage=/mnt/ssd:460Gi")
        else:
            storage = (path, size)
    if problems:
        raise InputError(problems)
    return NodeSpec(
        hostname=positional[0],
        address=positional[1],
        node_class=node_class,
        source=text,
        cpu=values.get("cpu", DEFAULT_CPU),
        memory=values.get("memory", DEFAULT_MEMORY),
        arch=values.get("arch", "arm64"),
        storage=storage,
    )


@dataclass(frozen=True)
class Answers:
    """Everything the stack file is written from."""

    stack: str
    domain: str
    nodes: list[NodeSpec]
    ssh_user: str = "pi"
    ssh_port: int = 22
    k3s_version: str = K3S_VERSION
    ingress_address: str | None = None
    gpu_address: str | None = None
    gpu_hostname: str = "gpu"
    gpu_ssh_user: str = "ops"
    gpu_ssh_port: int = 22


# --- the stack: raw config, text, validation -------------------------------------------------------


def ingress_address(answers: Answers) -> str:
    """`--ingress-address`, else the first general node (Traefik runs there), else the first node."""
    if answers.ingress_address:
        return answers.ingress_address
    for wanted in (NodeClass.GENERAL, NodeClass.RELIABLE):
        for node in answers.nodes:
            if node.node_class == wanted.value:
                return node.address
    return answers.nodes[0].address


def raw_rack(answers: Answers, host_keys: dict[str, str] | None = None) -> dict[str, Any]:
    """The `homelab:rack` value (kebab-case keys, as the YAML spells them)."""
    host_keys = host_keys or {}
    servers = [n for n in answers.nodes if n.role == Role.SERVER.value]
    k3s: dict[str, Any] = {"version": answers.k3s_version, "datastore": "sqlite"}
    if len(servers) > 1:
        # More than one server needs etcd and a named bootstrap server (rack_problems says so).
        k3s = {"version": answers.k3s_version, "datastore": "etcd", "bootstrap-server": servers[0].hostname}
    nodes = []
    for n in answers.nodes:
        node: dict[str, Any] = {
            "hostname": n.hostname,
            "address": n.address,
            "role": n.role,
            "class": n.node_class,
            "arch": n.arch,
        }
        node["capacity"] = {"cpu": n.cpu, "memory": n.memory}
        if n.storage is not None:
            node["storage"] = {"path": n.storage[0], "size": n.storage[1]}
        if n.hostname in host_keys:
            node["host-key"] = host_keys[n.hostname]
        nodes.append(node)
    rack: dict[str, Any] = {
        "domain": answers.domain,
        "ssh": {"user": answers.ssh_user, "port": answers.ssh_port},
        "k3s": k3s,
        "nodes": nodes,
        "ingress": {"address": ingress_address(answers)},
    }
    if answers.gpu_address is not None:
        gpu: dict[str, Any] = {
            "hostname": answers.gpu_hostname,
            "address": answers.gpu_address,
            "ssh-user": answers.gpu_ssh_user,
            "ssh-port": answers.gpu_ssh_port,
        }
        if answers.gpu_hostname in host_keys:
            gpu["host-key"] = host_keys[answers.gpu_hostname]
        gpu["containers"] = [dict(GPU_CONTAINER)]
        gpu["service"] = dict(GPU_SERVICE)
        rack["gpu-host"] = gpu
    return rack


def _scalar(value: Any) -> str:
    """A YAML scalar that reads back as exactly `value` (quoted only where YAML would misread it)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(value)
    if isinstance(value, int):
        return str(value)
    if _PLAIN.match(value) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)


def _flow(mapping: dict[str, Any]) -> str:
    parts = []
    for key, value in mapping.items():
        inner = _flow(value) if isinstance(value, dict) else _scalar(value)
        parts.append(f"{_scalar(key)}: {inner}")
    return "{" + ", ".join(parts) + "}"


def _fingerprint(host_key: str) -> str:
    """The SHA256 fingerprint `ssh-keygen -l` prints for a public key."""
    blob = base64.b64decode(host_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _key_lines(indent: str, address: str, port: int, key: str | None) -> list[str]:
    scan = f"ssh-keyscan -t ed25519{'' if port == 22 else f' -p {port}'} {address}"
    if key is None:
        return [f"{indent}# host-key: not pinned; the real one: {scan}"]
    return [f"{indent}host-key: {_scalar(key)}   # {_fingerprint(key)}, read by {scan}"]


def render(answers: Answers, rack: dict[str, Any], schema: str, plan: str) -> str:
    """The stack file's text: `rack` (from `raw_rack`) with comments that say where values came from.

    `plan` is the command that plans this file (`make plan STACK=home`)."""
    lines = [
        f"# yaml-language-server: $schema={schema}",
        f"# Stack {answers.stack}, written by `make init` (python -m rack.init); every key is in the README's",
        f"# config reference. Check it offline with `{plan}` (exit 0: valid, and every pod has a",
        "# place), then follow docs/first-install.md. Secrets are optional overrides: without them the",
        "# program generates each one on the first `pulumi up`; the SSH key comes from ssh-agent.",
        "# A host-key pins a host's SSH key (else pulumi-command accepts any key): check the fingerprint",
        "# on the host's console with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`.",
        "config:",
        '  pulumi:disable-default-providers: ["kubernetes", "docker"]',
        f"  {PROJECT}:{RACK_KEY}:",
        f"    domain: {_scalar(rack['domain'])}",
        f"    ssh: {_flow(rack['ssh'])}",
        "    k3s:",
    ]
    lines += [f"      {k}: {_scalar(v)}" for k, v in rack["k3s"].items()]
    lines.append("    nodes:")
    for node in rack["nodes"]:
        first = True
        for key, value in node.items():
            if key == "host-key":
                continue
            text = _flow(value) if isinstance(value, dict) else _scalar(value)
            lines.append(f"      {'- ' if first else '  '}{key}: {text}")
            first = False
        lines += _key_lines("        ", node["address"], answers.ssh_port, node.get("host-key"))
    lines.append(f"    ingress: {_flow(rack['ingress'])}   # where *.{rack['domain']} resolves")
    gpu = rack.get("gpu-host")
    if gpu is not None:
        lines.append("    gpu-host:")
        for key in ("hostname", "address", "ssh-user", "ssh-port"):
            lines.append(f"      {key}: {_scalar(gpu[key])}")
        lines += _key_lines("      ", gpu["address"], gpu["ssh-port"], gpu.get("host-key"))
        lines.append("      containers:")
        for container in gpu["containers"]:
            lines.append(f"        - {_flow(container)}")
        lines.append(f"      service: {_flow(gpu['service'])}   # apps reach it with uses: [{gpu['service']['name']}]")
    lines += [
        "    # Next: Gitea, databases, monitoring and your apps. Copy those sections from the sample",
        "    # rack, Pulumi.homelab.yaml (databases and Gitea need a class: reliable node with storage).",
    ]
    return "\n".join(lines) + "\n"


_FLAGS = (
    ("rack.domain", "--domain"),
    ("rack.ssh.user", "--ssh-user"),
    ("rack.ssh.port", "--ssh-port"),
    ("rack.k3s.version", "--k3s-version"),
    ("rack.k3s", "--node (the control-plane nodes)"),
    ("rack.ingress", "--ingress-address"),
    ("rack.gpu-host.hostname", "--gpu-hostname"),
    ("rack.gpu-host.ssh-user", "--gpu-ssh-user"),
    ("rack.gpu-host.ssh-port", "--gpu-ssh-port"),
    ("rack.gpu-host", "--gpu-host"),
    ("rack.nodes", "--node"),
)


def flag_of(path: str, nodes: list[NodeSpec]) -> str:
    """The flag a key path's value came from: `rack.nodes[1].address` -> `--node #2 ('pi-1,...')`."""
    match = re.match(r"^rack\.nodes\[(\d+)\]", path)
    if match and int(match[1]) < len(nodes):
        index = int(match[1])
        return f"--node #{index + 1} ({nodes[index].source!r})"
    for prefix, flag in _FLAGS:
        if path == prefix or path.startswith((prefix + ".", prefix + "[")):
            return flag
    return "input"


def check(answers: Answers, text: str, path: Path) -> None:
    """Read `text` back through the plan's loader; InputError naming flag and key path otherwise."""
    data = yaml.safe_load(text)
    try:
        StackFile(path, answers.stack, data["config"]).load()
    except ConfigError as exc:
        raise InputError([f"{flag_of(i.path, answers.nodes)}: {i.path}: {i.message}" for i in exc.issues]) from None


# --- host keys ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    port: int


def scan_host_key(keyscan: str, host: Host, timeout: int) -> tuple[str | None, str]:
    """(`ssh-ed25519 AAAA...`, "") or (None, why not)."""
    cmd = [keyscan, "-T", str(timeout), "-t", "ed25519", "-p", str(host.port), host.address]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10, check=False)
    except subprocess.TimeoutExpired:
        return None, f"did not answer on port {host.port} within {timeout}s"
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#") and fields[1] == "ssh-ed25519":
            return f"{fields[1]} {fields[2]}", ""
    if "SSH-" in proc.stderr:
        return None, f"answers SSH on port {host.port} but offers no ed25519 host key"
    return None, f"did not answer on port {host.port} within {timeout}s"


def scan_host_keys(answers: Answers, timeout: int, out: TextIO) -> dict[str, str]:
    """Every host's ed25519 key by name, or NotWrittenError naming each host that did not give one."""
    keyscan = shutil.which("ssh-keyscan")
    if keyscan is None:
        raise NotWrittenError(
            "ssh-keyscan not found: install OpenSSH's client (Debian/Ubuntu: apt install openssh-client)"
        )
    hosts = [Host(n.hostname, n.address, answers.ssh_port) for n in answers.nodes]
    if answers.gpu_address is not None:
        hosts.append(Host(answers.gpu_hostname, answers.gpu_address, answers.gpu_ssh_port))
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda h: scan_host_key(keyscan, h, timeout), hosts))
    failed = [f"  {h.name} ({h.address}): {why}" for h, (key, why) in zip(hosts, results, strict=True) if key is None]
    if failed:
        raise NotWrittenError(
            "no ed25519 host key from:\n" + "\n".join(failed) + "\nStart those hosts (sshd running, reachable from "
            "here) and run init again, or run it without --scan-host-keys and pin the keys later."
        )
    keys = {h.name: key for h, (key, _) in zip(hosts, results, strict=True) if key is not None}
    for h in hosts:
        print(f"{h.name} ({h.address}): {_fingerprint(keys[h.name])}", file=out)
    print("Compare each with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host's console.", file=out)
    return keys


# --- flags and prompts ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rack.init",
        description="Write a new stack file Pulumi.<stack>.yaml (never overwrites one). Flags missing while "
        "stdin is a terminal are asked for.",
    )
    p.add_argument("--stack", help=f"stack name: writes Pulumi.<stack>.yaml (prompt default: {DEFAULT_STACK})")
    p.add_argument("--domain", help=f"every host name lives under it (prompt default: {DEFAULT_DOMAIN})")
    p.add_argument(
        "--node",
        action="append",
        default=None,
        metavar=NODE_FORM,
        help="a Pi, once per node. CLASS: control-plane (the default for the first node: a k3s server), general "
        f"(the default for the others), reliable or experimental; cpu={DEFAULT_CPU} and memory={DEFAULT_MEMORY} "
        "unless given; storage=/mnt/ssd:460Gi on the reliable node that holds volumes",
    )
    p.add_argument("--ingress-address", help="where *.domain resolves (default: the first general node's address)")
    p.add_argument("--ssh-user", default="pi", help="login user on every Pi (default: pi)")
    p.add_argument("--ssh-port", type=int, default=22, help="SSH port on every Pi (default: 22)")
    p.add_argument("--k3s-version", default=K3S_VERSION, help=f"pinned k3s release (default: {K3S_VERSION})")
    p.add_argument("--gpu-host", metavar="ADDRESS", help="the GPU machine's address (it runs an Ollama container)")
    p.add_argument("--gpu-hostname", default="gpu", help="the GPU machine's hostname (default: gpu)")
    p.add_argument(
        "--gpu-ssh-user", default="ops", help="SSH user with Docker access on the GPU machine (default: ops)"
    )
    p.add_argument("--gpu-ssh-port", type=int, default=22, help="SSH port of the GPU machine (default: 22)")
    p.add_argument(
        "--scan-host-keys",
        action="store_true",
        help="pin each host's ed25519 SSH host key as `ssh-keyscan -t ed25519` reads it (the hosts must be up)",
    )
    p.add_argument("--scan-timeout", type=int, default=SCAN_TIMEOUT, help=f"seconds per host (default: {SCAN_TIMEOUT})")
    p.add_argument("--dir", type=Path, default=Path("."), help="where to write the file (default: here)")
    return p


def _checker(adapter: TypeAdapter[Any]) -> Callable[[str], str | None]:
    def check_value(text: str) -> str | None:
        try:
            adapter.validate_python(text)
        except ValidationError as exc:
            return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors(include_url=False))
        return None

    return check_value


def _ask(
    question: str,
    default: str | None,
    check_value: Callable[[str], str | None],
    out: TextIO,
    *,
    optional: bool = False,
) -> str:
    """Ask until the answer passes `check_value`; an empty answer takes the default, or with
    `optional` (and no default) is returned as ""."""
    while True:
        out.write(f"{question}{f' [{default}]' if default else ''}: ")
        out.flush()
        line = sys.stdin.readline()
        if not line:
            raise NotWrittenError("no answer (end of input)")
        answer = line.strip() or (default or "")
        if not answer and optional:
            return ""
        problem = check_value(answer) if answer else "an answer is needed"
        if problem is None:
            return answer
        out.write(f"  {problem}\n")


def _ask_nodes(out: TextIO) -> list[NodeSpec]:
    hostname, address = _checker(TypeAdapter(Hostname)), _checker(TypeAdapter(Ipv4))
    classes = [c.value for c in NodeClass]

    def node_class(text: str) -> str | None:
        return None if text in classes else f"one of {', '.join(classes)}"

    nodes: list[NodeSpec] = []
    out.write("The Pis, one by one: the first is the k3s server (class control-plane).\n")
    while True:
        i = len(nodes)
        if i == 0:
            name = _ask("Node 1 hostname", "rack-cp-1", hostname, out)
        else:
            question = f"Node {i + 1} hostname (empty: no more nodes)"
            name = _ask(question, None, hostname, out, optional=True)
            if not name:
                return nodes
        addr = _ask(f"  {name} address", None, address, out)
        default = NodeClass.CONTROL_PLANE if i == 0 else NodeClass.GENERAL
        cls = _ask(f"  {name} class ({', '.join(classes)})", default.value, node_class, out)
        nodes.append(parse_node(f"{name},{addr},{cls}", i))


def _ask_optional(question: str, check_value: Callable[[str], str | None], out: TextIO) -> str | None:
    answer = _ask(question, None, check_value, out, optional=True)
    return answer or None


def answers_from(args: argparse.Namespace, interactive: bool, out: TextIO) -> Answers:
    """The flags, plus a prompt for each missing one when `interactive`; InputError otherwise."""
    problems = []
    if args.stack is not None and not _STACK_NAME.match(args.stack):
        problems.append(f"--stack: {args.stack!r} is not a stack name (letters, digits, '-', '_' and '.')")
    nodes: list[NodeSpec] = []
    for i, text in enumerate(args.node or []):
        try:
            nodes.append(parse_node(text, i))
        except InputError as exc:
            problems.extend(exc.problems)
    missing = [f for f, v in (("--stack", args.stack), ("--domain", args.domain), ("--node", args.node)) if not v]
    if missing and not interactive:
        problems += [f"{flag}: required (stdin is not a terminal, so init asks nothing)" for flag in missing]
    if problems:
        raise InputError(problems)

    stack, domain, gpu = args.stack, args.domain, args.gpu_host
    if interactive and missing:

        def new_stack(text: str) -> str | None:
            if not _STACK_NAME.match(text):
                return "letters, digits, '-', '_' and '.'"
            if (args.dir / f"Pulumi.{text}.yaml").exists():
                return f"Pulumi.{text}.yaml exists; pick another name"
            return None

        if stack is None:
            stack = _ask("Stack name (the file is Pulumi.<name>.yaml)", DEFAULT_STACK, new_stack, out)
        if domain is None:
            domain = _ask("Domain (every host name lives under it)", DEFAULT_DOMAIN, _checker(TypeAdapter(Domain)), out)
        if not nodes:
            nodes = _ask_nodes(out)
        if gpu is None:
            gpu = _ask_optional("GPU host address (empty: none)", _checker(TypeAdapter(Ipv4)), out)
    return Answers(
        stack=stack,
        domain=domain,
        nodes=nodes,
        ssh_user=args.ssh_user,
        ssh_port=args.ssh_port,
        k3s_version=args.k3s_version,
        ingress_address=args.ingress_address,
        gpu_address=gpu,
        gpu_hostname=args.gpu_hostname,
        gpu_ssh_user=args.gpu_ssh_user,
        gpu_ssh_port=args.gpu_ssh_port,
    )


def _schema_ref(directory: Path) -> str:
    return os.path.relpath(_ROOT / "schema" / "stack.schema.json", directory.resolve())


def main(argv: list[str] | None = None, *, interactive: bool | None = None) -> int:
    args = _parser().parse_args(argv)
    out, err = sys.stdout, sys.stderr
    interactive = sys.stdin.isatty() if interactive is None else interactive
    try:
        if args.stack is not None and (args.dir / f"Pulumi.{args.stack}.yaml").exists():
            raise NotWrittenError(
                f"{args.dir / f'Pulumi.{args.stack}.yaml'} exists: init never overwrites a stack file"
            )
        if args.scan_timeout < 1:
            raise InputError(["--scan-timeout: at least 1 second"])
        answers = answers_from(args, interactive, out)
        path = args.dir / f"Pulumi.{answers.stack}.yaml"
        schema = _schema_ref(args.dir)
        plan = f"make plan STACK={answers.stack}" if args.dir.resolve() == _ROOT else f"make plan CONFIG={path}"
        check(answers, render(answers, raw_rack(answers), schema, plan), path)  # before reaching any host
        keys = scan_host_keys(answers, args.scan_timeout, out) if args.scan_host_keys else {}
        text = render(answers, raw_rack(answers, keys), schema, plan)
        check(answers, text, path)
        try:
            with path.open("x") as f:
                f.write(text)
        except FileExistsError:
            raise NotWrittenError(f"{path} exists: init never overwrites a stack file") from None
    except InputError as exc:
        print("init: invalid input, nothing written:", file=err)
        for problem in exc.problems:
            print(f"  {problem}", file=err)
        return EXIT_INVALID
    except NotWrittenError as exc:
        print(f"init: nothing written: {exc}", file=err)
        return EXIT_NOT_WRITTEN
    except KeyboardInterrupt:
        print("\ninit: interrupted, nothing written", file=err)
        return 130
    print(f"wrote {path}: {len(answers.nodes)} node(s){', a GPU host' if answers.gpu_address else ''}", file=out)
    print(f"next: {plan}   (the offline plan; then docs/first-install.md)", file=out)
    return EXIT_WRITTEN


if __name__ == "__main__":
    sys.exit(main())
