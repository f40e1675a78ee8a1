"""Kubernetes resource quantities (`500m`, `4`, `8Gi`, `1G`) as integers. Creates nothing.

The config validates with these, and the plan's scheduler reads the rendered pod specs with
the same functions, so both agree on what `256Mi` means.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_QUANTITY = re.compile(r"^(?P<num>[0-9]+(\.[0-9]+)?)(?P<suffix>m|k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$")
_FACTORS: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
}
_MIB = Decimal(2) ** 20


def _parse(value: str | int | float) -> Decimal:
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"'{value}' is not a Kubernetes quantity (e.g. 500m, 2, 256Mi, 8Gi)")
    try:
        return Decimal(match["num"]) * _FACTORS[match["suffix"] or ""]
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"'{value}' is not a number") from exc


def cpu_millis(value: str | int | float) -> int:
    """CPU quantity in millicores: `500m` -> 500, `2` -> 2000, `0.5` -> 500."""
    amount = _parse(value) * 1000
    if amount <= 0:
        raise ValueError(f"'{value}' must be more than zero")
    return int(amount.to_integral_value(rounding="ROUND_CEILING"))


def memory_mib(value: str | int | float) -> int:
    """Memory quantity in MiB (rounded up): `256Mi` -> 256, `8Gi` -> 8192, `1G` -> 954."""
    text = str(value).strip()
    if text.endswith("m"):
        raise ValueError(f"'{value}': 'm' means milli-bytes; use Mi for mebibytes")
    amount = _parse(text)
    if amount <= 0:
        raise ValueError(f"'{value}' must be more than zero")
    return int((amount / _MIB).to_integral_value(rounding="ROUND_CEILING"))


def storage_gib(value: str | int | float) -> float:
    """Storage quantity in GiB, for comparing volume sizes against a node's storage size."""
    return memory_mib(value) / 1024
