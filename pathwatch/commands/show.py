"""`pathwatch show service-path | load-balancer | alarms`: live state from the REST API,
rendered like the router's show commands (or raw with `--json`)."""

from __future__ import annotations

import json as jsonlib
import sys
import time
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from pathwatch.api_client import (
    DEFAULT_API,
    ApiOption,
    TokenOption,
    api_request,
)
from pathwatch.app import examples, show_app

#: Wide when not on a terminal, so piped or logged output is not squeezed to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)

JsonOption = Annotated[bool, typer.Option("--json", help="Print raw JSON.")]
ServiceOption = Annotated[str | None, typer.Option("--service", help="Only this service.")]
#: `show alarms --check`: exit status when an alarm is active.
EXIT_ALARMS_ACTIVE = 1


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def _yes(value: bool) -> str:
    return "[green]yes[/]" if value else "[red]no[/]"


_STATE_STYLE = {
    "up": "green",
    "down": "red",
    "probation": "yellow",
    "unknown": "dim",
    "stale": "magenta",
}


def _state(state: str) -> str:
    return f"[{_STATE_STYLE.get(state, 'white')}]{state}[/]"


def _ago(ts: float | None) -> str:
    if not ts:
        return "-"
    delta = time.time() - ts
    return f"{delta:.0f}s ago" if delta >= 0 else f"in {-delta:.0f}s"


_SIDE_FIGURES = ("count", "error_pct", "loss_pct", "latency_mean_ms", "latency_max_ms")


def probe_vs_passive(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Probe and passive figures of a route side by side, one row per (protocol, class).

    Each side is the aggregate lane of that source (state, meets_sla and its
    count, error / loss rates, mean / max latency: for passive lanes the
    time-to-establishment), or None when that source has no lane; `passive`
    also counts the tracked destinations with a lane of their own.
    """
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for lane in state.get("lanes", []):
        if lane.get("probe"):
            continue
        source = lane.get("source", "probe")
        if source not in ("probe", "passive"):
            continue
        row = rows.setdefault(
            (lane["protocol"], lane["traffic_class"]),
            {
                "protocol": lane["protocol"],
                "traffic_class": lane["traffic_class"],
                "probe": None,
                "passive": None,
            },
        )
        if lane.get("destination"):
            if source == "passive":
                side = row["passive"] or _side(None)
                side["destinations"] += 1
                row["passive"] = side
            continue
        side = _side(lane)
        if source == "passive" and row["passive"] is not None:
            side["destinations"] = row["passive"]["destinations"]
        row[source] = side
    return [rows[key] for key in sorted(rows, key=lambda k: (k[1], k[0]))]


def _side(lane: dict[str, Any] | None) -> dict[str, Any]:
    metrics = (lane or {}).get("metrics") or {}
    side: dict[str, Any] = {
        "state": lane["state"] if lane else "unknown",
        "meets_sla": bool(lane and lane.get("meets_sla")),
        "enforced": bool(lane and lane.get("enforced", True)),
    }
    side.update({name: metrics.get(name) for name in _SIDE_FIGURES})
    side["destinations"] = 0
    return side


def render_probe_vs_passive(state: dict[str, Any]) -> Table | None:
    """The side-by-side table, or None when the route has no passive (real-traffic) lanes."""
    rows = probe_vs_passive(state)
    if not any(row["passive"] for row in rows):
        return None
    table = Table(
        title="Probe vs Passive (per protocol and class; latencies in ms)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for column in (
        "Proto",
        "Class",
        "Probe",
        "N",
        "Err%",
        "Loss%",
        "Mean",
        "Passive",
        "Sessions",
        "Err%",
        "TTE mean",
        "TTE max",
        "Dests",
    ):
        table.add_column(column)
    for row in rows:
        probe, seen = row["probe"], row["passive"]
        table.add_row(
            row["protocol"],
            row["traffic_class"],
            *(
                (
                    _side_state(probe),
                    str(probe["count"] or 0),
                    _num(probe["error_pct"]),
                    _num(probe["loss_pct"]),
                    _num(probe["latency_mean_ms"], 2),
                )
                if probe
                else ("-",) * 5
            ),
            *(
                (
                    _side_state(seen),
                    str(seen["count"] or 0),
                    _num(seen["error_pct"]),
                    _num(seen["latency_mean_ms"], 2),
                    _num(seen["latency_max_ms"], 2),
                    str(seen["destinations"]),
                )
                if seen
                else ("-",) * 6
            ),
        )
    return table


def _side_state(side: dict[str, Any]) -> str:
    return _state(side["state"]) + ("" if side["enforced"] else " [dim](not judged)[/]")


def _target(lane: dict[str, Any]) -> str:
    probe, destination = lane.get("probe", ""), lane.get("destination", "")
    if probe and destination:
        return f"{probe}@{destination}"
    return probe or destination or "(all)"


def _counters(counters: dict[str, int]) -> str:
    """Non-zero counters, success always: the router's probe counters at a glance."""
    shown = [f"{name} {value}" for name, value in sorted(counters.items()) if value]
    if "success" in counters and not counters["success"]:
        shown.insert(0, "success 0")
    return ", ".join(shown) or "-"


#: Protocols whose probe measurements are judged as lanes against the reachability profile.
_PROFILE_PROTOCOLS = ("tcp", "udp", "tls", "http")


def lane_judged(lane: dict[str, Any]) -> str:
    """How a lane is judged: `profile` (reachability profile: error threshold and
    time-to-establishment), `SLA` (the probe's SLA, per address), or `-` (shown only)."""
    if not lane.get("enforced", True):
        return "-"
    return "SLA" if lane.get("probe") else "profile"


def probe_judged(probe: dict[str, Any], lanes: list[dict[str, Any]]) -> str:
    """How a probe's results are judged: by its own SLA, through the profile-judged lanes
    its measurements feed (`lanes tcp/high, tcp/best-effort`), or not at all."""
    kind = probe.get("kind", "")
    if probe.get("enforced", True):
        return {"plugin": "state (API)", "evidence": "evidence"}.get(kind, "SLA")
    protocol = probe.get("protocol") or kind
    fed = sorted(
        f"{lane['protocol']}/{lane['traffic_class']}"
        for lane in lanes
        if lane["protocol"] == protocol
        and protocol in _PROFILE_PROTOCOLS
        and lane.get("source", "probe") == "probe"
        and not lane.get("probe")
        and not lane.get("destination")
        and lane.get("enforced", True)
    )
    return f"lanes {', '.join(fed)}" if fed else "no"


def _summary(state: dict[str, Any]) -> Table:
    next_hop = f"{state.get('node', '')}/{state.get('interface', '')}"
    if state.get("gateway"):
        next_hop += f" via {state['gateway']}"
    shown = "stale" if state.get("stale") else state["state"]
    summary = Table.grid(padding=(0, 2))
    for _ in range(4):
        summary.add_column()
    summary.add_row(
        "State",
        _state(shown) + (f" ({state['state']})" if state.get("stale") else ""),
        "Next-Hop",
        next_hop,
    )
    summary.add_row(
        "In-Service",
        _yes(state["in_service"])
        + (" [yellow](best-effort)[/]" if state.get("best_effort") else ""),
        "Cost",
        str(state.get("cost", "-")),
    )
    summary.add_row(
        "Meets-SLA",
        _yes(state["meets_sla"]),
        "Mode",
        "enforcement" if state.get("enforcement", True) else "detection",
    )
    summary.add_row(
        "Since", _ago(state.get("since")), "Hold-Down-Until", _ago(state.get("hold_down_until"))
    )
    summary.add_row("Quality", _num(state.get("quality")), "Reason", state.get("reason", "") or "-")
    summary.add_row("Window-From", state.get("window_replica") or "-", "", "")
    summary.add_row(
        "Recovery",
        state.get("recovery") or "organic-traffic",
        "Held",
        state.get("recovery_held") or "-",
    )
    return summary


_METRIC_COLUMNS = (
    ("Proto", "left"),
    ("Class", "left"),
    ("Source", "left"),
    ("Target", "left"),
    ("State", "left"),
    ("SLA", "left"),
    ("Judged", "left"),
    ("N", "right"),
    ("Err%", "right"),
    ("Loss%", "right"),
    ("Min", "right"),
    ("Mean", "right"),
    ("Median", "right"),
    ("Max", "right"),
    ("P90", "right"),
    ("Jitter", "right"),
    ("MOS", "right"),
)


def _lane_order(lane: dict[str, Any]) -> tuple[str, ...]:
    return (
        lane["traffic_class"],
        lane["protocol"],
        lane.get("source", ""),
        lane.get("probe", ""),
        lane.get("destination", ""),
    )


def _metrics_table(lanes: list[dict[str, Any]]) -> Table:
    """Path-Metrics: one row per lane, with how it is judged."""
    table = Table(title="Path-Metrics", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column, justify in _METRIC_COLUMNS:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for lane in sorted(lanes, key=_lane_order):
        m = lane.get("metrics") or {}
        table.add_row(
            lane["protocol"],
            lane["traffic_class"],
            lane.get("source", ""),
            _target(lane),
            _state(lane["state"]),
            _yes(lane["meets_sla"]),
            lane_judged(lane),
            str(m.get("count", 0)),
            _num(m.get("error_pct")),
            _num(m.get("loss_pct")),
            *(
                _num(m.get(name), 2)
                for name in (
                    "latency_min_ms",
                    "latency_mean_ms",
                    "latency_median_ms",
                    "latency_max_ms",
                    "latency_p90_ms",
                    "jitter_ms",
                    "mos",
                )
            ),
        )
    return table


def _lane_reasons(lanes: list[dict[str, Any]]) -> list[str]:
    return [
        f"{lane['protocol']}/{lane['traffic_class']} {_target(lane)}: {lane['reason']}"
        for lane in sorted(lanes, key=_lane_order)
        if lane["state"] != "up" and lane.get("reason")
    ]


def _probes_table(state: dict[str, Any]) -> Table:
    """Reachability-Probes: each probe's state, counters and how it is judged."""
    table = Table(
        title="Reachability-Probes", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for column in ("Probe", "Kind", "Judged", "State", "Since", "Counters", "Reason"):
        table.add_column(column)
    lanes = state.get("lanes", [])
    for probe in state.get("probes", []):
        table.add_row(
            probe["name"],
            probe.get("kind", ""),
            probe_judged(probe, lanes),
            _state(probe["state"]),
            _ago(probe.get("since")),
            _counters(probe.get("counters", {})),
            probe.get("reason", ""),
        )
    return table


def render_service_path(state: dict[str, Any]) -> None:
    """One route: summary, Path-Metrics per class and protocol, Reachability-Probes."""
    console.print(
        f"[bold]Service: {state['service']}  Service-Route: {state['route']}[/]", highlight=False
    )
    console.print(_summary(state))
    lanes = state.get("lanes", [])
    console.print(_metrics_table(lanes))
    console.print(
        "  latencies in ms; Judged: profile = reachability profile, SLA = probe SLA, "
        "- = shown only",
        style="dim",
    )
    for reason in _lane_reasons(lanes):
        console.print(f"  {reason}", highlight=False)
    side_by_side = render_probe_vs_passive(state)
    if side_by_side is not None:
        console.print(side_by_side)
    console.print(_probes_table(state))
    console.print()


def with_judgement(state: dict[str, Any]) -> dict[str, Any]:
    """The state as `--json` prints it: plus the side-by-side rows and how each probe is judged."""
    state["probe_vs_passive"] = probe_vs_passive(state)
    for probe in state.get("probes", []):
        probe["judged"] = probe_judged(probe, state.get("lanes", []))
    return state


@show_app.command(
    "service-path",
    epilog=examples(
        "pathwatch show service-path",
        "pathwatch show service-path --service loopback --route lo-primary",
        "pathwatch show service-path --json --api http://127.0.0.1:8640",
    ),
)
def show_service_path(
    service: ServiceOption = None,
    route: Annotated[str | None, typer.Option("--route", help="Only this service-route.")] = None,
    api: ApiOption = DEFAULT_API,
    json: JsonOption = False,
    token: TokenOption = None,
) -> None:
    """Path state of every service route: Path-Metrics, Meets-SLA, Reachability-Probes.

    An unknown service or route name exits 2; an unreachable API exits 3.
    """
    states = api_request(
        "GET",
        api,
        "/api/v1/service-paths",
        params={"service": service, "route": route},
        token=token,
    )
    if json:
        print(jsonlib.dumps([with_judgement(state) for state in states], indent=2))
        return
    if not states:
        console.print("no service paths yet")
        return
    for state in states:
        render_service_path(state)


@show_app.command(
    "load-balancer",
    epilog=examples(
        "pathwatch show load-balancer", "pathwatch show load-balancer --service loopback --json"
    ),
)
def show_load_balancer(
    service: ServiceOption = None,
    api: ApiOption = DEFAULT_API,
    json: JsonOption = False,
    token: TokenOption = None,
) -> None:
    """Routes per service in the order the load balancer picks them.

    In service first; then Meets-SLA, not best-effort, state (up, probation,
    unknown), cost, quality in bands of 10 points, name (docs/cli.md). Columns
    as the router's: Type, Quality, Cost, State, Loss, Latency, Jitter, MOS, Meets-SLA.
    """
    path = "/api/v1/load-balancer"
    rows = api_request("GET", api, path, params={"service": service}, token=token)
    if json:
        print(jsonlib.dumps(rows, indent=2))
        return
    console.print(load_balancer_table(rows))


def load_balancer_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Load Balancer", title_justify="left")
    for column in (
        "Service",
        "Route",
        "Type",
        "Quality",
        "Cost",
        "State",
        "Loss",
        "Latency",
        "Jitter",
        "MOS",
        "Meets-SLA",
    ):
        table.add_column(column)
    for row in rows:
        state = row["state"] if row["in_service"] else f"{row['state']} (out)"
        table.add_row(
            row["service"],
            row["route"],
            row["type"],
            _num(row["quality"]),
            str(row["cost"]),
            _state(state) if row["in_service"] else f"[red]{state}[/]",
            _num(row["loss_pct"]),
            _num(row["latency_ms"], 2),
            _num(row["jitter_ms"], 2),
            _num(row["mos"], 2),
            _yes(row["meets_sla"]),
        )
    return table


def alarm_table(alarms: list[dict[str, Any]], title: str = "Alarms") -> Table:
    table = Table(title=title, title_justify="left")
    for column in (
        "Status",
        "Severity",
        "Service",
        "Route",
        "Protocol",
        "Class",
        "Cause",
        "Raised",
        "Reason",
    ):
        table.add_column(column)
    for alarm in alarms:
        status = alarm["status"]
        table.add_row(
            f"[red]{status}[/]" if status == "raised" else f"[green]{status}[/]",
            alarm.get("severity", ""),
            alarm.get("service", ""),
            alarm.get("route", ""),
            alarm.get("protocol") or "-",
            alarm.get("traffic_class") or "-",
            alarm.get("cause", ""),
            _ago(alarm.get("raised_at")),
            alarm.get("reason", ""),
        )
    return table


@show_app.command(
    "alarms",
    epilog=examples(
        "pathwatch show alarms",
        'pathwatch show alarms --check --service loopback || echo "alarms active"',
        "pathwatch show alarms --all --json",
    ),
)
def show_alarms(
    service: ServiceOption = None,
    include_cleared: Annotated[bool, typer.Option("--all", help="Include cleared alarms.")] = False,
    check: Annotated[
        bool,
        typer.Option("--check", help=f"Exit {EXIT_ALARMS_ACTIVE} when any alarm is active."),
    ] = False,
    api: ApiOption = DEFAULT_API,
    json: JsonOption = False,
    token: TokenOption = None,
) -> None:
    """Active alarms (raised and not cleared).

    Exit status: 0, or with --check 1 when any alarm is active; 2 for an
    unknown service; 3 when the API cannot be reached (docs/cli.md).
    """
    alarms = api_request(
        "GET",
        api,
        "/api/v1/alarms",
        params={"service": service, "include_cleared": str(include_cleared).lower()},
        token=token,
    )
    if json:
        print(jsonlib.dumps(alarms, indent=2))
    elif alarms:
        console.print(alarm_table(alarms))
    else:
        console.print("no active alarms")
    if check and any(alarm["status"] == "raised" for alarm in alarms):
        raise typer.Exit(EXIT_ALARMS_ACTIVE)
