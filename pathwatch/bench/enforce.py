"""`pathwatch bench enforce`: how long the enforcer takes to judge one window close.

Builds a config with enough routes for `lanes` lanes (16 aggregate tcp / udp /
tls / http lanes in four classes plus four ICMP probe-address lanes per route),
then feeds the engine one WindowStats per route per window close, a few closes
in a row, some lanes failing. Each window arrives as JSON and goes to
`Engine.on_window_payload`, as in the enforcer service: a route's quiet
windows are recognised by its quiet decoder while decoding. Judgement is the
time that takes beyond decoding the same windows plainly and keeping them
(the engine keeps each route's latest figures; timed in the same run and
printed too). The baseline is the same loop doing no judgement (the
route lookup and a pass over every lane of the decoded window).

Judgement is what decides: verdicts, state machines, events, alarms and
commands, all produced by `Engine.on_window`. Rebuilding the PathStates whose
figures moved (for KV and the API) is timed and reported apart: the enforcer
does it in its ticker under a processor-time budget, off the decision path.
The engine's heap is settled first, as the enforcer service does.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

from enforcer.engine import Engine
from enforcer.service import REFRESH_BUDGET_SECONDS, TICK_SECONDS
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.heap import settle_heap
from schemas.codec import decode_message, encode
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


def window(service: str, route: str, end: float, failing: bool, variation: int = 0) -> WindowStats:
    """One route's window; `variation` > 0 shifts every lane's count and latencies
    slightly (a different shift per lane and per window), as real windows do."""
    lanes: list[LaneStats] = []
    for lane_index, (protocol, traffic_class) in enumerate(
        (protocol, traffic_class) for protocol in PROTOCOLS for traffic_class in CLASSES
    ):
        error = 60.0 if failing and protocol == "tcp" and traffic_class == "high" else 0.0
        shift = (variation * 7 + lane_index * 3) % 11 if variation else 0
        count = 20 + shift % 4
        errors = round(count * error / 100)
        latency = 0.1 * shift
        lanes.append(
            LaneStats(
                protocol=protocol,
                traffic_class=traffic_class,  # type: ignore[arg-type]
                count=count,
                errors=errors,
                error_pct=100.0 * errors / count,
                outcomes={"ok": count - errors},
                latency_min_ms=1.0 + latency / 2,
                latency_max_ms=9.0 + latency,
                latency_mean_ms=3.0 + latency,
                latency_median_ms=3.0 + latency,
                latency_p90_ms=8.0 + latency,
                jitter_ms=0.5 + latency / 4,
            )
        )
    for address_index, address in enumerate(ADDRESSES):
        shift = (variation * 5 + address_index) % 7 if variation else 0
        lanes.append(
            LaneStats(
                protocol="icmp",
                traffic_class="best-effort",
                probe="ping",
                destination=address,
                count=4,
                outcomes={"ok": 4},
                latency_min_ms=0.1,
                latency_max_ms=0.3 + 0.01 * shift,
                latency_mean_ms=0.2 + 0.01 * shift,
            )
        )
    return WindowStats(
        service=service, route=route, window_start=end - 5, window_end=end, lanes=lanes
    )


@dataclass(frozen=True)
class Phase:
    """The timings of one series of window closes fed to a fresh engine."""

    varying: bool
    #: Per window close: every route's window judged (decisions, events, state changes).
    judged_ms: list[float]
    #: Per window close: rebuilding the PathStates whose figures moved
    #: (`Engine.flush_metrics`, unbudgeted here so its whole cost shows).
    refresh_ms: list[float]
    baseline_ms: list[float]
    #: Routes whose PathState was rebuilt per refresh.
    refreshed: list[int]
    #: Per window close: decoding every route's WindowStats from JSON (input, not judgement).
    decode_ms: list[float]

    def later_judged_ms(self) -> list[float]:
        """Judgement per close after the first (the first creates every machine)."""
        return self.judged_ms[1:] or self.judged_ms


@dataclass(frozen=True)
class EnforceBench:
    lanes: int
    routes: int
    closes: int
    phases: list[Phase]


def run_phase(routes: int, closes: int, varying: bool) -> Phase:
    """`closes` window closes of every route into a fresh engine, timed."""
    config = parse_config(bench_config_text(routes), "<bench>").config
    clock_now = [1_000_000.0]
    engine = Engine(config, lambda: clock_now[0])
    settle_heap()  # as the enforcer service does once its engine is built
    names = [(f"s{i // ROUTES_PER_SERVICE}", f"r{i}") for i in range(routes)]
    judged: list[float] = []
    refresh: list[float] = []
    baseline: list[float] = []
    refreshed: list[int] = []
    decoding: list[float] = []
    for close in range(closes):
        end = 1_000_000.0 + 5 * close
        clock_now[0] = end + 1
        # as they arrive from the aggregator: JSON, decoded one by one just before use
        payloads = [
            encode(
                window(
                    service,
                    route,
                    end,
                    failing=(close % 3 == 1 and index % 10 == 0),
                    variation=close * 17 + index + 1 if varying else 0,
                )
            )
            for index, (service, route) in enumerate(names)
        ]
        clock = time.perf_counter
        baseline_s = total_s = decode_s = 0.0
        touched = 0
        kept: list[WindowStats] = []  # kept like the engine keeps each route's latest figures
        for payload in payloads:
            started = clock()
            stats = decode_message(payload, WindowStats)
            kept.append(stats)
            decoded = clock()
            tracker = engine.trackers.get(f"{stats.service}.{stats.route}")
            if tracker is not None:
                for lane in stats.lanes:
                    touched += lane.count
            baseline_s += clock() - decoded
            decode_s += decoded - started
        kept.clear()
        for (service, route), payload in zip(names, payloads, strict=True):
            started = clock()
            engine.on_window_payload(service, route, payload)
            total_s += clock() - started
        # the engine decodes as it judges (quiet windows are recognised by the decoder):
        # judgement is what it costs beyond decoding the same windows plainly
        judged_s = max(total_s - decode_s, 0.0)
        baseline.append(baseline_s * 1000)
        judged.append(judged_s * 1000)
        decoding.append(decode_s * 1000)
        started = time.perf_counter()
        rebuilt = engine.flush_metrics(clock_now[0])
        refresh.append((time.perf_counter() - started) * 1000)
        refreshed.append(len(rebuilt.paths))
    return Phase(varying, judged, refresh, baseline, refreshed, decoding)


def run_bench(lanes: int, closes: int, vary: bool = True) -> EnforceBench:
    """Varying windows (the headline) then identical ones; identical only without `vary`."""
    routes = max(1, lanes // LANES_PER_ROUTE)
    phases = [run_phase(routes, closes, True)] if vary else []
    phases.append(run_phase(routes, closes, False))
    return EnforceBench(routes * LANES_PER_ROUTE, routes, closes, phases)


def _phase_lines(phase: Phase, lanes: int) -> list[str]:
    label = "varying windows" if phase.varying else "identical windows"
    baseline = statistics.median(phase.baseline_ms)
    later = phase.later_judged_ms()
    judged = statistics.mean(later)
    decode = statistics.mean(phase.decode_ms[1:] or phase.decode_ms)
    refresh = statistics.mean(phase.refresh_ms[1:] or phase.refresh_ms)
    routes = max(1, round(statistics.mean(phase.refreshed[1:] or phase.refreshed)))
    ticks = math.ceil(refresh / (REFRESH_BUDGET_SECONDS * 1000))
    return [
        f"{label}: first close (every machine created) {phase.judged_ms[0]:.1f} ms",
        f"{label}: judgement per later close: mean {judged:.1f} ms, median"
        f" {statistics.median(later):.1f}, max {max(later):.1f};"
        f" {judged * 1000 / lanes:.2f} us per lane",
        f"{label}: baseline (same loop, no judgement) median {baseline:.1f} ms;"
        f" judgement / baseline {judged / baseline if baseline else float('inf'):.1f}x",
        f"{label}: decoding and judging {decode + judged:.1f} ms per close, of which decoding"
        f" the same windows plainly and keeping them takes {decode:.1f} ms (input, not"
        " judgement)",
        f"{label}: figures refresh (PathStates rebuilt for KV and the API, off the decision"
        f" path): {refresh:.1f} ms for {routes} routes ({refresh * 1000 / routes:.0f} us per"
        f" route); the enforcer spends at most {REFRESH_BUDGET_SECONDS * 1000:.0f} ms of each"
        f" {TICK_SECONDS * 1000:.0f} ms tick on it, so every route's figures are current"
        f" within {ticks} tick(s) = {ticks * TICK_SECONDS:.1f} s of its window",
    ]


def report(result: EnforceBench) -> list[str]:
    headline = result.phases[0]
    judged = statistics.mean(headline.later_judged_ms())
    lines = [
        f"lanes per window close: {result.lanes} ({result.routes} routes x {LANES_PER_ROUTE})",
        f"window closes: {result.closes} per series (every third with 10 % of routes"
        " failing tcp/high); varying = every lane's count and latencies change every window",
    ]
    for phase in result.phases:
        lines += _phase_lines(phase, result.lanes)
    label = "varying" if headline.varying else "identical"
    later = headline.later_judged_ms()
    # close 1 is the first where 10 % of the routes fail at once (close 4 finds them held down)
    failing = headline.judged_ms[1] if len(headline.judged_ms) > 1 else max(later)
    calm = [ms for index, ms in enumerate(headline.judged_ms) if index > 1] or later
    lines.append(
        f"target <= 100 ms of judgement per window close ({label} windows):"
        f" mean {judged:.1f} ms, {'met' if judged <= 100 else 'NOT met'};"
        f" slowest close without new failures {max(calm):.1f} ms,"
        f" {'met' if max(calm) <= 100 else 'NOT met'}; the close where 10 % of routes"
        f" fail at once {failing:.1f} ms, {'met' if failing <= 100 else 'NOT met'}"
    )
    return lines
