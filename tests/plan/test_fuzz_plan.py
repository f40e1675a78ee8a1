"""Any bytes in, a clear answer out, through the real `python -m plan` (a subprocess each): the
hostile stack files of tests/stackfuzz.py, plus schema-valid edits that the plan runs in full.

For every file: exit 0, 1 or 2 as docs/plan-exit-codes.md says (never 3, never Python's own 1 from
a crash), no traceback, a bounded wall time and peak memory (the child's own ru_maxrss, from
wait4; an address-space limit keeps a runaway from taking the machine). Exit 2 prints
`invalid config in <file>:` and each issue of the in-process loader on its own line.
The bulk of the fuzzing is in-process (tests/rack/test_fuzz_loader.py); this is the smaller budget.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import event, given

from rack.config import ConfigError
from rack.loader import StackFile
from tests.conftest import ROOT
from tests.stackfuzz import Case, any_case, fuzz_settings

CPU_SECONDS = 15.0
"""CPU time of one `python -m plan` (a full plan takes ~3 s here, a refusal ~0.6 s)."""

WALL_SECONDS = 60.0
"""Its wall time: generous, 8 helpers share this machine's 2 cores."""

PEAK_MIB = 400
"""Peak resident memory of one run (a full plan of the sample: ~90 MiB)."""

ADDRESS_SPACE = 4 * 1024**3
"""RLIMIT_AS of the child: past it, allocation fails (a MemoryError: exit 3, and the property fails)."""


MEASURE = """
import os, resource, sys
report, limit, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.execv(sys.executable, [sys.executable, *argv])
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}")
"""
"""Runs the plan as its own child and reports that child's exit status, CPU time and peak RSS.
Why not wait4 on a child of pytest: Linux starts a forked child's peak RSS at its parent's size,
and keeps it across exec, so after a thousand examples every plan would "peak" at pytest's size.
This small process is the parent instead."""


def run_plan(path: Path, picture: Path) -> tuple[int, str, str, float, float, float]:
    """`python -m plan --config path`: exit status, stdout, stderr, wall and CPU seconds, and peak
    MiB of that process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "usage"
        start = time.perf_counter()
        args = ["-m", "plan", "--config", str(path), "--picture", str(picture)]
        proc = subprocess.Popen(
            [sys.executable, "-c", MEASURE, str(report), str(ADDRESS_SPACE), *args],
            cwd=ROOT,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a hung run is ended with its whole process group
        )
        try:
            proc.wait(timeout=WALL_SECONDS * 2)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        took = time.perf_counter() - start
        assert proc.returncode == 0 and report.exists(), f"the plan was killed after {took:.0f} s"
        code, cpu, peak_kib = report.read_text().split()
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        return int(code), text, errors, took, float(cpu), int(peak_kib) / 1024


@fuzz_settings(12, deadline_s=180)
@given(any_case(valid_share=True))
def test_python_m_plan_answers_any_stack_file(case: Case) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Pulumi.fuzz.yaml"
        path.write_bytes(case.text)
        try:
            StackFile.read(path).load()
            issues = None
        except ConfigError as exc:
            issues = exc.issues
        code, out, err, took, cpu, peak = run_plan(path, Path(tmp) / "picture")
    event(f"exit {code}")
    assert "Traceback" not in out + err, err[-3000:]
    assert code in (0, 1, 2), (code, err[-3000:])
    assert cpu < CPU_SECONDS and took < WALL_SECONDS, f"{cpu:.1f} CPU s, {took:.1f} s"
    assert peak < PEAK_MIB, f"{peak:.0f} MiB"
    if issues is not None:
        assert code == 2, (code, out[-2000:])
        assert err.startswith(f"invalid config in {path}:\n"), err[:300]
        flat = "".join(err.split())  # the report wraps long lines at 140 columns (on a space, or mid-word)
        for issue in issues:
            assert "".join(f"{issue.path}: {issue.message}".split()) in flat, (str(issue), err[:2000])
    elif code == 0:
        assert "layout OK" in out, out[-2000:]
    else:
        assert code == 1 and "layout error" in out, (code, out[-2000:])
