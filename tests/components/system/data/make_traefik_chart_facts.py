"""Regenerate traefik_chart_facts.json from a clone of github.com/traefik/traefik-helm-chart.

    git clone https://github.com/traefik/traefik-helm-chart /tmp/traefik-helm-chart
    python tests/components/system/data/make_traefik_chart_facts.py /tmp/traefik-helm-chart

Not run by the tests: the JSON it writes is the recorded fact, each chart with the tag and
commit it was read from. For every chart version k3s bundles (see CHARTS):
- `values`: the default of each values path the program's HelmChartConfig sets or relies on,
  read from `traefik/values.yaml` (absent: the key is not in the chart's values);
- `schema`: the part of `traefik/values.schema.json` (charts >= 34) that validates those paths,
  with each level's `additionalProperties` (39+ refuse unknown top-level keys);
- `redirect_key` / `redirect_args`: how the chart spells its own HTTP->HTTPS redirect option and
  the Traefik flags its pod template renders from it (`traefik/templates/_podtemplate.tpl`);
- `tlsstore_template`: the chart's `traefik/templates/tlsstore.yaml` (how `tlsStore` values
  become TLSStore objects), and `tlsstore_spec_schema`: the `spec` schema of the TLSStore CRD the
  chart ships (`traefik/crds/traefik.io_tlsstores.yaml`, the version the template writes).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

CHARTS: dict[str, str] = {
    "27.0.2": "k3s v1.31 (Traefik 2.11): k3s-io/k3s#10939 'Bump traefik to chart 27.0.2'",
    "34.2.0": "k3s v1.32 (Traefik 3): bundled as traefik-34.2.1+up34.2.0",
    "37.1.2": "k3s v1.33/v1.34, late 2025 (Traefik 3.5)",
    "38.0.2": "k3s, early 2026 (Traefik 3.6): bundled as traefik-38.0.201+up38.0.2",
    "39.0.7": "k3s v1.33-v1.36, spring 2026 (Traefik 3.6): bundled as traefik-39.0.701+up39.0.7",
    "40.1.0": "k3s v1.33.13+k3s2, v1.35.7+k3s1, v1.36.3+k3s1 and later ('This release upgrades Traefik "
    "chart to v40.x', release notes; bundled as traefik-40.1.3/40.1.4+up40.1.0, Traefik 3.7)",
    "41.3.0": "the newest chart (k3s-io/k3s#14605: chart bump for k3s v1.37+)",
}
"""Chart version -> which k3s releases bundle it (k3s labels its builds `<x>.<y>.<z>0N+up<x>.<y>.<z>`)."""

PATHS = [
    "additionalArguments",
    "affinity",
    "tolerations",
    "resources",
    "providers.kubernetesIngress.publishedService.enabled",
    "ports.websecure.exposedPort",
    "ports.web.exposedPort",
    "tlsStore",
]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def lookup(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return "<absent>"
        node = node[key]
    return node


def reduce(schema: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """The schema along `paths`: each object level keeps its type and additionalProperties."""
    out: dict[str, Any] = {k: schema[k] for k in ("type", "additionalProperties") if k in schema}
    children: dict[str, list[str]] = {}
    for path in paths:
        head, _, rest = path.partition(".")
        children.setdefault(head, [])
        if rest:
            children[head].append(rest)
    props = schema.get("properties", {})
    out["properties"] = {}
    for head, rests in children.items():
        if head in props:
            out["properties"][head] = reduce(props[head], rests) if rests else props[head]
    return out


def main(repo: Path) -> None:
    facts: dict[str, Any] = {}
    for version, bundled in CHARTS.items():
        tag = f"v{version}"
        commit = git(repo, "rev-list", "-n1", tag).strip()
        values = yaml.safe_load(git(repo, "show", f"{tag}:traefik/values.yaml"))
        chart = yaml.safe_load(git(repo, "show", f"{tag}:traefik/Chart.yaml"))
        template = git(repo, "show", f"{tag}:traefik/templates/_podtemplate.tpl")
        files = git(repo, "ls-tree", "-r", "--name-only", tag, "traefik").split()
        schema = None
        if "traefik/values.schema.json" in files:
            full = json.loads(git(repo, "show", f"{tag}:traefik/values.schema.json"))
            schema = reduce(full, [p for p in PATHS if not p.startswith("ports.")])
        found = re.findall(r'- "(--[^"]*redirections\.entryPoint[^"]*)"', template)
        args = sorted({m.strip().strip('"') for m in found})
        if "redirectTo syntax has been removed" in template or "$config.redirections" in template:
            key = "ports.<name>.redirections.entryPoint"
        elif "(.redirections).entryPoint" in template:
            key = "ports.<name>.http.redirections.entryPoint"
        else:
            key = "ports.<name>.redirectTo"
        tlsstore = git(repo, "show", f"{tag}:traefik/templates/tlsstore.yaml")
        api_version = re.search(r"^apiVersion: (\S+)$", tlsstore, re.M)
        assert api_version is not None, tag
        group, _, served = api_version.group(1).partition("/")
        crd = yaml.safe_load(git(repo, "show", f"{tag}:traefik/crds/{group}_tlsstores.yaml"))
        (crd_version,) = [v for v in crd["spec"]["versions"] if v["name"] == served]
        facts[version] = {
            "source": f"https://github.com/traefik/traefik-helm-chart/tree/{tag}/traefik",
            "commit": commit,
            "appVersion": chart["appVersion"],
            "bundled_by": bundled,
            "values": {p: lookup(values, p) for p in PATHS},
            "schema": schema,
            "redirect_key": key,
            "redirect_args": args,
            "tlsstore_template": tlsstore,
            "tlsstore_spec_schema": crd_version["schema"]["openAPIV3Schema"]["properties"]["spec"],
        }
    out = Path(__file__).with_name("traefik_chart_facts.json")
    out.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
