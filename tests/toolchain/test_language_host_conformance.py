"""The toolchain's Python language host (toolchain/python/main.go) shuts down as upstream's does.

Real users run upstream's `pulumi-language-python` (sdk/python/cmd/pulumi-language-python in
github.com/pulumi/pulumi, v3.274.1); the toolchain builds a stand-in because the proxy here does
not serve that module. The engine closes every plugin the same way (sdk/v3
go/common/resource/plugin/plugin.go, the `kill` of `ExecPlugin`): SIGINT to the plugin's process
group (`cmdutil.InterruptChildren`), then, if it has not exited within 5 seconds, SIGKILL.
Upstream's host handles SIGINT itself (`signal.NotifyContext(ctx, os.Interrupt)` in `main`, whose
cancel stops `rpcutil.ServeWithOptions` through its `Cancel` channel) and exits 0.

Go's runtime leaves SIGINT ignored when a program starts with it ignored (os/signal docs,
"If the program was started with SIGHUP or SIGINT ignored ..."), which is how a job started with
`cmd &` from a script or by many CI runners starts; only a handler installed with Notify undoes
that. A host without one runs on after the engine's SIGINT, and the engine waits out its 5 s on
every host it closes (the one it asks `About` before each `up` and `preview`): found as 5.2 s
extra per CLI call in `.ci/run` started in the background, where SIGINT was ignored.

The built binary is started as the engine starts it (it prints its port on the first line of
stdout) and sent SIGINT as the engine sends it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.prereq import unmet
from tests.toolchain.test_toolchain import _built_bin

ENGINE_COOLDOWN_S = 5
"""How long the engine waits after its SIGINT before it kills a plugin (plugin.go, `kill`)."""


def _host() -> Path:
    bin_dir = _built_bin()
    if bin_dir is None:
        unmet("toolchain for the current pins not built: run `make toolchain`")
    assert bin_dir is not None
    return bin_dir / "pulumi-language-python"


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sigint_at_start", ["default", "ignored"])
def test_the_host_exits_0_on_the_engines_sigint(sigint_at_start: str) -> None:
    host = _host()
    proc = subprocess.Popen(
        [str(host)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as the engine gives each plugin
        preexec_fn=_ignore_sigint if sigint_at_start == "ignored" else None,
    )
    try:
        port = (proc.stdout.readline() if proc.stdout else "").strip()
        assert port.isdigit(), f"the host printed {port!r} instead of its port"
        os.killpg(proc.pid, signal.SIGINT)  # cmdutil.InterruptChildren: kill(-pid, SIGINT)
        try:
            code = proc.wait(timeout=ENGINE_COOLDOWN_S - 0.5)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"the host (SIGINT {sigint_at_start} at start) still runs {ENGINE_COOLDOWN_S - 0.5} s after SIGINT: "
                "the engine would wait out its 5 s and kill it"
            )
        stderr = proc.stderr.read() if proc.stderr else ""
        assert code == 0, f"the host exited {code} on SIGINT (upstream's exits 0): {stderr}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
