"""What the TLS tests share: the rack's chain made by the dynamic providers' own `create`, written
to files, and a real HTTPS server (Python's `ssl` over `http.server`) on 127.0.0.1 serving it."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from components.core.certificates import _CaProvider, _ServingProvider
from components.system.rack_ca import CA_VALIDITY_DAYS, RENEW_DAYS, SERVING_VALIDITY_DAYS, serving_names
from rack.loader import Loaded, StackFile
from tests.conftest import ROOT


@dataclass(frozen=True)
class Chain:
    dir: Path
    ca: Path
    cert: Path
    key: Path
    ca_outs: dict[str, object]
    serving_outs: dict[str, object]


def serving_props(rack_ca: dict[str, object], names: tuple[list[str], list[str]]) -> dict[str, object]:
    """The inputs RackCa gives the serving certificate's provider."""
    return {
        "ca_cert_pem": rack_ca["cert_pem"],
        "ca_private_key_pem": rack_ca["private_key_pem"],
        "dns_names": names[0],
        "ip_addresses": names[1],
        "validity_days": SERVING_VALIDITY_DAYS,
        "renew_days": RENEW_DAYS,
    }


def make_chain(directory: Path, homelab: Loaded, now: datetime) -> Chain:
    clock = lambda: now  # noqa: E731
    ca = _CaProvider(clock).create({"common_name": "homelab rack CA (test)", "validity_days": CA_VALIDITY_DAYS})
    leaf = _ServingProvider(clock).create(serving_props(ca.outs, serving_names(homelab.rack)))
    paths = {"ca": directory / "ca.pem", "cert": directory / "cert.pem", "key": directory / "key.pem"}
    paths["ca"].write_text(ca.outs["cert_pem"])
    paths["cert"].write_text(leaf.outs["cert_pem"])
    paths["key"].write_text(leaf.outs["private_key_pem"])
    return Chain(directory, paths["ca"], paths["cert"], paths["key"], dict(ca.outs), dict(leaf.outs))


def sample_chain(directory: Path) -> Chain:
    """The chain for the sample stack's names (Pulumi.homelab.yaml), issued now: real servers and
    clients check validity against the real clock."""
    return make_chain(directory, StackFile.read(ROOT / "Pulumi.homelab.yaml").load(), datetime.now(UTC))


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"rack ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def serve(chain: Chain) -> Iterator[int]:
    """A real HTTPS server on 127.0.0.1 (a free port) presenting the chain; its port."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile=str(chain.cert), keyfile=str(chain.key))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
