"""The rack picture: the plan's links, the SVG/HTML as pure functions (disk bars, ingress host
names), the page as Chromium really renders it (PNGs under build/picture-test/, every box's
rendered rectangle and every text box read back from the DOM at 1280 and 1920 px), and the
committed docs/rack.svg kept current and byte-stable.
"""

from __future__ import annotations

import html
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plan.__main__ import main
from plan.engine import reset_runtime
from plan.picture import layout, render_html, render_svg, text_width, write_picture
from plan.result import make_plan
from rack.loader import StackFile
from tests.conftest import ROOT, stack_raw
from tests.plan.test_wiring import expected_routes, expected_volume_sizes
from tests.prereq import need

BUILD = ROOT / "build" / "picture-test"
SVG_NS = "{http://www.w3.org/2000/svg}"
EPS = 0.51  # rendered rectangles are fractional; half a pixel of slack


@pytest.fixture(scope="module")
def homelab_plan() -> Iterator[dict[str, Any]]:
    """The plan JSON of the committed homelab stack (evaluated once for the module)."""
    reset_runtime()
    loaded = StackFile.read(ROOT / "Pulumi.homelab.yaml").load()
    plan = make_plan(loaded, "homelab").to_json()
    reset_runtime()
    yield plan


def workload_keys(plan: dict[str, Any]) -> set[str]:
    return {p["workload"] for p in plan["placements"]}


def stress_plan(*, ingress_node: str | None = "node-01-general") -> dict[str, Any]:
    """A hand-made plan JSON (input data, not a double of any service) with what the homelab stack
    lacks: many nodes, a crowded node, long names, replicas no node took, a GPU host nobody links
    to, a link to a service the plan does not contain, two disks (one nearly full, many volumes
    with long names), and more ingress host names than fit on one line, on the crowded node (or,
    with `ingress_node=None`, on an address no node serves)."""
    classes = ["control-plane", "general", "general", "general", "reliable", "reliable", "experimental", "general"]
    nodes = []
    for i, cls in enumerate(classes):
        nodes.append(
            {
                "hostname": f"node-{i:02d}-{cls}",
                "role": "server" if cls == "control-plane" else "agent",
                "class": cls,
                "arch": "amd64" if i % 3 == 0 else "arm64",
                "labels": {},
                "taints": [],
                "capacity": {"cpu_m": 4000, "memory_mib": 8192},
                "allocatable": {"cpu_m": 3750, "memory_mib": 7680},
                "requested": {"cpu_m": 900 * i, "memory_mib": 1100 * i},
            }
        )
    placements = []
    for j in range(12):  # a crowded general node
        placements.append(
            {
                "workload": f"apps/a-rather-long-application-name-{j:02d}",
                "kind": "Deployment",
                "category": "application",
                "replica": 0,
                "node": "node-01-general",
                "cpu_m": 100,
                "memory_mib": 128,
            }
        )
    for r in range(3):
        placements.append(
            {
                "workload": "apps/spread",
                "kind": "Deployment",
                "category": "application",
                "replica": r,
                "node": ["node-02-general", "node-03-general", None][r],
                "cpu_m": 250,
                "memory_mib": 256,
            }
        )
    placements.append(
        {
            "workload": "experimental/" + "x" * 63,  # the longest name Kubernetes allows
            "kind": "Deployment",
            "category": "experimental",
            "replica": 0,
            "node": "node-06-experimental",
            "cpu_m": 100,
            "memory_mib": 64,
        }
    )
    placements.append(
        {
            "workload": "data/postgres",
            "kind": "StatefulSet",
            "category": "data",
            "replica": 0,
            "node": "node-04-reliable",
            "cpu_m": 500,
            "memory_mib": 1024,
        }
    )
    links = [
        {"from": "apps/spread", "to": "data/postgres", "uses": "postgres", "kind": "database"},
        {"from": "apps/spread", "to": "data/mysql", "uses": "mysql", "kind": "database"},
        {
            "from": "apps/a-rather-long-application-name-03",
            "to": "data/postgres",
            "uses": "postgres",
            "kind": "database",
        },
    ]
    external = [
        {"workload": "ollama", "host": "gpu-box", "image": "ollama/ollama:0.5.4", "gpus": "all", "ports": [11434]},
        {
            "workload": "vllm",
            "host": "gpu-box",
            "image": "vllm/vllm-openai:v0.6.4",
            "gpus": "device=0",
            "ports": [8000],
        },
    ]
    problems = [
        {"severity": "error", "check": "capacity", "workload": "apps/spread", "node": None, "message": "no node fits"}
    ]
    for n in nodes:
        n["address"] = f"10.0.0.{10 + int(n['hostname'][5:7])}"
        n["storage"] = None
    volumes = [
        {
            "name": f"volume-with-a-long-descriptive-name-{k:02d}" if k % 2 else f"v{k}",
            "node": "node-04-reliable",
            "path": f"/srv/disk/v{k}",
            "size_gib": 10.0 * (k + 1),
            "reclaim": "Retain",
            "claim": f"data/v{k}",
            "mounted_by": ["data/postgres"],
        }
        for k in range(9)
    ] + [
        {"name": "only", "node": "node-05-reliable", "path": "/mnt/x", "size_gib": 95.0, "reclaim": "Retain",
         "claim": "data/only", "mounted_by": []},
    ]
    nodes[4]["storage"] = {"path": "/srv/disk", "size_gib": 1000.0, "requested_gib": float(sum(range(10, 100, 10)))}
    nodes[5]["storage"] = {"path": "/mnt/" + "deep/" * 20 + "disk", "size_gib": 100.0, "requested_gib": 95.0}
    routes = [
        {
            "host": f"{'a-very-long-subdomain-name-' if j % 3 == 0 else 'app'}{j:02d}.example.home.arpa",
            "path": "/",
            "service": f"apps/a-rather-long-application-name-{j:02d}",
            "port": 8080,
            "workloads": [f"apps/a-rather-long-application-name-{j:02d}"],
        }
        for j in range(12)
    ] + [{"host": "spread.example.home.arpa", "path": "/", "service": "apps/spread", "port": 80,
          "workloads": ["apps/spread"]}]
    ingress = {
        "controller": "traefik",
        "address": "10.0.0.11" if ingress_node else "10.0.0.99",
        "address_of": ingress_node,
        "node": ingress_node,
        "routes": routes,
    }
    return {
        "stack": "stress",
        "nodes": nodes,
        "placements": placements,
        "external": external,
        "links": links,
        "volumes": volumes,
        "ingress": ingress,
        "resources": [],
        "problems": problems,
    }


# --- links in the plan JSON ------------------------------------------------------------------------


def test_links_follow_uses_and_name_placed_workloads(homelab_plan: dict[str, Any]) -> None:
    links = {(link["from"], link["to"]) for link in homelab_plan["links"]}
    assert links == {
        ("apps/bible-api", "data/postgres"),
        ("apps/bible-api", "data/redis"),
        ("apps/bible-api", "ai/inference"),
        ("apps/bible-auth", "data/postgres"),
        ("apps/bible-auth", "data/redis"),
        ("apps/bible-social", "data/postgres"),
        ("apps/bible-social", "data/redis"),
        ("apps/devotional", "data/mysql"),
        ("experimental/rag-playground", "ai/inference"),
        ("experimental/rag-playground", "data/postgres"),
        ("ci/gitea", "data/postgres"),  # Gitea keeps its metadata in the rack's PostgreSQL
    }
    assert len(homelab_plan["links"]) == len(links)
    assert {"from": "ci/gitea", "to": "data/postgres", "uses": "postgres", "kind": "database"} in homelab_plan["links"]
    kinds = {p["workload"]: p["kind"] for p in homelab_plan["placements"]}
    for link in homelab_plan["links"]:
        assert kinds[link["from"]] == "Deployment", link
        if link["kind"] == "database":
            # the database end is the StatefulSet the platform layer registered, as placed
            assert kinds[link["to"]] == "StatefulSet", link
            assert link["to"] == f"data/{link['uses']}"
        else:
            assert link == {
                "from": link["from"],
                "to": "ai/inference",
                "uses": "inference",
                "kind": "inference",
                "host": "gpu-3090",
            }


# --- pure rendering -------------------------------------------------------------------------------


def texts_of(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    return ["".join(t.itertext()) for t in root.iter(f"{SVG_NS}text")]


def test_svg_is_deterministic_xml_naming_every_node_and_workload(homelab_plan: dict[str, Any]) -> None:
    svg = render_svg(homelab_plan)
    assert svg == render_svg(json.loads(json.dumps(homelab_plan)))  # same plan, same bytes
    texts = set(texts_of(svg))
    for node in homelab_plan["nodes"]:
        assert node["hostname"] in texts
    for key in workload_keys(homelab_plan):
        assert key in texts
    for container in homelab_plan["external"]:
        assert container["workload"] in texts
    assert "gpu-3090" in texts and "ai/inference" in texts


def test_layout_boxes_are_disjoint_and_rows_inside(homelab_plan: dict[str, Any]) -> None:
    for plan in (homelab_plan, stress_plan()):
        lay = layout(plan)
        spans = [(b.y, b.y + b.h) for b in lay.boxes]
        for (a0, a1), (b0, b1) in itertools.combinations(spans, 2):
            assert a1 <= b0 or b1 <= a0
        for b in lay.boxes:
            for r in b.rows:
                assert b.y < r.y and r.y + 22 < b.y + b.h
        assert max(b.y + b.h for b in lay.boxes) <= lay.height


def test_stress_plan_shows_unscheduled_and_missing_targets() -> None:
    plan = stress_plan()
    svg = render_svg(plan)
    root = ET.fromstring(svg)
    kinds = {g.get("data-kind"): g for g in root.iter(f"{SVG_NS}g") if "node" in (g.get("class") or "").split()}
    assert {"node", "gpu-host", "unscheduled", "missing"} <= set(kinds)
    unscheduled = [g.get("data-key") for g in kinds["unscheduled"].iter(f"{SVG_NS}g") if g.get("data-key")]
    assert unscheduled == ["apps/spread"]
    missing = [g.get("data-key") for g in kinds["missing"].iter(f"{SVG_NS}g") if g.get("data-key")]
    assert missing == ["data/mysql"]
    paths = [(p.get("data-from"), p.get("data-to")) for p in root.iter(f"{SVG_NS}path") if p.get("class") == "link"]
    # apps/spread has rows on two nodes and in the unscheduled box: one line from each, per target
    assert paths.count(("apps/spread", "data/postgres")) == 3
    assert paths.count(("apps/spread", "data/mysql")) == 3
    assert paths.count(("apps/a-rather-long-application-name-03", "data/postgres")) == 1
    assert "1 layout error(s)" in " ".join(texts_of(svg))


def svg_root(plan: dict[str, Any]) -> ET.Element:
    return ET.fromstring(render_svg(plan))


def node_groups(root: ET.Element) -> dict[str, ET.Element]:
    return {
        g.get("data-hostname", ""): g for g in root.iter(f"{SVG_NS}g") if "node" in (g.get("class") or "").split()
    }


def classed(root: ET.Element, tag: str, *classes: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{SVG_NS}{tag}") if set(classes) <= set((e.get("class") or "").split())]


def test_svg_draws_the_disk_of_each_node_with_storage(homelab_plan: dict[str, Any]) -> None:
    raw = stack_raw("homelab")
    expected = expected_volume_sizes(raw)  # the stack file's volumes, per node
    groups = node_groups(svg_root(homelab_plan))
    for spec in raw["nodes"]:
        disks = classed(groups[spec["hostname"]], "g", "bar", "disk")
        if "storage" not in spec:
            assert disks == [], spec["hostname"]
            continue
        (disk,) = disks
        sizes = expected[spec["hostname"]]
        assert float(disk.get("data-requested-gib", "")) == sum(sizes) == 144
        assert float(disk.get("data-size-gib", "")) == 460  # the reliable node's SSD: 460Gi
        assert disk.get("data-path") == spec["storage"]["path"]
        segments = classed(disk, "rect", "segment")
        assert sorted(float(s.get("data-gib", "")) for s in segments) == sizes
        chips = classed(disk, "g", "chip", "volume")
        assert [c.get("data-volume") for c in chips] == [s.get("data-volume") for s in segments]
        assert {c.get("data-volume") for c in chips} == {v["name"] for v in homelab_plan["volumes"]}
        texts = " ".join("".join(t.itertext()) for t in disk.iter(f"{SVG_NS}text"))
        assert "144Gi / 460Gi · 31%" in texts


def test_svg_puts_host_names_on_the_node_that_serves_them(homelab_plan: dict[str, Any]) -> None:
    raw = stack_raw("homelab")
    routes = expected_routes(raw)
    entry = next(n["hostname"] for n in raw["nodes"] if n["address"] == raw["ingress"]["address"])
    root = svg_root(homelab_plan)
    for hostname, g in node_groups(root).items():
        hosts = [c.get("data-host") for c in classed(g, "g", "chip", "host")]
        assert sorted(hosts) == (sorted(routes) if hostname == entry else []), hostname
    # and each workload's rows (on every node it runs on) carry the names routed to it
    rows = [g for g in classed(root, "g", "row") if g.get("data-hosts")]
    assert {(g.get("data-key"), g.get("data-hosts")) for g in rows} == {(w, h) for h, w in routes.items()}
    placed = {(p["workload"], p["node"]) for p in homelab_plan["placements"] if p["workload"] in routes.values()}
    assert len(rows) == len(placed) == 9  # api, auth and social twice; devotional, git, grafana once


def test_svg_draws_the_lan_dns_line_on_the_node_at_dns_address(homelab_plan: dict[str, Any]) -> None:
    groups = node_groups(svg_root(homelab_plan))
    with_dns = {host for host, g in groups.items() if classed(g, "g", "dns")}
    assert with_dns == {"rack-pi-1"}  # the stack file's dns.address, 192.168.10.21
    (line,) = classed(groups["rack-pi-1"], "g", "dns")
    text = " ".join(t.text or "" for t in line.iter(f"{SVG_NS}text"))
    assert "lab.home.arpa answered on 192.168.10.21 (53/tcp + 53/udp)" in text


def test_an_ingress_address_no_node_serves_gets_its_own_box() -> None:
    root = svg_root(stress_plan(ingress_node=None))
    groups = node_groups(root)
    assert [c.get("data-host") for c in classed(groups["ingress"], "g", "chip", "host")] == [
        r["host"] for r in stress_plan()["ingress"]["routes"]
    ]
    assert all(not classed(g, "g", "chip", "host") for k, g in groups.items() if k != "ingress")
    assert "10.0.0.99 is no node's address" in " ".join(texts_of(ET.tostring(root, encoding="unicode")))
    # served: the names sit on the node at the address, and there is no ingress box
    served = node_groups(svg_root(stress_plan()))
    assert "ingress" not in served
    assert len(classed(served["node-01-general"], "g", "chip", "host")) == 13


def test_html_is_self_contained(homelab_plan: dict[str, Any]) -> None:
    page = render_html(homelab_plan)
    assert page.startswith("<!DOCTYPE html>")
    assert render_svg(homelab_plan) in page
    assert not re.search(r"<(link|img|iframe|object|embed)\b", page)
    assert not re.search(r"\b(src|href)\s*=", page)
    assert "url(http" not in page and "@import" not in page
    assert re.findall(r"https?://[^\s\"'<>]+", page) == ["http://www.w3.org/2000/svg"]  # the namespace only


def test_cli_writes_the_picture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pictures"
    code = main(["--config", str(ROOT / "Pulumi.homelab.yaml"), "--picture", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    for name in ("rack.svg", "rack.html"):
        assert (out / name).is_file()
        assert f"rack picture written to {out / name}" in printed.replace("\n", "")
    assert (out / "rack.svg").read_text().startswith("<svg")
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


def test_cli_also_writes_the_svg_where_asked(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "rack.svg"
    code = main(["--config", str(ROOT / "Pulumi.homelab.yaml"), "--picture", str(tmp_path / "p"), "--svg", str(out)])
    assert code == 0
    assert out.read_bytes() == (tmp_path / "p" / "rack.svg").read_bytes()
    assert out.stat().st_mode & 0o777 == 0o644


def test_committed_picture_is_current(homelab_plan: dict[str, Any]) -> None:
    """docs/rack.svg (the README's picture) is what the plan of Pulumi.homelab.yaml draws today."""
    committed = (ROOT / "docs" / "rack.svg").read_text(encoding="utf-8")
    fresh = render_svg(homelab_plan)
    first = next(
        (i for i, (a, b) in enumerate(zip(committed.splitlines(), fresh.splitlines(), strict=False)) if a != b), None
    )
    assert committed == fresh, (
        f"docs/rack.svg is stale (first difference on line {first}): run `make plan` and commit docs/rack.svg"
    )


@pytest.mark.slow
def test_svg_bytes_do_not_depend_on_the_process(tmp_path: Path) -> None:
    """Two `python -m plan` processes with different hash seeds write the same bytes, the committed ones."""
    outs = []
    for seed in ("1", "4242"):
        out = tmp_path / f"rack-{seed}.svg"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-m", "plan", "--config", "Pulumi.homelab.yaml", "--picture", str(tmp_path / seed),
             "--svg", str(out)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == (ROOT / "docs" / "rack.svg").read_bytes()


# --- in a real browser ----------------------------------------------------------------------------


def chromium(binary: str, profile: Path, *args: str, timeout: float = 90) -> str:
    """Run headless Chromium once; kill its whole process group if it hangs."""
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-2000:]
    return out


def png_facts(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decompressed image data)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    idat, pos = b"", 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


def rendered_layout(dom: str) -> dict[str, Any]:
    match = re.search(r'<pre id="layout-check"[^>]*>(.*?)</pre>', dom, re.S)
    assert match, "the page's layout report is missing"
    return json.loads(html.unescape(match.group(1)))


def inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (
        inner["x"] >= outer["x"] - EPS
        and inner["y"] >= outer["y"] - EPS
        and inner["x"] + inner["w"] <= outer["x"] + outer["w"] + EPS
        and inner["y"] + inner["h"] <= outer["y"] + outer["h"] + EPS
    )


def disjoint(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] + a["w"] <= b["x"] + EPS
        or b["x"] + b["w"] <= a["x"] + EPS
        or a["y"] + a["h"] <= b["y"] + EPS
        or b["y"] + b["h"] <= a["y"] + EPS
    )


def check_rendered(plan: dict[str, Any], report: dict[str, Any], dom: str) -> None:
    nodes, rows = report["nodes"], report["rows"]
    svg = report["svg"]
    assert svg["w"] > 0 and svg["h"] > 0
    # every node of the plan has a box with its hostname drawn inside it
    drawn_nodes = {n["key"]: n for n in nodes}
    for node in plan["nodes"]:
        box = drawn_nodes[node["hostname"]]
        assert box["kind"] == "node"
        assert inside(box["label"], box["box"]), node["hostname"]
    # boxes never overlap, and all of them lie inside the picture
    for a, b in itertools.combinations(nodes, 2):
        assert disjoint(a["box"], b["box"]), (a["key"], b["key"])
    for n in nodes:
        assert inside(n["box"], svg), n["key"]
    # every pod row lies inside its node's box, its text inside the row; rows never overlap
    for r in rows:
        assert inside(r["box"], drawn_nodes[r["node"]]["box"]), r
        assert inside(r["label"], r["box"]), r
        assert r["text"] == r["key"] or (r["text"].endswith("…") and r["key"].startswith(r["text"][:-1])), r
    for a, b in itertools.combinations(rows, 2):
        assert disjoint(a["box"], b["box"]), (a["key"], a["node"], b["key"], b["node"])
    # every replica is on the row of its node (or in the unscheduled box), every workload is drawn
    pod_rows = {(r["key"], r["node"]) for r in rows if r["kind"] == "pod"}
    for p in plan["placements"]:
        if p["node"] is not None:
            assert (p["workload"], p["node"]) in pod_rows, p
        else:
            assert (p["workload"], "unscheduled") in {(r["key"], r["node"]) for r in rows}
    dom_texts = {html.unescape(t) for t in re.findall(r"<text\b[^>]*>([^<]*)</text>", dom)}
    for key in workload_keys(plan):
        assert key in dom_texts or len(key) > 56, key  # longer names are cut with an ellipsis
    for node in plan["nodes"]:
        assert node["hostname"] in dom_texts
    # every link is drawn, inside the picture
    drawn_links = {(link["from"], link["to"]) for link in report["links"]}
    assert {(link["from"], link["to"]) for link in plan["links"]} == drawn_links
    for link in report["links"]:
        assert inside(link["box"], svg), link
    # a disk bar on every node with storage: one segment per volume pinned there, together as long
    # as requested/size of the track (a 1px gap ends each segment)
    with_storage = {n["hostname"]: n["storage"] for n in plan["nodes"] if n.get("storage")}
    assert sorted(d["node"] for d in report["disks"]) == sorted(with_storage)
    for disk in report["disks"]:
        storage = with_storage[disk["node"]]
        pinned = [v for v in plan.get("volumes", []) if v["node"] == disk["node"]]
        assert sorted(s["volume"] for s in disk["segments"]) == sorted(v["name"] for v in pinned)
        assert sorted(disk["chips"]) == sorted(v["name"] for v in pinned)
        drawn = sum(s["box"]["w"] + 1 for s in disk["segments"])
        share = min(storage["requested_gib"] / storage["size_gib"], 1.0)
        assert abs(drawn - share * disk["track"]["w"]) <= 1.5, (disk["node"], drawn, share, disk["track"])
        for s in disk["segments"]:
            assert inside(s["box"], disk["track"]), s
    # the ingress host names: on the node that serves them (else in the ingress box), inside it
    ingress = plan.get("ingress") or {}
    assert sorted(h["host"] for h in report["hosts"]) == sorted(r["host"] for r in ingress.get("routes", []))
    for h in report["hosts"]:
        assert h["node"] == (ingress.get("node") or "ingress"), h
        assert inside(h["box"], drawn_nodes[h["node"]]["box"]), h


def render_in_chromium(
    plan: dict[str, Any], name: str, tmp_path: Path, screenshot: bool
) -> tuple[dict[str, Any], str, Path]:
    binary = need("chromium", "chromium")
    BUILD.mkdir(parents=True, exist_ok=True)
    page = BUILD / f"{name}.html"
    page.write_text(render_html(plan), encoding="utf-8")
    height = int(float(re.search(r'<svg[^>]* height="([0-9.]+)"', render_svg(plan)).group(1)))  # type: ignore[union-attr]
    size = f"--window-size=900,{height + 160}"
    png = BUILD / f"{name}.png"
    if screenshot:
        png.unlink(missing_ok=True)
        chromium(binary, tmp_path / "profile-shot", f"--screenshot={png}", size, page.as_uri())
    dom = chromium(binary, tmp_path / "profile-dom", "--dump-dom", size, page.as_uri())
    return rendered_layout(dom), dom, png


@pytest.mark.chromium
@pytest.mark.slow
def test_homelab_picture_renders_in_chromium(homelab_plan: dict[str, Any], tmp_path: Path) -> None:
    report, dom, png = render_in_chromium(homelab_plan, "homelab-rack", tmp_path, screenshot=True)
    check_rendered(homelab_plan, report, dom)
    assert {n["kind"] for n in report["nodes"]} == {"node", "gpu-host"}
    gpu = next(n for n in report["nodes"] if n["kind"] == "gpu-host")
    assert gpu["key"] == "gpu-3090"
    gpu_rows = {r["key"] for r in report["rows"] if r["node"] == "gpu-3090"}
    assert gpu_rows == {"ollama", "dcgm-exporter", "ai/inference"}
    width, height, distinct = png_facts(png)
    assert width == 900
    assert height >= report["svg"]["h"] >= 800
    assert distinct > 64  # a drawing, not a blank page


@pytest.mark.chromium
@pytest.mark.slow
def test_stress_picture_renders_in_chromium(tmp_path: Path) -> None:
    plan = stress_plan()
    report, dom, _ = render_in_chromium(plan, "stress-rack", tmp_path, screenshot=False)
    check_rendered(plan, report, dom)
    assert len([r for r in report["rows"] if r["node"] == "node-01-general"]) == 12


def test_write_picture_replaces_both_files(tmp_path: Path) -> None:
    plan = stress_plan()
    first = write_picture(plan, tmp_path)
    plan["stack"] = "stress-2"
    second = write_picture(plan, tmp_path)
    assert first == second == [tmp_path / "rack.svg", tmp_path / "rack.html"]
    assert "Rack plan: stress-2" in (tmp_path / "rack.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rack.html", "rack.svg"]


# --- every text box, measured by Chromium at the widths people read it at --------------------------

# The test's own probe (not the page's): every <text> of the picture with its rendered box and the
# box of its container: the nearest enclosing group's frame (a row, a pill, a node box), else the
# picture itself. The page runs it on load; --dump-dom reads the answer back.
TEXT_PROBE = """
<script>
(function () {
  function box(el) {
    var r = el.getBoundingClientRect();
    return {x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height};
  }
  var svg = document.querySelector("svg.rack");
  function frameOf(t) {
    for (var g = t.parentNode; g && g !== svg; g = g.parentNode) {
      for (var c = g.firstElementChild; c; c = c.nextElementSibling) {
        if (c.matches(".frame, .row-box, .node-box")) return c;
      }
    }
    return svg;
  }
  var out = Array.prototype.map.call(svg.querySelectorAll("text"), function (t, i) {
    var f = frameOf(t), style = getComputedStyle(t);
    return {i: i, text: t.textContent, box: box(t), frame: box(f),
            frame_of: f === svg ? "svg" : (f.getAttribute("class") || f.tagName),
            size: parseFloat(style.fontSize), weight: style.fontWeight,
            advance: t.getComputedTextLength()};
  });
  var pre = document.createElement("pre");
  pre.id = "text-probe";
  pre.hidden = true;
  pre.textContent = JSON.stringify({svg: box(svg), texts: out});
  document.body.appendChild(pre);
})();
</script>
"""


def need_dejavu() -> None:
    """The picture is laid out for DejaVu Sans (the first face of its font list): the browser must
    really draw with it, else the measured boxes say nothing about the layout's widths."""
    fc_match = need("fc-match", "fontconfig")
    found = subprocess.run([fc_match, "DejaVu Sans"], capture_output=True, text=True, check=True).stdout
    if "DejaVuSans.ttf" not in found:
        problem = f"DejaVu Sans is not installed (fc-match says {found.strip()!r}): apt-get install fonts-dejavu-core"
        if os.environ.get("HOMELAB_REQUIRE_REAL") == "1":
            pytest.fail(problem)
        pytest.skip(problem)


def measure_texts(
    plan: dict[str, Any], name: str, width: int, tmp_path: Path, screenshot: Path | None = None
) -> dict[str, Any]:
    """Every text box of the page as Chromium lays it out in a window `width` px wide."""
    binary = need("chromium", "chromium")
    need_dejavu()
    BUILD.mkdir(parents=True, exist_ok=True)
    page = BUILD / f"{name}-{width}-probe.html"
    page.write_text(render_html(plan).replace("</body>", TEXT_PROBE + "</body>"), encoding="utf-8")
    height = int(float(re.search(r'<svg[^>]* height="([0-9.]+)"', render_svg(plan)).group(1)))  # type: ignore[union-attr]
    size = f"--window-size={width},{height + 200}"
    if screenshot is not None:
        screenshot.unlink(missing_ok=True)
        chromium(binary, tmp_path / f"profile-shot-{width}", f"--screenshot={screenshot}", size, page.as_uri())
    dom = chromium(binary, tmp_path / f"profile-{width}", "--dump-dom", size, page.as_uri())
    match = re.search(r'<pre id="text-probe"[^>]*>(.*?)</pre>', dom, re.S)
    assert match, "the text probe did not run"
    return json.loads(html.unescape(match.group(1)))


def text_collisions(report: dict[str, Any]) -> list[str]:
    """Every pair of text boxes that intersect, and every text that leaves its container."""
    texts = [t for t in report["texts"] if t["text"].strip() and t["box"]["w"] > 0]
    problems = []
    for a, b in itertools.combinations(texts, 2):
        if not disjoint(a["box"], b["box"]):
            problems.append(f"{a['text']!r} overlaps {b['text']!r}")
    for t in texts:
        if not inside(t["box"], t["frame"]):
            problems.append(f"{t['text']!r} crosses its container ({t['frame_of']})")
        if not inside(t["box"], report["svg"]):
            problems.append(f"{t['text']!r} leaves the picture")
    return problems


@pytest.mark.chromium
@pytest.mark.slow
@pytest.mark.parametrize("width", [1280, 1920])
def test_no_text_overlaps_in_chromium(homelab_plan: dict[str, Any], width: int, tmp_path: Path) -> None:
    plans = (("homelab", homelab_plan), ("stress", stress_plan()), ("stress-unserved", stress_plan(ingress_node=None)))
    for name, plan in plans:
        shot = BUILD / f"{name}-{width}.png" if name == "homelab" else None
        report = measure_texts(plan, name, width, tmp_path, screenshot=shot)
        assert len(report["texts"]) > 50, name  # the probe saw the picture
        assert text_collisions(report) == [], (name, width)
        # the layout's text widths (DejaVu Sans advances) against what Chromium drew: never narrower
        for t in report["texts"]:
            estimate = text_width(t["text"], t["size"], bold=int(t["weight"]) >= 600)
            assert t["advance"] <= estimate + 0.5 and estimate <= t["advance"] * 1.02 + 1, t
        if shot is not None:
            shot_w, shot_h, distinct = png_facts(shot)
            assert (shot_w, distinct > 64) == (width, True)
            assert shot_h >= report["svg"]["h"]
