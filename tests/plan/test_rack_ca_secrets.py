"""The rack CA's private keys never reach the offline plan: not its JSON, not its report.

`make plan` runs under mocks that echo inputs, so no key exists there at all; this goes further
and runs the plan with mocks that run the program's dynamic providers (as `up` does), so the CA's
and the serving certificate's keys are real values flowing into the kube-system TLS Secret. The
plan must still show them only as "[secret]".
"""

from __future__ import annotations

import base64
import functools
import io
import json

import pytest
from rich.console import Console

import plan.result
from plan.engine import run_program
from plan.report import render
from plan.result import make_plan
from rack.loader import Loaded
from tests.components.core.dynamic_mocks import ProviderRunningMocks


def test_no_rack_ca_key_reaches_the_plan(homelab: Loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    mocks = ProviderRunningMocks()
    monkeypatch.setattr(plan.result, "run_program", functools.partial(run_program, mocks=mocks))
    result = make_plan(homelab, "homelab")
    buf = io.StringIO()
    render(result, Console(file=buf, width=200, color_system=None))
    blob = json.dumps(result.to_json()) + buf.getvalue()

    keys = [mocks.created[name]["private_key_pem"] for name in ("rack-ca-ca", "rack-ca-serving")]
    # not vacuous: the keys are real, and the serving key is among the plan's registrations
    assert all("BEGIN PRIVATE KEY" in k for k in keys)
    secret = result.recording.by_name("rack-ca-secret")
    assert base64.b64decode(secret.inputs["data"]["tls.key"]).decode() == keys[1]
    for key in keys:
        body = "".join(key.splitlines()[1:-1])
        for form in (key, body, body[:40], base64.b64encode(key.encode()).decode()[:40]):
            assert form not in blob
    assert "PRIVATE KEY" not in blob
    assert '"data": "[secret]"' in json.dumps(result.to_json()["resources"])
