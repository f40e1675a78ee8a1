"""The stack outputs that show the way in: every URL the rack serves and each admin's login,
checked against the stack file's own values (read as plain YAML, not through the program)."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks as _mocks

import stacks.composition as composition
from plan.engine import RecordingMonitor
from rack.loader import Loaded
from tests.conftest import loaded_from, stack_raw
from tests.stacks.test_apps import KnownSecrets


@pytest.fixture
def known_secrets() -> None:
    mocks = KnownSecrets()
    _mocks.set_mocks(mocks, project="homelab", stack="test", preview=False, monitor=RecordingMonitor(mocks))


def expected_urls(raw: dict[str, Any]) -> dict[str, str]:
    rack = raw
    domain = rack["domain"]
    urls = {app["name"]: f"https://{app['host']}.{domain}/" for app in rack.get("apps", []) if "host" in app}
    urls["gitea"] = f"https://{rack['gitea']['host']}.{domain}/"
    urls["grafana"] = f"https://{rack['monitoring']['host']}.{domain}/"
    return urls


@pulumi.runtime.test
def test_urls_and_admin_logins_are_outputs(known_secrets: None, homelab: Loaded) -> pulumi.Output[Any]:
    raw = stack_raw("homelab")
    outs = composition.login_outputs(composition.build(homelab), homelab)
    assert outs["urls"] == expected_urls(raw)
    assert len(outs["urls"]) == 6  # api, auth, social, devotional, gitea, grafana in the sample
    assert outs["gitea_admin_user"] == raw["gitea"].get("admin-user", "gitea-admin")
    assert outs["grafana_admin_user"] == "admin"  # GF_SECURITY_ADMIN_USER, the Grafana image's default
    assert outs["dns_address"] == raw["dns"]["address"]  # the LAN DNS server the router forwards to

    def check(args: list[Any]) -> None:
        gitea, grafana, gitea_secret, grafana_secret = args
        assert gitea == "generated-gitea-admin-password-value"
        assert grafana == "generated-grafana-admin-password-value"
        assert gitea_secret and grafana_secret

    return pulumi.Output.all(
        outs["gitea_admin_password"],
        outs["grafana_admin_password"],
        pulumi.Output.is_secret(outs["gitea_admin_password"]),  # type: ignore[arg-type]
        pulumi.Output.is_secret(outs["grafana_admin_password"]),  # type: ignore[arg-type]
    ).apply(check)


@pulumi.runtime.test
def test_dns_address_is_the_racks_own_and_absent_without_one(known_secrets: None) -> None:
    # The sample puts the LAN DNS on the ingress node; another node's address (rack-pi-2, a
    # general node in the sample) tells rack.dns.address apart from rack.ingress.address.
    def outputs(raw: dict[str, Any]) -> dict[str, Any]:
        loaded = loaded_from(raw)
        return composition.login_outputs(composition.build(loaded), loaded)

    raw = stack_raw("homelab")
    raw["dns"]["address"] = "192.168.10.22"
    assert outputs(raw)["dns_address"] == "192.168.10.22"
    del raw["dns"]["address"]
    assert "dns_address" not in outputs(raw)
