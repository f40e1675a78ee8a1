"""`python -m plan`: the offline plan (what `make plan` runs).

Exit 0: config valid, every layout check passes. 1: layout errors. 2: invalid config (each
problem with its key path, no traceback). 3: the plan itself failed (a traceback: a bug, or a
--json/--picture path it cannot write). `make plan` reports all but 0 as 2 (docs/plan-exit-codes.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from rich.console import Console

from rack.config import ConfigError
from rack.loader import StackFile


def main(argv: list[str] | None = None, *, one_shot: bool = False) -> int:
    """`one_shot`: the process ends after this plan (see `plan.engine.collector_paused`)."""
    parser = argparse.ArgumentParser(prog="plan", description="Offline plan of a homelab rack stack.")
    parser.add_argument("--config", type=Path, default=Path("Pulumi.homelab.yaml"), help="stack file")
    parser.add_argument("--json", type=Path, default=None, help="also write the machine-readable plan here")
    parser.add_argument(
        "--picture", type=Path, default=Path("build/plan"), help="write the rack picture (rack.svg, rack.html) here"
    )
    parser.add_argument(
        "--svg",
        type=Path,
        default=None,
        help="also write the picture's SVG to this file (make plan: docs/rack.svg, the README's picture)",
    )
    args = parser.parse_args(argv)

    # A log or CI job summary is not 80 columns wide; a terminal keeps its own width.
    out = Console(width=None if sys.stdout.isatty() else 140)
    err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)
    try:
        stack_file = StackFile.read(args.config)
        loaded = stack_file.load()
    except ConfigError as exc:
        err.print(f"[bold red]invalid config[/] in {args.config}:", highlight=False)
        for issue in exc.issues:
            err.print(f"  {issue.path}: {issue.message}", markup=False, highlight=False)
        return 2

    # Imported here so a bad config answers before the Pulumi SDK loads.
    from plan.report import render
    from plan.result import make_plan

    with out.status("evaluating the program under mocks…"):
        result = make_plan(loaded, stack_file.stack, one_shot=one_shot)
    render(result, out)
    plan_json = result.to_json()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(plan_json, indent=2, sort_keys=False) + "\n")
        out.print(f"plan JSON written to {args.json}")
    from plan.picture import render_svg, write_atomically, write_picture

    for path in write_picture(plan_json, args.picture):
        out.print(f"rack picture written to {path}", highlight=False)
    if args.svg is not None:
        write_atomically(args.svg, render_svg(plan_json))
        out.print(f"rack picture written to {args.svg}", highlight=False)
    return 1 if result.errors else 0


if __name__ == "__main__":
    try:
        code = main(one_shot=True)
    except Exception:
        # Python's own exit status for an uncaught exception is 1, which here means layout errors.
        traceback.print_exc()
        code = 3
    sys.exit(code)
