"""The request head lab/k3s-supervisor.py sends the API server (pure): the client's identity is
the verified certificate's, never a header the client wrote, and each proxied request gets its own
upstream connection unless the client upgrades it. The whole listener runs against a real API
server in tests/real/lab/test_lab_smoke.py."""

from __future__ import annotations

from types import ModuleType

from tests.lab import lab_script


def _supervisor() -> ModuleType:
    return lab_script("k3s-supervisor.py")


# As Python's ssl module reports a verified client certificate (SSLSocket.getpeercert()).
ADMIN = {"subject": ((("organizationName", "system:masters"),), (("commonName", "lab-admin"),))}
NODE = {
    "subject": (
        (("organizationName", "system:nodes"),),
        (("organizationName", "lab:extra"),),
        (("commonName", "system:node:lab-gen-1"),),
    )
}


def _headers(head: bytes) -> list[str]:
    text = head.decode("latin-1")
    assert text.endswith("\r\n\r\n")
    return text[:-4].split("\r\n")


def test_a_certificate_s_identity_replaces_what_the_client_claims() -> None:
    lines = [
        "GET /api/v1/secrets HTTP/1.1",
        "Host: 10.77.0.11:6443",
        "X-Remote-User: lab-admin",
        "x-remote-group: system:masters",
        "X-Remote-Extra-Scopes: all",
        "Accept: application/json",
    ]
    supervisor = _supervisor()
    sent = _headers(supervisor.rewrite_head(lines, supervisor.identity_headers(NODE)))
    assert sent == [
        "GET /api/v1/secrets HTTP/1.1",
        "Host: 10.77.0.11:6443",
        "Accept: application/json",
        "X-Remote-User: system:node:lab-gen-1",
        "X-Remote-Group: system:nodes",
        "X-Remote-Group: lab:extra",
        "Connection: close",
    ]


def test_without_a_certificate_no_identity_is_asserted() -> None:
    lines = ["GET /version HTTP/1.1", "Authorization: Bearer abc", "X-Remote-User: lab-admin", "Connection: keep-alive"]
    supervisor = _supervisor()
    assert supervisor.identity_headers(None) == supervisor.identity_headers({}) == []
    sent = _headers(supervisor.rewrite_head(lines, supervisor.identity_headers(None)))
    assert sent == ["GET /version HTTP/1.1", "Authorization: Bearer abc", "Connection: close"]


def test_an_upgrade_keeps_its_connection() -> None:
    lines = [
        "GET /api/v1/namespaces/x/pods/p/exec HTTP/1.1",
        "Connection: Upgrade",
        "Upgrade: websocket",
    ]
    supervisor = _supervisor()
    sent = _headers(supervisor.rewrite_head(lines, supervisor.identity_headers(ADMIN)))
    assert sent[-1] == "Connection: Upgrade"
    assert "Upgrade: websocket" in sent
    assert "X-Remote-User: lab-admin" in sent and "X-Remote-Group: system:masters" in sent
    assert "Connection: close" not in sent
