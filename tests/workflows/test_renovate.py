"""Renovate keeps every version pin of the repository current (renovate.json, docs/renovate.md).

Checked with Renovate itself: the npm package `renovate` at RENOVATE_VERSION, installed on first
use (tests/workflows/renovate_npm.py, which .ci/run also starts in the background) into
~/.cache/homelab-rack/renovate/<version> (outside the repository; HOMELAB_RENOVATE_CACHE moves
it). Node and npm are prerequisites (tests/prereq.py): locally a missing or too old one
skips, in CI it fails.

- `renovate-config-validator --strict` accepts renovate.json, and refuses broken ones.
- Coverage: this file's own scan lists every version pin of the repository, one regex per kind of
  file (YAML version keys, images and `uses:`, `docker://` runner labels, quoted image references
  in Python, `==` requirements, go.mod `go`/require/replace lines, versions.env lines, version
  defaults in shell, Python and Go). Renovate, run offline on a copy of the repository in
  extract-only mode (`--platform=local --dry-run=extract --report-type=file`), reports what its
  managers extract. A pin Renovate does not extract fails the test. The scan itself is checked
  against independent parsers (YAML, go's own `go mod edit -json`, packaging's requirements).
- Pins that must agree do: build-vm.sh's default and rack.monitoring.store-version's.
- tools/regenerate.sh, which Renovate runs after moving a default in rack/config.py, leaves the
  schema and the config reference the way their tests want them.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

from rack.config import Monitoring
from tests.conftest import ROOT
from tests.prereq import need, unmet
from tests.workflows import renovate_npm

RENOVATE_VERSION = renovate_npm.RENOVATE_VERSION
"""tests/workflows/renovate_npm.py's pin (installed there, also by .ci/run in the background)."""

RENOVATE_NODE = "^20.15.1 || ^22.11.0"
"""The Node versions that Renovate release runs on (its package.json `engines`; checked after install)."""

THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()

EXCLUDED: dict[str, str] = {
    "tests/*": "test inputs and the values tests expect (fixtures included: renovate.json ignores them)",
    "*.md": "prose: versions quoted there are examples, or the generated config reference (tools/regenerate.sh)",
    "schema/stack.schema.json": "generated from rack/config.py (make schema, run by tools/regenerate.sh)",
    "*go.sum": "checksums of the resolved module graph (go mod tidy)",
    "bench/*": "synthetic racks for the benchmark: nothing is pulled or installed",
    "lab/e2e.py": "the end-to-end test's own inputs (the upgrade target of the k3s double, a new app tag)",
    "lab/e2e_faults.py": "the fault steps' own inputs (new tags of the lab's apps, which exist nowhere)",
    "lab/k3s-double/*": "the k3s test double's own version string",
}
"""Paths whose version-like strings are not pins, with the reason. This file is scanned anyway."""

VERSION = r"v?\d+(?:\.\d+)+[\w.+-]*"
TAG = r"v?\d[\w.-]*"
IMAGE = r"[a-z0-9][\w.-]*(?:/[\w.-]+)*"


@dataclass(frozen=True)
class Scan:
    kind: str
    files: tuple[str, ...]
    """fnmatch patterns of the files this kind lives in."""
    pattern: re.Pattern[str]
    """`value` group: the pinned version; `name` group, where the pin names its dependency."""


SCANS = (
    Scan("YAML version key", ("*.yaml", "*.yml"), re.compile(rf"\b[\w-]*version: *\"?(?P<value>{VERSION})\"?", re.I)),
    Scan("YAML image", ("*.yaml", "*.yml"), re.compile(rf"\bimage: *\"?(?P<name>{IMAGE}):(?P<value>{TAG})")),
    Scan("action", ("*.yaml", "*.yml"), re.compile(r"\buses: *(?P<name>[\w./-]+)@(?P<value>[\w.-]+)")),
    Scan("runner label image", ("*",), re.compile(rf"docker://(?P<name>{IMAGE}):(?P<value>{TAG})")),
    Scan("quoted image", ("*.py",), re.compile(rf"[\"'](?P<name>[\w.-]+(?:/[\w.-]+)+):(?P<value>{TAG})[\"']")),
    Scan("requirement", ("*.txt",), re.compile(r"^(?P<name>[A-Za-z0-9][\w.-]*) *== *(?P<value>[^\s;#]+)", re.M)),
    Scan("go directive", ("*go.mod",), re.compile(r"^(?P<name>go|toolchain) +(?P<value>\S+)$", re.M)),
    Scan("go require", ("*go.mod",), re.compile(r"^(?:require +|\t)(?P<name>[^\s=]+) +(?P<value>v\S+)", re.M)),
    Scan("go replace", ("*go.mod",), re.compile(r"=> *(?P<name>[^\s=]+) +(?P<value>v\S+)")),
    Scan("versions.env", ("*.env",), re.compile(rf"^[A-Z0-9_]+=\"?(?P<value>{VERSION})\"?$", re.M)),
    Scan("shell default", ("*.sh",), re.compile(rf"\$\{{\d+:-(?P<value>{VERSION})\}}")),
    Scan("shell version", ("*.sh",), re.compile(rf"^[A-Z0-9_]*VERSION=\"?(?P<value>{VERSION})\"?$", re.M)),
    Scan(
        "Python default",
        ("*.py",),
        re.compile(rf"\b(?:Version|[A-Z0-9_]*VERSION)\b[^=\n]*= *\"(?P<value>{VERSION})\""),
    ),
    Scan("Go version string", ("*.go",), re.compile(rf"\bVersion = \"(?P<value>{VERSION})\"")),
)


@dataclass(frozen=True)
class Pin:
    file: str
    line: int
    kind: str
    name: str | None
    value: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.kind} {self.name or ''} {self.value}".replace("  ", " ")


@dataclass(frozen=True)
class Dep:
    file: str
    manager: str
    name: str
    value: str


def files_of(repo: Path) -> list[str]:
    """What a clone holds: tracked files and new ones not ignored."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=repo, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    return sorted(f for f in out.split("\0") if f and (repo / f).is_file())


def excluded(path: str) -> bool:
    return path != THIS and any(fnmatch.fnmatch(path, pattern) for pattern in EXCLUDED)


def scan(repo: Path) -> list[Pin]:
    """Every version pin of the repository, by this file's own regexes."""
    pins = []
    for path in files_of(repo):
        if excluded(path):
            continue
        kinds = [s for s in SCANS if any(fnmatch.fnmatch(path, f) for f in s.files)]
        if not kinds:
            continue
        try:
            text = (repo / path).read_text()
        except UnicodeDecodeError:
            continue
        for kind in kinds:
            for m in kind.pattern.finditer(text):
                name = m.groupdict().get("name")
                pins.append(Pin(path, text.count("\n", 0, m.start()) + 1, kind.kind, name, m["value"]))
    return pins


def deps_of(package_files: dict[str, list[dict[str, Any]]]) -> list[Dep]:
    """The dependencies Renovate's report says its managers extracted."""
    out = []
    for manager, files in package_files.items():
        for package_file in files:
            for dep in package_file["deps"]:
                value = str(dep.get("currentValue") or "").lstrip("=")
                out.append(Dep(package_file["packageFile"], manager, str(dep.get("depName")), value))
    return out


def uncovered(pins: Iterable[Pin], deps: Iterable[Dep]) -> list[Pin]:
    """Pins no extracted dependency accounts for. A pin that names its dependency must be
    extracted under that name; each extracted dependency accounts for one pin."""
    named = Counter((d.file, d.name, d.value) for d in deps)
    plain = Counter((d.file, d.value) for d in deps)
    missing = []
    ordered = sorted(pins, key=lambda p: p.name is None)  # named pins take their dependency first
    for pin in ordered:
        if pin.name is not None:
            if named[(pin.file, pin.name, pin.value)] > 0 and plain[(pin.file, pin.value)] > 0:
                named[(pin.file, pin.name, pin.value)] -= 1
                plain[(pin.file, pin.value)] -= 1
                continue
        elif plain[(pin.file, pin.value)] > 0:
            plain[(pin.file, pin.value)] -= 1
            continue
        missing.append(pin)
    return sorted(missing, key=lambda p: (p.file, p.line))


# --- Renovate from npm -----------------------------------------------------------------------------


def node_runs_renovate(version: str) -> bool:
    """Whether Node `v<major>.<minor>.<patch>` satisfies RENOVATE_NODE (caret ranges joined by ||)."""
    have = tuple(int(p) for p in version.lstrip("v").split(".")[:3])
    for alternative in RENOVATE_NODE.split("||"):
        want = tuple(int(p) for p in alternative.strip().lstrip("^").split("."))
        if have[0] == want[0] and have >= want:
            return True
    return False


def test_node_range_check() -> None:
    assert node_runs_renovate("v20.20.2") and node_runs_renovate("v22.11.0")
    assert not any(node_runs_renovate(v) for v in ("v18.20.4", "v20.15.0", "v21.7.0", "v24.11.0"))


@pytest.fixture(scope="session")
def renovate_bin() -> Path:
    """node_modules/.bin of renovate@RENOVATE_VERSION, installed with npm on first use."""
    node = need("node", "nodejs")
    npm = need("npm", "npm")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    if not node_runs_renovate(version):  # before a 400 MB install that could not run
        unmet(f"node {version} does not run renovate@{RENOVATE_VERSION} (it needs node {RENOVATE_NODE})")
    try:
        prefix = renovate_npm.install(node, npm)
    except renovate_npm.InstallError as err:
        if err.prerequisite:
            unmet(str(err))
        pytest.fail(str(err))
    modules = prefix / "node_modules"
    engines = json.loads((modules / "renovate" / "package.json").read_text())["engines"]["node"]
    assert engines == RENOVATE_NODE, f"renovate@{RENOVATE_VERSION} needs node {engines}: update RENOVATE_NODE"
    return modules / ".bin"


def run_validator(renovate_bin: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(renovate_bin / "renovate-config-validator"), *args, str(config)],
        cwd=config.parent,
        env={"PATH": os.environ["PATH"], "HOME": str(config.parent), "LOG_LEVEL": "info"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def git(repo: Path, *args: str) -> None:
    """git in a test's repository, as an identity of its own (none need be configured here)."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, timeout=120)


def copy_repo(dest: Path) -> Path:
    """The repository as a clone would have it (with uncommitted work), committed in a new git repo."""
    for path in files_of(ROOT):
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, target)
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "copy"]):
        git(dest, *cmd)
    return dest


def extract(renovate_bin: Path, repo: Path) -> list[Dep]:
    """Renovate's own extraction, offline: the local platform, dry-run `extract`, a file report."""
    work = repo.parent / f"{repo.name}-renovate"
    work.mkdir()
    report = work / "report.json"
    env = {"PATH": os.environ["PATH"], "HOME": str(work), "LOG_LEVEL": "warn", "RENOVATE_BASE_DIR": str(work / "base")}
    cmd = [str(renovate_bin / "renovate"), "--platform=local", "--dry-run=extract"]
    cmd += ["--report-type=file", f"--report-path={report}"]
    result = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and report.exists(), result.stdout[-4000:] + result.stderr[-4000:]
    return deps_of(json.loads(report.read_text())["repositories"]["local"]["packageFiles"])


@pytest.fixture(scope="module")
def extracted(renovate_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Dep]:
    return extract(renovate_bin, copy_repo(tmp_path_factory.mktemp("renovate") / "repo"))


# --- the config -----------------------------------------------------------------------------------


def test_renovate_json_passes_the_strict_validator(renovate_bin: Path, tmp_path: Path) -> None:
    shutil.copy(ROOT / "renovate.json", tmp_path / "renovate.json")
    result = run_validator(renovate_bin, tmp_path / "renovate.json", "--strict")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Config validated successfully" in result.stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(notAnOption=True), "Invalid configuration option: notAnOption"),
        (lambda c: c["customManagers"][0].__setitem__("matchStrings", ["version: (?<v>.*)"]), "currentValue"),
        # --strict: a config Renovate would migrate (a renamed option) is refused too
        (lambda c: c["packageRules"].append({"matchPackagePatterns": ["^x"], "enabled": False}), "migration"),
    ],
    ids=["unknown option", "regex without currentValue", "needs migration"],
)
def test_the_validator_refuses_a_broken_config(renovate_bin: Path, tmp_path: Path, change: Any, message: str) -> None:
    config = json.loads((ROOT / "renovate.json").read_text())
    change(config)
    (tmp_path / "renovate.json").write_text(json.dumps(config))
    result = run_validator(renovate_bin, tmp_path / "renovate.json", "--strict")
    assert result.returncode == 1 and message in result.stdout + result.stderr, result.stdout[-3000:]


def test_every_rule_and_manager_says_why() -> None:
    config = json.loads((ROOT / "renovate.json").read_text())
    for item in config["customManagers"] + config["packageRules"]:
        assert item.get("description"), item


# --- coverage: every pin has a manager -----------------------------------------------------------


def test_every_version_pin_is_extracted_by_a_renovate_manager(extracted: list[Dep]) -> None:
    pins = scan(ROOT)
    missing = uncovered(pins, extracted)
    assert not missing, "pins no Renovate manager extracts:\n" + "\n".join(map(str, missing))
    kinds = Counter(p.kind for p in pins)
    assert {s.kind for s in SCANS} - {"shell version"} <= set(kinds), kinds  # each kind finds pins (none in shell yet)
    print(f"{len(pins)} pins, all extracted by Renovate ({len(extracted)} deps):", dict(sorted(kinds.items())))


def test_a_pin_that_loses_its_renovate_comment_is_reported(renovate_bin: Path, tmp_path: Path) -> None:
    """The deliberate break, kept: without its `# renovate:` comment the Grafana default is no
    longer extracted, and the coverage check names exactly that pin."""
    repo = copy_repo(tmp_path / "repo")
    config = repo / "rack" / "config.py"
    text = config.read_text()
    comment = "    # renovate: datasource=docker depName=grafana/grafana\n"
    assert text.count(comment) == 1
    config.write_text(text.replace(comment, ""))
    git(repo, "commit", "-qam", "break")
    missing = uncovered(scan(repo), extract(renovate_bin, repo))
    default = Monitoring.model_fields["grafana_version"].default
    assert [(p.file, p.kind, p.value) for p in missing] == [("rack/config.py", "Python default", default)]


# --- the scan itself, against independent parsers -------------------------------------------------


def scanned(path: str) -> Counter[tuple[str | None, str]]:
    return Counter((p.name, p.value) for p in scan(ROOT) if p.file == path)


def walk(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield from walk(v, key)
    else:
        yield key, node


@pytest.mark.parametrize("path", sorted(p.name for p in ROOT.glob("Pulumi.*.yaml")))
def test_the_scan_finds_every_version_and_image_of_a_stack_file(path: str) -> None:
    leaves = list(walk(yaml.safe_load((ROOT / path).read_text())))
    versions = [str(v) for k, v in leaves if k.endswith("version") and re.match(VERSION, str(v))]
    images = [str(v) for k, v in leaves if k == "image"]
    labels = [str(v).split("docker://", 1)[1] for k, v in leaves if "docker://" in str(v)]
    assert versions and images and labels
    found = scanned(path)
    values = Counter(value for _, value in found.elements())
    assert not Counter(versions) - values
    refs = Counter(f"{name}:{value}" for name, value in found.elements() if name)
    assert not Counter(images + labels) - refs


def go_mod_files() -> list[str]:
    return [p for p in files_of(ROOT) if p.endswith("go.mod")]


@pytest.mark.parametrize("path", go_mod_files())
def test_the_scan_finds_what_go_itself_reads_in_a_go_mod(path: str) -> None:
    go = need("go", "golang-go")
    parsed = json.loads(
        subprocess.run([go, "mod", "edit", "-json", path], cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
    )
    expected = Counter([("go", parsed["Go"])] + [(r["Path"], r["Version"]) for r in parsed.get("Require") or []])
    expected += Counter((r["New"]["Path"], r["New"]["Version"]) for r in parsed.get("Replace") or [])
    assert expected == scanned(path)


@pytest.mark.parametrize("path", ["requirements.txt", "requirements-dev.txt", "constraints.txt"])
def test_the_scan_finds_every_requirement(path: str) -> None:
    lines = [line for line in (ROOT / path).read_text().splitlines() if line and not line.startswith(("#", "-"))]
    expected = Counter()
    for line in lines:
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", line  # every requirement is an exact pin
        expected[(req.name, spec.version)] += 1
    assert expected == scanned(path)


def test_the_scan_finds_every_action_and_container_of_the_workflows() -> None:
    for path in sorted((ROOT / ".gitea" / "workflows").glob("*.yml")):
        data = yaml.safe_load(path.read_text())
        refs = [s["uses"] for job in data["jobs"].values() for s in job["steps"] if "uses" in s]
        refs += [job["container"]["image"] for job in data["jobs"].values() if "container" in job]
        rel = path.relative_to(ROOT).as_posix()
        found = {f"{name}@{value}" for name, value in scanned(rel) if name} | {
            f"{name}:{value}" for name, value in scanned(rel) if name
        }
        assert refs and set(refs) <= found, (rel, refs, found)


def test_exclusions_hold_no_file_the_program_runs() -> None:
    """An excluded path is data, docs or a test double, never part of the deployed program."""
    program = ("rack/", "components/", "stacks/", "plan/", "__main__.py", "Pulumi.")
    for path in files_of(ROOT):
        if excluded(path):
            assert not path.startswith(program) or path.endswith(".md"), path


# --- pins that must agree ------------------------------------------------------------------------


def test_build_vm_default_is_the_store_version_default() -> None:
    """monitoring/build-vm.sh builds the binaries the real tests check rules with: the release the
    rack deploys. Renovate moves both in one branch (group victoriametrics); this catches a hand edit."""
    m = re.search(r'^VERSION="\$\{1:-([^}]+)\}"$', (ROOT / "monitoring" / "build-vm.sh").read_text(), re.M)
    assert m is not None
    assert m.group(1) == Monitoring.model_fields["store_version"].default


# --- tools/regenerate.sh -------------------------------------------------------------------------


def reference_block(repo: Path) -> str:
    text = (repo / "README.md").read_text()
    return text.split("<!-- config-reference:start -->", 1)[1].split("<!-- config-reference:end -->", 1)[0].strip()


def generated(repo: Path, module: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", module], cwd=repo, capture_output=True, text=True, check=True, timeout=120
    ).stdout


@pytest.mark.slow
def test_regenerate_brings_schema_and_reference_up_to_date_after_a_default_moves(tmp_path: Path) -> None:
    need("make", "make")
    repo = copy_repo(tmp_path / "repo")
    (repo / ".venv").symlink_to(ROOT / ".venv")  # the installed venv: `make schema` finds it up to date
    config = repo / "rack" / "config.py"
    old = Monitoring.model_fields["grafana_version"].default
    new = ".".join([*old.split(".")[:-1], str(int(old.split(".")[-1]) + 1)])
    text = config.read_text()
    assert text.count(f'grafana_version: Version = "{old}"') == 1
    config.write_text(text.replace(f'grafana_version: Version = "{old}"', f'grafana_version: Version = "{new}"'))
    # control: what Renovate's branch would hold without the task fails both checks
    schema = (repo / "schema" / "stack.schema.json").read_text()
    assert schema != generated(repo, "rack.schema")
    assert reference_block(repo) != generated(repo, "rack.reference").strip()

    result = subprocess.run(["bash", "tools/regenerate.sh"], cwd=repo, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (repo / "schema" / "stack.schema.json").read_text() == generated(repo, "rack.schema")
    assert reference_block(repo) == generated(repo, "rack.reference").strip()
    assert f'"{new}"' in (repo / "schema" / "stack.schema.json").read_text() and f"`{new}`" in reference_block(repo)
    changed = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True)
    touched = {line[3:] for line in changed.stdout.splitlines()}
    assert touched == {"rack/config.py", "schema/stack.schema.json", "README.md", ".venv"}
