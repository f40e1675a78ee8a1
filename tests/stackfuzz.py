"""Hypothesis strategies for hostile stack files, shared by tests/rack/test_fuzz_loader.py (the
loader in-process) and tests/plan/test_fuzz_plan.py (`python -m plan` as a subprocess).

Each strategy draws a `Case`: the bytes of a `Pulumi.<stack>.yaml` and, where the case broke one
key on purpose, the key paths the answer must name. The oracles come from outside the loader:
the committed JSON Schema (`schema/stack.schema.json`: types, ranges, enums, required and closed
objects) and the sample stack's own values; the loader's answer is never the expectation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import yaml
from hypothesis import settings
from hypothesis import strategies as st

from rack.config import format_loc
from rack.loader import MAX_DEPTH
from tests.conftest import ROOT, stack_raw

SCHEMA: dict[str, Any] = json.loads((ROOT / "schema" / "stack.schema.json").read_text())
DEFS: dict[str, Any] = SCHEMA["$defs"]
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "bounded")


def budget(bounded: int) -> int:
    """Examples for one property: `bounded` in `make test`, 25 times that with HYPOTHESIS_PROFILE=long."""
    return bounded * 25 if PROFILE == "long" else bounded


def fuzz_settings(bounded: int, deadline_s: float) -> settings:
    # the profile (tests/conftest.py) fixes the seed; each property its budget and deadline
    return settings(max_examples=budget(bounded), deadline=timedelta(seconds=deadline_s))


@dataclass(frozen=True)
class Case:
    """One stack file to feed the loader, and what its answer must name."""

    text: bytes
    kind: str
    named: tuple[str, ...] = ()
    """Key paths (as the loader prints them, `rack.nodes[0].address`) that must each lead an issue."""
    messages: dict[str, str] = field(default_factory=dict)
    """For some of `named`: a text that issue's message must hold (`unknown key`, `required`)."""
    rack: Any = None
    """The `homelab:rack` value written, when the case is one (for the `pulumi up` path)."""

    def __repr__(self) -> str:
        cut = f"... ({len(self.text)} bytes)" if len(self.text) > 2000 else ""
        return f"Case(kind={self.kind!r}, named={self.named!r}, text={self.text[:2000]!r}{cut})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how Hypothesis prints an example
        printer.text(repr(self))


# --- the schema ---------------------------------------------------------------------------------


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target = DEFS[schema["$ref"].rsplit("/", 1)[-1]]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def members(schema: dict[str, Any]) -> list[dict[str, Any]]:
    schema = resolve(schema)
    if "anyOf" in schema:
        return [m for sub in schema["anyOf"] for m in members(sub)]
    return [schema]


def types_of(schema: dict[str, Any]) -> set[str]:
    out: set[str] = set()
    for m in members(schema):
        if "type" in m:
            out.add(m["type"])
        elif "enum" in m:
            out |= {type(v).__name__.replace("str", "string").replace("int", "integer") for v in m["enum"]}
        elif "const" in m:
            out.add("string" if isinstance(m["const"], str) else "integer")
        else:
            out.add("any")
    return out


def closed_object(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The member that is a model (named properties, nothing else allowed), if any."""
    for m in members(schema):
        if m.get("type") == "object" and "properties" in m and m.get("additionalProperties") is False:
            return m
    return None


def dict_values_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    for m in members(schema):
        if m.get("type") == "object" and isinstance(m.get("additionalProperties"), dict):
            return m["additionalProperties"]  # type: ignore[no-any-return]
    return None


def items_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    for m in members(schema):
        if m.get("type") == "array" and "items" in m:
            return m["items"]  # type: ignore[no-any-return]
    return None


Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class Slot:
    """A place in a rack: its location, its schema, and whether the sample has a value there."""

    loc: Loc
    schema: dict[str, Any]
    present: bool
    parent_required: bool = False


def slots(value: Any, schema: dict[str, Any], loc: Loc = ()) -> Iterator[Slot]:
    """Every value of `value` with its schema, and every optional key the sample leaves out."""
    yield Slot(loc, schema, True)
    model = closed_object(schema)
    if isinstance(value, dict) and model is not None:
        required = set(model.get("required", []))
        for key, sub in model["properties"].items():
            if key in value:
                yield from slots(value[key], sub, (*loc, key))
                if key in required:
                    yield Slot((*loc, key), sub, True, parent_required=True)
            else:
                yield Slot((*loc, key), sub, False)
        return
    values = dict_values_schema(schema)
    if isinstance(value, dict) and values is not None:
        for key, child in value.items():
            yield from slots(child, values, (*loc, key))
        return
    items = items_schema(schema)
    if isinstance(value, list) and items is not None:
        for i, child in enumerate(value):
            yield from slots(child, items, (*loc, i))


RACK_SCHEMA: dict[str, Any] = DEFS["Rack"]
SAMPLES: dict[str, dict[str, Any]] = {name: stack_raw(name) for name in ("homelab", "lab")}
SLOTS: dict[str, list[Slot]] = {name: list(slots(raw, RACK_SCHEMA)) for name, raw in SAMPLES.items()}
KEY_NAMES: list[str] = sorted(
    {k for d in DEFS.values() for k in d.get("properties", {})} | set(SCHEMA["properties"]["config"]["properties"])
)


def valid_value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the schema allows at a scalar slot (the model may still refuse them across keys)."""
    options: list[st.SearchStrategy[Any]] = []
    for m in members(schema):
        if "enum" in m:
            options.append(st.sampled_from(m["enum"]))
        elif "const" in m:
            options.append(st.just(m["const"]))
        elif m.get("type") == "integer":
            options.append(st.integers(m.get("minimum", -(2**40)), m.get("maximum", 2**40)))
        elif m.get("type") == "number":
            options.append(st.floats(m.get("minimum"), m.get("maximum"), allow_nan=False, allow_infinity=False))
        elif m.get("type") == "boolean":
            options.append(st.booleans())
        elif m.get("type") == "null":
            options.append(st.none())
        elif m.get("type") == "string" and m.get("format") == "ipv4":
            options.append(st.ip_addresses(v=4).map(str))
        elif m.get("type") == "string" and m.get("format") == "ipv4network":
            options.append(st.ip_addresses(v=4).map(lambda a: f"{a}/32"))
        elif m.get("type") == "string" and "pattern" in m:
            options.append(st.from_regex(m["pattern"], fullmatch=True))
        elif m.get("type") == "string":
            options.append(st.text(max_size=30))
    if "default" in resolve(schema):
        options.append(st.just(resolve(schema)["default"]))
    return st.one_of(options) if options else st.none()


WORD = "fuzz word"
"""Text that no number, boolean, enum or pattern of the schema accepts."""


def wrong_values(schema: dict[str, Any]) -> list[Any]:
    """Values of a type the schema refuses, and that pydantic's lax mode does not coerce either."""
    allowed = types_of(schema)
    if "any" in allowed:
        return []
    out: list[Any] = []
    if "array" not in allowed:
        out.append([WORD, 1])
    if "object" not in allowed:
        out.append({"x-fuzz": [1, 2]})
    if not allowed & {"string", "array"}:
        out.append(WORD)
    if allowed == {"string"} or allowed == {"string", "null"}:
        enums = [m for m in members(schema) if "enum" in m or "pattern" in m or "format" in m]
        if enums:
            out.append(WORD)  # not a member, does not match the pattern, not an address
    return out


def out_of_range(schema: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for m in members(schema):
        if m.get("type") in ("integer", "number"):
            if "minimum" in m:
                out += [m["minimum"] - 1, -(10**30)]
            if "maximum" in m:
                out += [m["maximum"] + 1, 10**30]
    return out


def set_at(data: Any, loc: Loc, value: Any) -> None:
    for part in loc[:-1]:
        data = data[part]
    data[loc[-1]] = value


def delete_at(data: Any, loc: Loc) -> None:
    for part in loc[:-1]:
        data = data[part]
    del data[loc[-1]]


def get_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        data = data[part]
    return data


def overlaps(a: Loc, b: Loc) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def dump(config: dict[str, Any], flow: bool | None = False) -> bytes:
    return yaml.safe_dump({"config": config}, default_flow_style=flow, allow_unicode=True, sort_keys=False).encode()


@st.composite
def schema_mutations(draw: st.DrawFn, *, only_valid: bool = False) -> Case:
    """The sample rack (homelab or lab) with one to three keys broken the way the schema says is
    wrong: a wrong type, a number out of range, a word outside an enum or pattern, an unknown key
    in a closed object, a required key removed; or (`only_valid`) set to a value the schema allows."""
    name = draw(st.sampled_from(sorted(SAMPLES)))
    rack = json.loads(json.dumps(SAMPLES[name]))
    named: list[str] = []
    messages: dict[str, str] = {}
    done: list[Loc] = []
    for _ in range(draw(st.integers(1, 3))):
        slot = draw(st.sampled_from(SLOTS[name]))
        if any(overlaps(slot.loc, other) for other in done) or not slot.loc:
            continue
        where = format_loc(slot.loc, "rack")
        scalar = not types_of(slot.schema) & {"array", "object", "any"}
        target = get_at(rack, slot.loc) if slot.present else None
        kinds = ["valid"] if scalar else []
        if not only_valid:
            kinds += ["wrong"] if slot.present and wrong_values(slot.schema) else []
            kinds += ["range"] if out_of_range(slot.schema) else []
            kinds += ["unknown"] if isinstance(target, dict) and closed_object(slot.schema) is not None else []
            kinds += ["drop"] if slot.parent_required else []
        if not kinds:
            continue
        kind = draw(st.sampled_from(kinds))
        if kind == "valid":
            set_at(rack, slot.loc, draw(valid_value(slot.schema)))
        elif kind == "wrong":
            set_at(rack, slot.loc, draw(st.sampled_from(wrong_values(slot.schema))))
            named.append(where)
        elif kind == "range":
            set_at(rack, slot.loc, draw(st.sampled_from(out_of_range(slot.schema))))
            named.append(where)
        elif kind == "unknown":
            assert isinstance(target, dict)
            # a key YAML reads back and an issue prints as written: no line breaks (NEL, U+2028),
            # control, format, unassigned or space characters (issues show those as escapes)
            hidden = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs")
            chars = st.characters(codec="utf-8", exclude_categories=hidden, exclude_characters="[]")
            key = "x-" + draw(st.text(chars, min_size=1, max_size=12))
            target[key] = draw(st.one_of(st.integers(), st.text(max_size=10), st.none()))
            named.append(f"{where}.{key}")
            messages[f"{where}.{key}"] = "unknown key"
        else:
            delete_at(rack, slot.loc)
            named.append(where)
            messages[where] = "required key is missing"
        done.append(slot.loc)
    config = {"homelab:rack": rack}
    return Case(dump(config, draw(st.sampled_from([False, None]))), "schema", tuple(named), messages, rack)


# --- random YAML ---------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=40),
    st.dates(),
    st.datetimes(),
    st.binary(max_size=16),
    st.sampled_from(KEY_NAMES),
)
KEYS = st.one_of(st.text(max_size=16), st.sampled_from(KEY_NAMES), st.integers(), st.booleans(), st.none(), st.floats())
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=40,
)
CONFIG_KEYS = st.one_of(st.sampled_from(sorted(SCHEMA["properties"]["config"]["properties"])), KEYS)


@st.composite
def yaml_documents(draw: st.DrawFn) -> Case:
    """Any YAML document: a random value, a `config:` with random keys, or a rack of random values
    under the schema's own key names."""
    rack = st.dictionaries(st.one_of(st.sampled_from(KEY_NAMES), KEYS), VALUES, max_size=6)
    doc = draw(
        st.one_of(
            VALUES,
            st.fixed_dictionaries({"config": st.dictionaries(CONFIG_KEYS, VALUES, max_size=5)}),
            st.fixed_dictionaries({"config": st.fixed_dictionaries({"homelab:rack": rack})}),
        )
    )
    flow = draw(st.sampled_from([False, True, None]))
    text = yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=draw(st.booleans()))
    return Case(text.encode(), "yaml")


TOKENS = [
    "\n", "  ", "- ", ": ", "{", "}", "[", "]", ", ", "&a ", "*a", "&b ", "*b", "!!binary ", "!!int ", "!!float ",
    "!!timestamp ", "!!python/object/apply:os.system ", "!!set ", "!!omap ", "!!str ", "? ", "|", ">", "'", '"',
    "#", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "<<: ", "\t", "\ufeff", "0x", "0o7", "1_0",
    "2001-13-45", "2001-02-03 04:05:06", "9" * 5000, "\\", "\x85", "\u2028", "~", "null", "yes", "off", ".inf",
    ".nan", "!", "!foo ", "@", "`", "%", "homelab:rack", "nodes", "apps", "address", "10.0.0.1",
]  # fmt: skip


@st.composite
def yaml_token_soup(draw: st.DrawFn) -> Case:
    """Text made of YAML's own syntax (anchors, tags, directives, flow and block markers) after a
    real `config: homelab:rack:` start: every branch of the parser and the constructors."""
    parts = draw(st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=4)), max_size=40))
    head = draw(st.sampled_from(["", "config:\n  homelab:rack:\n    ", "config:\n  homelab:rack: "]))
    return Case((head + "".join(parts)).encode("utf-8", "surrogatepass"), "soup")


TRICKY_SCALARS = [
    "2001-13-45", "2001-02-30 25:61:61", "!!timestamp 2001-01-01T99:00:00", "!!int xyz", "!!float xyz",
    "!!bool maybe", "!!null x", "!!binary zz=", "!!binary '@@@'", "9" * 5000, "-0x" + "f" * 5000, "0b" + "1" * 20000,
    "1" + "0" * 5000 + ".5", "1e99999", ".NaN", "!!set {x}", "!!omap [x]", "!!pairs [x]", "!!map [x]", "!!seq {x: 1}",
    "&a [*a]", "&a {k: *a}", "*undefined", "!!python/name:os.system", "!<tag:yaml.org,2002:int> 12z",
    "[x]: 1", "{? [a]: 1}", "<<: [1]", "{<<: 1}", "!!str", "''", '"\\x"', '"\\uD800"',
]  # fmt: skip


@st.composite
def tricky_scalars(draw: st.DrawFn) -> Case:
    """A value of the sample rack written as a scalar that PyYAML's resolver or constructors take
    for an int, float, timestamp, binary, set or alias but cannot build (or build into a cycle)."""
    name = draw(st.sampled_from(sorted(SAMPLES)))
    slot = draw(st.sampled_from([s for s in SLOTS[name] if s.loc]))
    rack = json.loads(json.dumps(SAMPLES[name]))
    set_at(rack, slot.loc, "TRICKY-HERE")
    text = dump({"homelab:rack": rack}, flow=True).decode()
    return Case(text.replace("TRICKY-HERE", draw(st.sampled_from(TRICKY_SCALARS)), 1).encode(), "tricky")


# --- bytes ---------------------------------------------------------------------------------------

SPECIALS = [
    b"\x00", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\r", b"\t", b"\x1b[31m", b"\x85",
]  # fmt: skip


@st.composite
def byte_edits(draw: st.DrawFn) -> Case:
    """Arbitrary bytes, or a real stack file with bytes spliced in: NULs, BOMs, broken UTF-8
    sequences, a surrogate, control characters, a huge scalar (past the 256 KiB limit or under it)."""
    if draw(st.booleans()):
        return Case(draw(st.binary(max_size=400)), "bytes")
    text = bytearray(dump({"homelab:rack": SAMPLES[draw(st.sampled_from(sorted(SAMPLES)))]}))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        what = draw(
            st.one_of(
                st.sampled_from(SPECIALS),
                st.binary(min_size=1, max_size=8),
                st.sampled_from([100_000, 300_000]).map(lambda n: b'"' + b"a" * n + b'"'),
            )
        )
        text[at:at] = what
    return Case(bytes(text), "bytes")


# --- deep nesting and aliases --------------------------------------------------------------------


@st.composite
def deep_nesting(draw: st.DrawFn) -> Case:
    """A value nested 1 to 3000 levels deep (flow lists or mappings) at a key of the sample rack."""
    name = draw(st.sampled_from(sorted(SAMPLES)))
    slot = draw(st.sampled_from([s for s in SLOTS[name] if s.loc]))
    # within the model; past the loader's limit but within its YAML composer's (2 x MAX_DEPTH); past both
    depth = draw(st.one_of(st.integers(1, 40), st.integers(41, 2 * MAX_DEPTH), st.integers(2 * MAX_DEPTH, 3000)))
    opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
    rack = json.loads(json.dumps(SAMPLES[name]))
    set_at(rack, slot.loc, "DEEP-HERE")
    text = dump({"homelab:rack": rack}, flow=True).decode()
    nested = opener * depth + "1" + closer * depth
    named: tuple[str, ...] = ()
    messages: dict[str, str] = {}
    if depth > 40:  # past the model's depth and the loader's limit, within or past PyYAML's own
        named = (format_loc(slot.loc, "rack"),)
        # refused for its depth (a type error at the key would name it too, without saying why)
        messages = {named[0]: f"nested more than {MAX_DEPTH} levels deep"}
    return Case(text.replace("DEEP-HERE", nested, 1).encode(), "deep", named, messages)


@st.composite
def alias_bombs(draw: st.DrawFn) -> Case:
    """Aliases of aliases (the "billion laughs"): `levels` levels of `fanout` references to the
    level below, at a key of the sample rack. PyYAML shares the nodes, so the file stays small
    while the value it stands for has fanout^levels leaves."""
    name = draw(st.sampled_from(sorted(SAMPLES)))
    slot = draw(st.sampled_from([s for s in SLOTS[name] if s.loc]))
    levels = draw(st.integers(1, 12))
    fanout = draw(st.integers(2, 10))
    leaf: Any = draw(st.sampled_from(["lol", "x" * 1000, {"name": "lol"}, 7]))
    value: Any = leaf
    for _ in range(levels):
        value = [value] * fanout if draw(st.booleans()) else {f"k{i}": value for i in range(fanout)}
    rack = json.loads(json.dumps(SAMPLES[name]))
    set_at(rack, slot.loc, value)
    leaves = fanout**levels
    # too big to expand (whatever the slot takes), or a list or mapping where the schema wants neither
    too_big = leaves > 1_000_000
    where = format_loc(slot.loc, "rack")
    named = (where,) if too_big or not types_of(slot.schema) & {"array", "object", "any"} else ()
    # too big: refused for its size before any type check (a type error at the key would not say why)
    messages = {where: "once YAML aliases (*name) are expanded"} if too_big else {}
    return Case(dump({"homelab:rack": rack}, flow=draw(st.sampled_from([True, False]))), "alias", named, messages)


def any_case(*, valid_share: bool = False) -> st.SearchStrategy[Case]:
    cases = [byte_edits(), yaml_documents(), yaml_token_soup(), tricky_scalars(), schema_mutations()]
    cases += [deep_nesting(), alias_bombs()]
    if valid_share:
        cases.append(schema_mutations(only_valid=True))
    return st.one_of(cases)
