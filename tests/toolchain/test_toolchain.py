"""The offline Pulumi toolchain's scripts (toolchain/): pins, cache key, env, no-op paths.

These run in well under a second each and build nothing. The end-to-end proof (the real CLI,
language host and providers running a Python program) is `test_smoke`, which runs only when the
toolchain for the current pins is already built (`make toolchain`).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from shutil import copytree
from shutil import which as shutil_which

import pytest

REPO = Path(__file__).resolve().parents[2]
TC = REPO / "toolchain"


def versions() -> dict[str, str]:
    out = {}
    for line in (TC / "versions.env").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        out[key] = value
    return out


def bash(script: str, env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def clean_env(tmp_path: Path, path: str = "/usr/bin:/bin") -> dict[str, str]:
    return {"HOME": str(tmp_path), "PATH": path, "HOMELAB_TOOLCHAIN_CACHE": str(tmp_path / "cache")}


def test_versions_env_lines_are_readable_by_shell_and_make() -> None:
    for line in (TC / "versions.env").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*=[^\s#'\"]+", line), line


def test_go_modules_pin_what_versions_env_says() -> None:
    v = versions()

    def pins(gomod: str, module: str, version: str) -> bool:
        text = (TC / gomod / "go.mod").read_text()
        line = rf"^\s*(require )?{re.escape(module)} {re.escape(version)}( // indirect)?$"
        return re.search(line, text, re.M) is not None

    assert pins("cli", "github.com/pulumi/pulumi/pkg/v3", "v" + v["TOOLCHAIN_PULUMI"])
    assert pins("cli", "github.com/pulumi/pulumi/sdk/v3", "v" + v["TOOLCHAIN_PULUMI"])
    assert pins("python", "github.com/pulumi/pulumi/sdk/v3", "v" + v["TOOLCHAIN_PULUMI_LANGUAGE_PYTHON"])
    assert pins("command", "github.com/pulumi/pulumi/sdk/v3", "v" + v["TOOLCHAIN_PULUMI"])
    module = v["TOOLCHAIN_PULUMI_KUBERNETES_MODULE"]
    assert pins("kubernetes", "github.com/pulumi/pulumi-kubernetes/provider/v4", module)
    assert v["TOOLCHAIN_PULUMI_KUBERNETES"] == module.removeprefix("v")


def test_cli_wrapper_keeps_pkg_non_local_replace() -> None:
    assert (
        "replace github.com/atotto/clipboard => github.com/tgummerer/clipboard" in (TC / "cli" / "go.mod").read_text()
    )


def test_requirements_pin_the_python_sdks_versions_env_names() -> None:
    reqs = (REPO / "requirements.txt").read_text().lower()
    v = versions()
    for pkg, key in [
        ("pulumi", "TOOLCHAIN_PY_PULUMI"),
        ("pulumi-kubernetes", "TOOLCHAIN_PY_PULUMI_KUBERNETES"),
        ("pulumi-command", "TOOLCHAIN_PY_PULUMI_COMMAND"),
    ]:
        pin = re.search(rf"^{re.escape(pkg)}\s*==\s*([^\s;#]+)", reqs, re.M)
        if pin is None:
            pytest.skip(f"{pkg} not pinned with == in requirements.txt")
        assert pin.group(1) == v[key], pkg


def test_env_sh_sets_the_documented_environment(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    r = bash(". toolchain/env.sh && env", env)
    assert r.returncode == 0, r.stderr
    got = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert got["PULUMI_HOME"] == str(REPO / "build" / "pulumi-home")
    assert got["PULUMI_BACKEND_URL"] == f"file://{REPO}/build/state"
    assert got["PULUMI_CONFIG_PASSPHRASE"] == ""
    assert got["PULUMI_SKIP_UPDATE_CHECK"] == "true"
    assert got["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] == "true"
    assert got["PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK"] == "true"
    assert got["HOMELAB_TOOLCHAIN_BIN"].startswith(str(tmp_path / "cache") + "/")
    # The cache bin is not built here, so PATH is left alone.
    assert got["PATH"] == "/usr/bin:/bin"


def test_env_sh_keeps_a_passphrase_the_caller_set(tmp_path: Path) -> None:
    env = {**clean_env(tmp_path), "PULUMI_CONFIG_PASSPHRASE": "s3cret"}
    r = bash('. toolchain/env.sh && printf %s "$PULUMI_CONFIG_PASSPHRASE"', env)
    assert r.stdout == "s3cret"
    env = {**clean_env(tmp_path), "PULUMI_CONFIG_PASSPHRASE_FILE": "/some/file"}
    r = bash('. toolchain/env.sh && printf %s "${PULUMI_CONFIG_PASSPHRASE-unset}"', env)
    assert r.stdout == "unset"


def test_env_sh_puts_a_built_toolchain_first_on_path(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    bin_dir = bash(". toolchain/lib.sh && toolchain_bin", env).stdout.strip()
    Path(bin_dir).mkdir(parents=True)
    r = bash('. toolchain/env.sh && . toolchain/env.sh && printf %s "$PATH"', env)
    assert r.stdout == f"{bin_dir}:/usr/bin:/bin"  # once, even when sourced twice


def test_cache_key_is_stable_and_names_the_inputs(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    a = bash(". toolchain/lib.sh && toolchain_key", env).stdout.strip()
    b = bash(". toolchain/lib.sh && toolchain_key", env).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{16}", a) and a == b
    # Each part is keyed by how it is built, its module files and its own main (cli has none);
    # its versions.env pins are hashed as lines (next test).
    for part in ("cli", "python", "command", "kubernetes"):
        inputs = bash(f". toolchain/lib.sh && toolchain_part_inputs {part}", env).stdout.split()
        main = [f"{part}/main.go"] if part != "cli" else []
        assert sorted(inputs) == sorted(["build.sh", "lib.sh", f"{part}/go.mod", f"{part}/go.sum", *main]), part
        for f in inputs:
            assert (TC / f).is_file(), f


def test_each_part_has_its_own_key_so_a_change_rebuilds_only_that_part(tmp_path: Path) -> None:
    """The CLI alone takes ~18 minutes cold: a change to the command provider must not rebuild it."""
    copy = tmp_path / "toolchain"
    copytree(TC, copy)
    env = clean_env(tmp_path)
    script = ". lib.sh && for p in $TOOLCHAIN_PARTS; do echo $p $(toolchain_part_key $p); done && toolchain_key"

    def keys() -> tuple[dict[str, str], str]:
        r = bash(script, env, cwd=copy)
        assert r.returncode == 0, r.stderr
        *parts, whole = r.stdout.split("\n")[:-1]
        return dict(line.split() for line in parts), whole

    before, whole_before = keys()
    assert set(before) == {"cli", "python", "command", "kubernetes"}
    assert len(set(before.values())) == 4
    with (copy / "command" / "main.go").open("a") as f:
        f.write("\n// changed\n")
    after, whole_after = keys()
    assert after["command"] != before["command"] and whole_after != whole_before
    assert {k: v for k, v in after.items() if k != "command"} == {k: v for k, v in before.items() if k != "command"}
    # A pin moves only the parts built from it.
    versions_env = copy / "versions.env"
    versions_env.write_text(
        versions_env.read_text().replace("TOOLCHAIN_PULUMI_KUBERNETES=", "TOOLCHAIN_PULUMI_KUBERNETES=9")
    )
    moved, whole_moved = keys()
    assert [k for k in moved if moved[k] != after[k]] == ["kubernetes"] and whole_moved != whole_after


def test_build_sh_assembles_cached_parts_without_building(tmp_path: Path) -> None:
    go = shutil_which("go")
    if go is None:
        pytest.skip("go not on PATH")
    env = clean_env(tmp_path, f"{Path(go).parent}:/usr/bin:/bin")
    parts = bash(". toolchain/lib.sh && for p in $TOOLCHAIN_PARTS; do toolchain_part_dir $p; done", env).stdout.split()
    for part in parts:
        (Path(part) / "bin").mkdir(parents=True)
        (Path(part) / "bin" / Path(part).name.split("-")[0]).write_text("#!/bin/sh\n")
        (Path(part) / ".complete").touch()
    r = bash("bash toolchain/build.sh", env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "built nothing" in r.stdout and " ..." not in r.stdout
    bin_dir = Path(bash(". toolchain/lib.sh && toolchain_bin", env).stdout.strip())
    assert sorted(f.name for f in bin_dir.iterdir()) == ["cli", "command", "kubernetes", "python"]
    assert (bin_dir.parent / ".complete").is_file()


def test_build_sh_is_a_no_op_when_cached(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    bin_dir = Path(bash(". toolchain/lib.sh && toolchain_bin", env).stdout.strip())
    bin_dir.mkdir(parents=True)
    (bin_dir.parent / ".complete").touch()
    r = bash("bash toolchain/build.sh", env)
    assert r.returncode == 0, r.stderr
    assert f"toolchain: cached at {bin_dir}" in r.stdout


def test_build_sh_uses_a_pulumi_already_on_path(tmp_path: Path) -> None:
    fake = tmp_path / "fakebin"
    fake.mkdir()
    for name in ["pulumi", "pulumi-language-python", "pulumi-resource-command"]:
        p = fake / name
        p.write_text("#!/bin/sh\necho v3.0.0-fake\n")
        p.chmod(0o755)
    r = bash("bash toolchain/build.sh", clean_env(tmp_path, f"{fake}:/usr/bin:/bin"))
    assert r.returncode == 0, r.stderr
    assert f"using pulumi already on PATH: {fake}/pulumi (v3.0.0-fake)" in r.stdout
    assert "building nothing" in r.stdout
    missing = r.stdout.split("not on PATH")[1]
    assert "pulumi-resource-kubernetes" in missing and "pulumi-resource-pulumi-python" in missing
    assert "pulumi-resource-command" not in missing
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").glob("*/bin"))


def _built_bin() -> Path | None:
    r = subprocess.run(
        ["bash", "-c", ". toolchain/lib.sh && toolchain_bin"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    bin_dir = Path(r.stdout.strip())
    return bin_dir if (bin_dir.parent / ".complete").is_file() else None


def test_smoke() -> None:
    """CLI + Python host + command, kubernetes and dynamic providers, for real (toolchain/smoke.sh)."""
    if _built_bin() is None:
        pytest.skip("toolchain for the current pins not built (make toolchain)")
    r = subprocess.run(["bash", str(TC / "smoke.sh")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "smoke: ok" in r.stdout
    assert "hello from pulumi-command" in r.stdout
