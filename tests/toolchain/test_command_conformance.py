"""The toolchain's command provider (toolchain/command/main.go) behaves as pulumi-command v1.2.1.

Real racks run upstream's pulumi-command; the lab and the offline toolchain run a stand-in,
because upstream's provider module is not served by the Go module proxy reachable here. Each test
states one upstream behaviour with its source (tag v1.2.1 of github.com/pulumi/pulumi-command,
paths under provider/pkg/provider/; pulumi-go-provider v1.3.0, which v1.2.1 builds on) and runs
it through the real engine (the CLI and Python host of `make toolchain`, the pulumi-command 1.2.1
Python SDK the program pins) against the built provider and a real OpenSSH server.

The sshd runs Debian's stock configuration (`/usr/share/openssh/sshd_config` of openssh-server:
PAM on, `AcceptEnv LANG LC_*`, `Subsystem sftp /usr/lib/openssh/sftp-server`), with only what a
test host must set given on its command line: a free port on 127.0.0.1, its three host keys
(ed25519, ECDSA, RSA, as `ssh-keygen -A` makes), a pid file and an authorized_keys file, all under
a 0700 directory in /run (StrictModes stays on). Debian's `Include /etc/ssh/sshd_config.d/*.conf`
line is dropped so that nothing on this machine changes the stock settings. It logs in as root
(upstream's default user).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.prereq import free_port, need, unmet
from tests.real.ssh.conftest import _wait_for_port
from tests.toolchain.test_toolchain import REPO, _built_bin

pytestmark = [pytest.mark.realssh, pytest.mark.slow]

STOCK_SSHD_CONFIG = Path("/usr/share/openssh/sshd_config")
"""Debian's pristine sshd_config, shipped by openssh-server (what /etc/ssh/sshd_config starts as)."""
SECRET_SIG = "4dabf18193072939515e22adb298388d"
"""The key Pulumi's state marks a secret value with (sdk/go/common/resource/sig)."""


@dataclass
class Sshd:
    port: int
    dir: Path
    host_keys: dict[str, str]
    """Key type -> `<type> <base64>` (as a `hostKey` pin is written)."""
    client_key: Path

    @property
    def private_key(self) -> str:
        return self.client_key.read_text()


@pytest.fixture(scope="module")
def sshd() -> Iterator[Sshd]:
    binary = need("sshd", "openssh-server", root=True)
    need("ssh-keygen", "openssh-client")
    if not STOCK_SSHD_CONFIG.is_file():
        unmet(f"{STOCK_SSHD_CONFIG} missing: apt-get install openssh-server")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    home = Path(tempfile.mkdtemp(prefix="hl-cmdconf-", dir="/run"))  # 0700, root-owned: StrictModes passes
    proc: subprocess.Popen[bytes] | None = None
    try:
        config = home / "sshd_config"
        config.write_text(
            "".join(line for line in STOCK_SSHD_CONFIG.read_text().splitlines(True) if not line.startswith("Include "))
        )
        keys: dict[str, str] = {}
        options: list[str] = []
        for kind in ("ed25519", "ecdsa", "rsa"):
            path = home / f"ssh_host_{kind}_key"
            subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
            pub = path.with_suffix(".pub").read_text().split()
            keys[pub[0]] = f"{pub[0]} {pub[1]}"
            options += ["-o", f"HostKey={path}"]
        client = home / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client)], check=True)
        (home / "authorized_keys").write_text(client.with_suffix(".pub").read_text())
        port = free_port()
        options += [
            "-o", f"Port={port}",
            "-o", "ListenAddress=127.0.0.1",
            "-o", f"PidFile={home / 'sshd.pid'}",
            "-o", f"AuthorizedKeysFile={home / 'authorized_keys'}",
        ]  # fmt: skip
        log = open(home / "sshd.log", "wb")  # noqa: SIM115 - lives as long as sshd
        proc = subprocess.Popen(
            [binary, "-D", "-e", "-f", str(config), *options],
            stderr=log,
            preexec_fn=lambda: os.umask(0o022),  # what a booted sshd has; the SFTP modes depend on it
        )
        _wait_for_port("127.0.0.1", port)
        yield Sshd(port=port, dir=home, host_keys=keys, client_key=client)
    finally:
        if proc is not None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
        shutil.rmtree(home, ignore_errors=True)


class Engine:
    """A throwaway Pulumi project (local file backend) running one program with the built toolchain."""

    def __init__(self, tmp: Path, bin_dir: Path) -> None:
        self.proj = tmp / "proj"
        self.proj.mkdir()
        (self.proj / "Pulumi.yaml").write_text(
            f"name: conformance\nruntime:\n  name: python\n  options:\n    virtualenv: {REPO / '.venv'}\n"
        )
        (tmp / "state").mkdir()
        (tmp / "home").mkdir()
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "PYTHONPATH": str(REPO),
            "PULUMI_HOME": str(tmp / "home"),
            "PULUMI_BACKEND_URL": f"file://{tmp / 'state'}",
            "PULUMI_CONFIG_PASSPHRASE": "",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
        }
        self.env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
        # The provider inherits the engine's environment: an agent of whoever runs the tests
        # must not take part (the agent tests set their own).
        self.env.pop("SSH_AUTH_SOCK", None)
        self.run("stack", "init", "t")

    def program(self, text: str) -> None:
        (self.proj / "__main__.py").write_text(text)

    def run(self, *args: str, ok: bool | None = True, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            ["pulumi", *args, "--non-interactive", "--color", "never"],
            cwd=self.proj, env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        text = done.stdout + done.stderr
        if ok is True:
            assert done.returncode == 0, text[-4000:]
        elif ok is False:
            assert done.returncode != 0, text[-4000:]
        return text

    def up(self, *, ok: bool | None = True, env: dict[str, str] | None = None) -> str:
        return self.run("up", "--yes", "--skip-preview", "--continue-on-error", ok=ok, env=env)

    def outputs(self) -> dict[str, dict[str, Any]]:
        """Each resource's outputs in the state, by logical name (secrets stay encrypted)."""
        state = json.loads(self.run("stack", "export"))
        return {r["urn"].rsplit("::", 1)[-1]: r.get("outputs", {}) for r in state["deployment"]["resources"]}


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    bin_dir = _built_bin()
    if bin_dir is None:
        unmet("toolchain for the current pins not built: run `make toolchain`")
    assert bin_dir is not None
    return Engine(tmp_path, bin_dir)


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and SECRET_SIG in value


def connection_py(sshd: Sshd, **extra: Any) -> str:
    """Python source of a `remote.ConnectionArgs` reaching the test sshd with the client key (a secret)."""
    fields = {"host": "127.0.0.1", "port": sshd.port, **extra}
    args = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    return f"remote.ConnectionArgs({args}, private_key=pulumi.Output.secret(KEY))"


def header(sshd: Sshd) -> str:
    return (
        "import pulumi\nimport pulumi_command as command\nfrom pulumi_command import local, remote\n"
        f"KEY = {sshd.private_key!r}\n"
    )


# -- secrets ----------------------------------------------------------------------------------


def test_stdout_is_secret_only_through_additional_secret_outputs(sshd: Sshd, engine: Engine) -> None:
    """pulumi-go-provider v1.3.0 infer/resource.go:592-630 (markSecret) with the default flow of
    :772-807 (ensureDefaultSecrets): an output is secret when the same-named input is. stdout and
    stderr have no same-named input (remote/baseOutputs.go:21-24), so a secret connection, stdin
    or command text leaves them plain; the engine's additionalSecretOutputs makes them secret (the
    SDK's docs for `logging`, remote/command.go:55-57). `connection` is tagged provider:"secret"
    (remote/command.go:46) and Check marks it secret even when sent plain
    (infer/apply_secrets.go:29)."""
    engine.program(
        header(sshd)
        + f"""
conn = {connection_py(sshd)}
remote.Command("plain", connection=conn, create="echo visible", stdin=pulumi.Output.secret("s3cret"))
remote.Command("marked", connection=conn, create="echo hidden",
               opts=pulumi.ResourceOptions(additional_secret_outputs=["stdout"]))
local.Command("local", create=pulumi.Output.secret("echo local-out"))
# The wire form with a plain connection (no SDK wrapping): secret after Check all the same.
pulumi.CustomResource("command:remote:Command", "raw", {{
    "connection": {{"host": "127.0.0.1", "port": {sshd.port}, "privateKey": KEY}},
    "create": "echo raw", "stdout": None, "stderr": None}})
"""
    )
    engine.up()
    out = engine.outputs()
    assert out["plain"]["stdout"] == "visible"
    assert is_secret(out["plain"]["stdin"]) and is_secret(out["plain"]["connection"])
    assert is_secret(out["marked"]["stdout"])
    assert out["local"]["stdout"] == "local-out" and is_secret(out["local"]["create"])
    assert out["raw"]["stdout"] == "raw" and is_secret(out["raw"]["connection"])


# -- Setenv on a stock sshd ---------------------------------------------------------------------


def test_a_refused_environment_variable_fails_the_command(sshd: Sshd, engine: Engine) -> None:
    """remote/commandOutputs.go:42-49 and :110-126: each `environment` entry is sent with SSH
    Setenv; one the server refuses (no AcceptEnv for it) fails the command with an error
    diagnostic and `could not set environment variable`. Debian's stock sshd_config accepts
    `LANG LC_*` only."""
    engine.program(
        header(sshd)
        + f"""
conn = {connection_py(sshd)}
remote.Command("refused", connection=conn, create="echo ran", environment={{"HOMELAB_CONFORMANCE": "x"}})
remote.Command("accepted", connection=conn, create="echo $LC_HOMELAB", environment={{"LC_HOMELAB": "through"}})
"""
    )
    text = engine.up(ok=False)
    assert 'could not set environment variable "HOMELAB_CONFORMANCE"' in text, text[-3000:]
    assert "Unable to set 'HOMELAB_CONFORMANCE'" in text
    out = engine.outputs()
    assert "refused" not in out
    assert out["accepted"]["stdout"] == "through"


def test_refused_previous_output_variables_only_warn_on_update_and_delete(sshd: Sshd, engine: Engine) -> None:
    """remote/commandOutputs.go:51-71: on update and delete (commandController.go:70, :91 carry the
    previous stdout/stderr) PULUMI_COMMAND_STDOUT and PULUMI_COMMAND_STDERR are set when
    non-empty and addPreviousOutputInEnv is not false; a refusal is a warning and the command runs.
    On create there is no previous output, so nothing is set."""
    engine.program(
        header(sshd)
        + f"""
n = pulumi.Config().require("n")
remote.Command("cmd", connection={connection_py(sshd)}, create="echo first",
               update=f'echo "[$PULUMI_COMMAND_STDOUT] update-{{n}}"', delete="echo bye")
"""
    )
    engine.run("config", "set", "n", "1")
    created = engine.up()
    assert "Unable to set" not in created
    engine.run("config", "set", "n", "2")
    updated = engine.up()
    assert "warning: Unable to set 'PULUMI_COMMAND_STDOUT'" in updated, updated[-3000:]
    assert "PULUMI_COMMAND_STDERR" not in updated  # stderr was empty: not set at all
    # The update ran, without the refused variable.
    assert engine.outputs()["cmd"]["stdout"] == "[] update-2"
    destroyed = engine.run("destroy", "--yes")
    assert "warning: Unable to set 'PULUMI_COMMAND_STDOUT'" in destroyed, destroyed[-3000:]


# -- SSH agent ---------------------------------------------------------------------------------


def test_an_unreachable_agent_socket_is_an_error(sshd: Sshd, engine: Engine, tmp_path: Path) -> None:
    """remote/connection.go:131-145 with connection_unix.go:12-21: `agentSocketPath`, else a
    non-empty SSH_AUTH_SOCK, is dialled, and a failure to reach it fails the command (even with
    a private key that would log in). A reachable agent holding the key logs in without one."""
    dead = tmp_path / "no-agent.sock"
    engine.program(header(sshd) + f'remote.Command("cmd", connection={connection_py(sshd)}, create="echo ok")\n')
    text = engine.up(ok=False, env={"SSH_AUTH_SOCK": str(dead)})
    assert f"dial unix {dead}: connect: no such file or directory" in text, text[-3000:]

    engine.program(
        header(sshd)
        + f'remote.Command("cmd", connection={connection_py(sshd, agent_socket_path=str(dead))}, create="echo ok")\n'
    )
    text = engine.up(ok=False)
    assert f"dial unix {dead}: connect: no such file or directory" in text, text[-3000:]

    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        _wait_for_socket(sock)
        with_agent = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sshd.client_key)], env=with_agent, check=True)
        engine.program(
            header(sshd)
            + f'remote.Command("cmd", connection=remote.ConnectionArgs(host="127.0.0.1", port={sshd.port}), '
            'create="echo through-agent")\n'
        )
        engine.up(env={"SSH_AUTH_SOCK": str(sock)})
        assert engine.outputs()["cmd"]["stdout"] == "through-agent"
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=10)


def _wait_for_socket(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


# -- host keys ---------------------------------------------------------------------------------


def test_a_host_key_pin_restricts_the_host_key_algorithms_to_its_type(sshd: Sshd, engine: Engine) -> None:
    """remote/connection.go:88-104: with `hostKey`, FixedHostKey(key) and HostKeyAlgorithms =
    [key.Type()]. On a host holding ed25519, ECDSA and RSA keys, an ed25519 or an ECDSA pin
    connects (the server is asked for that key, whichever it would prefer); an `ssh-rsa` pin asks
    for SHA-1 RSA signatures, which OpenSSH 8.8+ no longer offers: no common algorithm."""
    # dialErrorLimit 0: the refused handshake is not retried (11 s otherwise).
    resources = "".join(
        f'remote.Command("{name}", create="echo {name}", '
        f"connection={connection_py(sshd, host_key=sshd.host_keys[kind], dial_error_limit=0)})\n"
        for name, kind in (("ed25519", "ssh-ed25519"), ("ecdsa", "ecdsa-sha2-nistp256"), ("rsa", "ssh-rsa"))
    )
    engine.program(header(sshd) + resources)
    text = engine.up(ok=False)
    out = engine.outputs()
    assert out["ed25519"]["stdout"] == "ed25519", text[-3000:]
    assert out["ecdsa"]["stdout"] == "ecdsa", text[-3000:]
    assert "rsa" not in out
    assert 'no common algorithm for host key; we offered: ["ssh-rsa"]' in text, text[-3000:]


# -- dial retries ------------------------------------------------------------------------------


class RefusingServer:
    """Accepts TCP connections and closes them at once (an SSH handshake that fails), noting when."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[float] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(time.monotonic())
            conn.close()

    def close(self) -> None:
        self.sock.close()


def test_dial_retries_follow_upstreams_limit_and_backoff(sshd: Sshd, engine: Engine) -> None:
    """remote/connection.go:150-187 and :245-255 over sdk/v3 go/common/util/retry/until.go:40-42:
    the first dial plus `dialErrorLimit` retries (default 10: connection.go:31-32), waiting 0.1 s
    and 1.5 times longer each time (at most 5 s): 11 dials over ~11.3 s, then `after 10 failed
    attempts`. dialErrorLimit 2: 3 dials."""
    default, two = RefusingServer(), RefusingServer()
    try:
        engine.program(
            header(sshd)
            + f"""
remote.Command("default", connection=remote.ConnectionArgs(host="127.0.0.1", port={default.port}), create="true")
remote.Command("two", connection=remote.ConnectionArgs(host="127.0.0.1", port={two.port}, dial_error_limit=2),
               create="true")
"""
        )
        text = engine.up(ok=False)
    finally:
        default.close()
        two.close()
    assert "after 10 failed attempts" in text and "after 2 failed attempts" in text, text[-3000:]
    assert len(default.accepted) == 11
    assert len(two.accepted) == 3
    waits = [b - a for a, b in zip(default.accepted, default.accepted[1:], strict=False)]
    for i, wait in enumerate(waits):  # a timer never fires early; each wait is 1.5x the one before
        assert wait >= 0.1 * 1.5**i - 0.01, (i, waits)
    expected = sum(0.1 * 1.5**i for i in range(10))  # 11.33 s
    assert expected - 0.1 <= default.accepted[-1] - default.accepted[0] <= expected + 3.0, waits


# -- lifecycle -----------------------------------------------------------------------------------


def test_a_preview_never_dials_and_a_trigger_change_replaces_running_the_old_delete(sshd: Sshd, engine: Engine) -> None:
    """remote/commandController.go:44-46 and :71-73: a preview returns before any connection.
    common/inputs.go:10: `triggers` is replaceOnChanges, so a change replaces the command (create
    first, then delete); the delete runs the state's, i.e. the OLD, `delete` (:85-92)."""
    unreachable = RefusingServer()
    log = sshd.dir / "lifecycle.log"
    try:
        engine.program(
            header(sshd)
            + f"""
v = pulumi.Config().require("v")
remote.Command("cmd", connection={connection_py(sshd)}, triggers=[v],
               create=f"echo create-{{v}} >> {log}", delete=f"echo delete-{{v}} >> {log}")
remote.Command("never", connection=remote.ConnectionArgs(host="127.0.0.1", port={unreachable.port}), create="true")
"""
        )
        engine.run("config", "set", "v", "1")
        engine.run("preview")
        assert unreachable.accepted == [] and not log.exists()
    finally:
        unreachable.close()
    engine.program((engine.proj / "__main__.py").read_text().split('remote.Command("never"')[0])
    engine.up()
    engine.run("config", "set", "v", "2")
    replaced = engine.up()
    assert "replaced" in replaced, replaced[-3000:]
    assert log.read_text().split() == ["create-1", "create-2", "delete-1"]


def test_an_update_with_no_command_to_run_keeps_the_previous_outputs(engine: Engine) -> None:
    """local/commandController.go:74, :79-87 (remote/commandController.go:70, :75-81 alike): an
    update starts from the old stdout/stderr and, with neither `update` nor `create` to run,
    returns them unchanged."""
    engine.program(
        "import pulumi\nfrom pulumi_command import local\n"
        "local.Command('cmd', create=pulumi.Config().get('create'), delete='true')\n"
    )
    engine.run("config", "set", "create", "echo first")
    engine.up()
    assert engine.outputs()["cmd"]["stdout"] == "first"
    engine.run("config", "rm", "create")
    text = engine.up()
    assert "updated" in text, text[-3000:]
    assert engine.outputs()["cmd"]["stdout"] == "first"


def test_every_change_of_a_copy_file_replaces_it(sshd: Sshd, engine: Engine, tmp_path: Path) -> None:
    """remote/copyfileController.go:30: CopyFile has no Update, so pulumi-go-provider v1.3.0
    (infer/resource.go:1134-1150) makes every input change a replace: a new remotePath is a
    fresh copy, the old file stays (there is no Delete either)."""
    local_file = tmp_path / "f.txt"
    local_file.write_text("f")
    engine.program(
        header(sshd)
        + f"""
dest = pulumi.Config().require("dest")
remote.CopyFile("cf", connection={connection_py(sshd)}, local_path={str(local_file)!r}, remote_path=dest)
"""
    )
    engine.run("config", "set", "dest", str(sshd.dir / "cf-1.txt"))
    engine.up()
    engine.run("config", "set", "dest", str(sshd.dir / "cf-2.txt"))
    text = engine.up()
    assert "replaced" in text and "updated" not in text, text[-3000:]
    assert (sshd.dir / "cf-1.txt").read_text() == "f" and (sshd.dir / "cf-2.txt").read_text() == "f"


# -- CopyToRemote ------------------------------------------------------------------------------


def test_copy_to_remote_follows_upstreams_path_rules_over_sftp(sshd: Sshd, engine: Engine, tmp_path: Path) -> None:
    """remote/copyController.go:203-269 (sftpCopy's table), :33-62 (text assets), :271-289 (files
    made with SFTP Create: the server's default mode for a new file, an existing file keeps its
    own; the local mode is not copied), :137-154 (an update copies again only when the source's
    hash or remotePath changed), copy.go:46-54 (archives are copied as they are, not unpacked).

        source | dest exists as dir | dest does not exist | dest exists as file
        dir    | dest/dir           | dest/dir            | error
        dir/   | dest/x for x in dir| dest/dir            | error
        file   | dest/file          | dest                | dest (overwritten)
    """
    src = tmp_path / "src"
    (src / "tree" / "sub").mkdir(parents=True)
    (src / "tree" / "a.txt").write_text("a")
    (src / "tree" / "sub" / "b.txt").write_text("b")
    local_file = src / "file.txt"
    local_file.write_text("file v1")
    local_file.chmod(0o755)
    (src / "bundle.tgz").write_bytes(b"\x1f\x8b not unpacked")
    r = sshd.dir / "remote"
    for d in ("into-dir", "tree-into-dir", "contents-into-dir", "text-into-dir"):
        (r / d).mkdir(parents=True)
    (r / "existing-file").write_text("old")
    (r / "existing-file").chmod(0o600)
    (r / "tree-onto-file").write_text("a file")

    def copy(name: str, source: str, dest: Path) -> str:
        return f'remote.CopyToRemote("{name}", connection=conn, source={source}, remote_path={str(dest)!r})\n'

    tree = str(src / "tree")
    program = (
        header(sshd)
        + f"conn = {connection_py(sshd)}\nv = pulumi.Config().require('v')\n"
        + "".join(
            [
                copy("file-into-dir", f"pulumi.FileAsset({str(local_file)!r})", r / "into-dir"),
                copy("file-to-new", f"pulumi.FileAsset({str(local_file)!r})", r / "new" / "parents" / "target.txt"),
                copy("file-over-file", f"pulumi.FileAsset({str(local_file)!r})", r / "existing-file"),
                copy("tree-into-dir", f"pulumi.FileArchive({tree!r})", r / "tree-into-dir"),
                copy("contents-into-dir", f"pulumi.FileArchive({tree + '/'!r})", r / "contents-into-dir"),
                copy("tree-to-new", f"pulumi.FileArchive({tree!r})", r / "tree-new"),
                copy("tree-onto-file", f"pulumi.FileArchive({tree!r})", r / "tree-onto-file"),
                copy("text-to-new", "pulumi.StringAsset('text ' + v)", r / "text" / "new.txt"),
                copy("text-into-dir", "pulumi.StringAsset('text')", r / "text-into-dir"),
                copy("archive-file", f"pulumi.FileArchive({str(src / 'bundle.tgz')!r})", r / "archives"),
            ]
        )
    )
    engine.program(program)
    engine.run("config", "set", "v", "v1")
    text = engine.up(ok=False)
    assert (r / "into-dir" / "file.txt").read_text() == "file v1"
    target = r / "new" / "parents" / "target.txt"
    assert target.read_text() == "file v1"
    assert target.stat().st_mode & 0o777 == 0o644  # 0666 less sshd's umask 022, not the local 0755
    assert (r / "existing-file").read_text() == "file v1"
    assert (r / "existing-file").stat().st_mode & 0o777 == 0o600
    assert (r / "tree-into-dir" / "tree" / "sub" / "b.txt").read_text() == "b"
    assert (r / "contents-into-dir" / "a.txt").read_text() == "a"
    assert (r / "contents-into-dir" / "sub" / "b.txt").read_text() == "b"
    assert not (r / "contents-into-dir" / "tree").exists()
    assert (r / "tree-new" / "tree" / "a.txt").read_text() == "a"
    assert (r / "tree-onto-file").read_text() == "a file"
    assert (r / "text" / "new.txt").read_text() == "text v1"
    assert (r / "archives").is_file() and (r / "archives").read_bytes() == b"\x1f\x8b not unpacked"
    assert "remote path " + str(r / "text-into-dir") + " is a directory" in text, text[-4000:]
    out = engine.outputs()
    assert "tree-onto-file" not in out and "text-into-dir" not in out
    assert {"file-into-dir", "file-to-new", "text-to-new", "archive-file"} <= set(out)

    # An update whose source and remotePath are unchanged copies nothing; a changed source copies.
    engine.program(program.replace("remote.ConnectionArgs(", "remote.ConnectionArgs(per_dial_timeout=16, ", 1))
    target.write_text("changed on the host")
    text = engine.up(ok=False)
    assert "file-to-new" in text and "updated" in text, text[-3000:]
    assert target.read_text() == "changed on the host"
    engine.run("config", "set", "v", "v2")
    engine.up(ok=False)
    assert (r / "text" / "new.txt").read_text() == "text v2"


def test_check_refuses_a_copy_source_that_is_not_a_path_or_text(sshd: Sshd, engine: Engine) -> None:
    """remote/copyController.go:101-112: an asset must be a path or text, an archive a path; Check
    refuses others, so even a preview fails."""
    engine.program(
        header(sshd)
        + f"""
remote.CopyToRemote("bad", connection={connection_py(sshd)}, remote_path="/tmp/x",
    source=pulumi.AssetArchive({{"a.txt": pulumi.StringAsset("a")}}))
"""
    )
    text = engine.run("preview", ok=False)
    assert "archive must be a path to a file or directory" in text, text[-3000:]


def test_there_is_no_remote_run_function(sshd: Sshd, engine: Engine) -> None:
    """provider.go:90-94: the only function is local.Run (command:local:run)."""
    engine.program(
        header(sshd)
        + f"""
pulumi.export("local", local.run(command="echo local-run").stdout)
pulumi.runtime.invoke("command:remote:run", {{"connection": {{"host": "127.0.0.1", "port": {sshd.port}}},
                                             "command": "true"}})
"""
    )
    text = engine.run("preview", ok=False)
    assert 'unknown function "command:remote:run"' in text, text[-3000:]


# -- the program on the conformant provider ----------------------------------------------------


def test_the_programs_wrappers_keep_read_backs_secret_and_copy_to_the_exact_path(
    sshd: Sshd, engine: Engine, tmp_path: Path
) -> None:
    """What the program relies on, through its own wire-level wrappers (components/core/
    remote_command.py) rather than the SDK classes: a read-back registered as k3s_cluster.py does
    (logging none, additional_secret_outputs stdout) is secret in the state, where upstream would
    leave it plain otherwise (see the first test); an air-gap copy as k3s_node.py makes it (a
    FileAsset to `<staging>/<version>/k3s`, parents missing) lands at that exact path, and the
    install script's own chmod is what makes it executable (upstream does not copy modes); and a
    second preview plans no change."""
    binary = tmp_path / "k3s-arm64"
    binary.write_text("#!/bin/sh\necho k3s\n")
    binary.chmod(0o755)
    stage = sshd.dir / "var" / "tmp" / "homelab-k3s" / "v1.36.4+k3s1"
    engine.program(
        f"""
import pulumi
from components.core.remote_command import LOGGING_NONE, CopyToRemote, RemoteCommand, connection

conn = connection(host="127.0.0.1", port={sshd.port}, user="root",
                  host_key={sshd.host_keys["ssh-ed25519"]!r}, private_key=pulumi.Output.secret({sshd.private_key!r}))
RemoteCommand("token", connection=conn, create="echo K10abc::server:s3cret", logging=LOGGING_NONE,
              opts=pulumi.ResourceOptions(additional_secret_outputs=["stdout"]))
RemoteCommand("plain", connection=conn, create="echo preflight ok")
CopyToRemote("binary", connection=conn, source=pulumi.FileAsset({str(binary)!r}), remote_path={str(stage / "k3s")!r})
"""
    )
    text = engine.up()
    assert "s3cret" not in text
    out = engine.outputs()
    assert is_secret(out["token"]["stdout"]) and is_secret(out["token"]["connection"])
    assert out["plain"]["stdout"] == "preflight ok"
    assert (stage / "k3s").read_text() == binary.read_text()
    assert (stage / "k3s").stat().st_mode & 0o111 == 0
    # Check hands back what it was given (connection marked secret): a second run plans nothing.
    engine.run("preview", "--expect-no-changes")
