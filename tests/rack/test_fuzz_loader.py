"""Any bytes in, a clear answer out: the stack-file loader under Hypothesis (in-process, the bulk
of the budget; `python -m plan` as a subprocess is tests/plan/test_fuzz_plan.py).

For every file: a `Loaded`, or a `ConfigError` whose every issue names the file or a key path and
says what is wrong in one bounded line; no other exception; a few seconds and no big allocation.
Where a case broke a key on purpose (tests/stackfuzz.py: from the committed JSON Schema), the
answer names that key. The `pulumi up` path (`__main__.py`) raises `pulumi.RunError` with the
same issues. Budgets: tests.stackfuzz.budget; `HYPOTHESIS_PROFILE=long` runs 25 times as many.
"""

from __future__ import annotations

import json
import resource
import runpy
import tempfile
import time
from pathlib import Path

import pulumi
import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from pulumi.runtime import config as runtime_config

from plan.engine import reset_runtime
from rack.config import ConfigError, Issue
from rack.loader import Loaded, StackFile
from tests.conftest import ROOT
from tests.stackfuzz import (
    Case,
    alias_bombs,
    byte_edits,
    deep_nesting,
    fuzz_settings,
    schema_mutations,
    tricky_scalars,
    yaml_documents,
    yaml_token_soup,
)

CPU_SECONDS = 3.0
"""CPU time one file may take to load (the slowest seen here: ~0.5 s, a 250 KiB scalar). CPU, not
wall time: 8 helpers share 2 cores here and a wall-clock limit failed at load average 16. Each
property's Hypothesis deadline bounds the wall time, generously."""

GROWTH_MIB = 200
"""How far one file may push the process's peak memory (ru_maxrss)."""

MESSAGE_CHARS = 600
"""A message is one readable line or a YAML error with its mark, never a dump of the input."""


def load(path: Path) -> Loaded | list[Issue]:
    try:
        return StackFile.read(path).load()
    except ConfigError as exc:
        return exc.issues


def maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def answer(case: Case) -> tuple[Path, Loaded | list[Issue]]:
    """Load the case from a real file and check the answer holds for any input."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Pulumi.fuzz.yaml"
        path.write_bytes(case.text)
        before, start = maxrss_mib(), time.process_time()
        got = load(path)  # any exception but ConfigError fails the property here
        took = time.process_time() - start
    assert took < CPU_SECONDS, f"{took:.1f} CPU seconds to load"
    assert maxrss_mib() - before < GROWTH_MIB, f"peak memory grew {maxrss_mib() - before:.0f} MiB"
    whole = isinstance(got, list) and any(i.path.startswith(str(path)) for i in got)
    event(f"{case.kind}: {'loaded' if isinstance(got, Loaded) else 'file refused' if whole else 'keys named'}")
    if case.named:
        event(f"{case.kind}: {len(case.named)} key(s) broken on purpose")
    if isinstance(got, Loaded):
        assert not case.named, f"accepted, but {case.named} were broken"
        return path, got
    assert got, "a ConfigError with no issue"
    whole_file = False
    for issue in got:
        assert issue.path.startswith((str(path), "rack", "homelab:")), issue
        whole_file |= issue.path.startswith(str(path))
        assert issue.message.strip(), issue
        assert len(issue.message) <= MESSAGE_CHARS, (issue.path, issue.message[:300])
        assert "Traceback" not in issue.message
    if not whole_file:  # a file refused as a whole (not YAML, not UTF-8) has no key to name
        for key in case.named:
            leading = [i for i in got if i.path == key or i.path.startswith((key + ".", key + "[", key + " "))]
            assert leading, f"{key} was broken; the issues: {[str(i)[:200] for i in got]}"
            if key in case.messages:
                assert any(case.messages[key] in i.message for i in leading), (key, leading)
    return path, got


@fuzz_settings(300, deadline_s=20)
@given(schema_mutations())
def test_keys_broken_as_the_schema_says_are_named(case: Case) -> None:
    answer(case)


@fuzz_settings(150, deadline_s=20)
@given(st.one_of(yaml_documents(), yaml_token_soup()))
def test_any_yaml_document(case: Case) -> None:
    answer(case)


@fuzz_settings(80, deadline_s=20)
@given(tricky_scalars())
def test_scalars_the_yaml_constructors_choke_on(case: Case) -> None:
    answer(case)


@fuzz_settings(150, deadline_s=20)
@given(byte_edits())
def test_any_bytes(case: Case) -> None:
    answer(case)


@fuzz_settings(60, deadline_s=20)
@given(st.one_of(deep_nesting(), alias_bombs()))
def test_deep_nesting_and_alias_bombs(case: Case) -> None:
    answer(case)


# --- the `pulumi up` path: __main__.py ------------------------------------------------------------


def run_program_entry(rack_json: str) -> str:
    """Run __main__.py the way the language host does, with `homelab:rack` set; the RunError's text."""
    reset_runtime()
    runtime_config.set_all_config({"homelab:rack": rack_json}, [])
    with pytest.raises(pulumi.RunError) as info:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")
    return str(info.value)


@fuzz_settings(40, deadline_s=30)
@given(schema_mutations())
def test_pulumi_up_refuses_with_the_same_issues(case: Case) -> None:
    """What the plan refuses, `pulumi up` refuses with a RunError listing the same issues.
    (Racks the plan accepts would build the whole program here: they are left to tests/stacks.)"""
    _, got = answer(case)
    if isinstance(got, Loaded):
        return
    message = run_program_entry(json.dumps(case.rack))
    assert message == "invalid homelab:rack config:\n" + "\n".join(str(i) for i in got)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("not json at all", "homelab:rack"),  # `pulumi config set homelab:rack text`
        ("[" * 100_000 + "]" * 100_000, "homelab:rack"),  # deeper than Python's json module goes
        ('{"domain": "\\ud800"}', "rack.domain"),  # JSON escapes a lone surrogate too
        ('{"domain": ' + "[" * 40 + '"x"' + "]" * 40 + "}", "rack.domain"),  # past the loader's depth limit
    ],
)
def test_pulumi_up_refuses_what_is_not_a_rack_without_a_traceback(value: str, path: str) -> None:
    message = run_program_entry(value)
    assert message.startswith(f"invalid homelab:rack config:\n{path}"), message[:300]


# --- what the fuzzing found, one small file each (each crashed, hung or answered unclearly before) ---

RACK = b"config:\n  homelab:rack: "
FOUND = [
    # (input class, the file's bytes, the issue path, a text its message holds)
    ("invalid UTF-8", RACK + b"\xff\n", "FILE", "is not UTF-8 text: byte 24 (line 2) is 0xff"),
    ("a config key YAML reads as a number", b"config:\n  1: 2\n", "FILE: config", "keys must be text"),
    ("a date that is not one", RACK + b"2001-13-45\n", "FILE", "month must be in 1..12"),
    ("a tagged non-number", RACK + b"!!int xyz\n", "FILE", "cannot read this !!int value"),
    ("an empty tagged number", RACK + b"!!float \n", "FILE", "cannot read this !!float value"),
    ("a boolean that is not one", RACK + b"!!bool maybe\n", "FILE", "!!bool"),
    ("a 5000-digit integer", RACK + b"9" * 5000 + b"\n", "FILE", "4300 digits"),
    ("nesting past Python's recursion", RACK + b"[" * 5000 + b"]" * 5000, "FILE", "64 levels"),
    ("a value nested past the model", RACK + b"{domain: " + b"[" * 40 + b"]" * 40 + b"}", "rack.domain", "32 levels"),
    ("a 20000-bit integer quoted back", RACK + b"{domain: 0b" + b"1" * 20000 + b"}", "rack.domain", "20000 bits"),
    ("a key YAML reads as a number, in the rack", RACK + b"{ssh: {1: 2}}", "rack.ssh", "not text: 1"),
    ("a lone surrogate escape", RACK + b'{domain: "\\ud800"}', "rack.domain", "half of a UTF-16 pair"),
    ("a file of 300 KiB", b"config:\n  x: " + b"a" * 300 * 1024 + b"\n", "FILE", "larger than 256 KiB"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "text", "where", "says"), FOUND, ids=[f[0] for f in FOUND])
def test_what_the_fuzzing_found(what: str, text: bytes, where: str, says: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Pulumi.found.yaml"
        path.write_bytes(text)
        got = load(path)
    assert isinstance(got, list)
    expected = where.replace("FILE", str(path))
    named = [i for i in got if i.path == expected or i.path.startswith(expected + "[")]
    assert any(says in i.message for i in named), [str(i)[:300] for i in got]


def test_an_alias_bomb_is_named_at_its_key_in_a_blink() -> None:
    """The "billion laughs": 9 levels of 9 aliases stand for 387 million strings in 700 bytes."""
    levels = "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
    text = f'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n{levels}'
    text += "config:\n  homelab:rack:\n    domain: lab.test\n    dns: {records: *i}\n"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Pulumi.lol.yaml"
        path.write_text(text)
        start = time.process_time()
        got = load(path)
        took = time.process_time() - start
    assert isinstance(got, list)
    assert [i.path for i in got] == ["rack.dns.records"], got
    assert "once YAML aliases (*name) are expanded" in got[0].message
    assert took < 1.0


def test_a_control_character_in_a_value_is_shown_as_its_escape() -> None:
    """Found by the long run: `node: "\\b"` printed as `'' is not an RFC 1123 hostname` (the
    terminal drops the backspace), which reads as an empty value."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Pulumi.ctl.yaml"
        path.write_bytes(RACK + b'{domain: "lab\\bhome"}')
        got = load(path)
    assert isinstance(got, list)
    (domain,) = [i for i in got if i.path == "rack.domain"]
    assert domain.message.startswith("'lab\\x08home' is not"), domain.message
