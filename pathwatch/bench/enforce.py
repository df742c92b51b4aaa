"""`pathwatch bench enforce`: how long the enforcer takes to judge one window close.

Builds a config with enough routes for `lanes` lanes (16 aggregate tcp / udp /
tls / http lanes in four classes plus four ICMP probe-address lanes per route),
then feeds the engine one WindowStats per route per window close, a few closes
in a row, some lanes failing. The baseline is the same loop doing no judgement
(the route lookup and a pass over every lane), measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from enforcer.engine import Engine
from pathwatch.configfile import parse_config
from schemas.wire import LaneStats, WindowStats

PROTOCOLS = ("tcp", "udp", "tls", "http")
CLASSES = ("high", "medium", "low", "best-effort")
ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")
LANES_PER_ROUTE = len(PROTOCOLS) * len(CLASSES) + len(ADDRESSES)
ROUTES_PER_SERVICE = 100


def bench_config_text(routes: int) -> str:
    lines = [
        "icmp-probe-profiles:",
        "  ping: {probe-interval: 1, probe-address: [" + ", ".join(ADDRESSES) + "]}",
        "services:",
    ]
    for index in range(routes):
        if index % ROUTES_PER_SERVICE == 0:
            lines += [f"  s{index // ROUTES_PER_SERVICE}:", "    service-routes:"]
        lines.append(
            f"      r{index}: {{next-hop: {{node: n{index % 10}, interface: lo}},"
            " reachability-detection: {detection-window: 5, hold-down: 60,"
            " probes: [{name: ping, icmp-probe-profile: ping}]}}"
        )
    return "\n".join(lines) + "\n"


def window(service: str, route: str, end: float, failing: bool) -> WindowStats:
    lanes: list[LaneStats] = []
    for protocol in PROTOCOLS:
        for traffic_class in CLASSES:
            error = 60.0 if failing and protocol == "tcp" and traffic_class == "high" else 0.0
            lanes.append(
                LaneStats(
                    protocol=protocol,  # type: ignore[arg-type]
                    traffic_class=traffic_class,  # type: ignore[arg-type]
                    count=20,
                    errors=int(error / 5),
                    error_pct=error,
                    outcomes={"ok": 20 - int(error / 5)},
                    latency_min_ms=1.0,
                    latency_max_ms=9.0,
                    latency_mean_ms=3.0,
                    latency_median_ms=3.0,
                    latency_p90_ms=8.0,
                    jitter_ms=0.5,
                )
            )
    for address in ADDRESSES:
        lanes.append(
            LaneStats(
                protocol="icmp",
                traffic_class="best-effort",
                probe="ping",
                destination=address,
                count=4,
                outcomes={"ok": 4},
                latency_min_ms=0.1,
                latency_max_ms=0.3,
                latency_mean_ms=0.2,
            )
        )
    return WindowStats(
        service=service, route=route, window_start=end - 5, window_end=end, lanes=lanes
    )


@dataclass(frozen=True)
class EnforceBench:
    lanes: int
    routes: int
    closes: int
    judged_ms: list[float]
    baseline_ms: list[float]


def run_bench(lanes: int, closes: int) -> EnforceBench:
    routes = max(1, lanes // LANES_PER_ROUTE)
    config = parse_config(bench_config_text(routes), "<bench>").config
    clock_now = [1_000_000.0]
    engine = Engine(config, lambda: clock_now[0])
    names = [(f"s{i // ROUTES_PER_SERVICE}", f"r{i}") for i in range(routes)]
    judged: list[float] = []
    baseline: list[float] = []
    for close in range(closes):
        end = 1_000_000.0 + 5 * close
        clock_now[0] = end + 1
        windows = [
            window(service, route, end, failing=(close % 3 == 1 and index % 10 == 0))
            for index, (service, route) in enumerate(names)
        ]
        started = time.perf_counter()
        touched = 0
        for stats in windows:
            tracker = engine.trackers.get(f"{stats.service}.{stats.route}")
            if tracker is not None:
                for lane in stats.lanes:
                    touched += lane.count
        baseline.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        for stats in windows:
            engine.on_window(stats)
        judged.append((time.perf_counter() - started) * 1000)
    return EnforceBench(routes * LANES_PER_ROUTE, routes, closes, judged, baseline)


def report(result: EnforceBench) -> list[str]:
    judged = statistics.median(result.judged_ms)
    baseline = statistics.median(result.baseline_ms)
    return [
        f"lanes per window close: {result.lanes} ({result.routes} routes x {LANES_PER_ROUTE})",
        f"window closes: {result.closes} (every third with 10 % of routes failing tcp/high)",
        f"judgement: median {judged:.1f} ms per window close"
        f" (min {min(result.judged_ms):.1f}, max {max(result.judged_ms):.1f});"
        f" {judged * 1000 / result.lanes:.2f} us per lane",
        f"baseline (same loop, no judgement): median {baseline:.1f} ms per window close",
        f"ratio judgement / baseline: {judged / baseline if baseline else float('inf'):.1f}x",
        f"target <= 100 ms per window close: {'met' if judged <= 100 else 'NOT met'}",
    ]
