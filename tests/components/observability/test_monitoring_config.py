"""The monitoring config as data: scrape targets from the rack, the store's and vmalert's flags,
the alert rules and dashboards in the repo (parsed as YAML/JSON, every expression by a PromQL
parser: `promql-parser` from PyPI), and the cross-references between them (every `job` a rule or
panel names is a scrape job; every alert the issue asks for exists; the disk threshold comes from
config). The real-binary checks (vmalert -dryRun, the store's own config check) are in
tests/real/monitoring."""

from __future__ import annotations

import json
import re
from typing import Any

import promql_parser
import pytest
import yaml

from components.observability import monitoring_config as mc
from rack.config import Monitoring, Rack, parse_rack
from tests.conftest import stack_raw

MONITORING_BLOCK: dict[str, Any] = {"node": "rack-db-1", "size": "20Gi", "retention": "30d", "host": "grafana"}
REQUIRED_ALERTS = {
    "NodeNotReady",
    "NodeDiskFilling",
    "PinnedVolumeNodeDown",
    "BackupJobFailed",
    "BackupLastRunFailed",
    "BackupNotRunOnSchedule",
    "GpuHostUnreachable",
}
REQUIRED_DASHBOARDS = {"nodes.json", "capacity.json", "databases.json", "gpu.json"}
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$class": ".*", "$node": ".*"}


def rack(**over: Any) -> Rack:
    raw = stack_raw("homelab")
    raw["monitoring"] = {**MONITORING_BLOCK, **over}
    return parse_rack(raw)


def jobs(r: Rack, *, gpu: bool = True) -> dict[str, dict[str, Any]]:
    return {j["job_name"]: j for j in mc.render_scrape_config(r, gpu=gpu)["scrape_configs"]}


def parse(expr: str) -> Any:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    return promql_parser.parse(expr)


def rules() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, text in mc.alert_rule_files().items():
        for group in yaml.safe_load(text)["groups"]:
            out += [(name, r) for r in group["rules"]]
    return out


def dashboard_targets() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for name, text in mc.dashboard_files().items():
        board = json.loads(text)
        for panel in board["panels"]:
            out += [(name, panel["title"], t) for t in panel["targets"]]
    return out


def job_refs(expr: str) -> set[str]:
    return set(re.findall(r'job="([^"]+)"', expr))


# --- scrape targets ------------------------------------------------------------------------------


def test_every_node_is_scraped_for_node_and_container_metrics_with_its_class() -> None:
    r = rack()
    j = jobs(r)
    for job, port in (("node-exporter", 9100), ("kubelet", 10250), ("cadvisor", 10250)):
        static = j[job]["static_configs"]
        assert [s["targets"] for s in static] == [[f"{n.address}:{port}"] for n in r.nodes]
        assert [s["labels"]["node"] for s in static] == [n.hostname for n in r.nodes]
        assert [s["labels"]["class"] for s in static] == [str(n.node_class) for n in r.nodes]
    pinned = {s["labels"]["node"]: s["labels"]["pinned_volumes"] for s in j["node-exporter"]["static_configs"]}
    assert pinned == {
        "rack-cp-1": "false",
        "rack-pi-1": "false",
        "rack-pi-2": "false",
        "rack-db-1": "true",
        "rack-lab-1": "false",
    }


def test_kubelets_are_scraped_with_the_service_account_token_and_verified_tls() -> None:
    for job in ("kubelet", "cadvisor"):
        j = jobs(rack())[job]
        assert j["scheme"] == "https"
        assert j["bearer_token_file"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
        assert j["tls_config"] == {"ca_file": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"}
    assert jobs(rack())["cadvisor"]["metrics_path"] == "/metrics/cadvisor"


def test_cluster_objects_keep_their_own_labels_and_the_gpu_job_follows_the_gpu_layer() -> None:
    j = jobs(rack())
    assert j["kube-state-metrics"]["honor_labels"] is True
    assert j["kube-state-metrics"]["static_configs"][0]["targets"] == [
        "kube-state-metrics.monitoring.svc.cluster.local:8080"
    ]
    gpu = j["gpu-host"]["static_configs"][0]
    assert gpu == {
        "targets": ["gpu-metrics.monitoring.svc.cluster.local:9400"],
        "labels": {"node": "gpu-3090", "class": "gpu-host"},
    }
    assert "gpu-host" not in jobs(rack(), gpu=False)
    raw = stack_raw("homelab")
    raw["monitoring"] = MONITORING_BLOCK
    del raw["gpu-host"]
    raw["dns"]["records"] = {}
    raw["apps"] = [{**a, "uses": [u for u in a["uses"] if u != "inference"]} for a in raw["apps"]]
    assert "gpu-host" not in jobs(parse_rack(raw), gpu=True)


def test_scrape_interval_from_config() -> None:
    assert mc.render_scrape_config(rack(**{"scrape-interval": "1m"}), gpu=False)["global"]["scrape_interval"] == "1m"


def test_pinned_volume_nodes_are_gitea_databases_and_the_store() -> None:
    raw = stack_raw("homelab")
    raw["nodes"].append(
        {
            "hostname": "rack-db-2",
            "address": "192.168.10.32",
            "role": "agent",
            "class": "reliable",
            "capacity": {"cpu": "4", "memory": "8Gi"},
            "storage": {"path": "/mnt/ssd", "size": "100Gi"},
        }
    )
    raw["monitoring"] = {**MONITORING_BLOCK, "node": "rack-db-2"}
    assert mc.pinned_volume_nodes(parse_rack(raw)) == ["rack-db-1", "rack-db-2"]
    raw["monitoring"]["enabled"] = False
    assert mc.pinned_volume_nodes(parse_rack(raw)) == ["rack-db-1"]


# --- flags ---------------------------------------------------------------------------------------


def test_store_flags_carry_retention_and_the_scrape_file() -> None:
    args = mc.store_args(Monitoring.model_validate({**MONITORING_BLOCK, "retention": "12w"}))
    assert "-retentionPeriod=12w" in args
    assert "-storageDataPath=/storage" in args
    assert "-promscrape.config=/etc/victoria-metrics/scrape.yaml" in args


def test_alerts_go_nowhere_unless_an_alertmanager_is_configured() -> None:
    quiet = mc.vmalert_args(Monitoring.model_validate(MONITORING_BLOCK))
    assert "-notifier.blackhole" in quiet and not any(a.startswith("-notifier.url") for a in quiet)
    routed = mc.vmalert_args(
        Monitoring.model_validate({**MONITORING_BLOCK, "alertmanager-url": "http://alertmanager.lan:9093"})
    )
    assert "-notifier.url=http://alertmanager.lan:9093" in routed and "-notifier.blackhole" not in routed
    url = "http://victoria-metrics.monitoring.svc.cluster.local:8428"
    assert {f"-datasource.url={url}", f"-remoteWrite.url={url}", f"-remoteRead.url={url}"} <= set(quiet)


def test_images_are_pinned() -> None:
    m = Monitoring.model_validate(MONITORING_BLOCK)
    for image in [*mc.IMAGES.values(), mc.store_image(m.store_version), mc.vmalert_image(m.store_version)]:
        tag = image.rsplit(":", 1)[1]
        assert tag != "latest" and re.match(r"^v?\d", tag), image
    assert mc.store_image("1.151.0") == "docker.io/victoriametrics/victoria-metrics:v1.151.0"
    assert mc.grafana_image("12.3.1") == "docker.io/grafana/grafana:12.3.1"


# --- alert rules ---------------------------------------------------------------------------------


def test_rule_files_parse_and_every_expression_is_promql() -> None:
    found = rules()
    assert found
    for name, r in found:
        assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations"}, (name, r)
        parse(r["expr"])
        if "alert" in r:
            assert r["labels"]["severity"] in ("warning", "critical")
            assert r["annotations"]["summary"]


def test_the_parser_rejects_a_broken_expression() -> None:
    with pytest.raises(ValueError):
        parse('up{job="x" == 0')


def test_every_alert_the_issue_asks_for_exists() -> None:
    assert {r["alert"] for _, r in rules() if "alert" in r} >= REQUIRED_ALERTS


def test_rules_name_only_scrape_jobs_that_exist() -> None:
    names = set(jobs(rack()))
    for _, r in rules():
        assert job_refs(r["expr"]) <= names, r["expr"]


def test_disk_threshold_comes_from_config_through_a_recording_rule() -> None:
    m = Monitoring.model_validate({**MONITORING_BLOCK, "disk-alert-percent": 77})
    files = mc.rule_files(m)
    assert set(files) == {*mc.alert_rule_files(), mc.SETTINGS_RULES_FILE}
    (group,) = yaml.safe_load(files[mc.SETTINGS_RULES_FILE])["groups"]
    assert group["rules"] == [{"record": "homelab:disk_alert_percent", "expr": "vector(77)"}]
    disk = next(r for _, r in rules() if r.get("alert") == "NodeDiskFilling")
    assert "homelab:disk_alert_percent" in disk["expr"]
    assert not any(re.search(r">\s*\d", r["expr"]) for _, r in rules() if r.get("alert") == "NodeDiskFilling")


def test_gpu_alert_is_the_issue_s_expression() -> None:
    gpu = next(r for _, r in rules() if r.get("alert") == "GpuHostUnreachable")
    assert gpu["expr"].strip() == 'up{job="gpu-host"} == 0'


def test_backup_alerts_watch_the_backup_cronjobs() -> None:
    by_name = {r["alert"]: r["expr"] for _, r in rules() if "alert" in r}
    assert "kube_job_status_failed" in by_name["BackupJobFailed"]
    assert "kube_cronjob_status_last_successful_time" in by_name["BackupLastRunFailed"]
    assert "kube_cronjob_next_schedule_time" in by_name["BackupNotRunOnSchedule"]
    for name in ("BackupJobFailed", "BackupLastRunFailed", "BackupNotRunOnSchedule"):
        assert '-backup"' in by_name[name]


# --- dashboards ----------------------------------------------------------------------------------


def test_dashboards_parse_and_cover_the_issue() -> None:
    files = mc.dashboard_files()
    assert set(files) >= REQUIRED_DASHBOARDS
    uids = [json.loads(t)["uid"] for t in files.values()]
    assert len(uids) == len(set(uids))
    titles = {json.loads(t)["title"] for t in files.values()}
    assert {"Homelab / Nodes by class", "Homelab / Pods per node against capacity"} <= titles


def test_every_panel_queries_the_provisioned_datasource_with_valid_promql() -> None:
    targets = dashboard_targets()
    assert len(targets) > 20
    names = set(jobs(rack()))
    for board, title, t in targets:
        assert t["datasource"] == {"type": "prometheus", "uid": mc.DATASOURCE_UID}, (board, title)
        parse(t["expr"])
        assert job_refs(t["expr"]) <= names, (board, title, t["expr"])


def test_gpu_dashboard_shows_utilisation_and_memory() -> None:
    exprs = " ".join(t["expr"] for board, _, t in dashboard_targets() if board == "gpu.json")
    assert "DCGM_FI_DEV_GPU_UTIL" in exprs and "DCGM_FI_DEV_FB_USED" in exprs and "DCGM_FI_DEV_FB_FREE" in exprs


def test_capacity_dashboard_compares_requests_with_allocatable() -> None:
    exprs = " ".join(t["expr"] for board, _, t in dashboard_targets() if board == "capacity.json")
    assert "kube_pod_container_resource_requests" in exprs and "kube_node_status_allocatable" in exprs
    assert 'kube_node_status_capacity{resource="pods"' in exprs


def test_datasource_and_provider() -> None:
    m = Monitoring.model_validate(MONITORING_BLOCK)
    (ds,) = mc.render_datasources(m)["datasources"]
    assert ds["uid"] == mc.DATASOURCE_UID and ds["url"] == "http://victoria-metrics.monitoring.svc.cluster.local:8428"
    (provider,) = mc.render_dashboard_provider()["providers"]
    assert provider["options"]["path"] == mc.GRAFANA_DASHBOARD_DIR and provider["allowUiUpdates"] is False


def test_backup_age_rules_are_two_schedule_periods_per_dataset() -> None:
    from rack.config import parse_rack
    from stacks.observability import backup_periods
    from tests.conftest import stack_raw

    MON_DEFAULT = Monitoring.model_validate(MONITORING_BLOCK)  # noqa: N806
    rack = parse_rack(stack_raw("homelab"))
    periods = backup_periods(rack)
    assert periods == {"postgres": 86400, "mysql": 86400, "redis": 86400, "gitea": 86400}  # all daily in the file
    rules = mc.settings_rules(MON_DEFAULT, {"postgres": 86400, "gitea": 7 * 86400})["groups"][0]["rules"]
    recorded = {r["labels"]["dataset"]: r["expr"] for r in rules if r.get("record") == mc.BACKUP_MAX_AGE}
    assert recorded == {"postgres": "vector(172800)", "gitea": "vector(1209600)"}
    missing = {r["labels"]["dataset"]: r["for"] for r in rules if r.get("alert") == "OffsiteBackupMissing"}
    assert missing == {"postgres": "172800s", "gitea": "1209600s"}
    assert mc.settings_rules(MON_DEFAULT)["groups"][0]["rules"] == [
        {"record": "homelab:disk_alert_percent", "expr": f"vector({MON_DEFAULT.disk_alert_percent})"}
    ]
