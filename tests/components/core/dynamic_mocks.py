"""Mocks that run the program's dynamic providers, as the dynamic provider host would.

Every other registration is echoed (DefaultMocks). A `pulumi-python:dynamic:Resource` is answered
by unpickling its `__provider` input (as the host unpickles it from the request) and calling the
provider's `create` with the inputs: the outputs are what a real `up` would store (its `outs` and
`__provider`, as the host's `Create` returns them). The only double is the engine around it (no
state, no Diff call).
"""

from __future__ import annotations

import base64
from typing import Any

import dill
import pulumi
import pulumi.runtime.rpc as _rpc
from pulumi.dynamic.dynamic import PROVIDER_KEY

from plan.engine import DefaultMocks

DYNAMIC = "pulumi-python:dynamic:Resource"


SECRET_SIG = _rpc._special_secret_sig
"""The wire marker of a secret value (pulumi's `rpc._special_secret_sig`): the mock monitor hands
secret inputs over still wrapped, as the engine hands them to a provider before unwrapping."""


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict) and SECRET_SIG in value.values() and "value" in value:
        return value["value"]
    return value


class ProviderRunningMocks(DefaultMocks):
    """DefaultMocks, but dynamic resources are created by their own provider."""

    def __init__(self) -> None:
        self.created: dict[str, dict[str, Any]] = {}
        """Per logical name: the outputs the provider's create returned."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if args.typ != DYNAMIC:
            return super().new_resource(args)
        inputs = {k: _unwrap(v) for k, v in args.inputs.items()}
        provider = dill.loads(base64.b64decode(inputs[PROVIDER_KEY]))
        result = provider.create(inputs)
        self.created[args.name] = dict(result.outs)
        # As the host's Create answers (pulumi/dynamic/__main__.py): the provider's outs and the
        # pickled provider, nothing echoed from the inputs.
        return result.id, {**result.outs, PROVIDER_KEY: inputs[PROVIDER_KEY]}
