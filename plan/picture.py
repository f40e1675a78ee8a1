"""The rack as a picture: a self-contained SVG (and an HTML page embedding it) drawn from the plan JSON.

Creates nothing in Pulumi. `render_svg(plan)` and `render_html(plan)` are pure functions of
`PlanResult.to_json()`; `write_picture` puts both next to each other (what `make plan` runs).

What it draws, top to bottom like a rack: one box per node (hostname, class, role, arch; coloured
by class) with CPU and memory bars (requested against allocatable), a disk bar where the node has
`storage` (the Gi its pinned volumes request against the disk's size, one segment and one chip
per volume), the ingress host names on the node they resolve to (where ServiceLB takes the
connection, see `plan.wiring.ingress_json`), a `dns` line on the node at `rack.dns.address` (the
LAN's DNS server for the domain, `plan.wiring.lan_dns_json`), and one row per workload placed on it (with its
replica count there, and the host names that route to it); then the GPU host with its containers
and the in-cluster Service that points at it; then, if any, the replicas no node could take, the
link targets the plan does not contain, and an ingress address no node serves. On the right, one
lane per used service: a line from every row of an app (and Gitea) to the database or inference
service it uses, ending in an arrow.

Layout: one column of boxes whose heights follow their contents, so positions are a running sum
and boxes never overlap. Text is placed by its width in DejaVu Sans (the first face of the font
list and among the widest sans faces, so narrower fallbacks fit too); text that does not fit its
slot wraps to a second line or is cut with an ellipsis (the full text stays in the tooltip).
The same plan gives the same bytes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

# --- geometry (px) --------------------------------------------------------------------------------

MARGIN = 24
BOX_W = 720
HEADER_H = 34
PAD = 10
BOX_GAP = 16
LANE_GAP = 16
GUTTER_IN = 22
MIN_WIDTH = 860
ROW_H = 22
"""A one-line row."""
ROW_H2 = 38
"""A row whose detail (kind, image, host names) wraps under its name."""
ROW_GAP = 3
LINE_H = 22
"""A bar line (cpu/mem, disk) or the ingress line in a node box."""
CHIP_H = 16
CHIP_PITCH = 20
"""Chips (volumes, host names) flow in lines this far apart."""
ROW_W = BOX_W - 2 * PAD
NAME_X = 24
"""Row-relative x of a row's name."""
DETAIL_X = 294
"""Row-relative x of the detail column (kind, host names) on one-line rows."""
INNER_X = 12
"""Box-relative x where bars, chips and labels start."""
LABEL_W = 36
"""Width of the label before a bar (`cpu`, `mem`, `disk`)."""
FONT = "'DejaVu Sans', 'Segoe UI', system-ui, sans-serif"

CLASS_COLOURS = {
    "control-plane": "#475569",
    "general": "#2563eb",
    "reliable": "#047857",
    "experimental": "#b45309",
}
GPU_COLOUR = "#7c3aed"
OTHER_COLOUR = "#6b7280"
CATEGORY_COLOURS = {
    "data": "#0f766e",
    "infrastructure": "#64748b",
    "application": "#3b82f6",
    "experimental": "#d97706",
}
CATEGORY_ORDER = {"data": 0, "infrastructure": 1, "application": 2, "experimental": 3}
LINK_COLOURS = ["#0284c7", "#e11d48", "#16a34a", "#ea580c", "#db2777", "#0d9488", "#ca8a04", "#4b5563"]
INFERENCE_COLOUR = "#9333ea"
HOST_TEXT = "#075985"
HOST_FILL = "#e0f2fe"
VOLUME_TEXT = "#065f46"
VOLUME_FILL = "#d1fae5"


# --- text metrics ---------------------------------------------------------------------------------

# Advance widths (units of 1/2048 em) of DejaVu Sans 2.37 (Debian fonts-dejavu-core), printable
# ASCII 32..126, from the fonts' hmtx tables (read with fontTools); the Oblique face has the
# Book face's widths. tests/plan/test_picture.py checks them against Chromium's own layout.
_BOOK = (
    651, 821, 942, 1716, 1303, 1946, 1597, 563, 799, 799, 1024, 1716, 651, 739, 651, 690, 1303, 1303, 1303, 1303,
    1303, 1303, 1303, 1303, 1303, 1303, 690, 690, 1716, 1716, 1716, 1087, 2048, 1401, 1405, 1430, 1577, 1294, 1178,
    1587, 1540, 604, 604, 1343, 1141, 1767, 1532, 1612, 1235, 1612, 1423, 1300, 1251, 1499, 1401, 2025, 1403, 1251,
    1403, 799, 690, 799, 1716, 1024, 1024, 1255, 1300, 1126, 1300, 1260, 721, 1300, 1298, 569, 569, 1186, 569, 1995,
    1298, 1253, 1300, 1300, 842, 1067, 803, 1298, 1212, 1675, 1212, 1212, 1075, 1303, 690, 1303, 1716,
)  # fmt: skip
_BOLD = (
    713, 934, 1067, 1716, 1425, 2052, 1786, 627, 936, 936, 1071, 1716, 778, 850, 778, 748, 1425, 1425, 1425, 1425,
    1425, 1425, 1425, 1425, 1425, 1425, 819, 819, 1716, 1716, 1716, 1188, 2048, 1585, 1561, 1503, 1700, 1399, 1399,
    1681, 1714, 762, 762, 1587, 1305, 2038, 1714, 1741, 1501, 1741, 1577, 1475, 1397, 1663, 1585, 2259, 1579, 1483,
    1485, 936, 748, 936, 1716, 1024, 1024, 1382, 1466, 1214, 1466, 1389, 891, 1466, 1458, 702, 702, 1362, 702, 2134,
    1458, 1407, 1466, 1466, 1010, 1219, 979, 1458, 1335, 1892, 1321, 1335, 1192, 1458, 748, 1458, 1716,
)  # fmt: skip
_EXTRA_BOOK = {"·": 651, "×": 1716, "…": 2048, "→": 1716}
_EXTRA_BOLD = {"·": 778, "×": 1716, "…": 2048, "→": 1716}
_UNKNOWN = 2048
"""Any other character: a full em, wider than every glyph above."""


def text_width(text: str, size: float, bold: bool = False) -> float:
    """Rendered width of `text` in DejaVu Sans at `size` px (the sum of advances: kerning only narrows).
    SVG collapses runs of white space to one space and drops it at the ends, so this does too."""
    table, extra = (_BOLD, _EXTRA_BOLD) if bold else (_BOOK, _EXTRA_BOOK)
    units = 0
    for ch in " ".join(text.split()):
        code = ord(ch)
        units += table[code - 32] if 32 <= code <= 126 else extra.get(ch, _UNKNOWN)
    return units * size / 2048


def fit(text: str, size: float, width: float, bold: bool = False) -> str:
    """`text`, cut with an ellipsis to fit `width` px (empty when not even the ellipsis fits)."""
    if text_width(text, size, bold) <= width:
        return text
    for n in range(len(text) - 1, 0, -1):
        cut = text[:n].rstrip() + "…"
        if text_width(cut, size, bold) <= width:
            return cut
    return "…" if text_width("…", size, bold) <= width else ""


def flow(widths: list[float], avail: float, gap: float = 6.0) -> list[tuple[float, int]]:
    """Place items of these widths left to right, wrapping at `avail`: (x, line) for each."""
    out: list[tuple[float, int]] = []
    x, line = 0.0, 0
    for w in widths:
        if x > 0 and x + w > avail:
            x, line = 0.0, line + 1
        out.append((x, line))
        x += w + gap
    return out


# --- the layout model -----------------------------------------------------------------------------


@dataclass
class Row:
    kind: str
    """pod | container | service | unscheduled | missing."""
    key: str
    """What the row stands for: a workload key, a container name, a Service key."""
    name: str
    """Text drawn in the row."""
    detail: str = ""
    """Grey text after the name (kind, image)."""
    hosts: list[str] = field(default_factory=list)
    """Ingress host names routed to this workload."""
    count: str = ""
    """Replicas on this node (of the workload's total)."""
    right: str = ""
    """Right-aligned text (requests per replica, ports)."""
    colour: str = OTHER_COLOUR
    """Colour of the chip at the row's start."""
    tooltip: str = ""
    """Hover text."""
    y: float = 0.0
    h: float = ROW_H
    name_text: str = ""
    """The name as drawn (cut to fit)."""
    detail_text: str = ""
    host_text: str = ""
    wrapped: bool = False
    """Detail and host names on a second line."""


@dataclass
class Chip:
    text: str
    tooltip: str
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0


@dataclass
class Disk:
    node: str
    """The node's hostname (names the bar's clip path)."""
    path: str
    size_gib: float
    requested_gib: float
    segments: list[tuple[str, float, str]]
    """(volume name, Gi, tooltip) in drawing order."""
    chips: list[Chip]
    y: float = 0.0


@dataclass
class IngressStrip:
    text: str
    """The grey line after the label."""
    tooltip: str
    chips: list[Chip]
    y: float = 0.0
    label: str = "ingress"
    """`ingress`, or `dns` for the LAN DNS line."""


@dataclass
class Box:
    kind: str
    """node | gpu-host | unscheduled | missing | ingress."""
    key: str
    """Hostname, or the name of a pseudo-box."""
    colour: str
    pills: list[str]
    rows: list[Row]
    bars: list[tuple[str, int, int, str]] | None = None
    """(label, requested, allocatable, unit) for a node."""
    disk: Disk | None = None
    ingress: IngressStrip | None = None
    dns: IngressStrip | None = None
    """The LAN DNS line, on the node at `rack.dns.address`."""
    empty_text: str = ""
    dashed: bool = False
    y: float = 0.0
    h: float = 0.0
    tooltip: str = ""
    name_text: str = ""
    """The key as drawn in the header (cut to leave room for the pills)."""


@dataclass
class Layout:
    boxes: list[Box]
    lanes: list[tuple[str, str]]
    """(target key, colour), innermost lane first."""
    width: float
    height: float
    links: list[tuple[Row, str, int, int]] = field(default_factory=list)
    """(source row, target key, index among the row's links, how many links the row has)."""
    count_r: float = ROW_W - 122
    """Row-relative right edge of the replica-count column."""
    bar_w: float = 160.0
    """Width of every cpu/mem/disk bar."""
    legend: list[tuple[str, str, str, float, float]] = field(default_factory=list)
    """(kind, colour, label, x, y) of each legend item."""
    title_h: float = 112.0


def _fmt_cpu(m: int) -> str:
    return f"{m}m"


def _fmt_mem(mib: int) -> str:
    return f"{mib}Mi"


def _gib(v: float) -> str:
    return f"{v:g}Gi"


def _port(p: Any) -> str:
    if isinstance(p, float) and p.is_integer():
        return str(int(p))
    return str(p)


def _hosts_by_workload(plan: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for route in (plan.get("ingress") or {}).get("routes") or []:
        for w in route.get("workloads") or []:
            if route.get("host") and route["host"] not in out[w]:
                out[w].append(route["host"])
    return out


def _chips(items: list[tuple[str, str]]) -> list[Chip]:
    return [Chip(text=t, tooltip=tip, w=text_width(t, 11) + 12) for t, tip in items]


def _disk(node: dict[str, Any], plan: dict[str, Any]) -> Disk | None:
    storage = node.get("storage")
    if not storage:
        return None
    volumes = [v for v in plan.get("volumes") or [] if v.get("node") == node["hostname"]]
    segments, items = [], []
    for v in volumes:
        users = ", ".join(v.get("mounted_by") or []) or "no workload"
        tip = f"{v['name']}: {_gib(v['size_gib'])} at {v.get('path')} ({v.get('reclaim')}), mounted by {users}"
        segments.append((v["name"], float(v["size_gib"]), tip))
        items.append((f"{v['name']} {_gib(v['size_gib'])}", tip))
    return Disk(
        node=node["hostname"],
        path=str(storage.get("path", "")),
        size_gib=float(storage["size_gib"]),
        requested_gib=float(storage.get("requested_gib", sum(s for _, s, _ in segments))),
        segments=segments,
        chips=_chips(items),
    )


def _ingress_strip(plan: dict[str, Any], served: bool) -> IngressStrip:
    ingress = plan.get("ingress") or {}
    address = ingress.get("address", "")
    items = []
    for route in ingress.get("routes") or []:
        to = ", ".join(route.get("workloads") or []) or "no workload"
        items.append(
            (
                str(route.get("host")),
                f"{route.get('host')}{route.get('path', '/')} → Service {route.get('service')}:"
                f"{_port(route.get('port'))} → {to}",
            )
        )
    controller = str(ingress.get("controller", "traefik")).capitalize()
    if served:
        text = f"these names resolve to {address}: ServiceLB takes :80/:443 here → {controller} → each name's workload"
        tip = (
            f"every host name below resolves to {address}; ServiceLB's pod on this node holds ports 80/443 and "
            f"forwards to {controller}, which routes each name to its workload ({controller}'s own pod is placed "
            "by k3s, not by this plan)"
        )
    elif ingress.get("address_of"):
        text = f"{address} is {ingress['address_of']}: a taint keeps ServiceLB off it, nothing answers there"
        tip = text
    else:
        text = f"{address} is no node's address: with ServiceLB nothing answers there"
        tip = text
    return IngressStrip(text=text, tooltip=tip, chips=_chips(items))


def _dns_strip(dns: dict[str, Any]) -> IngressStrip:
    ports = " + ".join(dns.get("ports") or []) or "no Service"
    text = f"{dns['zone']} answered on {dns['address']} ({ports}): ServiceLB here → CoreDNS"
    tip = (
        f"the LAN's DNS server for {dns['zone']}: ServiceLB's pod on this node holds {ports} and forwards to "
        f"CoreDNS, which answers the rack's names and forwards names outside the domain to "
        f"{', '.join(dns.get('upstream') or [])} (docs/lan-dns.md)"
    )
    return IngressStrip(text=text, tooltip=tip, chips=[], label="dns")


def _node_boxes(plan: dict[str, Any]) -> tuple[list[Box], list[Row]]:
    """The node boxes with their pod rows, plus the rows of replicas no node took."""
    by_node: dict[str | None, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for p in plan.get("placements", []):
        by_node[p.get("node")][p["workload"]].append(p)

    totals: dict[str, int] = defaultdict(int)
    for p in plan.get("placements", []):
        totals[p["workload"]] += 1
    hosts = _hosts_by_workload(plan)

    def rows_of(groups: dict[str, list[dict[str, Any]]], kind: str) -> list[Row]:
        out = []
        for key, reps in sorted(groups.items(), key=lambda kv: (CATEGORY_ORDER.get(kv[1][0]["category"], 9), kv[0])):
            first = reps[0]
            here, total = len(reps), totals[key]
            each = f"{_fmt_cpu(first['cpu_m'])} · {_fmt_mem(first['memory_mib'])}"
            served = f"; serves {', '.join(hosts[key])}" if hosts.get(key) else ""
            out.append(
                Row(
                    kind=kind,
                    key=key,
                    name=key,
                    detail=first["kind"],
                    hosts=list(hosts.get(key, [])),
                    count=f"×{here}" if here == total else f"×{here} of {total}",
                    right=each,
                    colour=CATEGORY_COLOURS.get(first["category"], OTHER_COLOUR),
                    tooltip=f"{key} ({first['kind']}, {first['category']}): {here} of {total} replica(s) here, "
                    f"requests {each} per replica{served}",
                )
            )
        return out

    entry = (plan.get("ingress") or {}).get("node")
    has_routes = bool((plan.get("ingress") or {}).get("routes"))
    dns = plan.get("dns")
    boxes = []
    for n in plan.get("nodes", []):
        host = n["hostname"]
        alloc, req, cap = n["allocatable"], n["requested"], n["capacity"]
        empty = "control plane: kept free of workloads" if n["role"] == "server" else "no pods placed"
        address = f" at {n['address']}" if n.get("address") else ""
        boxes.append(
            Box(
                kind="node",
                key=host,
                colour=CLASS_COLOURS.get(n["class"], OTHER_COLOUR),
                pills=[n["class"], n["role"], n["arch"]],
                rows=rows_of(by_node.get(host, {}), "pod"),
                bars=[
                    ("cpu", req["cpu_m"], alloc["cpu_m"], "m"),
                    ("mem", req["memory_mib"], alloc["memory_mib"], "Mi"),
                ],
                disk=_disk(n, plan),
                ingress=_ingress_strip(plan, served=True) if has_routes and entry == host else None,
                dns=_dns_strip(dns) if dns is not None and dns.get("node") == host else None,
                empty_text=empty,
                tooltip=f"{host}{address}: capacity {_fmt_cpu(cap['cpu_m'])} CPU, {_fmt_mem(cap['memory_mib'])}; "
                f"allocatable {_fmt_cpu(alloc['cpu_m'])}, {_fmt_mem(alloc['memory_mib'])}",
            )
        )
    unscheduled = rows_of(by_node.get(None, {}), "unscheduled")
    return boxes, unscheduled


def _gpu_boxes(plan: dict[str, Any]) -> list[Box]:
    """One box per off-cluster host: its containers, then the in-cluster Services pointing at it."""
    containers: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in plan.get("external", []):
        containers[str(c.get("host") or "unknown")].append(c)
    services: dict[str, set[str]] = defaultdict(set)
    for link in plan.get("links", []):
        if link.get("kind") == "inference" and link.get("host"):
            services[link["host"]].add(link["to"])
    out = []
    for host in sorted(set(containers) | set(services)):
        rows = []
        for c in sorted(containers.get(host, []), key=lambda c: str(c.get("workload"))):
            ports = ", ".join(f":{_port(p)}" for p in c.get("ports") or [] if p is not None)
            gpus = f"gpus {c['gpus']}" if c.get("gpus") else ""
            rows.append(
                Row(
                    kind="container",
                    key=str(c.get("workload")),
                    name=str(c.get("workload")),
                    detail=str(c.get("image") or ""),
                    right=" · ".join(x for x in (gpus, ports) if x),
                    colour=GPU_COLOUR,
                    tooltip=f"container {c.get('workload')} on {host}: {c.get('image')}",
                )
            )
        for svc in sorted(services.get(host, set())):
            rows.append(
                Row(
                    kind="service",
                    key=svc,
                    name=svc,
                    detail="Service → this host",
                    right="in-cluster",
                    colour=INFERENCE_COLOUR,
                    tooltip=f"{svc}: Service of gateway pods, ready while the model server on {host} is healthy",
                )
            )
        out.append(
            Box(
                kind="gpu-host",
                key=host,
                colour=GPU_COLOUR,
                pills=["gpu host", "docker"],
                rows=rows,
                empty_text="no containers",
                tooltip=f"{host}: outside the cluster, reached over SSH",
            )
        )
    return out


def _fit_row(r: Row, count_r: float) -> None:
    """Decide what of the row is drawn where: one line, or the detail wrapped under the name."""
    right_w = text_width(r.right, 12)
    limit = (count_r - text_width(r.count, 12) - 10) if r.count else (ROW_W - 10 - right_w - 12)
    host = " ".join(r.hosts)
    detail_w = text_width(r.detail, 11) + (8 + text_width(host, 11) if host else 0)
    name_w = text_width(r.name, 13)
    if not (r.detail or host):
        r.wrapped, r.h = False, ROW_H
        r.name_text = fit(r.name, 13, limit - NAME_X)
        return
    if name_w <= DETAIL_X - NAME_X - 8 and DETAIL_X + detail_w <= limit:
        r.wrapped, r.h = False, ROW_H
        r.name_text, r.detail_text, r.host_text = r.name, r.detail, host
        return
    r.wrapped, r.h = True, ROW_H2
    r.name_text = fit(r.name, 13, limit - NAME_X)
    avail = ROW_W - 10 - NAME_X
    if host:
        r.host_text = fit(host, 11, avail)
        rest = avail - text_width(r.host_text, 11) - 8
        r.detail_text = fit(r.detail, 11, rest) if r.detail else ""
    else:
        r.detail_text = fit(r.detail, 11, avail)


def _place_chips(chips: list[Chip], x0: float, y0: float, avail: float) -> int:
    """Flow the chips from (x0, y0); return how many lines they take."""
    spots = flow([c.w for c in chips], avail)
    for c, (x, line) in zip(chips, spots, strict=True):
        c.x, c.y = x0 + x, y0 + line * CHIP_PITCH
    return (max(line for _, line in spots) + 1) if spots else 0


def _legend(
    plan: dict[str, Any], width: float, has_links: bool
) -> tuple[list[tuple[str, str, str, float, float]], float]:
    """Legend items (kind, colour, label, x, y) flowed under the title; and where the boxes start."""
    groups: list[tuple[str, list[tuple[str, str, str]]]] = [
        ("nodes", [("class", c, k) for k, c in CLASS_COLOURS.items()] + [("class", GPU_COLOUR, "gpu host")]),
        ("pods", [("category", c, k) for k, c in CATEGORY_COLOURS.items()]),
    ]
    other: list[tuple[str, str, str]] = []
    if has_links:
        other.append(("arrow", "#374151", "uses"))
    if (plan.get("ingress") or {}).get("routes"):
        other.append(("host", HOST_FILL, "ingress host name"))
    if plan.get("volumes"):
        other.append(("volume", VOLUME_FILL, "pinned volume"))
    if other:
        groups.append(("also", other))
    items = []
    y = 80.0
    for heading, entries in groups:
        items.append(("heading", "#374151", heading, float(MARGIN), y))
        x = MARGIN + 46.0
        for kind, colour, label in entries:
            w = (34 if kind == "arrow" else 16) + text_width(label, 11) + 14
            if kind in ("host", "volume"):
                w = text_width(label, 11) + 12 + 14
            if x + w > width - MARGIN:
                x, y = MARGIN + 46.0, y + 18
            items.append((kind, colour, label, x, y))
            x += w
        y += 18
    return items, y + 8


def layout(plan: dict[str, Any]) -> Layout:
    """Every box's and row's position, and the link lanes: a pure function of the plan."""
    boxes, unscheduled = _node_boxes(plan)
    boxes += _gpu_boxes(plan)
    if unscheduled:
        boxes.append(
            Box(
                kind="unscheduled",
                key="unscheduled",
                colour="#b91c1c",
                pills=["no node fits"],
                rows=unscheduled,
                dashed=True,
                tooltip="replicas the plan could not place (see the problems)",
            )
        )

    drawn = {r.key: r for b in boxes for r in b.rows if r.kind in ("pod", "service", "unscheduled")}
    targets: list[str] = []
    for link in plan.get("links", []):
        if link["to"] not in targets:
            targets.append(link["to"])
    missing = [t for t in targets if t not in drawn]
    if missing:
        boxes.append(
            Box(
                kind="missing",
                key="not in this plan",
                colour="#9f1239",
                pills=["used, but not built"],
                rows=[
                    Row(kind="missing", key=t, name=t, detail="no workload in the plan", colour="#9f1239")
                    for t in missing
                ],
                dashed=True,
                tooltip="services an app uses that the plan does not contain",
            )
        )
    ingress = plan.get("ingress") or {}
    if ingress.get("routes") and not ingress.get("node"):
        boxes.append(
            Box(
                kind="ingress",
                key="ingress",
                colour="#9f1239",
                pills=["no node serves it"],
                rows=[],
                ingress=_ingress_strip(plan, served=False),
                dashed=True,
                tooltip="host names whose address no ServiceLB pod answers",
            )
        )

    # Columns shared by every row: the count column ends where the widest right-hand text begins.
    rows = [r for b in boxes for r in b.rows]
    right_max = max((text_width(r.right, 12) for r in rows), default=0.0)
    count_r = ROW_W - 10 - right_max - 14
    for r in rows:
        _fit_row(r, count_r)
    bar_texts = [_bar_text(req, alloc, unit) for b in boxes for (_, req, alloc, unit) in (b.bars or [])]
    half = (BOX_W - 3 * INNER_X) / 2
    bar_w = half - LABEL_W - 8 - max((text_width(t, 11) for t in bar_texts), default=0.0)

    gutter_lanes = len({link["to"] for link in plan.get("links", [])})
    legend, title_h = _legend(
        plan, MARGIN + BOX_W + GUTTER_IN + LANE_GAP * gutter_lanes + MARGIN, bool(plan.get("links"))
    )

    y = title_h
    for b in boxes:
        b.y = y
        pill_w = sum(text_width(p, 12) + 14 + 6 for p in b.pills)
        b.name_text = fit(b.key, 16, BOX_W - 14 - 12 - pill_w - 10, bold=True)
        ly = y + HEADER_H + 8
        if b.bars:
            ly += LINE_H
        if b.disk:
            b.disk.y = ly
            ly += LINE_H
            ly += CHIP_PITCH * _place_chips(b.disk.chips, MARGIN + INNER_X, ly, BOX_W - 2 * INNER_X)
        if b.ingress:
            b.ingress.y = ly
            ly += LINE_H
            ly += CHIP_PITCH * _place_chips(b.ingress.chips, MARGIN + INNER_X, ly, BOX_W - 2 * INNER_X)
        if b.dns:
            b.dns.y = ly
            ly += LINE_H
        ry = ly + 2 if ly > y + HEADER_H + 8 else y + HEADER_H + PAD
        for r in b.rows:
            r.y = ry
            ry += r.h + ROW_GAP
        if not b.rows and b.empty_text:
            ry += ROW_H + ROW_GAP
        b.h = ry - y - ROW_GAP + PAD
        y += b.h + BOX_GAP

    # Target rows: the first drawn row of that key (a database on one node; a Service on its host).
    target_row: dict[str, Row] = {}
    for b in boxes:
        for r in b.rows:
            if r.kind in ("pod", "service", "unscheduled", "missing") and r.key in targets:
                target_row.setdefault(r.key, r)
    sources: dict[str, list[Row]] = defaultdict(list)
    for b in boxes:
        for r in b.rows:
            if r.kind in ("pod", "unscheduled"):
                sources[r.key].append(r)

    per_row: dict[int, list[str]] = defaultdict(list)
    for link in plan.get("links", []):
        for r in sources.get(link["from"], []):
            if link["to"] not in per_row[id(r)]:
                per_row[id(r)].append(link["to"])
    rows_by_id = {id(r): r for rs in sources.values() for r in rs}
    links = [(rows_by_id[rid], to, i, len(tos)) for rid, tos in per_row.items() for i, to in enumerate(tos)]
    links.sort(key=lambda t: (t[0].y, t[2]))

    def span(t: str) -> float:
        ys = [target_row[t].y] + [r.y for r, to, _, _ in links if to == t]
        return max(ys) - min(ys)

    used = [t for t in targets if any(to == t for _, to, _, _ in links)]
    lanes_order = sorted(used, key=lambda t: (span(t), t))
    colours: dict[str, str] = {}
    db_i = 0
    kinds = {link["to"]: link.get("kind") for link in plan.get("links", [])}
    for t in sorted(used):
        if kinds.get(t) == "inference":
            colours[t] = INFERENCE_COLOUR
        else:
            colours[t] = LINK_COLOURS[db_i % len(LINK_COLOURS)]
            db_i += 1
    lanes = [(t, colours[t]) for t in lanes_order]
    gutter = GUTTER_IN + LANE_GAP * len(lanes) + (MARGIN if lanes else 0)
    width = max(MARGIN + BOX_W + gutter + MARGIN, MIN_WIDTH)
    return Layout(
        boxes=boxes,
        lanes=lanes,
        width=width,
        height=y - BOX_GAP + MARGIN,
        links=links,
        count_r=count_r,
        bar_w=bar_w,
        legend=legend,
        title_h=title_h,
    )


# --- drawing --------------------------------------------------------------------------------------


def _t(s: Any) -> str:
    return escape(str(s), quote=True)


def _n(v: float) -> str:
    """A coordinate: at most one decimal, no trailing zero (stable bytes)."""
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _bar_colour(frac: float) -> str:
    if frac > 0.9:
        return "#dc2626"
    if frac > 0.7:
        return "#f59e0b"
    return "#10b981"


def _bar_text(req: float, alloc: float, unit: str) -> str:
    frac = req / alloc if alloc else 1.0
    return f"{req:g}{unit} / {alloc:g}{unit} · {frac:.0%}"


def _chip_svg(c: Chip, kind: str, fill: str, colour: str, data: str) -> str:
    return (
        f'<g class="chip {kind}" {data}><title>{_t(c.tooltip)}</title>'
        f'<rect class="frame" x="{_n(c.x)}" y="{_n(c.y)}" width="{_n(c.w)}" height="{CHIP_H}" rx="8" fill="{fill}"/>'
        f'<text x="{_n(c.x + 6)}" y="{_n(c.y + 12)}" font-size="11" fill="{colour}">{_t(c.text)}</text></g>'
    )


def _box_svg(b: Box, lay: Layout) -> list[str]:
    x, y, w, h = MARGIN, b.y, BOX_W, b.h
    dash = ' stroke-dasharray="6 4"' if b.dashed else ""
    out = [
        f'<g class="node {b.kind}" data-kind="{b.kind}" data-hostname="{_t(b.key)}">',
        f"<title>{_t(b.tooltip or b.key)}</title>",
        f'<rect class="node-box" x="{x}" y="{_n(y)}" width="{w}" height="{_n(h)}" rx="10" fill="#ffffff" '
        f'stroke="{b.colour}" stroke-width="2"{dash}/>',
        f'<path d="M{x} {_n(y + 10)} a10 10 0 0 1 10 -10 h{w - 20} a10 10 0 0 1 10 10 v{HEADER_H - 10} h{-w} z" '
        f'fill="{b.colour}"/>',
        f'<text class="node-name" x="{x + 14}" y="{_n(y + 23)}" font-size="16" font-weight="bold" '
        f'fill="#ffffff">{_t(b.name_text)}</text>',
    ]
    px = float(x + w - 12)
    for pill in reversed(b.pills):
        pw = text_width(pill, 12) + 14
        px -= pw
        out.append(
            f'<g class="pill"><rect class="frame" x="{_n(px)}" y="{_n(y + 8)}" width="{_n(pw)}" height="19" '
            f'rx="9.5" fill="#ffffff" fill-opacity="0.22"/>'
            f'<text x="{_n(px + pw / 2)}" y="{_n(y + 22)}" font-size="12" text-anchor="middle" '
            f'fill="#ffffff">{_t(pill)}</text></g>'
        )
        px -= 6
    ly = y + HEADER_H + 8
    half = (w - 3 * INNER_X) / 2
    if b.bars:
        for i, (label, req, alloc, unit) in enumerate(b.bars):
            bx = x + INNER_X + i * (half + INNER_X)
            frac = req / alloc if alloc else 1.0
            bar_x = bx + LABEL_W
            out.append(
                f'<g class="bar" data-bar="{label}" data-requested="{req}" data-allocatable="{alloc}">'
                f'<text x="{bx}" y="{_n(ly + 12)}" font-size="12" font-weight="bold" fill="#374151">{label}</text>'
                f'<rect class="track" x="{_n(bar_x)}" y="{_n(ly + 2)}" width="{_n(lay.bar_w)}" height="12" rx="6" '
                f'fill="#e5e7eb"/>'
                f'<rect class="fill" x="{_n(bar_x)}" y="{_n(ly + 2)}" width="{_n(min(frac, 1.0) * lay.bar_w)}" '
                f'height="12" rx="6" fill="{_bar_colour(frac)}"/>'
                f'<text x="{_n(bar_x + lay.bar_w + 8)}" y="{_n(ly + 12)}" font-size="11" fill="#374151">'
                f"{_t(_bar_text(req, alloc, unit))}</text></g>"
            )
    if b.disk:
        out.extend(_disk_svg(b.disk, lay))
    if b.ingress:
        out.extend(_ingress_svg(b.ingress))
    if b.dns:
        out.extend(_ingress_svg(b.dns))
    for r in b.rows:
        out.extend(_row_svg(r, b, lay))
    if not b.rows and b.empty_text:
        ry = b.h + b.y - PAD - ROW_H
        out.append(
            f'<text class="empty" x="{x + 16}" y="{_n(ry + 15)}" font-size="12" font-style="italic" '
            f'fill="#6b7280">{_t(b.empty_text)}</text>'
        )
    out.append("</g>")
    return out


def _disk_svg(d: Disk, lay: Layout) -> list[str]:
    bx = MARGIN + INNER_X
    bar_x, ly = bx + LABEL_W, d.y
    frac = d.requested_gib / d.size_gib if d.size_gib else 1.0
    colour = _bar_colour(frac)
    scale = lay.bar_w / max(d.size_gib, d.requested_gib, 1e-9)
    text_x = bar_x + lay.bar_w + 8
    text = fit(
        f"{_gib(d.requested_gib)} / {_gib(d.size_gib)} · {frac:.0%} pinned on {d.path}",
        11,
        BOX_W + MARGIN - INNER_X - text_x,
    )
    out = [
        f'<g class="bar disk" data-bar="disk" data-requested-gib="{d.requested_gib:g}" data-size-gib="{d.size_gib:g}" '
        f'data-path="{_t(d.path)}">',
        f'<text x="{bx}" y="{_n(ly + 12)}" font-size="12" font-weight="bold" fill="#374151">disk</text>',
        f'<rect class="track" x="{_n(bar_x)}" y="{_n(ly + 2)}" width="{_n(lay.bar_w)}" height="12" rx="6" '
        'fill="#e5e7eb"/>',
        f'<clipPath id="disk-{_t(d.node)}"><rect x="{_n(bar_x)}" y="{_n(ly + 2)}" '
        f'width="{_n(lay.bar_w)}" height="12" rx="6"/></clipPath>',
        f'<g class="fill" clip-path="url(#disk-{_t(d.node)})">',
    ]
    sx = float(bar_x)
    for name, gib, tip in d.segments:
        sw = gib * scale
        out.append(
            f'<rect class="segment" data-volume="{_t(name)}" data-gib="{gib:g}" x="{_n(sx)}" y="{_n(ly + 2)}" '
            f'width="{_n(max(sw - 1, 0.5))}" height="12" fill="{colour}"><title>{_t(tip)}</title></rect>'
        )
        sx += sw
    out.append("</g>")
    out.append(f'<text x="{_n(text_x)}" y="{_n(ly + 12)}" font-size="11" fill="#374151">{_t(text)}</text>')
    for c, (name, gib, _) in zip(d.chips, d.segments, strict=True):
        out.append(_chip_svg(c, "volume", VOLUME_FILL, VOLUME_TEXT, f'data-volume="{_t(name)}" data-gib="{gib:g}"'))
    out.append("</g>")
    return out


def _ingress_svg(s: IngressStrip) -> list[str]:
    bx = MARGIN + INNER_X
    label_w = text_width(s.label, 12, bold=True) + 10
    text = fit(s.text, 11, BOX_W - 2 * INNER_X - label_w)
    out = [
        f'<g class="{_t(s.label)}">',
        f"<title>{_t(s.tooltip)}</title>",
        f'<text x="{bx}" y="{_n(s.y + 12)}" font-size="12" font-weight="bold" fill="#374151">{_t(s.label)}</text>',
        f'<text x="{_n(bx + label_w)}" y="{_n(s.y + 12)}" font-size="11" fill="#4b5563">{_t(text)}</text>',
    ]
    for c in s.chips:
        out.append(_chip_svg(c, "host", HOST_FILL, HOST_TEXT, f'data-host="{_t(c.text)}"'))
    out.append("</g>")
    return out


def _row_svg(r: Row, b: Box, lay: Layout) -> list[str]:
    x, w = MARGIN + PAD, ROW_W
    fill = "#fef2f2" if r.kind in ("unscheduled", "missing") else "#f3f4f6"
    base1 = r.y + 15.5
    out = [
        f'<g class="row {r.kind}" data-kind="{r.kind}" data-key="{_t(r.key)}" data-node="{_t(b.key)}"'
        + (f' data-hosts="{_t(" ".join(r.hosts))}"' if r.hosts else "")
        + ">",
        f"<title>{_t(r.tooltip or r.key)}</title>",
        f'<rect class="row-box" x="{x}" y="{_n(r.y)}" width="{w}" height="{_n(r.h)}" rx="5" fill="{fill}"/>',
        f'<rect x="{x + 7}" y="{_n(r.y + 6)}" width="10" height="10" rx="2" fill="{r.colour}"/>',
        f'<text class="row-name" x="{x + NAME_X}" y="{_n(base1)}" font-size="13" fill="#111827">'
        f"{_t(r.name_text)}</text>",
    ]
    dx, dy = (float(x + NAME_X), r.y + 31.5) if r.wrapped else (float(x + DETAIL_X), base1)
    if r.detail_text:
        out.append(
            f'<text class="row-detail" x="{_n(dx)}" y="{_n(dy)}" font-size="11" fill="#6b7280">'
            f"{_t(r.detail_text)}</text>"
        )
        dx += text_width(r.detail_text, 11) + 8
    if r.host_text:
        out.append(
            f'<text class="row-hosts" x="{_n(dx)}" y="{_n(dy)}" font-size="11" fill="{HOST_TEXT}">'
            f"{_t(r.host_text)}</text>"
        )
    if r.count:
        out.append(
            f'<text x="{_n(x + lay.count_r)}" y="{_n(base1)}" font-size="12" text-anchor="end" fill="#111827">'
            f"{_t(r.count)}</text>"
        )
    if r.right:
        out.append(
            f'<text x="{x + w - 10}" y="{_n(base1)}" font-size="12" text-anchor="end" fill="#374151">'
            f"{_t(r.right)}</text>"
        )
    out.append("</g>")
    return out


def _links_svg(lay: Layout) -> list[str]:
    lane_x = {t: MARGIN + BOX_W + GUTTER_IN + i * LANE_GAP for i, (t, _) in enumerate(lay.lanes)}
    colour = dict(lay.lanes)
    target_row: dict[str, Row] = {}
    for b in lay.boxes:
        for r in b.rows:
            if r.kind in ("pod", "service", "unscheduled", "missing") and r.key in colour:
                target_row.setdefault(r.key, r)
    edge = MARGIN + BOX_W - PAD
    out = ['<g class="links" fill="none" stroke-width="1.8">']
    for t, c in lay.lanes:
        tr = target_row[t]
        ty = tr.y + tr.h / 2
        lx = lane_x[t]
        dash = ' stroke-dasharray="5 4"' if tr.kind == "missing" else ""
        for src, to, i, n in lay.links:
            if to != t:
                continue
            sy = src.y + src.h / 2 + (i - (n - 1) / 2) * 4
            rad = min(6.0, abs(ty - sy) / 2)
            down = 1 if ty > sy else -1
            d = (
                f"M{edge} {sy:.1f} H{lx - rad:.1f} Q{lx:.1f} {sy:.1f} {lx:.1f} {sy + down * rad:.1f} "
                f"V{ty - down * rad:.1f} Q{lx:.1f} {ty:.1f} {lx - rad:.1f} {ty:.1f} H{edge + 7}"
            )
            out.append(
                f'<path class="link" data-from="{_t(src.key)}" data-to="{_t(t)}" d="{d}" '
                f'stroke="{c}" marker-end="url(#arrow-{lay.lanes.index((t, c))})"{dash}>'
                f"<title>{_t(src.key)} uses {_t(t)}</title></path>"
            )
            out.append(f'<circle cx="{edge}" cy="{sy:.1f}" r="2.6" fill="{c}" stroke="none"/>')
    out.append("</g>")
    return out


def _legend_svg(plan: dict[str, Any], lay: Layout) -> list[str]:
    nodes = plan.get("nodes", [])
    placed = [p for p in plan.get("placements", []) if p.get("node")]
    unplaced = [p for p in plan.get("placements", []) if not p.get("node")]
    errors = [p for p in plan.get("problems", []) if p.get("severity") == "error"]
    hosts = sum(1 for b in lay.boxes if b.kind == "gpu-host")
    status = "layout OK" if not errors else f"{len(errors)} layout error(s)"
    summary = (
        f"{len(nodes)} nodes · {len(placed)} pods placed"
        + (f" · {len(unplaced)} unscheduled" if unplaced else "")
        + f" · {hosts} GPU host{'s' if hosts != 1 else ''} · {len(plan.get('links', []))} links · {status}"
    )
    out = [
        f'<text class="title" x="{MARGIN}" y="34" font-size="22" font-weight="bold" fill="#111827">'
        f"{_t(fit('Rack plan: ' + str(plan.get('stack', '')), 22, lay.width - 2 * MARGIN, bold=True))}</text>",
        f'<text class="summary" x="{MARGIN}" y="56" font-size="13" fill="{"#b91c1c" if errors else "#374151"}">'
        f"{_t(fit(summary, 13, lay.width - 2 * MARGIN))}</text>",
        '<g class="legend" font-size="11" fill="#374151">',
    ]
    for kind, c, label, x, y in lay.legend:
        if kind == "heading":
            out.append(f'<text x="{_n(x)}" y="{_n(y + 1)}" font-weight="bold">{_t(label)}</text>')
        elif kind == "class":
            out.append(f'<rect x="{_n(x)}" y="{_n(y - 9)}" width="12" height="12" rx="3" fill="{c}"/>')
            out.append(f'<text x="{_n(x + 16)}" y="{_n(y + 1)}">{_t(label)}</text>')
        elif kind == "category":
            out.append(f'<rect x="{_n(x + 1)}" y="{_n(y - 8)}" width="10" height="10" rx="2" fill="{c}"/>')
            out.append(f'<text x="{_n(x + 16)}" y="{_n(y + 1)}">{_t(label)}</text>')
        elif kind == "arrow":
            out.append(
                f'<path d="M{_n(x + 4)} {_n(y - 3)} h22" stroke="{c}" stroke-width="1.8" fill="none" '
                f'marker-end="url(#arrow-legend)"/><text x="{_n(x + 34)}" y="{_n(y + 1)}">{_t(label)}</text>'
            )
        else:  # a chip sample: host names and volumes look like this
            text_c = HOST_TEXT if kind == "host" else VOLUME_TEXT
            cw = text_width(label, 11) + 12
            out.append(_chip_svg(Chip(text=label, tooltip=label, x=x, y=y - 11, w=cw), f"legend-{kind}", c, text_c, ""))
    out.append("</g>")
    return out


def render_svg(plan: dict[str, Any]) -> str:
    """The rack picture as a standalone SVG document (no external references)."""
    lay = layout(plan)
    w, h = lay.width, lay.height
    markers = [
        f'<marker id="arrow-{i}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z" fill="{c}"/></marker>'
        for i, (_, c) in enumerate(lay.lanes)
    ]
    markers.append(
        '<marker id="arrow-legend" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0 0 L10 5 L0 10 z" fill="#374151"/></marker>'
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="rack" width="{w:.0f}" height="{h:.0f}" '
        f'viewBox="0 0 {w:.0f} {h:.0f}" font-family="{_t(FONT)}" role="img" '
        f'aria-label="Rack plan of stack {_t(plan.get("stack", ""))}">',
        f"<defs>{''.join(markers)}</defs>",
        f'<rect width="{w:.0f}" height="{h:.0f}" fill="#f8fafc"/>',
        *_legend_svg(plan, lay),
    ]
    for b in lay.boxes:
        parts.extend(_box_svg(b, lay))
    parts.extend(_links_svg(lay))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


_CHECK_SCRIPT = """
(function () {
  function box(el) {
    if (!el) return null;
    var r = el.getBoundingClientRect();
    return {x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height};
  }
  function all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  var out = {
    svg: box(document.querySelector("svg.rack")),
    nodes: all("svg.rack g.node").map(function (g) {
      return {kind: g.dataset.kind, key: g.dataset.hostname, box: box(g.querySelector(".node-box")),
              label: box(g.querySelector(".node-name"))};
    }),
    rows: all("svg.rack g.row").map(function (g) {
      return {kind: g.dataset.kind, key: g.dataset.key, node: g.dataset.node, hosts: g.dataset.hosts || "",
              box: box(g.querySelector(".row-box")), label: box(g.querySelector(".row-name")),
              text: g.querySelector(".row-name").textContent};
    }),
    links: all("svg.rack path.link").map(function (p) {
      return {from: p.dataset.from, to: p.dataset.to, box: box(p)};
    }),
    disks: all("svg.rack g.bar.disk").map(function (g) {
      return {node: g.closest("g.node").dataset.hostname, requested_gib: parseFloat(g.dataset.requestedGib),
              size_gib: parseFloat(g.dataset.sizeGib), track: box(g.querySelector(".track")),
              segments: all("rect.segment", g).map(function (s) {
                return {volume: s.dataset.volume, gib: parseFloat(s.dataset.gib), box: box(s)};
              }),
              chips: all("g.chip.volume", g).map(function (c) { return c.dataset.volume; })};
    }),
    hosts: all("svg.rack g.chip.host").map(function (c) {
      return {host: c.dataset.host, node: c.closest("g.node").dataset.hostname, box: box(c.querySelector(".frame"))};
    })
  };
  document.getElementById("layout-check").textContent = JSON.stringify(out);
})();
"""


def render_html(plan: dict[str, Any]) -> str:
    """A self-contained page: the SVG inline, the problems under it, and a layout self-report
    (`<pre id="layout-check">`, hidden: every box's rendered rectangle, for tests and debugging)."""
    problems = plan.get("problems", [])
    items = "".join(
        f'<li class="{_t(p.get("severity"))}"><b>{_t(p.get("severity"))}</b> '
        f"[{_t(p.get('check'))}] {_t(p.get('message'))}</li>"
        for p in problems
    )
    problem_html = f"<h2>Problems</h2><ul>{items}</ul>" if problems else "<p>No problems.</p>"
    stack = _t(plan.get("stack", ""))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>Rack plan: {stack}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<style>"
        f"body{{margin:0;padding:0;background:#f8fafc;color:#111827;font-family:{FONT}}}"
        "main{padding:0 0 24px 0}"
        "section{margin:0 24px;font-size:13px;max-width:860px}"
        "h2{font-size:15px;margin:4px 0 6px}ul{margin:0;padding-left:18px}"
        "li.error b{color:#b91c1c}li.warning b{color:#b45309}"
        "svg{display:block;max-width:100%;height:auto}"
        "</style></head><body><main>\n"
        f"{render_svg(plan)}"
        f"<section>{problem_html}</section>\n"
        '<pre id="layout-check" hidden></pre>\n'
        f"<script>{_CHECK_SCRIPT}</script>\n"
        "</main></body></html>\n"
    )


def write_picture(plan: dict[str, Any], directory: Path) -> list[Path]:
    """Write `rack.svg` and `rack.html` into `directory` (atomically); return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in (("rack.svg", render_svg(plan)), ("rack.html", render_html(plan))):
        path = directory / name
        write_atomically(path, text)
        out.append(path)
    return out


def write_atomically(path: Path, text: str) -> None:
    """A temporary file per writer, then a rename: concurrent plans never leave half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as f:
        f.write(text)
    os.chmod(f.name, 0o644)  # a picture to share (a temporary file starts as 0600)
    Path(f.name).replace(path)


if __name__ == "__main__":  # pragma: no cover - a convenience: `python -m plan.picture plan.json out/`
    import sys

    for written in write_picture(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])):
        print(written)
