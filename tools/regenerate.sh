#!/usr/bin/env bash
# Regenerate what is generated from the config models (rack/config.py): the JSON Schema
# (schema/stack.schema.json, `make schema`) and the config reference between the
# `<!-- config-reference:start/end -->` markers of whichever tracked markdown file holds them.
# Renovate runs it on a branch that moved a default in rack/config.py (renovate.json,
# postUpgradeTasks; the workflow allows exactly this command); anyone may run it by hand.
# tests/workflows/test_renovate.py runs it on a copy of the repository.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
make --no-print-directory schema
git ls-files -z -- '*.md' | .venv/bin/python -c '
import sys
from pathlib import Path

from rack.reference import END, START, config_reference

table = config_reference()
for name in sys.stdin.read().split("\0"):
    if not name:
        continue
    path = Path(name)
    text = path.read_text()
    lines = text.splitlines()
    if START not in lines or END not in lines:  # the markers on lines of their own, not quoted in prose
        continue
    head, rest = text.split(START + "\n", 1)
    tail = rest.split("\n" + END, 1)[1]
    path.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    print(f"regenerate: config reference in {name}")
'
