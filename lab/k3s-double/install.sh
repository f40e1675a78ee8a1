#!/bin/sh
# install.sh of the k3s-double: a TEST DOUBLE of k3s' install script, air-gap path only.
#
# Honours what the program passes the real installer: INSTALL_K3S_SKIP_DOWNLOAD=true (the
# binary was copied to $INSTALL_K3S_BIN_DIR/k3s beforehand), INSTALL_K3S_BIN_DIR,
# INSTALL_K3S_EXEC (server | agent) and INSTALL_K3S_VERSION. Like the real one it writes a
# service unit and an uninstall script into the bin dir and (re)starts the service; there is no
# init system in the test hosts, so "starting the service" runs the double once.
#
# Fault injection for the convergence tests: if <root>/.k3s-double-fail-install exists, it is
# removed and the script fails half-way (unit written, no uninstall script, service not started).
# <root>/.k3s-double-fail-uninstall does the same to the uninstall script it writes.
set -eu

info() { echo "[k3s-double install.sh] $*"; }
fatal() { echo "[k3s-double install.sh] ERROR: $*" >&2; exit 1; }

[ "${INSTALL_K3S_SKIP_DOWNLOAD:-}" = true ] || fatal "the double only supports the air-gap path (INSTALL_K3S_SKIP_DOWNLOAD=true)"
BIN="${INSTALL_K3S_BIN_DIR:-/usr/local/bin}"
ROOT="${BIN%/usr/local/bin}"
[ "$ROOT" != "$BIN" ] || ROOT=""
EXEC="${INSTALL_K3S_EXEC:-server}"
CMD="${EXEC%% *}"
case "$CMD" in
  server) SVC=k3s; UNINSTALL=k3s-uninstall.sh ;;
  agent) SVC=k3s-agent; UNINSTALL=k3s-agent-uninstall.sh ;;
  *) fatal "INSTALL_K3S_EXEC must start with server or agent, got '$EXEC'" ;;
esac
[ -x "$BIN/k3s" ] || fatal "no executable $BIN/k3s: copy the air-gap binary first"
info "Skipping k3s download and verify"

mkdir -p "$ROOT/etc/systemd/system"
printf '[Unit]\nDescription=k3s-double %s\n[Service]\nExecStart=%s/k3s %s\n' "$SVC" "$BIN" "$EXEC" \
  >"$ROOT/etc/systemd/system/$SVC.service"

if [ -f "$ROOT/.k3s-double-fail-install" ]; then
  rm -f "$ROOT/.k3s-double-fail-install"
  fatal "injected failure half-way through install.sh"
fi

cat >"$BIN/$UNINSTALL" <<UNINSTALL
#!/bin/sh
# k3s-double uninstall script (written by the double's install.sh)
set -eu
# The lab: delete this host's Node from the API server (no-op elsewhere, and when already gone).
if [ -x '$BIN/k3s' ]; then '$BIN/k3s' double-unregister; fi
rm -f '$BIN/k3s'
if [ -f '$ROOT/.k3s-double-fail-uninstall' ]; then
  rm -f '$ROOT/.k3s-double-fail-uninstall'
  echo "[k3s-double uninstall] injected failure half-way" >&2
  exit 1
fi
rm -rf '$ROOT/etc/rancher/k3s' '$ROOT/var/lib/rancher/k3s' '$ROOT/etc/systemd/system/$SVC.service'
rm -f '$BIN/$UNINSTALL'
UNINSTALL
chmod 0755 "$BIN/$UNINSTALL"

info "Starting $SVC (double: one run of '$BIN/k3s $CMD')"
"$BIN/k3s" "$CMD"
