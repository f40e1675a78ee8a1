"""The homelab rack as one Pulumi program: load the rack config, build its layers, export."""

import pulumi

from stacks.composition import build, export
from stacks.config import ConfigError
from stacks.loader import load_from_pulumi

try:
    loaded = load_from_pulumi()
except ConfigError as exc:
    raise pulumi.RunError("invalid homelab:rack config:\n" + str(exc)) from None
for warning in loaded.warnings:
    raise pulumi.RunError(str(warning))
export(build(loaded), loaded)
