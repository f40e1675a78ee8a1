"""The user docs stay true: every command block says whether a test runs it (and that test really
contains it) or it needs real hardware; every error quoted in the troubleshooting guide is a
message the code really prints; links and anchors resolve; the Pulumi CLI version is the pin.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = [
    ROOT / "docs" / n
    for n in (
        "first-install.md",
        "operations.md",
        "troubleshooting.md",
        "gitea-ci.md",
        "images.md",
        "init.md",
        "lan-dns.md",
        "plan-exit-codes.md",
        "trust.md",
    )
]
SOURCES = [ROOT / "__main__.py", ROOT / "Makefile", *sorted((ROOT / "tools").glob("*.sh"))]
SOURCES += [p for d in ("rack", "components", "stacks", "plan") for p in sorted((ROOT / d).rglob("*.py"))]
HARDWARE = "# (needs real hardware)"


def shell_blocks(path: Path) -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", path.read_text(), re.S)
    return [[line.strip() for line in block.strip("\n").splitlines() if line.strip()] for block in blocks]


def commands(block: list[str]) -> list[str]:
    """The command lines of a block: no comments, continuation lines joined."""
    out: list[str] = []
    joined = ""
    for line in block:
        if line.lstrip().startswith("#"):
            continue
        joined += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            out.append(joined.strip())
            joined = ""
    return [c for c in out if c]


def program(command: str) -> str:
    """What to look for in the test that runs it: `make <target>` or the program's name."""
    command = re.sub(r"^eval \"\$\(", "", command)
    words = command.split()
    if words[0] == "make":
        return " ".join(words[:2])
    return words[0]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_command_block_is_tested_or_needs_hardware(path: Path) -> None:
    blocks = shell_blocks(path)
    if path.name not in ("gitea-ci.md", "images.md"):
        assert blocks
    makefile_targets = set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    for block in blocks:
        tag = block[0]
        assert tag == HARDWARE or tag.startswith("# tested: "), f"{path.name}: untagged block {block}"
        assert commands(block), f"{path.name}: empty block"
        if tag == HARDWARE:
            continue
        runner = ROOT / tag.removeprefix("# tested: ")
        assert runner.is_file(), tag
        text = runner.read_text()
        for command in commands(block):
            name = program(command)
            if name.startswith("make "):
                assert name.split()[1] in makefile_targets, command
            assert name in text, f"{path.name}: {command!r} is not in {runner.relative_to(ROOT)}"


def test_troubleshooting_quotes_only_messages_the_code_prints() -> None:
    headings = re.findall(r"^### `([^`]+)`$", (ROOT / "docs" / "troubleshooting.md").read_text(), re.M)
    assert len(headings) >= 25
    source = "\n".join(p.read_text() for p in SOURCES)
    for fragment in headings:
        assert fragment in source, f"troubleshooting.md quotes {fragment!r}, which no code prints"


def test_troubleshooting_covers_every_kind_of_preflight_failure() -> None:
    """Each problem the k3s and GPU preflights can report has its section."""
    doc = (ROOT / "docs" / "troubleshooting.md").read_text()
    k3s = (ROOT / "components" / "metal" / "k3s_scripts.py").read_text()
    gpu = (ROOT / "components" / "gpu" / "gpu_host.py").read_text()
    start = k3s.index("def preflight_script")
    preflight = k3s[start : k3s.index("\ndef ", start + 1)]
    memcg = re.search(r'^_NO_MEMCG = "(.*)"$', k3s, re.M)
    assert memcg is not None
    messages = [m.replace("{_NO_MEMCG}", memcg.group(1)) for m in re.findall(r'problems\+=\("(.*?)"\)', preflight)]
    messages += re.findall(r"fail ['\"](.*?)['\"]$", gpu[gpu.index("def preflight_script") :], re.M)
    assert len(messages) >= 10
    for message in messages:
        # the first run of two or more words without a variable in them, before the first colon
        head = message.split(": ")[0]
        runs = [r.split() for r in re.split(r"\S*[${}]\S*", head)]
        anchor = " ".join(next(r for r in runs if len(r) >= 2)[:3])
        assert len(anchor) >= 6 and anchor in doc, f"no section for the preflight message {message!r}"


def slug(heading: str) -> str:
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"\s", "-", text)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_links_and_anchors_resolve(path: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file) if file else path
        assert linked.is_file(), f"{path.name}: {target}"
        if anchor:
            anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", linked.read_text(), re.M)}
            assert anchor in anchors, f"{path.name}: #{anchor} not in {linked.name}"


PULUMI_CLI_VERSION = re.compile(
    r"--version (\d+\.\d+\.\d+)"  # the installer script's flag (first-install.md)
    r"|pulumi-v?(\d+\.\d+\.\d+)-"  # a release file: pulumi-v<v>-linux-<arch>.tar.gz, pulumi-<v>-checksums.txt
    r"|today (\d+\.\d+\.\d+)"  # "the version of pulumi== in requirements.txt (today <v>)"
)


def test_pulumi_cli_version_in_the_docs_is_the_pin() -> None:
    pin = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pin is not None
    seen = set()
    for path in DOCS:
        for match in PULUMI_CLI_VERSION.finditer(path.read_text()):
            assert next(v for v in match.groups() if v) == pin.group(1), f"{path.name}: {match.group(0)}"
            seen.add(path.name)
    assert {"first-install.md", "gitea-ci.md"} <= seen  # where the docs name the CLI's version


def yaml_blocks(path: Path) -> list[str]:
    """The ```yaml blocks of a doc, de-indented (they may sit in a list item)."""
    import textwrap

    return [textwrap.dedent(b) for b in re.findall(r"^ *```yaml\n(.*?)^ *```", path.read_text(), re.S | re.M)]


def test_the_image_walkthrough_shows_the_linted_example_and_a_valid_app() -> None:
    """docs/images.md quotes docs/examples/build-image.yml (actionlint checks that file) word for
    word, and its app entry is the sample stack's, an image under the rack's own registry."""
    import yaml

    from rack.config import parse_rack
    from tests.conftest import stack_raw

    blocks = yaml_blocks(ROOT / "docs" / "images.md")
    assert (ROOT / "docs" / "examples" / "build-image.yml").read_text() in blocks
    (apps,) = [yaml.safe_load(b)["apps"] for b in blocks if b.startswith("apps:")]
    raw = stack_raw("homelab")
    sample = {a["name"]: a for a in raw["apps"]}
    for app in apps:  # the walkthrough's app is the sample stack's own, image and all
        assert sample[app["name"]]["image"] == app["image"]
        assert sample[app["name"]]["image"].startswith(f"git.{raw['domain']}/")
    assert parse_rack(raw).apps
