"""The homelab rack as one Pulumi program: load the rack config, build its layers, export."""

import pulumi

from rack.config import ConfigError
from rack.k3s_releases import release_warnings
from rack.loader import load_from_pulumi
from stacks.composition import build, export

try:
    loaded = load_from_pulumi()
except ConfigError as exc:
    # RunError: a clean message and a non-zero exit, no Python traceback.
    raise pulumi.RunError("invalid homelab:rack config:\n" + str(exc)) from None
for warning in loaded.warnings:
    # A secret the program cannot generate: a warning for a preview, an error for an update.
    if pulumi.runtime.is_dry_run():
        pulumi.log.warn(str(warning))
    else:
        raise pulumi.RunError(str(warning))
for notice in release_warnings(loaded.rack.k3s.version):
    pulumi.log.warn(notice)  # a line past its end of life: a warning at preview and at up
export(build(loaded), loaded)
