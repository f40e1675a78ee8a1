"""Where a node keeps the rack's CA, and the scripts that put it into (and take it out of) the
system trust store of a Debian-family host (Raspberry Pi OS, Debian, Ubuntu).

Creates nothing; `RackCa` (components/system/rack_ca.py) runs the scripts over SSH. containerd
does not read this store for the rack's registry: the metal layer writes its own copy of the CA
for `registries.yaml`'s `tls.ca_file` (`REGISTRY_CA_PATH`, components/metal/k3s_scripts.py).

How Debian's `ca-certificates` works: every `*.crt` under /usr/local/share/ca-certificates is a
local trust anchor; `update-ca-certificates` links it into /etc/ssl/certs and rebuilds
/etc/ssl/certs/ca-certificates.crt, the bundle OpenSSL, curl, Python and Go read.
"""

from __future__ import annotations

import shlex

RACK_CA_NAME = "homelab-rack-ca"
"""The file's stem in the local store (the bundle links it as `<name>.pem`)."""

LOCAL_CA_DIR = "/usr/local/share/ca-certificates"
"""Debian's directory of locally added trust anchors (`update-ca-certificates` reads `*.crt`)."""

RACK_CA_PATH = f"{LOCAL_CA_DIR}/{RACK_CA_NAME}.crt"
"""The rack CA's PEM on every node (readable by all), a trust anchor of the system store."""


def trust_script(path: str = RACK_CA_PATH) -> str:
    """Read a PEM certificate on stdin and make it a trust anchor at `path`; the store is rebuilt
    only when the file's content changed. Its last line says which: `rack CA: installed` or
    `rack CA: unchanged`. Run as root (`remote_command` adds sudo)."""
    q = shlex.quote(path)
    directory = shlex.quote(path.rsplit("/", 1)[0])
    return f"""set -eu
new=$(mktemp)
trap 'rm -f "$new"' EXIT
cat > "$new"
if ! grep -q -- '-----BEGIN CERTIFICATE-----' "$new"; then
  echo "rack CA: stdin is not a PEM certificate" >&2
  exit 1
fi
if [ -f {q} ] && cmp -s "$new" {q}; then
  echo "rack CA: unchanged"
  exit 0
fi
if ! command -v update-ca-certificates >/dev/null 2>&1; then
  echo "rack CA: update-ca-certificates not found: apt-get install ca-certificates" >&2
  exit 1
fi
install -d -m 0755 {directory}
install -m 0644 "$new" {q}
update-ca-certificates
echo "rack CA: installed"
"""


def untrust_script(path: str = RACK_CA_PATH) -> str:
    """Remove the rack CA from the store again (the node left the rack, or the CA part did)."""
    q = shlex.quote(path)
    return f"""set -eu
if [ -f {q} ]; then
  rm -f {q}
  if command -v update-ca-certificates >/dev/null 2>&1; then update-ca-certificates; fi
fi
echo "rack CA: removed"
"""
