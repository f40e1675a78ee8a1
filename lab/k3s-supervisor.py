"""k3s-supervisor: a TEST DOUBLE of a k3s server's :6443 listener, for the lab.

A k3s server answers one TLS port, 6443, with one router (k3s-io/k3s
pkg/server/handlers/router.go `NewHandler`): `/cacerts` and `/ping` for anyone (the server CA
bundle, the bytes of server-ca.crt (handlers.go `CACerts`); "pong"), and everything it does not
route itself goes to the kube-apiserver's handler, in the same process (`authed.NotFoundHandler =
APIServer(...)`). A joining node's first request is `GET /cacerts` (pkg/clientaccess/token.go
`getCACerts`), and the sha256 of those bytes is what a full token's `K10<hash>` pins.

The lab has one kube-apiserver on its bridge for every server host. This double listens on a
server host's :6443 (inside the host's network namespace), answers `/cacerts` (the cluster CA's
file) and `/ping` itself, and hands every other request to that API server as its front proxy,
so clients see one server as they would on a Pi:

- the client's certificate is verified here against the cluster CA, and its identity (CN as the
  user, each O as a group) is passed as `X-Remote-User`/`X-Remote-Group` on a connection made
  with the front-proxy client certificate (the API server runs with `--requestheader-*`, as k3s'
  own does); `X-Remote-*` headers a client sends are dropped, so nobody names themselves;
- a request without a client certificate (a bearer token, or anonymous) passes as it came, on a
  connection without one;
- one request per upstream connection (`Connection: close` added), the rest of the exchange
  piped as bytes both ways, so watches stream and upgrades (exec, port-forward) work;
- the API server down: the client's connection is closed after its request, as a dead k3s
  drops it.

The supervisor's node-authenticated `/v1-k3s/*` paths are not served (they reach the API server,
which answers 404): the double's joins authenticate against the lab's datastore
(lab/k3s-double/README.md).

    k3s-supervisor.py LISTEN_ADDRESS:PORT UPSTREAM_ADDRESS:PORT PKI_DIR
        PKI_DIR holds lab-up's ca.crt, apiserver.crt/.key (this listener's certificate: the API
        server's own, whose names include every server host) and front-proxy-client.crt/.key.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
from pathlib import Path

MAX_HEAD = 64 * 1024
"""The largest request head accepted (request line and headers)."""
DROPPED = ("x-remote-", "connection:", "proxy-connection:", "keep-alive:")
"""Request headers not passed on (lowercase prefixes): identities only this proxy may assert, and
hop-by-hop connection headers (replaced by its own)."""


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _response(status: str, body: bytes, *, head: bool = False) -> bytes:
    """A whole response; for a HEAD request its headers only (the length still the body's)."""
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + (b"" if head else body)


def identity_headers(peercert: dict | None) -> list[str]:
    """The front-proxy headers for a verified client certificate (none without one)."""
    if not peercert:
        return []
    fields = [pair for rdn in peercert.get("subject", ()) for pair in rdn]
    users = [value for key, value in fields if key == "commonName"]
    if not users:
        return []
    return [f"X-Remote-User: {users[0]}"] + [
        f"X-Remote-Group: {value}" for key, value in fields if key == "organizationName"
    ]


def rewrite_head(lines: list[str], identity: list[str]) -> bytes:
    """The request head as sent upstream: client identity headers replaced, one request per
    connection (`Connection: close`) unless the client asks to upgrade it."""
    headers = [line for line in lines[1:] if not line.lower().startswith(DROPPED)]
    upgrade = any(line.lower().startswith("upgrade:") for line in lines[1:])
    headers += identity
    headers.append("Connection: Upgrade" if upgrade else "Connection: close")
    return ("\r\n".join([lines[0], *headers]) + "\r\n\r\n").encode("latin-1")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


class Supervisor:
    def __init__(self, upstream: tuple[str, int], pki: Path) -> None:
        self.upstream = upstream
        self.cacerts = (pki / "ca.crt").read_bytes()
        self.server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.server_tls.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
        self.server_tls.load_verify_locations(pki / "ca.crt")
        self.server_tls.verify_mode = ssl.CERT_OPTIONAL  # a client certificate, if any, must verify
        self.server_tls.set_alpn_protocols(["http/1.1"])  # bytes are piped: no HTTP/2 framing
        # Upstream: as the front proxy for a client with a certificate; as nobody in particular
        # for the rest, so the API server sees their bearer token, or an anonymous request, as
        # it came (a front-proxy certificate the client CA does not sign would make the API
        # server refuse an anonymous request outright).
        self.as_proxy = ssl.create_default_context(cafile=pki / "ca.crt")
        self.as_proxy.load_cert_chain(pki / "front-proxy-client.crt", pki / "front-proxy-client.key")
        self.as_is = ssl.create_default_context(cafile=pki / "ca.crt")
        for context in (self.as_proxy, self.as_is):
            context.set_alpn_protocols(["http/1.1"])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        path = target.split("?", 1)[0]
        if path in ("/cacerts", "/ping"):  # any method: k3s' mux routes these paths without a method matcher
            body = self.cacerts if path == "/cacerts" else b"pong"
            writer.write(_response("200 OK", body, head=method == "HEAD"))
            await writer.drain()
            return
        identity = identity_headers(writer.get_extra_info("peercert"))
        tls = self.as_proxy if identity else self.as_is
        up_reader, up_writer = await asyncio.wait_for(
            asyncio.open_connection(*self.upstream, ssl=tls, server_hostname=self.upstream[0]), 10
        )
        try:
            up_writer.write(rewrite_head(lines, identity))
            await up_writer.drain()
            to_server = asyncio.ensure_future(_pipe(reader, up_writer))
            to_client = asyncio.ensure_future(_pipe(up_reader, writer))
            await asyncio.wait({to_server, to_client}, return_when=asyncio.FIRST_COMPLETED)
            if not to_client.done():  # the client went away: nothing more to send it
                to_client.cancel()
            else:  # the response is complete (the server closed): the client's side ends too
                to_server.cancel()
            await asyncio.gather(to_server, to_client, return_exceptions=True)
        finally:
            up_writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await up_writer.wait_closed()


async def main(listen: str, upstream: str, pki: str) -> None:
    supervisor = Supervisor(_address(upstream), Path(pki))
    host, port = _address(listen)
    server = await asyncio.start_server(
        supervisor.handle, host, port, ssl=supervisor.server_tls, limit=MAX_HEAD, reuse_address=True
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.rsplit("\n\n", 1)[-1])
    asyncio.run(main(*sys.argv[1:]))
