"""RackCa's wiring under mocks: the CA and the serving certificate as dynamic resources whose keys
are secret outputs, the kube-system TLS Secret Traefik's default TLSStore names, the CA in every
node's trust store, and the stack output. Expected values are the stack file's (Pulumi.homelab.yaml,
read by eye) and the chart's own TLSStore template (traefik_chart_facts.json)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import pulumi
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pulumi.runtime import mocks as _mocks

import stacks.composition as composition
from components.core.trust import RACK_CA_PATH, trust_script, untrust_script
from components.metal.k3s_scripts import remote_command
from components.system import RackCa, RackCaArgs, new_rack_ca
from plan.engine import Recording, RecordingMonitor
from rack.loader import Loaded
from stacks.metal import build_metal
from stacks.system import build_system
from tests.components.core.dynamic_mocks import ProviderRunningMocks

NODES = ["rack-cp-1", "rack-db-1", "rack-lab-1", "rack-pi-1", "rack-pi-2"]
"""rack.nodes of Pulumi.homelab.yaml."""
DYNAMIC = "pulumi-python:dynamic:Resource"


@pytest.fixture
def system(record: Callable[..., Recording], homelab: Loaded) -> Recording:
    return record(lambda: build_system(homelab, build_metal(homelab), new_rack_ca()))


def test_the_ca_and_the_leaf_keep_their_keys_secret(system: Recording) -> None:
    ca, leaf = system.by_name("rack-ca-ca"), system.by_name("rack-ca-serving")
    assert ca.type == leaf.type == DYNAMIC
    assert ca.additional_secret_outputs == ["private_key_pem"]
    assert leaf.additional_secret_outputs == ["private_key_pem"]
    assert ca.inputs["common_name"] == "homelab rack CA (homelab)"  # the stack's name, not the domain
    assert "ca_private_key_pem" in leaf.secret_paths  # the CA's key reaches the leaf as a secret
    assert leaf.inputs["dns_names"] == ["lab.home.arpa", "*.lab.home.arpa"]
    assert leaf.inputs["ip_addresses"] == ["192.168.10.21"]  # ingress.address
    assert ca.urn in leaf.depends_on


def test_the_tls_secret_is_traefiks_default_certificate(system: Recording) -> None:
    secret = system.by_name("rack-ca-secret")
    assert secret.type == "kubernetes:core/v1:Secret"
    assert secret.inputs["type"] == "kubernetes.io/tls"
    assert secret.secret_paths == ["data"] and secret.redacted["data"] == "[secret]"
    assert {"data", "stringData"} <= set(secret.additional_secret_outputs)
    name, namespace = secret.inputs["metadata"]["name"], secret.inputs["metadata"]["namespace"]
    assert namespace == "kube-system"
    hcc = system.by_name("traefik-helmchartconfig")
    values = yaml.safe_load(hcc.inputs["spec"]["valuesContent"])
    # The chart renders `tlsStore.<name>` as TLSStore <name> in its own namespace (kube-system)
    # with `spec` = the value: the default store, naming our Secret there.
    assert values["tlsStore"] == {"default": {"defaultCertificate": {"secretName": name}}}
    assert hcc.inputs["metadata"]["namespace"] == namespace
    assert secret.urn in hcc.depends_on  # Traefik never looks for a Secret that is not there yet


def test_every_node_trusts_the_ca(system: Recording) -> None:
    commands = {r.name: r for r in system.of_type("command:remote:Command") if r.name.startswith("rack-ca-trust-")}
    assert sorted(commands) == [f"rack-ca-trust-{n}" for n in NODES]
    ca = system.by_name("rack-ca-ca")
    for hostname in NODES:
        command = commands[f"rack-ca-trust-{hostname}"]
        # user pi (rack.ssh.user): through sudo
        assert command.inputs["create"] == remote_command(trust_script(), user="pi")
        assert command.inputs["update"] == command.inputs["create"]
        assert command.inputs["delete"] == remote_command(untrust_script(), user="pi")
        assert RACK_CA_PATH in command.inputs["create"] and "update-ca-certificates" in command.inputs["create"]
        assert command.inputs["create"].startswith("sudo -n bash -c ")
        # the certificate on stdin: a new CA is an update, never a replacement (which would run
        # the old delete after the new create and leave the node without the CA)
        assert "triggers" not in command.inputs
        assert ca.urn in command.depends_on
        assert command.inputs["connection"]["host"] in {
            "192.168.10.11",
            "192.168.10.21",
            "192.168.10.22",
            "192.168.10.31",
            "192.168.10.41",
        }
        assert any(f"k3s-{hostname}" in urn for urn in command.depends_on)  # after the node's bootstrap


def test_the_secret_holds_the_leaf_and_its_key(record: Callable[..., Recording], homelab: Loaded) -> None:
    """With the providers run (as `up` runs them): the Secret's data is the serving certificate
    and its own key, signed by the CA, and the CA's key is in no Kubernetes object."""
    mocks = ProviderRunningMocks()
    rec = record(lambda: RackCa("rack-ca", RackCaArgs(rack=homelab.rack, ca=new_rack_ca())), mocks=mocks, preview=False)
    data = rec.by_name("rack-ca-secret").inputs["data"]
    cert_pem = base64.b64decode(data["tls.crt"]).decode()
    key_pem = base64.b64decode(data["tls.key"]).decode()
    created = mocks.created["rack-ca-serving"]
    assert cert_pem == created["cert_pem"] and key_pem == created["private_key_pem"]
    assert "ca_private_key_pem" not in created  # the CA's key is the leaf's input, not kept in its outputs
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert key.public_key() == cert.public_key()
    ca_cert = x509.load_pem_x509_certificate(mocks.created["rack-ca-ca"]["cert_pem"].encode())
    cert.verify_directly_issued_by(ca_cert)
    ca_key = mocks.created["rack-ca-ca"]["private_key_pem"]
    kube = [r for r in rec if r.type.startswith("kubernetes:")]
    assert kube and all(ca_key not in repr(r.inputs) for r in kube)
    assert all(base64.b64encode(ca_key.encode()).decode() not in repr(r.inputs) for r in kube)


@pytest.fixture
def running() -> Iterator[ProviderRunningMocks]:
    mocks = ProviderRunningMocks()
    _mocks.set_mocks(mocks, project="homelab", stack="test", preview=False, monitor=RecordingMonitor(mocks))
    yield mocks


@pulumi.runtime.test
def test_the_ca_certificate_is_a_plain_stack_output(
    running: ProviderRunningMocks, homelab: Loaded, monkeypatch: pytest.MonkeyPatch
) -> pulumi.Output[Any]:
    exported: dict[str, Any] = {}
    monkeypatch.setattr(pulumi, "export", lambda name, value: exported.__setitem__(name, value))
    stack = composition.build(homelab)
    composition.export(stack, homelab)
    output = exported["rack_ca_certificate"]

    def check(args: list[Any]) -> None:
        pem, secret = args
        assert secret is False  # public: `pulumi stack output rack_ca_certificate > rack-ca.crt`
        assert pem == running.created["rack-ca-ca"]["cert_pem"]
        cert = x509.load_pem_x509_certificate(pem.encode())
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
        assert "PRIVATE KEY" not in pem

    return pulumi.Output.all(output, pulumi.Output.is_secret(output)).apply(check)  # type: ignore[arg-type]


def test_docs_trust_md_names_what_the_code_does() -> None:
    from components.core.trust import RACK_CA_PATH
    from components.system.rack_ca import CA_VALIDITY_DAYS, RENEW_DAYS, SECRET_NAME, SERVING_VALIDITY_DAYS
    from tests.conftest import ROOT

    doc = (ROOT / "docs" / "trust.md").read_text()
    assert f"`kube-system/{SECRET_NAME}`" in doc and f"`{RACK_CA_PATH}`" in doc
    assert (CA_VALIDITY_DAYS, SERVING_VALIDITY_DAYS, RENEW_DAYS) == (3650, 365, 30)
    assert "| 10 years |" in doc and "1 year; any `pulumi up` within 30 days of the end" in doc
