"""`pathwatch bench startup`'s timing and report, on real processes."""

from __future__ import annotations

import sys

from pathwatch.bench.startup import report, run_bench

PASS = [sys.executable, "-c", "pass"]


def test_runs_alternate_and_are_timed_by_wall_and_cpu() -> None:
    busy = [sys.executable, "-c", "sum(range(3_000_000))"]
    timed, baseline = run_bench(busy, PASS, 2)
    assert len(timed) == len(baseline) == 2
    assert all(run.status == 0 and run.wall > 0 and run.cpu > 0 for run in timed + baseline)
    assert sum(r.cpu for r in timed) > sum(r.cpu for r in baseline)
    lines = report(busy, timed, baseline, target_s=60.0)
    assert "2 runs, 0 failed" in lines[0] and lines[-1].endswith(": met")


def test_a_failing_command_misses_the_target() -> None:
    failing = [sys.executable, "-c", "raise SystemExit(3)"]
    timed, baseline = run_bench(failing, PASS, 1)
    assert timed[0].status == 3
    lines = report(failing, timed, baseline, target_s=60.0)
    assert "1 runs, 1 failed" in lines[0] and lines[-1].endswith("NOT met")
