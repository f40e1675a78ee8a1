"""The README's config reference, generated from the config models. Creates nothing.

`config_reference()` walks `Rack` and returns one markdown table row per key path
(`rack.nodes[].address`, kebab-case as the YAML spells it) with its type, default and the
field's docstring; the keys beside the rack (secrets, options) come first.
`python -m rack.reference` prints it for pasting between the README's
`<!-- config-reference:start -->` / `<!-- config-reference:end -->` markers, and a test keeps the
two equal.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from rack.config import Rack
from rack.loader import OPTION_KEYS, PROJECT, RACK_KEY, SECRET_KEYS, SKIPPABLE_LAYERS

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"

_VALIDATOR_NAMES = {
    "ipv4": "IPv4 address",
    "cidr": "IPv4 CIDR",
    "cpu": "CPU quantity",
    "memory": "byte quantity",
    "k3s_version": "k3s version",
    "host_key": "SSH host key",
    "abs_path": "absolute path",
    "cron": "cron schedule",
    "image": "image reference",
}
"""Readable names of the value validators in rack/config.py (others: the function's name)."""

_PLUMBING = {"to_str", "version_text"}
"""Before-validators that only coerce YAML's reading of a value; they name no type."""


def _validator_name(meta: Any) -> str | None:
    func = getattr(meta, "func", None)
    if func is None or not callable(func):
        return None
    name = getattr(func, "__name__", "").strip("_")
    if not name or name in _PLUMBING or name == "<lambda>":
        return None
    return _VALIDATOR_NAMES.get(name, name.replace("_", " "))


def _constraints(metadata: list[Any]) -> str:
    low = high = None
    parts = []
    for meta in metadata:
        if isinstance(meta, annotated_types.Ge):
            low = meta.ge
        elif isinstance(meta, annotated_types.Le):
            high = meta.le
        elif isinstance(meta, annotated_types.MinLen) and meta.min_length:
            parts.append(f"at least {meta.min_length}")
        elif isinstance(meta, annotated_types.MaxLen):
            parts.append(f"at most {meta.max_length}")
        elif getattr(meta, "pattern", None):
            parts.append(f"matching `{meta.pattern}`")
    if low is not None and high is not None:
        parts.insert(0, f"{low}–{high}")
    elif low is not None:
        parts.insert(0, f"≥ {low}")
    elif high is not None:
        parts.insert(0, f"≤ {high}")
    return f" ({', '.join(parts)})" if parts else ""


def type_name(tp: Any, metadata: list[Any] | None = None) -> str:
    """A short human name of an annotation: `hostname`, `list of IPv4 address`, `integer (1-65535)`."""
    metadata = list(metadata or [])
    origin = typing.get_origin(tp)
    if origin is Annotated:
        base, *extra = typing.get_args(tp)
        flat = [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
        return type_name(base, flat + metadata)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(type_name(a, metadata if len(args) == 1 else None) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(f"`{v}`" for v in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"list of {type_name(item)}{_constraints(metadata)}"
    if origin is dict:
        key, value = typing.get_args(tp)
        return f"map of {type_name(key)} to {type_name(value)}"
    named = [n for n in (_validator_name(m) for m in metadata) if n]
    if named:
        return named[-1]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(f"`{m.value}`" for m in tp)
    if tp is IPv4Address:
        return "IPv4 address"
    if tp is IPv4Network:
        return "IPv4 CIDR"
    if tp is bool:
        return "boolean"
    if tp is int:
        return "integer" + _constraints(metadata)
    if tp is float:
        return "number" + _constraints(metadata)
    if tp is str:
        return "string" + _constraints(metadata)
    return getattr(tp, "__name__", str(tp))


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, list):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_plain(k)}: {_plain(v)}" for k, v in value.items()) + "}"
    return str(value)


def default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True, validated_data={})
    if value is None:
        return "—"
    if isinstance(value, BaseModel):
        return "(keys below)"
    return f"`{_plain(value)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _models_in(tp: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    """The models a field holds and the path suffix to reach them: `""`, `"[]"` or `".<key>"`."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        yield from _models_in(typing.get_args(tp)[0])
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            yield from _models_in(arg)
    elif origin is list:
        for suffix, model in _models_in(typing.get_args(tp)[0]):
            yield "[]" + suffix, model
    elif origin is dict:
        for suffix, model in _models_in(typing.get_args(tp)[1]):
            yield ".<key>" + suffix, model
    elif isinstance(tp, type) and issubclass(tp, BaseModel):
        yield "", tp


def rows(model: type[BaseModel] = Rack, path: str = "rack") -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, description) for every key under `path`, depth first in field order."""
    for name, info in model.model_fields.items():
        key = f"{path}.{info.alias or name}"
        yield key, type_name(info.annotation, info.metadata), default_text(info), info.description or ""
        for suffix, inner in _models_in(info.annotation):
            yield from rows(inner, key + suffix)


def _beside_the_rack() -> Iterator[tuple[str, str, str, str]]:
    yield f"{PROJECT}:{RACK_KEY}", "mapping", "required", "The rack: every `rack.*` key below."
    for key, description in SECRET_KEYS.items():
        yield (
            f"{PROJECT}:{key}",
            "secret (`{secure: ...}`)",
            "—",
            f"`pulumi config set --secret {PROJECT}:{key}`: {description}.",
        )
    layers = ", ".join(f"`{layer}`" for layer in SKIPPABLE_LAYERS)
    kinds = {
        "skip-layers": (f"list of {layers}", "`[]`"),
    }
    for key, description in OPTION_KEYS.items():
        kind, default = kinds[key]
        yield (f"{PROJECT}:{key}", kind, default, description[:1].upper() + description[1:] + ".")


def config_reference() -> str:
    """The markdown table of every config key (no trailing newline)."""
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, kind, default, description in [*_beside_the_rack(), *rows()]:
        lines.append(f"| `{key}` | {_cell(kind)} | {_cell(default)} | {_cell(description)} |")
    return "\n".join(lines)


def main() -> None:
    print(config_reference())


if __name__ == "__main__":
    main()
