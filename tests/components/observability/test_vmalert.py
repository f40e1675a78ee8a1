"""VmAlert: manifests against the 1.31 schema, the rule ConfigMap is the repo's files plus the
rendered settings, a rule change restarts vmalert, notifications go nowhere by default, and the
allow-list opens the Alertmanager's port only when one is configured."""

from __future__ import annotations

from typing import Any

import kubernetes_validate

from components.observability import monitoring_config as mc
from components.observability.vmalert import (
    CHECKSUM_ANNOTATION,
    VmAlert,
    VmAlertArgs,
    render_deployment,
    render_network_policy,
    render_rules_configmap,
    render_service,
)
from plan.engine import run_program
from rack.config import Monitoring

BASE: dict[str, Any] = {"node": "rack-db-1"}


def m(**over: Any) -> Monitoring:
    return Monitoring.model_validate({**BASE, **over})


def test_every_manifest_matches_the_kubernetes_schema() -> None:
    for mon in (m(), m(**{"alertmanager-url": "https://am.lab.home.arpa"})):
        for manifest in (
            render_rules_configmap(mon),
            render_deployment(mon),
            render_service(),
            render_network_policy(mon),
        ):
            kubernetes_validate.validate(manifest, "1.31", strict=True)


def test_rules_are_the_repo_files_plus_the_settings() -> None:
    data = render_rules_configmap(m())["data"]
    repo = mc.alert_rule_files()
    assert {k: v for k, v in data.items() if k in repo} == repo
    assert set(data) - set(repo) == {mc.SETTINGS_RULES_FILE}


def test_a_rules_change_restarts_vmalert() -> None:
    def checksum(mon: Monitoring) -> str:
        return render_deployment(mon)["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION]

    assert checksum(m()) == checksum(m())
    assert checksum(m()) != checksum(m(**{"disk-alert-percent": 90}))


def test_deployment_mounts_the_rules_and_blackholes_notifications() -> None:
    pod = render_deployment(m())["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == f"docker.io/victoriametrics/vmalert:v{Monitoring.model_fields['store_version'].default}"
    assert c["volumeMounts"] == [{"name": "rules", "mountPath": mc.RULES_DIR, "readOnly": True}]
    assert f"-rule={mc.RULES_DIR}/*.yaml" in c["args"] and "-notifier.blackhole" in c["args"]
    assert pod["automountServiceAccountToken"] is False


def test_allow_list_opens_the_alertmanager_port_only_when_configured() -> None:
    quiet = render_network_policy(m())["spec"]["egress"]
    assert len(quiet) == 2
    routed = render_network_policy(m(**{"alertmanager-url": "http://am.lan:9093/"}))["spec"]["egress"]
    assert routed[-1] == {"ports": [{"protocol": "TCP", "port": 9093}]}
    https = render_network_policy(m(**{"alertmanager-url": "https://am.lan"}))["spec"]["egress"]
    assert https[-1] == {"ports": [{"protocol": "TCP", "port": 443}]}


def test_component_waits_for_its_rules() -> None:
    def program() -> None:
        VmAlert("vmalert", VmAlertArgs(monitoring=m()))

    rec = run_program(program)
    assert rec.by_name("vmalert-rules").urn in rec.by_name("vmalert-deployment").depends_on
