"""The rack CA and its serving certificate, checked by real TLS clients against a real TLS server.

The chain is made by the dynamic providers' own `create` (what `pulumi up` runs), for the names
RackCa asks for on the sample rack. A Python `ssl` HTTPS server on 127.0.0.1 serves it; OpenSSL's
`openssl verify`, curl (`--cacert`, `--resolve`/`--connect-to` so each name reaches loopback) and
Python's `ssl` client verify it for every host name the sample stack serves and for the ingress
address. The names are written out here from Pulumi.homelab.yaml (its `domain`, `gitea.host`,
`monitoring.host`, the apps' `host`s, `ingress.address`): the oracle is the stack file, not the
code. Renewal runs the providers' `diff`/`update` with a clock the test sets.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pulumi.dynamic.dynamic as dynamic
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from components.core import certificates
from components.core.certificates import _CaProvider, _ServingProvider
from components.system.rack_ca import CA_VALIDITY_DAYS, RENEW_DAYS, SERVING_VALIDITY_DAYS, serving_names
from rack.loader import Loaded
from tests.components.core.tls_chain import Chain, make_chain, sample_chain, serve, serving_props
from tests.conftest import ROOT
from tests.prereq import need

# Pulumi.homelab.yaml, read by eye: domain, gitea.host, monitoring.host, every app `host`.
DOMAIN = "lab.home.arpa"
HOSTS = [
    "lab.home.arpa",
    "git.lab.home.arpa",
    "grafana.lab.home.arpa",
    "api.lab.home.arpa",
    "auth.lab.home.arpa",
    "social.lab.home.arpa",
    "devotional.lab.home.arpa",
    "gpu.lab.home.arpa",  # dns.records: not routed by Traefik, but under the wildcard all the same
]
INGRESS_ADDRESS = "192.168.10.21"
NOT_COVERED = ["lab.home.arpa.evil.example", "evil.example", "a.git.lab.home.arpa", "home.arpa"]
"""Names the certificate must not be valid for: another domain, two labels deep, the parent."""

T0 = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clients() -> None:
    """The real clients (tests/prereq.py: skipped locally without them, a failure in CI)."""
    need("openssl", "openssl")
    need("curl", "curl")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return sample_chain(tmp_path_factory.mktemp("chain"))


@pytest.fixture(scope="module")
def server(chain: Chain) -> Iterator[int]:
    with serve(chain) as port:
        yield port


def test_the_names_asked_for_are_the_stacks(homelab: Loaded) -> None:
    assert serving_names(homelab.rack) == ([DOMAIN, f"*.{DOMAIN}"], [INGRESS_ADDRESS])


def test_the_certificates_are_what_browsers_want(chain: Chain) -> None:
    ca = x509.load_pem_x509_certificate(chain.ca.read_bytes())
    leaf = x509.load_pem_x509_certificate(chain.cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    # RFC 5280 4.2.1.3/4.2.1.9: a CA signs certificates (keyCertSign) and issues no CA under it
    # (pathLenConstraint 0); a leaf must not sign certificates.
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    ca_usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    leaf_usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ca_usage.critical and ca_usage.value.key_cert_sign and ca_usage.value.crl_sign
    assert leaf_usage.critical and leaf_usage.value.digital_signature and not leaf_usage.value.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in eku
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [DOMAIN, f"*.{DOMAIN}"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(INGRESS_ADDRESS)]
    # Apple refuses TLS server certificates valid longer than 825 days, even under a private CA.
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= timedelta(days=825)
    # the key in the Secret is the certificate's
    key = serialization.load_pem_private_key(chain.key.read_bytes(), password=None)
    assert key.public_key() == leaf.public_key()


def openssl_verify(chain: Chain, *args: str, cert: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = ["openssl", "verify", "-CAfile", str(chain.ca), "-purpose", "sslserver", *args, str(cert or chain.cert)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("host", HOSTS)
def test_openssl_verifies_every_host(chain: Chain, host: str) -> None:
    done = openssl_verify(chain, "-verify_hostname", host)
    assert done.returncode == 0, done.stdout + done.stderr


def test_openssl_verifies_the_ingress_address(chain: Chain) -> None:
    done = openssl_verify(chain, "-verify_ip", INGRESS_ADDRESS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert openssl_verify(chain, "-verify_ip", "192.168.10.22").returncode != 0


@pytest.mark.parametrize("host", NOT_COVERED)
def test_openssl_refuses_other_names(chain: Chain, host: str) -> None:
    done = openssl_verify(chain, "-verify_hostname", host)
    assert done.returncode != 0
    assert "hostname mismatch" in done.stdout + done.stderr


def test_openssl_refuses_the_chain_under_another_ca(chain: Chain, tmp_path: Path, homelab: Loaded) -> None:
    other = make_chain(tmp_path, homelab, datetime.now(UTC))
    done = openssl_verify(chain, "-verify_hostname", HOSTS[1], cert=other.cert)
    assert done.returncode != 0


def curl(chain: Chain, url: str, *args: str, cacert: bool = True) -> subprocess.CompletedProcess[str]:
    trust = ["--cacert", str(chain.ca)] if cacert else []
    command = ["curl", "--silent", "--show-error", "--fail", "--max-time", "10", "--noproxy", "*", *trust, *args, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("host", HOSTS)
def test_curl_trusts_every_host(chain: Chain, server: int, host: str) -> None:
    done = curl(chain, f"https://{host}:{server}/", "--resolve", f"{host}:{server}:127.0.0.1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "rack ok\n"


def test_curl_trusts_the_ingress_address(chain: Chain, server: int) -> None:
    """`https://<ingress address>/` as the browser would open it; `--connect-to` reaches loopback
    while curl checks the certificate against the URL's address."""
    route = f"{INGRESS_ADDRESS}:{server}:127.0.0.1:{server}"
    done = curl(chain, f"https://{INGRESS_ADDRESS}:{server}/", "--connect-to", route)
    assert done.returncode == 0, done.stderr


def test_curl_refuses_a_name_outside_the_certificate(chain: Chain, server: int) -> None:
    host = "a.git.lab.home.arpa"
    done = curl(chain, f"https://{host}:{server}/", "--resolve", f"{host}:{server}:127.0.0.1")
    assert done.returncode == 60, done.stderr  # CURLE_PEER_FAILED_VERIFICATION
    assert "no alternative certificate subject name matches" in done.stderr


def test_curl_refuses_the_rack_without_the_ca(chain: Chain, server: int) -> None:
    """Without the CA, the system store does not trust the chain: the --cacert above is what counts."""
    host = HOSTS[1]
    done = curl(chain, f"https://{host}:{server}/", "--resolve", f"{host}:{server}:127.0.0.1", cacert=False)
    assert done.returncode == 60, done.stderr


def python_handshake(chain: Chain, port: int, server_hostname: str) -> str:
    context = ssl.create_default_context(cafile=str(chain.ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.0\r\nHost: {server_hostname}\r\n\r\n".encode())
        return tls.recv(4096).decode()


@pytest.mark.parametrize("host", [*HOSTS, INGRESS_ADDRESS])
def test_python_ssl_trusts_every_host_and_the_address(chain: Chain, server: int, host: str) -> None:
    assert python_handshake(chain, server, host).startswith("HTTP/1.0 200")


@pytest.mark.parametrize("host", [*NOT_COVERED, "192.168.10.22"])
def test_python_ssl_refuses_other_names(chain: Chain, server: int, host: str) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="match"):
        python_handshake(chain, server, host)


# --- renewal, with a clock the test sets ---------------------------------------------------------


def test_renewal_reissues_the_leaf_in_place_and_keeps_the_ca(tmp_path: Path, homelab: Loaded) -> None:
    chain = make_chain(tmp_path, homelab, T0)
    props = serving_props(chain.ca_outs, serving_names(homelab.rack))
    olds = chain.serving_outs
    expires = certificates.not_after(str(olds["cert_pem"]))
    assert expires == T0 + timedelta(days=SERVING_VALIDITY_DAYS)

    def diff_at(when: datetime) -> dynamic.DiffResult:
        return _ServingProvider(lambda: when).diff("id", olds, props)

    # the same inputs: nothing to do until fewer than RENEW_DAYS remain
    assert diff_at(T0).changes is False
    assert diff_at(expires - timedelta(days=RENEW_DAYS, seconds=1)).changes is False
    due = diff_at(expires - timedelta(days=RENEW_DAYS - 1))
    assert due.changes is True and not due.replaces  # an update: the id and the Secret stay
    # the CA, given its same inputs, has nothing to do at any time
    ca_props = {"common_name": "homelab rack CA (test)", "validity_days": CA_VALIDITY_DAYS}
    assert _CaProvider(lambda: expires).diff("id", chain.ca_outs, ca_props).changes is False

    later = expires - timedelta(days=RENEW_DAYS - 1)
    renewed = _ServingProvider(lambda: later).update("id", olds, props).outs
    assert certificates.not_after(renewed["cert_pem"]) == later + timedelta(days=SERVING_VALIDITY_DAYS)
    assert renewed["private_key_pem"] != olds["private_key_pem"]  # a new key too
    assert renewed["ca_cert_pem"] == chain.ca_outs["cert_pem"]
    # the renewed leaf verifies under the unchanged CA after the old one expired
    (tmp_path / "renewed.pem").write_text(renewed["cert_pem"])
    after_expiry = str(int((expires + timedelta(days=1)).timestamp()))
    assert openssl_verify(chain, "-attime", after_expiry, cert=tmp_path / "renewed.pem").returncode == 0
    assert openssl_verify(chain, "-attime", after_expiry).returncode != 0  # the old one has expired
    # and a diff right after the renewal is clean again
    assert _ServingProvider(lambda: later).diff("id", renewed, props).changes is False


@pytest.mark.parametrize(
    "change",
    [
        {"dns_names": ["example.org", "*.example.org"]},
        {"ip_addresses": ["192.168.10.22"]},
        {"validity_days": 90},
    ],
)
def test_a_new_domain_or_address_reissues_the_leaf_only(
    tmp_path: Path, homelab: Loaded, change: dict[str, object]
) -> None:
    chain = make_chain(tmp_path, homelab, T0)
    props = {**serving_props(chain.ca_outs, serving_names(homelab.rack)), **change}
    result = _ServingProvider(lambda: T0).diff("id", chain.serving_outs, props)
    assert result.changes is True and not result.replaces
    outs = _ServingProvider(lambda: T0).update("id", chain.serving_outs, props).outs
    leaf = x509.load_pem_x509_certificate(outs["cert_pem"].encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    if "dns_names" in change:
        assert san.get_values_for_type(x509.DNSName) == change["dns_names"]
    if "ip_addresses" in change:
        assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == change["ip_addresses"]


def test_only_the_common_name_replaces_the_ca(tmp_path: Path, homelab: Loaded) -> None:
    chain = make_chain(tmp_path, homelab, T0)
    base = {"common_name": "homelab rack CA (test)", "validity_days": CA_VALIDITY_DAYS}
    provider = _CaProvider(lambda: T0)
    assert provider.diff("id", chain.ca_outs, {**base, "validity_days": 30}).changes is False
    renamed = provider.diff("id", chain.ca_outs, {**base, "common_name": "other"})
    assert renamed.changes is True and renamed.replaces == ["common_name"]
    # a new CA is a change for the leaf (reissued under it, in place)
    (tmp_path / "other").mkdir()
    other = make_chain(tmp_path / "other", homelab, T0)
    props = serving_props(other.ca_outs, serving_names(homelab.rack))
    result = _ServingProvider(lambda: T0).diff("id", chain.serving_outs, props)
    assert result.changes is True and not result.replaces


# --- the providers' pickle path ------------------------------------------------------------------

STATE_PICKLES = (
    "gASVMwAAAAAAAACMHGNvbXBvbmVudHMuY29yZS5jZXJ0aWZpY2F0ZXOUjAtfQ2FQcm92aWRlcpSTlCmBlC4=",
    "gASVOAAAAAAAAACMHGNvbXBvbmVudHMuY29yZS5jZXJ0aWZpY2F0ZXOUjBBfU2VydmluZ1Byb3ZpZGVylJOUKYGULg==",
)
"""`__provider` of the CA and the serving certificate as `pulumi up` stores them (pickled by
reference, so any process that imports the module unpickles them)."""


def test_the_providers_pickle_by_reference_to_their_module() -> None:
    """The state holds each provider pickled by reference to `components.core.certificates`; a
    fresh interpreter (as the dynamic provider host) unpickles it and issues a chain."""
    ca_pickle = dynamic.serialize_provider(_CaProvider())
    serving_pickle = dynamic.serialize_provider(_ServingProvider())
    # What the first stacks hold: a change here is a changed `__provider` input on every stack.
    assert (ca_pickle, serving_pickle) == STATE_PICKLES
    for pickled, name in ((ca_pickle, b"_CaProvider"), (serving_pickle, b"_ServingProvider")):
        raw = base64.b64decode(pickled)
        # by reference to the module and class, with no code and no instance state inside
        assert raw.count(b"components.core.certificates") == 1 and name in raw and raw.endswith(b")\x81\x94.")
    script = (
        "import base64, dill\n"
        f"ca = dill.loads(base64.b64decode({ca_pickle!r}))\n"
        f"leaf = dill.loads(base64.b64decode({serving_pickle!r}))\n"
        "c = ca.create({'common_name': 'x', 'validity_days': 10}).outs\n"
        "props = {'ca_cert_pem': c['cert_pem'], 'ca_private_key_pem': c['private_key_pem'],\n"
        "         'dns_names': ['a.example'], 'ip_addresses': [], 'validity_days': 5, 'renew_days': 1}\n"
        "print(leaf.create(props).outs['cert_pem'].splitlines()[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "-----BEGIN CERTIFICATE-----"


def test_openssl_shows_the_subject_docs_trust_md_quotes(chain: Chain) -> None:
    done = subprocess.run(
        ["openssl", "x509", "-in", str(chain.ca), "-noout", "-subject"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "subject=O = homelab, CN = homelab rack CA (test)"
    assert "`O = homelab, CN = homelab rack CA (<stack>)`" in (ROOT / "docs" / "trust.md").read_text()
