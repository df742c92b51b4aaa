"""Benchmark of the CLI's start-up: `pathwatch show service-path --json` as a whole process
against `python -c pass` (the interpreter's own start-up), in one run.

The two run in turn (A B A B ...) after one warm-up each; every run is timed by
the wall clock and by its CPU time (the children's resource usage), and the
report gives medians, ranges and the ratio A / B pair by pair, so a machine
whose speed drifts during the run still gives a fair ratio. The show command
needs a running API (`pathwatch up`).
"""

from __future__ import annotations

import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Run:
    """One finished process: wall and CPU seconds, exit status."""

    wall: float
    cpu: float
    status: int


def pathwatch_command() -> list[str]:
    """The `pathwatch` script beside this interpreter (as users run it), else `-m pathwatch`."""
    script = Path(sys.executable).with_name("pathwatch")
    if script.exists():
        return [str(script)]
    found = shutil.which("pathwatch")
    return [found] if found else [sys.executable, "-m", "pathwatch"]


def time_run(argv: list[str]) -> Run:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Run(wall, cpu, completed.returncode)


def run_bench(command: list[str], baseline: list[str], runs: int) -> tuple[list[Run], list[Run]]:
    """`runs` timed runs of each, alternating, after one untimed run of each."""
    time_run(command)
    time_run(baseline)
    timed: tuple[list[Run], list[Run]] = ([], [])
    for _ in range(runs):
        timed[0].append(time_run(command))
        timed[1].append(time_run(baseline))
    return timed


def _figure(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"
    )


def report(command: list[str], runs: list[Run], baseline: list[Run], target_s: float) -> list[str]:
    """Printable lines: each command's wall and CPU figures, the ratios, the target."""
    failed = sum(run.status != 0 for run in runs)
    lines = [f"{' '.join(command)}: {len(runs)} runs, {failed} failed"]
    for name, timed in (("pathwatch show", runs), ("python -c pass", baseline)):
        lines.append(f"  {name:<15} wall {_figure([r.wall for r in timed])}")
        lines.append(f"  {'':<15} cpu  {_figure([r.cpu for r in timed])}")
    ratios = [a.wall / b.wall for a, b in zip(runs, baseline, strict=True) if b.wall > 0]
    lines.append(
        f"  wall ratio show / python -c pass, pair by pair: {_figure(ratios).replace(' s', '')}"
    )
    median_wall = statistics.median(r.wall for r in runs)
    verdict = "met" if median_wall <= target_s and not failed else "NOT met"
    lines.append(f"  target: median wall <= {target_s:.3f} s: {verdict}")
    return lines
