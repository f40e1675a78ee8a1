"""GeneratedSecret's dynamic provider keeps the pickle path existing stacks hold in their state.

Every stack created before the layers split stores `__provider` as the provider pickled by reference
to `components.generated_secret._SecretProvider` (the bytes below are what `pulumi up` wrote then,
read from a plan of the homelab stack at that commit). The dynamic provider host unpickles it on
refresh and delete, and a new pickle that differed would be a changed input on every secret.
"""

from __future__ import annotations

import base64
import subprocess
import sys

import pulumi.dynamic.dynamic as dynamic

from components.core import generated_secret
from tests.conftest import ROOT

STATE_PICKLE = "gASVNgAAAAAAAACMG2NvbXBvbmVudHMuZ2VuZXJhdGVkX3NlY3JldJSMD19TZWNyZXRQcm92aWRlcpSTlCmBlC4="


def test_the_provider_pickles_as_existing_state_holds_it() -> None:
    assert dynamic.serialize_provider(generated_secret._SecretProvider()) == STATE_PICKLE


def test_a_fresh_process_unpickles_the_state_form_and_creates() -> None:
    """As the dynamic provider host does: a new interpreter in the program's directory, nothing
    imported beforehand, the state's `__provider` deserialized and used."""
    script = (
        "import base64, dill\n"
        f"provider = dill.loads(base64.b64decode({STATE_PICKLE!r}))\n"
        "out = provider.create({'length': 20}).outs\n"
        "print(type(provider).__name__, len(out['value']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["_SecretProvider", "20"]
    assert base64.b64decode(STATE_PICKLE).count(b"components.generated_secret") == 1
