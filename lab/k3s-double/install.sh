#!/bin/sh
# install.sh of the k3s-double: a TEST DOUBLE of k3s' install script, air-gap path only.
#
# Honours what the program passes the real installer: INSTALL_K3S_SKIP_DOWNLOAD=true (the
# binary was copied to $INSTALL_K3S_BIN_DIR/k3s beforehand), INSTALL_K3S_BIN_DIR,
# INSTALL_K3S_EXEC (server | agent) and INSTALL_K3S_VERSION. Like the real one it writes a
# systemd unit (k3s.service / k3s-agent.service: Type=notify, Restart=always, as upstream's
# install.sh writes them) and an uninstall script into the bin dir, then `systemctl daemon-reload`,
# `enable` and `restart`: a start that fails (wrong token, unknown config key, ...) fails the
# install, as `systemctl restart` of a notify unit does. On a host that runs no systemd (the
# directory-rooted hosts of tests/real/ssh: /run/systemd/system absent, sd_booted()) the double
# has no supervisor and "starting the service" runs it once in the foreground.
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

SYSTEMD=no
[ -n "$ROOT" ] || [ ! -d /run/systemd/system ] || SYSTEMD=yes
UNIT="$ROOT/etc/systemd/system/$SVC.service"
mkdir -p "$ROOT/etc/systemd/system"
# Upstream's unit (install.sh create_systemd_service_file), less the modprobe ExecStartPre lines
# (no kernel modules in the lab's containers).
cat >"$UNIT" <<UNIT_FILE
[Unit]
Description=Lightweight Kubernetes (k3s-double)
Documentation=https://k3s.io
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-/etc/systemd/system/$SVC.service.env
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStart=$BIN/k3s $EXEC
UNIT_FILE

if [ -f "$ROOT/.k3s-double-fail-install" ]; then
  rm -f "$ROOT/.k3s-double-fail-install"
  fatal "injected failure half-way through install.sh"
fi

cat >"$BIN/$UNINSTALL" <<UNINSTALL
#!/bin/sh
# k3s-double uninstall script (written by the double's install.sh)
set -eu
if [ '$SYSTEMD' = yes ]; then
  systemctl stop '$SVC' || true
  systemctl disable '$SVC' || true
  systemctl reset-failed '$SVC' 2>/dev/null || true
fi
# The lab: delete this host's Node from the API server (no-op elsewhere, and when already gone).
if [ -x '$BIN/k3s' ]; then '$BIN/k3s' double-unregister; fi
rm -f '$BIN/k3s'
if [ -f '$ROOT/.k3s-double-fail-uninstall' ]; then
  rm -f '$ROOT/.k3s-double-fail-uninstall'
  echo "[k3s-double uninstall] injected failure half-way" >&2
  exit 1
fi
rm -rf '$ROOT/etc/rancher/k3s' '$ROOT/var/lib/rancher/k3s' '$UNIT'
if [ '$SYSTEMD' = yes ]; then systemctl daemon-reload; fi
rm -f '$BIN/$UNINSTALL'
UNINSTALL
chmod 0755 "$BIN/$UNINSTALL"

if [ "$SYSTEMD" = yes ]; then
  info "systemd: Enabling $SVC unit"
  systemctl daemon-reload
  systemctl enable "$SVC" >/dev/null 2>&1
  info "systemd: Starting $SVC"
  systemctl restart "$SVC"
else
  info "Starting $SVC (no init system: one run of '$BIN/k3s $CMD')"
  "$BIN/k3s" "$CMD"
fi
