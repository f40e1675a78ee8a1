#!/usr/bin/env bash
# `make preview`: a real `pulumi preview` of a stack with the offline toolchain, no hardware.
#
# The kubeconfig is unknown on a first preview, so every Kubernetes object shows as a create and
# no SSH host is dialled (pulumi-command never connects in preview). The GPU layer needs
# pulumi-resource-docker, which cannot be built from Go modules: unless that plugin is on PATH,
# the preview runs with `homelab:skip-layers: [gpu]` and says so. The user's stack file is never
# modified: the preview runs from a workspace under build/preview whose Pulumi.yaml points `main`
# back at this checkout and whose stack file is a copy (plus the skip, when needed).
#
#   tools/preview.sh [STACK]       (default homelab)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STACK="${1:-homelab}"
# shellcheck source=toolchain/env.sh
. "$ROOT/toolchain/env.sh"
command -v pulumi >/dev/null || { echo "preview: no pulumi CLI: run \`make toolchain\`" >&2; exit 1; }

WS="$ROOT/build/preview"
rm -rf "$WS" && mkdir -p "$WS"
# Same project, program and virtualenv; only the workspace differs.
sed -e "s#^runtime:#main: $ROOT\nruntime:#" -e "s#virtualenv: .venv#virtualenv: $ROOT/.venv#" "$ROOT/Pulumi.yaml" > "$WS/Pulumi.yaml"
cp "$ROOT/Pulumi.$STACK.yaml" "$WS/Pulumi.$STACK.yaml"
skip=""
if ! command -v pulumi-resource-docker >/dev/null; then
  skip="gpu"
fi
if [ -n "$skip" ]; then
  "$ROOT/.venv/bin/python" - "$WS/Pulumi.$STACK.yaml" <<'PY'
import sys, yaml
path = sys.argv[1]
data = yaml.safe_load(open(path))
cfg = data.setdefault("config", {})
layers = set(cfg.get("homelab:skip-layers") or []) | {"gpu"}
cfg["homelab:skip-layers"] = sorted(layers)
open(path, "w").write(yaml.safe_dump(data, sort_keys=False))
PY
  echo "preview: pulumi-resource-docker is not on PATH (not buildable offline): the GPU layer is left out (homelab:skip-layers: [gpu])"
fi

cd "$WS"
pulumi stack select --create "$STACK" --non-interactive >/dev/null
start=$(date +%s)
set +e
pulumi preview --stack "$STACK" --non-interactive --color never --json > "$WS/preview.json" 2> "$WS/preview.err"
rc=$?
set -e
echo "preview: exit $rc in $(( $(date +%s) - start ))s"
if [ $rc -ne 0 ]; then
  tail -n 40 "$WS/preview.err" >&2
  "$ROOT/.venv/bin/python" -c 'import json,sys; d=json.load(open(sys.argv[1])); [print(x.get("diagnosticEvent",{}).get("message","")) for x in d.get("diagnostics",[])]' "$WS/preview.json" 2>/dev/null | tail -n 40 >&2 || true
  exit $rc
fi
# The same stack file through the offline plan: its registrations plus the engine's own Stack
# resource must be exactly what the real preview creates.
(cd "$ROOT" && .venv/bin/python -m plan --config "$WS/Pulumi.$STACK.yaml" --json "$WS/plan.json" --picture "$WS" >/dev/null) || true
"$ROOT/.venv/bin/python" - "$WS/preview.json" "$WS/plan.json" <<'PY'
import json, sys
from collections import Counter
preview = json.load(open(sys.argv[1]))
plan = json.load(open(sys.argv[2]))
summary = preview.get("changeSummary", {})
print("preview summary:", ", ".join(f"{k} {v}" for k, v in sorted(summary.items())))
real = Counter(s["urn"].split("::")[2].split("$")[-1] for s in preview.get("steps", []))
offline = Counter(r["type"] for r in plan["resources"]) + Counter({"pulumi:pulumi:Stack": 1})
diff = {t: (real[t], offline[t]) for t in set(real) | set(offline) if real[t] != offline[t]}
print(f"offline plan: {len(plan['resources'])} resources + the Stack = {sum(offline.values())}; real preview steps: {sum(real.values())}")
if diff:
    print("differences by type (preview, plan):", diff)
    sys.exit(1)
print("preview and offline plan agree type by type")
PY
