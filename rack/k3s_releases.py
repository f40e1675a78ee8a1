"""k3s releases as data: the lines this program knows, when each stops getting fixes, and the
release the samples pin.

Creates nothing. A k3s minor line is supported as long as its Kubernetes minor is: k3s ships a
patch release for every upstream patch release of the minors upstream maintains (docs.k3s.io/
release-notes). `eol_warning` is what the plan prints and `pulumi up` logs (rack/config validates
the version's format; an old line is a warning, not an error: the cluster still has to be
upgraded through it, one minor at a time).

Sources, read 2026-12:
- End-of-life dates: kubernetes.io/releases/1.<minor> ("End Of Life Date"; 1.30's page says it
  reached end of life on 2025-07-15; 1.31 and 1.32 are the dates of the published schedule).
- Latest releases: github.com/k3s-io/k3s/releases/tag/v1.36.4+k3s1 (Kubernetes v1.36.4, Traefik
  v3.7.8, chart 40.x) and v1.35.8+k3s1 (Kubernetes v1.35.8, Traefik v3.7.8, chart 40.x).
"""

from __future__ import annotations

import re
from datetime import date

LATEST = "v1.36.4+k3s1"
"""The release the samples and docs pin: the newest patch of the newest line (k3s releases page)."""
PREVIOUS_MINOR_LATEST = "v1.35.8+k3s1"
"""The newest patch of the line before: the starting point of a minor upgrade (the lab's)."""

END_OF_LIFE: dict[int, date] = {
    30: date(2025, 7, 15),
    31: date(2025, 10, 28),
    32: date(2026, 2, 28),
    33: date(2026, 6, 28),
    34: date(2026, 10, 27),
    35: date(2027, 2, 28),
    36: date(2027, 6, 28),
}
"""Kubernetes 1.<minor> -> its end-of-life date (kubernetes.io/releases/1.<minor>)."""

_MINOR = re.compile(r"^v1\.(?P<minor>\d+)\.\d+\+k3s\d+$")


def minor_of(version: str) -> int:
    """`v1.36.4+k3s1` -> 36 (the version is validated by rack.config)."""
    match = _MINOR.match(version)
    if not match:
        raise ValueError(f"'{version}' is not a k3s release (v1.X.Y+k3sN)")
    return int(match["minor"])


def end_of_life(version: str) -> date | None:
    """When the version's line stops getting fixes; None for a line newer than the table."""
    minor = minor_of(version)
    if minor < min(END_OF_LIFE):
        return END_OF_LIFE[min(END_OF_LIFE)]  # older lines ended before the oldest in the table
    return END_OF_LIFE.get(minor)


def release_warnings(version: str, today: date | None = None) -> list[str]:
    """What the plan prints and `pulumi up` logs about the pinned release (today by default)."""
    warning = eol_warning(version, today or date.today())
    return [warning] if warning else []


def eol_warning(version: str, today: date) -> str | None:
    """A sentence naming the date, when `version`'s line is past its end of life on `today`."""
    eol = end_of_life(version)
    if eol is None or today <= eol:
        return None
    minor = minor_of(version)
    when = f"on {eol.isoformat()}" if minor in END_OF_LIFE else f"before {eol.isoformat()}"
    return (
        f"rack.k3s.version {version}: Kubernetes 1.{minor} reached end of life {when} and gets no more "
        f"security fixes; upgrade one minor at a time (1.{minor} -> 1.{minor + 1} -> ...) to a supported "
        f"line, e.g. {LATEST} (docs/operations.md, Upgrade k3s)"
    )
