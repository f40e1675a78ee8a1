"""The rack picture: the plan's links, the SVG/HTML as pure functions, and the page as Chromium
really renders it (a PNG under build/, and every box's rendered rectangle read back from the DOM).
"""

from __future__ import annotations

import html
import itertools
import json
import os
import re
import signal
import subprocess
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plan.__main__ import main
from plan.engine import reset_runtime
from plan.picture import layout, render_html, render_svg, write_picture
from plan.result import make_plan
from rack.loader import StackFile
from tests.conftest import ROOT
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


def stress_plan() -> dict[str, Any]:
    """A hand-made plan JSON (input data, not a double of any service) with what the homelab stack
    lacks: many nodes, a crowded node, long names, replicas no node took, a GPU host nobody links
    to, and a link to a service the plan does not contain."""
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
    return {
        "stack": "stress",
        "nodes": nodes,
        "placements": placements,
        "external": external,
        "links": links,
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
    }
    assert len(homelab_plan["links"]) == len(links)
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
