"""The k3s release table: end-of-life warnings name the date, only past it, in the plan too.

The dates are the facts the module records from kubernetes.io/releases (its docstring names the
pages); these tests check the behaviour around them and that the samples pin a supported line."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from plan.result import make_plan
from rack.config import ConfigError, parse_rack
from rack.k3s_releases import END_OF_LIFE, LATEST, PREVIOUS_MINOR_LATEST, eol_warning, minor_of, release_warnings
from tests.conftest import loaded_from, stack_raw

DEC_2026 = date(2026, 12, 6)


def test_a_line_past_its_end_of_life_warns_naming_the_date() -> None:
    warning = eol_warning("v1.31.4+k3s1", DEC_2026)
    assert warning is not None
    assert "Kubernetes 1.31 reached end of life on 2025-10-28" in warning
    assert "rack.k3s.version v1.31.4+k3s1" in warning and LATEST in warning


def test_the_day_of_the_end_of_life_is_still_supported_and_the_next_is_not() -> None:
    assert eol_warning("v1.34.9+k3s1", date(2026, 10, 27)) is None
    assert "on 2026-10-27" in (eol_warning("v1.34.9+k3s1", date(2026, 10, 28)) or "")


def test_current_and_unknown_newer_lines_do_not_warn() -> None:
    assert eol_warning(LATEST, DEC_2026) is None
    assert eol_warning(PREVIOUS_MINOR_LATEST, DEC_2026) is None
    assert eol_warning("v1.37.0+k3s1", DEC_2026) is None  # newer than the table: nothing known


def test_lines_older_than_the_table_warn_with_the_oldest_date() -> None:
    assert "before 2025-07-15" in (eol_warning("v1.27.16+k3s1", DEC_2026) or "")


def test_the_samples_pin_the_newest_line_and_the_lab_the_one_before() -> None:
    assert parse_rack(stack_raw("homelab")).k3s.version == LATEST
    assert parse_rack(stack_raw("lab")).k3s.version == PREVIOUS_MINOR_LATEST
    assert minor_of(LATEST) == max(END_OF_LIFE) and minor_of(PREVIOUS_MINOR_LATEST) == minor_of(LATEST) - 1
    assert release_warnings(LATEST, DEC_2026) == []


@pytest.mark.parametrize("bad", ["v2.0.1+k3s1", "1.36.4+k3s1", "v1.36.4", "v1.36+k3s1", "v1.36.4-k3s1"])
def test_the_format_is_v1_x_y_k3s_n(homelab_raw: dict[str, Any], bad: str) -> None:
    homelab_raw["k3s"]["version"] = bad
    with pytest.raises(ConfigError) as info:
        parse_rack(homelab_raw)
    assert [(i.path, "v1.X.Y+k3sN" in i.message) for i in info.value.issues] == [("rack.k3s.version", True)]


def test_the_plan_reports_an_end_of_life_line(homelab_raw: dict[str, Any]) -> None:
    homelab_raw["k3s"]["version"] = "v1.31.4+k3s1"
    result = make_plan(loaded_from(homelab_raw), "homelab")
    [problem] = [p for p in result.problems if p.check == "k3s"]
    assert problem.severity == "warning" and "reached end of life on 2025-10-28" in problem.message
    assert not result.errors  # a warning: the plan still passes
