"""GeneratedSshKey: an ed25519 SSH key pair made once, on the first `pulumi up`, kept in state.

Creates one `pulumi.dynamic.Resource` whose output `private_key` is a secret and `public_key`
is not (it goes into the other side's `authorized_keys`). The pair is made in the provider's
`create` by OpenSSH's own `ssh-keygen` (the machine running Pulumi has OpenSSH's client: the
README's prerequisite), in a private temporary directory that is removed at once; never at
preview, never in the program. Stable across runs (no diff unless the comment changes), and
replaced by a user-supplied private key when one is given (then no public key is known here).
"""

from __future__ import annotations

import secrets as _secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi.dynamic as dynamic


def generate(comment: str) -> tuple[str, str]:
    """(private key, public key) of a new ed25519 pair, OpenSSH formats."""
    with tempfile.TemporaryDirectory(prefix="hl-key-") as tmp:
        path = Path(tmp) / "key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
        return path.read_text(), path.with_suffix(".pub").read_text().strip()


class _KeyProvider(dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        private, public = generate(str(props["comment"]))
        outs = {"comment": props["comment"], "private_key": private, "public_key": public}
        return dynamic.CreateResult(id_=_secrets.token_hex(8), outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        changed = olds.get("comment") != news.get("comment")
        return dynamic.DiffResult(changes=changed, replaces=["comment"] if changed else [], delete_before_replace=False)


class _GeneratedKey(dynamic.Resource):
    private_key: pulumi.Output[str]
    public_key: pulumi.Output[str]

    def __init__(self, name: str, comment: str, opts: pulumi.ResourceOptions):
        props = {"comment": comment, "private_key": None, "public_key": None}
        super().__init__(_KeyProvider(), name, props, opts)


@dataclass(frozen=True, kw_only=True)
class GeneratedSshKeyArgs:
    comment: str
    """The key's comment (shows in the other side's authorized_keys)."""
    override: pulumi.Input[str] | None = None
    """A user-supplied private key (a secret); when set nothing is generated."""


class GeneratedSshKey(pulumi.ComponentResource):
    private_key: pulumi.Output[str]
    """The private key (always a Pulumi secret)."""
    public_key: pulumi.Output[str] | None
    """Its public half for `authorized_keys` (None when the user supplied the private key)."""

    def __init__(self, name: str, args: GeneratedSshKeyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:secrets:GeneratedSshKey", name, None, opts)
        if args.override is not None:
            self.private_key = pulumi.Output.secret(args.override)
            self.public_key = None
        else:
            key = _GeneratedKey(
                f"{name}-value",
                args.comment,
                pulumi.ResourceOptions(parent=self, additional_secret_outputs=["private_key"]),
            )
            self.private_key = pulumi.Output.secret(key.private_key)
            self.public_key = key.public_key
        self.register_outputs({"public_key": self.public_key})
