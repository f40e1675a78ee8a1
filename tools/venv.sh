#!/usr/bin/env bash
# The recipe of make's .venv stamp: create .venv with the pinned requirements, start a half-made
# one again, or say exactly what the machine lacks. Usage: tools/venv.sh PYTHON VENV
# Exit 0: .venv has the requirements (make then touches the stamp). 1: it does not; the message
# says why and what to do.
set -uo pipefail
python=$1
venv=$2

say() { printf 'venv: %s\n' "$*" >&2; }

# A .venv whose python cannot run pip is half-made: `python3 -m venv` failed after creating the
# directory (Debian/Ubuntu without python3-venv), or was interrupted. Every pip install into it
# fails with "No module named pip", so it is removed and created again.
if [ -e "$venv" ] && ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  say "$venv is half-made (its python cannot run pip: an earlier create failed); removing it to create it again"
  rm -rf -- "$venv"
fi

if [ ! -e "$venv" ]; then
  if ! command -v "$python" >/dev/null 2>&1; then
    say "no '$python' found: install Python 3.11 or newer, or name one: make PYTHON=/path/to/python3.11 <target>"
    exit 1
  fi
  if ! version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2]); sys.exit(sys.version_info < (3, 11))'); then
    say "$python is Python ${version:-(unknown version)}; this project needs 3.11 or newer: make PYTHON=/path/to/python3.11 <target>"
    exit 1
  fi
  # Debian and Ubuntu ship ensurepip, which venv needs to put pip into a new environment, in a
  # package of its own (python3-venv); without it `python3 -m venv` creates the directory and
  # then fails. Ask before creating anything.
  if ! "$python" -c 'import venv, ensurepip; ensurepip.version()' >/dev/null 2>&1; then
    say "$python (Python $version) has no ensurepip module, so it cannot create a virtualenv with pip in it."
    say "  Debian/Ubuntu: sudo apt install python$version-venv   (python3-venv, when $python is the system's default python3)"
    say "  elsewhere: install your Python's venv/ensurepip part, or use another Python: make PYTHON=/path/to/python3.11 <target>"
    say "Then run make again; nothing was created."
    exit 1
  fi
  if ! "$python" -m venv "$venv"; then
    rm -rf -- "$venv"
    say "'$python -m venv $venv' failed (its message is above); removed what it left, so the next make starts clean"
    exit 1
  fi
fi

if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt; then
  say "pip could not install the pinned requirements (its message is above); $venv stays and the next make retries"
  exit 1
fi
