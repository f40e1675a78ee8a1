#!/usr/bin/env bash
# Proves the offline toolchain works end to end, in a throwaway project under
# a temp dir with its own file backend (nothing in the repo is touched):
#   pulumi version / plugin ls; stack init; preview of a local Command, a
#   kubernetes ConfigMap under an explicit Provider whose kubeconfig is an
#   unknown output, and a Python dynamic resource; then up / no-change
#   preview / destroy of the Command and the dynamic resource.
# Needs a virtualenv with pulumi, pulumi-command and pulumi-kubernetes:
# HOMELAB_SMOKE_VENV, else $REPO/.venv.
set -euo pipefail

# shellcheck source=toolchain/env.sh
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
venv="${HOMELAB_SMOKE_VENV:-$TOOLCHAIN_REPO/.venv}"
"$venv/bin/python" -c 'import pulumi, pulumi_command, pulumi_kubernetes' 2>/dev/null ||
	{ echo "smoke: $venv lacks pulumi/pulumi_command/pulumi_kubernetes (set HOMELAB_SMOKE_VENV)" >&2; exit 1; }

tmp=$(mktemp -d /tmp/homelab-toolchain-smoke.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export PULUMI_HOME="$tmp/home" PULUMI_BACKEND_URL="file://$tmp/state"
mkdir -p "$PULUMI_HOME" "$tmp/state" "$tmp/proj"
cd "$tmp/proj"

cat >Pulumi.yaml <<EOF
name: toolchain-smoke
runtime:
  name: python
  options:
    virtualenv: $venv
EOF
cat >__main__.py <<'EOF'
import pulumi
import pulumi.dynamic as dyn
import pulumi_command as command
import pulumi_kubernetes as k8s

cfg = pulumi.Config()


class EchoProvider(dyn.ResourceProvider):
    def create(self, props):
        return dyn.CreateResult(id_="echo-" + props["value"], outs={"value": props["value"]})


class Echo(dyn.Resource):
    value: pulumi.Output[str]

    def __init__(self, name, value, opts=None):
        super().__init__(EchoProvider(), name, {"value": value}, opts)


hello = command.local.Command(
    "hello",
    create="echo hello from $WHO",
    delete="echo bye",
    environment={"WHO": "pulumi-command"},
)
echo = Echo("echo", hello.stdout)
pulumi.export("hello", hello.stdout)
pulumi.export("echo", echo.value)

if cfg.get_bool("k8s") is not False:
    # Stands in for the kubeconfig a k3s server produces: unknown at preview.
    kubeconfig = command.local.Command("kubeconfig", create="echo not-a-kubeconfig").stdout
    provider = k8s.Provider("lab", kubeconfig=kubeconfig)
    k8s.core.v1.ConfigMap(
        "smoke",
        metadata={"name": "smoke", "namespace": "default"},
        data={"hello": "world"},
        opts=pulumi.ResourceOptions(provider=provider),
    )
EOF

run() { printf '\n$ %s\n' "$*"; "$@"; }
run pulumi version
run pulumi plugin ls
run pulumi stack init smoke
run pulumi preview --non-interactive --diff
run pulumi config set k8s false
run pulumi up --yes --non-interactive --skip-preview
run pulumi stack output --json
run pulumi preview --non-interactive --expect-no-changes
run pulumi destroy --yes --non-interactive --skip-preview
run pulumi stack rm --yes smoke
printf '\nsmoke: ok\n'
