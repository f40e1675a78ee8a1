"""`make bench`'s parts, each in the fresh process the benchmark uses: a synthetic rack plans
clean, the floor registers exactly as many resources as the plan it is compared with, and the
per-kind measurement registers what it names. (Timings are not asserted: a benchmark, not a test.)"""

from __future__ import annotations

import json
from pathlib import Path

from bench.bench import KINDS, child, synthetic_rack
from rack.config import parse_rack


def test_synthetic_rack_plans_clean_and_the_floor_matches_its_size() -> None:
    rack = parse_rack(synthetic_rack(6, 12))
    plan = child(["--child-plan", "6", "12"])
    assert plan["errors"] == 0
    assert (plan["nodes"], plan["apps"]) == (6, 12)
    assert plan["replicas"] >= sum(app.replicas for app in rack.apps)  # plus the platform's pods
    assert plan["resources"] > 12 * 4
    assert plan["cpu_s"] > 0 and plan["wall_s"] >= plan["import_s"] > 0

    floor = child(["--child-floor", str(plan["resources"])])
    assert floor["resources"] == plan["resources"]


def test_each_kind_registers_its_count() -> None:
    for kind in KINDS:
        measured = child(["--child-kind", kind, "--count", "5"])
        assert measured["kind"] == kind
        assert measured["resources"] == 5 + 1  # and the provider
        assert measured["cpu_ms_per_resource"] > 0


def test_the_replay_registers_the_plans_own_resources_without_a_secret(tmp_path: Path) -> None:
    """The replay floor re-registers exactly the plan's URNs, from a dump that holds no secret
    value (the homelab stack's config secrets and generated passwords are redacted)."""
    dump = tmp_path / "registrations.json"
    plan = child(["--child-plan", "0", "0", "--child-stack", "Pulumi.homelab.yaml", "--child-dump", str(dump)])
    regs = json.loads(dump.read_text())
    assert len(regs) == plan["resources"]
    text = dump.read_text()
    assert '"[secret]"' in text and "BEGIN OPENSSH PRIVATE KEY" not in text and "privateKey" not in text
    replay = child(["--child-replay", str(dump)])
    assert replay["resources"] == plan["resources"] and replay["same_urns"] is True
