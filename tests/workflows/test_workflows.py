"""The Gitea Actions workflows: valid GitHub-Actions syntax (SchemaStore's github-workflow schema,
as vendored by check-jsonschema), pinned actions, documented secrets, Makefile targets that exist,
and the step scripts themselves run for real (shellcheck, the version pin, ssh-agent, the summary).
The two Pulumi workflows (preview, deploy) share their setup; renovate.yml runs Renovate.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import FIXTURES, ROOT
from tests.prereq import need
from tests.workflows.test_renovate import RENOVATE_VERSION

WORKFLOWS = ROOT / ".gitea" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
PULUMI_FILES = [WORKFLOWS / "deploy.yml", WORKFLOWS / "preview.yml"]
"""The workflows that plan and run Pulumi: make calls, a job summary and an artifact each."""
RENOVATE = WORKFLOWS / "renovate.yml"
DOC = ROOT / "docs" / "gitea-ci.md"
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.yml"))
"""Workflows the docs hand to users (docs/images.md): linted and checked like the rack's own."""
PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 (PyYAML) reads the key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps(path: Path) -> list[dict[str, Any]]:
    return [s for job in load(path)["jobs"].values() for s in job["steps"]]


def step(path: Path, name: str) -> dict[str, Any]:
    found = [s for s in steps(path) if s.get("name", "").startswith(name)]
    assert len(found) == 1, f"{path.name}: expected one step named {name!r}"
    return found[0]


def run_scripts(path: Path) -> list[str]:
    return [s["run"] for s in steps(path) if "run" in s]


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def make_variables() -> set[str]:
    return set(re.findall(r"^([A-Z_]+)\s*\?=", (ROOT / "Makefile").read_text(), re.M))


def bash(script: str, *, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a step's script the way the runner does for `shell: bash`."""
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_there_are_the_three_workflows() -> None:
    assert [p.name for p in FILES] == ["deploy.yml", "preview.yml", "renovate.yml"]
    assert not list(WORKFLOWS.glob("*.yaml"))


# --- syntax ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_workflow_matches_the_github_workflow_schema(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("mutation", "why"),
    [
        (lambda d: d["jobs"]["preview"].pop("runs-on"), "a job without runs-on"),
        (lambda d: d["jobs"]["preview"]["steps"][0].update(run="echo both"), "a step with uses and run"),
        (lambda d: d["on"].update(pull_requests={}), "an unknown event"),
        (lambda d: d["jobs"]["preview"].update(step=[]), "an unknown job key"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_the_schema_check_rejects_a_broken_workflow(tmp_path: Path, mutation: Any, why: str) -> None:
    data = load(WORKFLOWS / "preview.yml")
    mutation(data)
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(data, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, why


# --- semantics ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_version(path: Path) -> None:
    uses = [s["uses"] for s in steps(path) if "uses" in s]
    assert uses
    for ref in uses:
        assert PIN.match(ref), f"{path.name}: {ref} is not pinned to vX.Y.Z or a commit"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_expressions_never_reach_a_script_directly(path: Path) -> None:
    # Values go through `env:`; an expression inside `run:` is a script-injection hole.
    for script in run_scripts(path):
        assert "${{" not in script


def documented(kind: str) -> set[str]:
    """The names in the doc's table of that kind (rows like "| `NAME` | secret | ...")."""
    rows = re.findall(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|\s*(\w+)\s*\|", DOC.read_text(), re.M)
    return {name for name, k in rows if k == kind}


def test_every_secret_and_variable_is_documented_and_used() -> None:
    text = "\n".join(p.read_text() for p in FILES)
    secrets = set(re.findall(r"secrets\.([A-Za-z0-9_]+)", text))
    variables = set(re.findall(r"vars\.([A-Za-z0-9_]+)", text))
    assert secrets and variables
    assert secrets == documented("secret")
    assert variables == documented("variable")
    for name in secrets | variables:
        # Gitea refuses names starting with GITEA_ or GITHUB_
        assert not name.startswith(("GITEA_", "GITHUB_")), name


@pytest.mark.parametrize("path", PULUMI_FILES, ids=lambda p: p.name)
def test_make_commands_are_targets_that_exist(path: Path) -> None:
    targets, variables = make_targets(), make_variables()
    calls = [m for script in run_scripts(path) for m in re.findall(r"^\s*make\b([^|;&\n]*)", script, re.M)]
    assert calls
    for call in calls:
        words = call.split()
        assert words, "a bare `make` runs whatever the first target is: name it"
        for word in words:
            if re.match(r"^\d*[<>]", word):  # a redirection ends make's arguments
                break
            if "=" in word:
                assert word.split("=", 1)[0] in variables, word
            else:
                assert word in targets, f"{path.name}: make {word}: no such target"


def test_preview_workflow_runs_tests_plan_then_preview_and_publishes() -> None:
    path = WORKFLOWS / "preview.yml"
    data = load(path)
    assert set(data["on"]) == {"pull_request"}
    assert data["env"]["STACK"] == "homelab"
    names = [s.get("name", "") for s in steps(path)]
    order = ["Check out", "Python 3.11", "Pulumi CLI version", "Install the Pulumi CLI", "Tests", "Offline plan"]
    order += ["Load the SSH key", "pulumi preview", "Comment the preview", "Job summary", "Upload"]
    positions = [next(i for i, n in enumerate(names) if n.startswith(o)) for o in order]
    assert positions == sorted(positions)
    assert data["jobs"]["preview"]["permissions"] == {"contents": "read", "pull-requests": "write"}
    comment = step(path, "Comment the preview")
    assert comment["if"] == "always()"
    assert comment["env"]["API_TOKEN"] == "${{ github.token }}"  # the job's own token, no stored secret
    assert step(path, "Tests")["run"].strip() == "make test"
    assert (
        '.venv/bin/python -m plan --config "Pulumi.$STACK.yaml" --json build/plan.json'
        in step(path, "Offline plan")["run"]
    )
    preview = step(path, "pulumi preview")
    assert 'pulumi login "$PULUMI_BACKEND_URL"' in preview["run"]
    assert 'pulumi preview --stack "$STACK"' in preview["run"]
    assert set(preview["env"]) >= {"PULUMI_CONFIG_PASSPHRASE", "PULUMI_BACKEND_URL", "AWS_ACCESS_KEY_ID"}
    summary = step(path, "Job summary")
    assert summary["if"] == "always()" and "$GITHUB_STEP_SUMMARY" in summary["run"]
    upload = step(path, "Upload")
    assert upload["if"] == "always()"
    assert {"build/plan/rack.svg", "build/plan/rack.html", "build/plan.json"} <= set(upload["with"]["path"].split())


def test_deploy_workflow_is_manual_from_main_and_plans_first() -> None:
    path = WORKFLOWS / "deploy.yml"
    data = load(path)
    assert set(data["on"]) == {"workflow_dispatch"}
    assert data["on"]["workflow_dispatch"]["inputs"]["confirm"]["required"] is True
    job = data["jobs"]["up"]
    assert "github.ref == 'refs/heads/main'" in job["if"]
    assert "github.event.inputs.confirm == 'homelab'" in job["if"]
    names = [s.get("name", "") for s in steps(path)]
    assert names.index("Offline plan") < names.index("pulumi up")
    assert 'pulumi up --stack "$STACK" --yes' in step(path, "pulumi up")["run"]


def test_renovate_workflow_is_scheduled_validates_first_and_runs_the_pinned_renovate() -> None:
    data = load(RENOVATE)
    assert set(data["on"]) == {"schedule", "workflow_dispatch"}
    (schedule,) = data["on"]["schedule"]
    assert len(schedule["cron"].split()) == 5
    job = data["jobs"]["renovate"]
    assert job["env"]["RENOVATE_VERSION"] == RENOVATE_VERSION  # the release make test validates with
    names = [s.get("name", "") for s in steps(RENOVATE)]
    assert names.index("Check out") < names.index("Validate renovate.json") < names.index("Renovate")
    validate, run = step(RENOVATE, "Validate renovate.json")["run"], step(RENOVATE, "Renovate")["run"]
    assert 'npx --yes --package "renovate@$RENOVATE_VERSION" --' in validate
    assert "renovate-config-validator --strict renovate.json" in validate
    assert run.strip() == 'npx --yes --package "renovate@$RENOVATE_VERSION" -- renovate'
    env = step(RENOVATE, "Renovate")["env"]
    assert env["RENOVATE_PLATFORM"] == "gitea"
    assert env["RENOVATE_ENDPOINT"] == "${{ github.server_url }}/api/v1"  # Gitea's ROOT_URL
    assert env["RENOVATE_REPOSITORIES"] == "${{ github.repository }}"
    assert env["RENOVATE_TOKEN"] == "${{ secrets.RENOVATE_TOKEN }}"


def test_renovate_workflow_allows_the_post_upgrade_commands_of_renovate_json_and_no_other() -> None:
    allowed = json.loads(step(RENOVATE, "Renovate")["env"]["RENOVATE_ALLOWED_POST_UPGRADE_COMMANDS"])
    config = json.loads((ROOT / "renovate.json").read_text())
    commands = [c for rule in config["packageRules"] for c in rule.get("postUpgradeTasks", {}).get("commands", [])]
    assert commands
    for command in commands:
        assert any(re.search(pattern, command) for pattern in allowed), command
        assert (ROOT / command.split()[-1]).is_file(), command
    for pattern in allowed:
        assert pattern.startswith("^") and pattern.endswith("$"), pattern  # whole commands only
        assert not re.search(pattern, "bash tools/regenerate.sh; curl evil"), pattern


def test_both_workflows_share_the_same_setup_steps() -> None:
    shared = ["Python 3.11", "Pulumi CLI version", "Install the Pulumi CLI", "Load the SSH key"]
    for name in shared:
        a, b = step(WORKFLOWS / "preview.yml", name), step(WORKFLOWS / "deploy.yml", name)
        assert a["run"] == b["run"] and a.get("env") == b.get("env"), name


def runner_label_names(stack: str) -> set[str]:
    """The label names the stack's own runners register (`name:docker://image` -> name)."""
    rack = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]["homelab:rack"]
    return {label.split(":", 1)[0] for label in rack["gitea"]["runners"]["labels"]}


@pytest.mark.parametrize("path", [*FILES, *EXAMPLES], ids=lambda p: p.name)
def test_jobs_run_on_the_rack_s_own_runners_without_setup_python(path: Path) -> None:
    for name, job in load(path)["jobs"].items():
        assert job["runs-on"] in runner_label_names("homelab"), f"{path.name}: {name}"
    for s in steps(path):
        # actions/setup-python downloads Ubuntu builds: it fails on the runners' Debian job images.
        assert not s.get("uses", "").startswith("actions/setup-python"), path.name


# --- the step scripts, run for real ------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_step_scripts_pass_shellcheck(path: Path, tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or need("shellcheck", "shellcheck")
    for i, script in enumerate(run_scripts(path)):
        f = tmp_path / f"step{i}.sh"
        f.write_text(script)
        result = subprocess.run([shellcheck, "-s", "bash", str(f)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{path.name} step {i}:\n{result.stdout}"


def test_pulumi_version_comes_from_the_requirements_pin(tmp_path: Path) -> None:
    script = step(WORKFLOWS / "preview.yml", "Pulumi CLI version")["run"]
    pin = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pin is not None
    shutil.copy(ROOT / "requirements.txt", tmp_path / "requirements.txt")
    out = tmp_path / "output"
    env = {"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(out)}
    result = bash(script, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == f"version={pin.group(1)}\n"
    assert pin.group(1) == "3.272.0"  # the SDK in the venv; the CLI is installed at the same release

    (tmp_path / "requirements.txt").write_text("pulumi>=3\n")
    out.unlink()
    result = bash(script, cwd=tmp_path, env=env)
    assert result.returncode == 1 and "no exact pulumi==X.Y.Z pin" in result.stderr
    assert not out.exists()


def agents_started_with(tmpdir: Path) -> list[int]:
    """The ssh-agent processes whose environment has this TMPDIR: the ones this test started."""
    marker = f"TMPDIR={tmpdir}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and (proc / "comm").read_text().strip() == "ssh-agent"
                and marker in (proc / "environ").read_bytes().split(b"\0")
            ):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.realssh
def test_ssh_step_loads_the_key_into_a_real_agent(tmp_path: Path) -> None:
    need("ssh-agent", "openssh-client")
    keygen = need("ssh-keygen", "openssh-client")
    key = tmp_path / "id_ed25519"
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "ci@test", "-f", str(key)], check=True, timeout=30)
    fingerprint = subprocess.run(
        [keygen, "-l", "-f", str(key)], check=True, capture_output=True, text=True, timeout=30
    ).stdout.split()[1]
    home, github_env, tmpdir = tmp_path / "home", tmp_path / "github_env", tmp_path / "tmp"
    home.mkdir()
    tmpdir.mkdir()
    known = "192.168.10.11 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDz1pS6pW8OZQqO8B1o9qgZyB5wN7h0nX3s0l3m0c9rA"
    private = key.read_text()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GITHUB_ENV": str(github_env),
        "TMPDIR": str(tmpdir),  # the agent's socket, and how the cleanup recognises our agent
        "SSH_PRIVATE_KEY": private,
        "SSH_KNOWN_HOSTS": known,
    }
    result = bash(step(WORKFLOWS / "preview.yml", "Load the SSH key")["run"], cwd=tmp_path, env=env)
    exported = dict(line.split("=", 1) for line in github_env.read_text().splitlines()) if github_env.exists() else {}
    try:
        assert result.returncode == 0, result.stderr
        assert set(exported) == {"SSH_AUTH_SOCK", "SSH_AGENT_PID"}
        assert fingerprint in result.stdout  # the step's own `ssh-add -l`
        # a later step sees the agent through GITHUB_ENV
        later = subprocess.run(
            ["ssh-add", "-l"],
            env={"PATH": os.environ["PATH"], "SSH_AUTH_SOCK": exported["SSH_AUTH_SOCK"]},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert later.returncode == 0 and fingerprint in later.stdout
        assert (home / ".ssh" / "known_hosts").read_text() == known + "\n"
        assert (home / ".ssh" / "known_hosts").stat().st_mode & 0o777 == 0o600
        body = private.splitlines()[1]
        assert body not in result.stdout and body not in result.stderr
        assert agents_started_with(tmpdir) == [int(exported["SSH_AGENT_PID"])]
    finally:
        for pid in agents_started_with(tmpdir):  # also when the step failed before exporting its pid
            os.kill(pid, signal.SIGTERM)


@pytest.mark.parametrize("path", PULUMI_FILES, ids=lambda p: p.name)
def test_summary_step_writes_the_reports_or_says_what_did_not_run(path: Path, tmp_path: Path) -> None:
    script = step(path, "Job summary")["run"]
    summary = tmp_path / "summary.md"
    env = {"PATH": os.environ["PATH"], "GITHUB_STEP_SUMMARY": str(summary), "STACK": "homelab"}
    result = bash(script, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "did not run" in summary.read_text()

    (tmp_path / "build").mkdir()
    for name in ("plan.txt", "preview.txt", "up.txt"):
        (tmp_path / "build" / name).write_text(f"contents of {name}\nlayout OK\n")
    summary.unlink()
    result = bash(script, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    text = summary.read_text()
    assert "stack homelab" in text and "did not run" not in text
    assert text.count("```text") == text.count("```") // 2 >= 1


PLAN_CASES = [
    ("valid", FIXTURES / "valid" / "minimal.yaml", 0, "layout OK"),
    ("layout", FIXTURES / "layout" / "app-does-not-fit.yaml", 1, "1 layout error(s)"),
    ("invalid", FIXTURES / "invalid" / "duplicate-hostname.yaml", 2, "invalid config"),
]


@pytest.mark.slow
@pytest.mark.parametrize("path", PULUMI_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize(("stack", "config", "code", "says"), PLAN_CASES, ids=[c[0] for c in PLAN_CASES])
def test_the_plan_step_fails_with_the_plan_s_own_code(
    path: Path, stack: str, config: Path, code: int, says: str, tmp_path: Path
) -> None:
    """The step as the runner runs it (`bash -eo pipefail`), from a checkout made of links to this
    one (so `make venv` finds .venv up to date): its status is the plan's 0/1/2, not make's 2."""
    for entry in ROOT.iterdir():
        if entry.name not in ("build", ".git") and not entry.name.startswith("Pulumi."):
            (tmp_path / entry.name).symlink_to(entry)
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(config.read_text())
    result = bash(
        step(path, "Offline plan")["run"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "STACK": stack},
    )
    assert result.returncode == code, result.stdout[-3000:] + result.stderr[-3000:]
    assert says in (tmp_path / "build" / "plan.txt").read_text()


@pytest.mark.slow
def test_the_artifact_holds_what_the_plan_writes(tmp_path: Path) -> None:
    """Run the real plan CLI from a scratch directory, as the workflow does from the checkout: every
    artifact path other than the Pulumi logs exists afterwards."""
    (tmp_path / "build").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "plan", "--config", str(ROOT / "Pulumi.homelab.yaml"), "--json", "build/plan.json"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (tmp_path / "build" / "plan.txt").write_text(result.stdout)
    for path in PULUMI_FILES:
        upload = step(path, "Upload")["with"]["path"].split()
        expected_missing = {"build/preview.txt", "build/up.txt"}
        for entry in upload:
            assert (tmp_path / entry).is_file() or entry in expected_missing, f"{path.name}: {entry}"


# A test double for the network (this machine reaches no release host): `curl` on PATH that
# serves files from a local directory by the URL's last path segment and logs every URL. The
# step's own logic (architecture, checksum lookup, sha256sum, tar, GITHUB_PATH) runs for real.
FAKE_CURL = """#!/usr/bin/env bash
out=""; url=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift 2 ;;
    --proto) shift 2 ;;
    -*) shift ;;
    *) url="$1"; shift ;;
  esac
done
echo "$url" >> "$CURL_LOG"
src="$SERVED/${url##*/}"
[ -f "$src" ] || { echo "curl: (22) 404 $url" >&2; exit 22; }
cp "$src" "$out"
"""


def pulumi_release(served: Path, version: str, arch: str) -> str:
    """A release as Pulumi lays it out: pulumi/<binaries> in the tarball, sha256 lines in checksums."""
    import hashlib
    import tarfile

    tree = served / "tree" / "pulumi"
    tree.mkdir(parents=True)
    (tree / "pulumi").write_text(f"#!/bin/sh\necho v{version}\n")
    (tree / "pulumi").chmod(0o755)
    (tree / "pulumi-language-python").write_text("#!/bin/sh\n")
    tarball = f"pulumi-v{version}-linux-{arch}.tar.gz"
    with tarfile.open(served / tarball, "w:gz") as tar:
        tar.add(tree, arcname="pulumi")
    digest = hashlib.sha256((served / tarball).read_bytes()).hexdigest()
    other = f"pulumi-v{version}-darwin-{arch}.tar.gz"
    (served / f"pulumi-{version}-checksums.txt").write_text(f"{'0' * 64}  {other}\n{digest}  {tarball}\n")
    return tarball


def test_pulumi_cli_install_checks_the_published_checksum(tmp_path: Path) -> None:
    script = step(WORKFLOWS / "preview.yml", "Install the Pulumi CLI")["run"]
    machine = os.uname().machine
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}[machine]
    served, fake, home = tmp_path / "served", tmp_path / "bin", tmp_path / "home"
    for d in (served, fake, home):
        d.mkdir()
    (fake / "curl").write_text(FAKE_CURL)
    (fake / "curl").chmod(0o755)
    tarball = pulumi_release(served, "3.272.0", arch)
    log, github_path = tmp_path / "curl.log", tmp_path / "github_path"
    env = {
        "PATH": f"{fake}:{os.environ['PATH']}",
        "HOME": str(home),
        "GITHUB_PATH": str(github_path),
        "PULUMI_VERSION": "3.272.0",
        "CURL_LOG": str(log),
        "SERVED": str(served),
        "TMPDIR": str(tmp_path),
    }
    result = bash(script, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == [
        f"https://get.pulumi.com/releases/sdk/{tarball}",
        "https://github.com/pulumi/pulumi/releases/download/v3.272.0/pulumi-3.272.0-checksums.txt",
    ]
    assert github_path.read_text() == f"{home}/.pulumi-cli\n"
    assert (home / ".pulumi-cli" / "pulumi-language-python").is_file()
    assert "v3.272.0" in result.stdout  # the step's own `pulumi version`

    # a tarball that is not the published one installs nothing
    installed = home / ".pulumi-cli"
    shutil.rmtree(installed)
    with open(served / tarball, "ab") as f:
        f.write(b"tampered")
    result = bash(script, cwd=tmp_path, env=env)
    assert result.returncode != 0 and "did NOT match" in result.stderr
    assert not installed.exists()

    # a release whose checksums do not list the tarball
    (served / "pulumi-3.272.0-checksums.txt").write_text(f"{'0' * 64}  something-else.tar.gz\n")
    result = bash(script, cwd=tmp_path, env=env)
    assert result.returncode == 1 and f"the release's checksums list no {tarball}" in result.stderr


class GiteaCommentsDouble:
    """A test double for Gitea's issue-comments endpoint (Gitea itself does not run here): an HTTP
    server on a free loopback port that records each request and answers with `status`."""

    def __init__(self, status: int) -> None:
        import http.server
        import threading

        self.requests: list[dict[str, Any]] = []
        double = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                double.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"message": "from the double"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("status", "code"), [(201, 0), (403, 0), (500, 1)])
def test_preview_comment_posts_the_diff_with_the_job_token(status: int, code: int, tmp_path: Path) -> None:
    need("curl", "curl")
    script = step(WORKFLOWS / "preview.yml", "Comment the preview")["run"]
    token = "job-token-0123456789abcdef"
    gitea = GiteaCommentsDouble(status)
    try:
        env = {
            "PATH": os.environ["PATH"],
            "STACK": "homelab",
            "API_TOKEN": token,
            "SERVER_URL": gitea.url,
            "REPOSITORY": "alice/rack",
            "PR_NUMBER": "7",
            "TMPDIR": str(tmp_path),
        }
        result = bash(script, cwd=tmp_path, env=env)
        assert result.returncode == 0 and "nothing to comment" in result.stdout
        assert gitea.requests == []

        (tmp_path / "build").mkdir()
        (tmp_path / "build" / "preview.txt").write_text("Previewing update (homelab):\n  + 3 to create\n")
        result = bash(script, cwd=tmp_path, env=env)
        assert result.returncode == code, result.stdout + result.stderr
        (request,) = gitea.requests
        assert request["path"] == "/api/v1/repos/alice/rack/issues/7/comments"
        assert request["headers"]["Authorization"] == f"token {token}"
        body = request["body"]["body"]
        assert body.startswith("### pulumi preview: stack homelab") and "+ 3 to create" in body
        assert token not in result.stdout + result.stderr
        if status == 403:
            assert "::warning::" in result.stdout
        if status == 500:
            assert "HTTP 500" in result.stderr
    finally:
        gitea.close()
