"""Kubernetes quantities as integers: the config and the plan's scheduler agree on what they mean."""

from __future__ import annotations

import pytest

from rack.quantity import cpu_millis, memory_mib, storage_gib


@pytest.mark.parametrize(
    ("value", "millis"),
    [
        ("500m", 500),
        ("1m", 1),
        ("2", 2000),
        (2, 2000),
        ("0.5", 500),
        (0.25, 250),
        ("1.5", 1500),
        ("0.0001", 1),  # rounds up: a request is never understated
        ("1500m", 1500),
        ("1k", 1_000_000),
        (" 4 ", 4000),
    ],
)
def test_cpu_millis(value: str | int | float, millis: int) -> None:
    assert cpu_millis(value) == millis


@pytest.mark.parametrize("value", ["four", "", "-1", "1.", ".5", "1e3", "1 m", "500mi", "2 cores"])
def test_cpu_rejects_malformed(value: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        cpu_millis(value)


@pytest.mark.parametrize("value", ["0", "0m", 0, "0.0"])
def test_cpu_rejects_zero(value: str | int) -> None:
    with pytest.raises(ValueError, match="more than zero"):
        cpu_millis(value)


@pytest.mark.parametrize(
    ("value", "mib"),
    [
        ("256Mi", 256),
        ("1Gi", 1024),
        ("8Gi", 8192),
        ("1Ti", 1024 * 1024),
        ("512Ki", 1),  # rounds up to whole MiB
        ("1Ki", 1),
        ("1G", 954),  # 10^9 bytes = 953.67 MiB, rounded up
        ("1M", 1),
        ("128M", 123),  # 128e6 / 2^20 = 122.07 -> 123
        ("1048576", 1),
        (1048576, 1),
        ("1.5Gi", 1536),
        ("1P", 953_674_317),
    ],
)
def test_memory_mib(value: str | int, mib: int) -> None:
    assert memory_mib(value) == mib


@pytest.mark.parametrize("value", ["8GB", "8gi", "8 Gi", "Gi", "8Gib", "eight", "1E", ""])
def test_memory_rejects_malformed(value: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        memory_mib(value)


def test_memory_rejects_milli_bytes_with_a_hint() -> None:
    with pytest.raises(ValueError, match="use Mi for mebibytes"):
        memory_mib("512m")


def test_memory_rejects_zero() -> None:
    with pytest.raises(ValueError, match="more than zero"):
        memory_mib("0Gi")


@pytest.mark.parametrize(
    ("value", "gib"),
    [("1Gi", 1.0), ("460Gi", 460.0), ("512Mi", 0.5), ("1Ti", 1024.0), ("1G", 954 / 1024)],
)
def test_storage_gib(value: str, gib: float) -> None:
    assert storage_gib(value) == pytest.approx(gib)


def test_storage_sums_compare_like_the_config_rule() -> None:
    """The volume-fit rule adds sizes in GiB: 20Gi + 30Gi + 2Gi = 52Gi fits in 460Gi, 500Gi does not."""
    used = sum(storage_gib(s) for s in ("20Gi", "30Gi", "2Gi"))
    assert used == 52
    assert used <= storage_gib("460Gi") < used + storage_gib("500Gi")
