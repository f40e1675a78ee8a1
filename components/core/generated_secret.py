"""GeneratedSecret: a random credential made once, on the first `pulumi up`, kept as a secret.

Creates one `pulumi.dynamic.Resource` whose output `value` is a secret. The value is made in the
provider's `create` (never at preview, never in the program), is stable across runs (no diff
unless `length` changes) and can be overridden by a user-supplied secret.

Why a dynamic provider and not pulumi-random: pulumi-random cannot be built from Go modules
offline (see the toolchain notes), while dynamic providers run on the Python host we already have.
"""

from __future__ import annotations

import secrets as _secrets
import string
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi.dynamic as dynamic

ALPHABET = string.ascii_letters + string.digits
"""Shell-, URL- and connection-string-safe characters only."""


def generate(length: int) -> str:
    """A random string of `length` characters from ALPHABET (pure but for the randomness)."""
    if length < 16:
        raise ValueError("a generated secret needs at least 16 characters")
    return "".join(_secrets.choice(ALPHABET) for _ in range(length))


class _SecretProvider(dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        value = generate(int(props["length"]))
        return dynamic.CreateResult(id_=_secrets.token_hex(8), outs={"length": props["length"], "value": value})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = olds.get("length") != news.get("length")
        return dynamic.DiffResult(changes=changed, replaces=["length"] if changed else [], delete_before_replace=False)


LEGACY_MODULE = "components.generated_secret"
"""Where the state finds this provider: every GeneratedSecret's `__provider` input and output is
the provider pickled by reference to `<module>._SecretProvider`, and the dynamic provider host
unpickles it from the state on refresh and delete. This module lived there before the layers split;
the name is kept (and made importable by `components/__init__.py`) so that existing stacks keep
their inputs unchanged and their state readable."""
_SecretProvider.__module__ = LEGACY_MODULE


class _GeneratedValue(dynamic.Resource):
    value: pulumi.Output[str]

    def __init__(self, name: str, length: int, opts: pulumi.ResourceOptions):
        super().__init__(_SecretProvider(), name, {"length": length, "value": None}, opts)


@dataclass(frozen=True, kw_only=True)
class GeneratedSecretArgs:
    length: int = 32
    """Characters in the generated value."""
    override: pulumi.Input[str] | None = None
    """A user-supplied secret (from `pulumi config set --secret`); when set nothing is generated."""


class GeneratedSecret(pulumi.ComponentResource):
    value: pulumi.Output[str]
    """The secret value (always a Pulumi secret)."""

    def __init__(self, name: str, args: GeneratedSecretArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:secrets:GeneratedSecret", name, None, opts)
        if args.override is not None:
            self.value = pulumi.Output.secret(args.override)
        else:
            generated = _GeneratedValue(
                f"{name}-value",
                args.length,
                pulumi.ResourceOptions(parent=self, additional_secret_outputs=["value"]),
            )
            self.value = pulumi.Output.secret(generated.value)
        self.register_outputs({})
