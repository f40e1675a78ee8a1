"""The metrics store and vmalert for real: the VictoriaMetrics release the rack pins, built from
the Go module proxy by monitoring/build-vm.sh (~/.cache/homelab-rack/vm/<version>/bin).

- vmalert's own checker (`-dryRun`) accepts exactly what vmalert is given (the repo's rule files
  plus the rendered settings group) and rejects a broken copy;
- the store's own checker (`-promscrape.config.dryRun`, strict parsing) accepts the rendered
  scrape config of the homelab rack and rejects a broken copy;
- the store runs with the component's flags (paths and listen address moved to a temp dir and
  loopback), takes synthetic series shaped like the exporters' output, and its query engine
  evaluates every alert expression to exactly the nodes/jobs that should fire;
- vmalert runs against it with the rendered flags (blackhole notifier), evaluates every rule with
  no error and writes the disk threshold's recording rule back to the store;
- footprint: after ~30k active series x 2 h of 30 s samples (the homelab's order of magnitude) and
  the dashboards' queries, the store's resident memory is measured and must stay well inside the
  pod's limit (printed for the report).

Everything listens on 127.0.0.1 and is stopped (files removed) afterwards, also on failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.observability import monitoring_config as mc
from rack.config import Monitoring, parse_rack
from tests.conftest import stack_raw
from tests.prereq import free_port

pytestmark = [pytest.mark.slow]

MON = Monitoring.model_validate({"node": "rack-db-1"})
VM_CACHE = Path(os.environ.get("HOMELAB_VM_CACHE", Path.home() / ".cache" / "homelab-rack" / "vm"))
BIN = Path(os.environ.get("HOMELAB_VM_BIN", VM_CACHE / MON.store_version / "bin"))


def binary(name: str) -> Path:
    path = BIN / name
    if not path.is_file():
        problem = f"{path} missing: run monitoring/build-vm.sh (builds v{MON.store_version} from the Go module proxy)"
        if os.environ.get("HOMELAB_REQUIRE_REAL") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    return path


def write_rules(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in mc.rule_files(MON).items():
        (directory / name).write_text(text)
    return directory


def homelab_scrape_config() -> str:
    raw = stack_raw("homelab")
    raw["monitoring"] = {"node": "rack-db-1"}
    return mc.to_yaml(mc.render_scrape_config(parse_rack(raw), gpu=True))


# --- the checkers ------------------------------------------------------------------------------


def test_vmalert_dry_run_accepts_the_rules_and_rejects_a_broken_one(tmp_path: Path) -> None:
    vmalert = binary("vmalert")
    rules = write_rules(tmp_path / "rules")
    ok = subprocess.run([str(vmalert), f"-rule={rules}/*.yaml", "-dryRun"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert f"found {len(mc.rule_files(MON))} files" in ok.stderr
    broken = (rules / "nodes.yaml").read_text().replace('status="true"}) == 0', 'status="true"} == 0', 1)
    (rules / "nodes.yaml").write_text(broken)
    bad = subprocess.run([str(vmalert), f"-rule={rules}/*.yaml", "-dryRun"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "NodeNotReady" in bad.stderr


def test_store_accepts_the_rendered_scrape_config_and_rejects_a_broken_one(tmp_path: Path) -> None:
    store = binary("victoria-metrics")
    config = tmp_path / "scrape.yaml"
    config.write_text(homelab_scrape_config())
    argv = [str(store), f"-promscrape.config={config}", "-promscrape.config.dryRun", "-promscrape.config.strictParse"]
    ok = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr[-2000:]
    config.write_text(homelab_scrape_config().replace("bearer_token_file", "bearer_tokn_file"))
    bad = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "bearer_tokn_file" in bad.stderr


# --- the running store -------------------------------------------------------------------------


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def args(self) -> list[str]:
        """The component's flags, paths and listen address moved to the test's own."""
        moved = {
            "-storageDataPath": str(self.root / "data"),
            "-httpListenAddr": f"127.0.0.1:{self.port}",
            "-promscrape.config": str(self.root / "scrape.yaml"),
        }
        out = []
        for arg in mc.store_args(MON):
            flag = arg.split("=", 1)[0]
            out.append(f"{flag}={moved[flag]}" if flag in moved else arg)
        # What -memory.allowedPercent=60 computes inside the pod's 512Mi limit (here: of the VM's RAM).
        out.append(f"-memory.allowedBytes={512 * 1024 * 1024 * 60 // 100}")
        return out

    def start(self, binary_path: Path) -> None:
        # The rendered config is checked by -promscrape.config.dryRun above. The running store gets
        # no targets: a failed scrape of a homelab node writes `up{node=...} 0` for that node within
        # its first interval, which raced the alert tests' own samples (same node names).
        (self.root / "scrape.yaml").write_text("scrape_configs: []\n")
        log = open(self.root / "store.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([str(binary_path), *self.args()], stdout=log, stderr=subprocess.STDOUT)
        wait_http(f"{self.url}/health", self.proc, self.root / "store.log")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def import_text(self, text: str) -> None:
        req = urllib.request.Request(f"{self.url}/api/v1/import/prometheus", data=text.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            assert resp.status == 204

    def flush(self) -> None:
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=60) as resp:
            assert resp.status == 200

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr, "time": str(at if at is not None else time.time()), "nocache": "1"}
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=60) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def rss_mib(self) -> float:
        assert self.proc is not None
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kib = int(re.search(r"VmRSS:\s+(\d+) kB", status)[1])  # type: ignore[index]
        return kib / 1024


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} not up within {timeout}s: {log.read_text()[-3000:]}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    path = binary("victoria-metrics")
    root = Path(tempfile.mkdtemp(prefix="hl-vm-"))
    s = Store(root)
    try:
        s.start(path)
        yield s
    finally:
        s.stop()
        shutil.rmtree(root, ignore_errors=True)


def sample(name: str, labels: dict[str, str], value: float, ts_ms: int) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{body}}} {value} {ts_ms}\n"


def node_labels(node: str, cls: str, pinned: bool) -> dict[str, str]:
    return {"job": "node-exporter", "node": node, "class": cls, "pinned_volumes": "true" if pinned else "false"}


def test_every_alert_expression_fires_for_exactly_the_broken_things(store: Store) -> None:
    now = time.time()
    ts = int((now - 60) * 1000)
    lines = []
    # Nodes: rack-db-1 (pinned volumes) exporter down; rack-pi-2 NotReady; others fine.
    nodes = [("rack-cp-1", "control-plane", False), ("rack-pi-1", "general", False),
             ("rack-pi-2", "general", False), ("rack-db-1", "reliable", True)]  # fmt: skip
    for node, cls, pinned in nodes:
        lines.append(sample("up", node_labels(node, cls, pinned), 0 if node == "rack-db-1" else 1, ts))
        ready = 0 if node == "rack-pi-2" else 1
        cond = {"job": "kube-state-metrics", "node": node, "condition": "Ready", "status": "true"}
        lines.append(sample("kube_node_status_condition", cond, ready, ts))
        full = 0.05 if node == "rack-pi-1" else 0.5  # rack-pi-1's root is 95% full
        fs = {**node_labels(node, cls, pinned), "mountpoint": "/", "fstype": "ext4", "device": "/dev/mmcblk0p2"}
        lines.append(sample("node_filesystem_avail_bytes", fs, full * 100e9, ts))
        lines.append(sample("node_filesystem_size_bytes", fs, 100e9, ts))
    lines.append(sample("homelab:disk_alert_percent", {}, MON.disk_alert_percent, ts))
    lines.append(sample("up", {"job": "gpu-host", "node": "gpu-3090", "class": "gpu-host"}, 0, ts))
    # Backups: postgres failed last night; mysql never ran on schedule; redis healthy.
    ksm = {"job": "kube-state-metrics", "namespace": "data"}
    for cron, last_sched, last_ok, next_sched in (
        ("postgres-backup", now - 7200, now - 90000, now + 79200),
        ("mysql-backup", now - 90000, now - 90000, now - 7200),
        ("redis-backup", now - 7200, now - 7100, now + 79200),
    ):
        c = {**ksm, "cronjob": cron}
        lines.append(sample("kube_cronjob_status_last_schedule_time", c, last_sched, ts))
        lines.append(sample("kube_cronjob_status_last_successful_time", c, last_ok, ts))
        lines.append(sample("kube_cronjob_next_schedule_time", c, next_sched, ts))
    for job, owner, failed, succeeded, started in (
        ("postgres-backup-29000000", "postgres-backup", 3, 0, now - 7000),
        ("redis-backup-29000000", "redis-backup", 1, 1, now - 7000),  # a retried pod, then success
        ("postgres-backup-28000000", "postgres-backup", 2, 0, now - 200000),  # old failure, kept for history
    ):
        j = {**ksm, "job_name": job}
        lines.append(sample("kube_job_status_failed", j, failed, ts))
        lines.append(sample("kube_job_status_succeeded", j, succeeded, ts))
        lines.append(sample("kube_job_status_start_time", j, started, ts))
        lines.append(sample("kube_job_owner", {**j, "owner_kind": "CronJob", "owner_name": owner,
                                               "owner_is_controller": "true"}, 1, ts))  # fmt: skip
    store.import_text("".join(lines))
    store.flush()

    exprs = {r["alert"]: r["expr"] for _, t in mc.alert_rule_files().items() for g in yaml.safe_load(t)["groups"]
             for r in g["rules"] if "alert" in r}  # fmt: skip

    def firing(alert: str, label: str) -> list[str]:
        return sorted(r["metric"].get(label, "") for r in store.query(exprs[alert], at=now))

    assert firing("NodeNotReady", "node") == ["rack-pi-2"]
    assert firing("NodeExporterDown", "node") == ["rack-db-1"]
    assert firing("NodeDiskFilling", "node") == ["rack-pi-1"]
    assert firing("PinnedVolumeNodeDown", "node") == ["rack-db-1"]
    assert firing("GpuHostUnreachable", "node") == ["gpu-3090"]
    assert firing("BackupJobFailed", "job_name") == ["postgres-backup-29000000"]
    assert firing("BackupLastRunFailed", "cronjob") == ["postgres-backup"]
    assert firing("BackupNotRunOnSchedule", "cronjob") == ["mysql-backup"]


def test_a_pinned_volume_node_that_is_not_ready_fires_too(store: Store) -> None:
    now = time.time()
    ts = int((now - 60) * 1000)
    text = sample("up", node_labels("rack-db-2", "reliable", True), 1, ts) + sample(
        "kube_node_status_condition",
        {"job": "kube-state-metrics", "node": "rack-db-2", "condition": "Ready", "status": "true"},
        0,
        ts,
    )
    store.import_text(text)
    store.flush()
    expr = next(
        r["expr"] for g in yaml.safe_load(mc.alert_rule_files()["nodes.yaml"])["groups"] for r in g["rules"]
        if r.get("alert") == "PinnedVolumeNodeDown"
    )  # fmt: skip
    assert "rack-db-2" in {r["metric"]["node"] for r in store.query(expr, at=now)}


def test_vmalert_evaluates_every_rule_and_writes_the_threshold_back(store: Store, tmp_path: Path) -> None:
    vmalert = binary("vmalert")
    rules = write_rules(tmp_path / "rules")
    port = free_port()
    args = []
    for arg in mc.vmalert_args(MON):
        flag = arg.split("=", 1)[0]
        if flag in ("-datasource.url", "-remoteWrite.url", "-remoteRead.url"):
            arg = f"{flag}={store.url}"
        elif flag == "-rule":
            arg = f"-rule={rules}/*.yaml"
        elif flag == "-httpListenAddr":
            arg = f"-httpListenAddr=127.0.0.1:{port}"
        elif flag == "-evaluationInterval":
            arg = "-evaluationInterval=2s"
        args.append(arg)
    assert "-notifier.blackhole" in args
    log_path = tmp_path / "vmalert.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(vmalert), *args, "-remoteWrite.flushInterval=1s"], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log_path)
        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=10) as r:
                groups = json.load(r)["data"]["groups"]
            evaluated = [rule for g in groups for rule in g["rules"]]
            done = evaluated and all(rule.get("lastEvaluation", "").startswith("20") for rule in evaluated)
            if done or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert len(evaluated) == sum(
            len(g["rules"]) for t in mc.rule_files(MON).values() for g in yaml.safe_load(t)["groups"]
        )
        assert [(rule["name"], rule["lastError"]) for rule in evaluated if rule.get("lastError")] == []
        deadline = time.monotonic() + 60
        while not store.query("homelab:disk_alert_percent", at=time.time()) and time.monotonic() < deadline:
            store.flush()
            time.sleep(1)
        values = {float(r["value"][1]) for r in store.query("homelab:disk_alert_percent", at=time.time())}
        assert values == {float(MON.disk_alert_percent)}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_footprint_at_homelab_scale(store: Store) -> None:
    """~30k active series (5 nodes' node-exporter and kubelet/cAdvisor, kube-state-metrics), two
    hours at a 30 s interval, then the dashboards' queries: resident memory stays far inside 512Mi."""
    series, points, step = 30_000, 240, 30
    end = int(time.time()) - 60
    start_rss = store.rss_mib()
    started = time.monotonic()
    for chunk in range(0, series, 5_000):
        lines = []
        for i in range(chunk, chunk + 5_000):
            node = f"rack-{i % 5}"
            labels = f'job="synthetic",node="{node}",class="general",metric_id="{i}",container="c{i % 40}"'
            for p in range(points):
                ts = (end - (points - p) * step) * 1000
                lines.append(f"homelab_synthetic_series{{{labels}}} {(i * 7 + p) % 1000} {ts}\n")
        store.import_text("".join(lines))
    store.flush()
    ingest_s = time.monotonic() - started
    for expr in (
        "count(homelab_synthetic_series)",
        "sum by (node) (rate(homelab_synthetic_series[5m]))",
        "topk(5, avg_over_time(homelab_synthetic_series[1h]))",
        "max by (container) (homelab_synthetic_series)",
    ):
        assert store.query(expr, at=end)
    assert int(float(store.query("count(homelab_synthetic_series)", at=end)[0]["value"][1])) == series
    rss = store.rss_mib()
    disk = sum(f.stat().st_size for f in (store.root / "data").rglob("*") if f.is_file()) / 2**20
    print(
        f"\nVictoriaMetrics v{MON.store_version}: {series} series x {points} samples "
        f"({series * points / 1e6:.1f}M) ingested in {ingest_s:.1f}s; RSS {start_rss:.0f} MiB idle -> "
        f"{rss:.0f} MiB after ingest and queries; {disk:.0f} MiB on disk"
    )
    assert rss < 0.8 * 512, f"RSS {rss:.0f} MiB is too close to the 512Mi limit"


def test_vmalert_fires_for_an_off_node_copy_older_than_two_periods(store: Store, tmp_path: Path) -> None:
    """The real vmalert, with the rules rendered for four datasets, against samples shaped like the
    copy jobs' pushes: postgres (daily) last copied 3 days ago fires; mysql (daily) 1 h ago does
    not; gitea (weekly) 8 days ago does not (14 days allowed); redis has never been copied: its
    OffsiteBackupMissing alert is pending (its `for` is two periods), not firing yet."""
    vmalert = binary("vmalert")
    periods = {"postgres": 86400, "mysql": 86400, "gitea": 7 * 86400, "redis": 86400}
    rules = tmp_path / "rules"
    rules.mkdir()
    for name, text in mc.rule_files(MON, periods).items():
        (rules / name).write_text(text)
    now = time.time()
    pushed = {"postgres": now - 3 * 86400, "mysql": now - 3600, "gitea": now - 8 * 86400}
    store.import_text("".join(sample(mc.BACKUP_METRIC, {"dataset": d}, at, int(at * 1000)) for d, at in pushed.items()))
    store.flush()
    port = free_port()
    args = [f"-rule={rules}/*.yaml", f"-datasource.url={store.url}", f"-remoteWrite.url={store.url}",
            f"-httpListenAddr=127.0.0.1:{port}", "-evaluationInterval=2s", "-notifier.blackhole",
            "-remoteWrite.flushInterval=1s"]  # fmt: skip
    log_path = tmp_path / "vmalert.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(vmalert), *args], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, log_path)
        deadline = time.monotonic() + 60
        states: dict[tuple[str, str], str] = {}
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/alerts", timeout=10) as r:
                alerts = json.load(r)["data"]["alerts"]
            states = {(a["name"], a["labels"].get("dataset", "")): a["state"] for a in alerts}
            if ("OffsiteBackupTooOld", "postgres") in states and ("OffsiteBackupMissing", "redis") in states:
                break
            time.sleep(1)
        backup_alerts = {k: v for k, v in states.items() if k[0].startswith("OffsiteBackup")}
        assert backup_alerts == {
            ("OffsiteBackupTooOld", "postgres"): "firing",
            ("OffsiteBackupMissing", "redis"): "pending",
        }, log_path.read_text()[-2000:]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
