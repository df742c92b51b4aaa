"""Dashboards as code: the Grafana dashboards of pathwatch, built with grafana-foundation-sdk.

`build_dashboards(thresholds)` returns every dashboard as a JSON-ready dict
keyed by file name; `render` turns one into the exact text committed under
`deploy/grafana/` (sorted keys, two-space indent), so regeneration is
deterministic and a test compares the committed files with this module's
output. Queries use only the metrics of `docs/metrics.md`; thresholds drawn on
the panels come from the config's reachability profile and first probe SLA (or their
defaults: latency max 250 ms / mean 100 ms, loss 10 %, errors 25 %, TTE max
500 ms / mean 250 ms).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from schemas.config import ClassThresholds, PathwatchConfig, SlaMetrics
from schemas.probekinds import KINDS, REACHABILITY_PROTOCOLS, TTE_PROTOCOLS, protocol_titles

PATHS_UID = "pathwatch-paths"
INGEST_UID = "pathwatch-ingest"
TAGS = ["pathwatch"]
#: Tag on every annotation pathwatch posts (pathwatch.grafana.annotations).
ANNOTATION_TAG = "pathwatch"

PROMETHEUS = DataSourceRef(type_val="prometheus", uid="${datasource}")
GRAFANA = DataSourceRef(type_val="grafana", uid="-- Grafana --")
PATH_SELECTOR = 'service=~"$service", route=~"$route"'
#: Aggregate lanes only (the exporter's default set, docs/metrics.md).
LANE_SELECTOR = PATH_SELECTOR + ', traffic_class=~"$class", destination="", probe=""'
LANE_LEGEND = "{{service}}/{{route}} {{protocol}} {{traffic_class}} {{source}}"
PATH_LEGEND = "{{service}}/{{route}}"
#: System alarms (agent-lost, clock-skew) have service="": keep them visible.
ALARM_SELECTOR = 'service=~"$service|"'
WIDTH = 24


@dataclass(frozen=True)
class Thresholds:
    """Limits drawn on the panels, in the config's units (ms, percent; the panels convert)."""

    latency_max_ms: float
    latency_mean_ms: float
    max_loss_pct: float
    error_pct: float
    tte_max_ms: float
    tte_mean_ms: float
    max_jitter_ms: float | None = None

    @classmethod
    def defaults(cls) -> Thresholds:
        """The router defaults, read from the config model."""
        return cls.from_parts(SlaMetrics(), ClassThresholds())

    @classmethod
    def from_parts(cls, sla: SlaMetrics, profile: ClassThresholds) -> Thresholds:
        tte = profile.time_to_establishment
        return cls(
            latency_max_ms=sla.latency.max,
            latency_mean_ms=sla.latency.mean,
            max_loss_pct=sla.max_loss,
            error_pct=profile.acceptable_error_threshold,
            tte_max_ms=tte.max,
            tte_mean_ms=tte.mean,
            max_jitter_ms=sla.max_jitter,
        )

    @classmethod
    def from_config(cls, config: PathwatchConfig) -> Thresholds:
        """The first probe SLA (registry order: ICMP first) and the first class of the
        `default` (else first) reachability profile; defaults where the config has none."""
        slas = [
            sla
            for kind in KINDS
            for probe_profile in config.probe_profiles(kind.name).values()
            if (sla := probe_profile.sla()) is not None
        ]
        sla = slas[0] if slas else SlaMetrics()
        profiles = config.reachability_profiles
        profile = profiles.get("default") or next(iter(profiles.values()), None)
        classes = ClassThresholds()
        if profile is not None:
            for protocol in REACHABILITY_PROTOCOLS:
                table_ = profile.table(protocol)
                if table_:
                    classes = next(iter(table_.values()))
                    break
        return cls.from_parts(sla, classes)


def _seconds(ms: float) -> float:
    """A config limit in milliseconds as the metrics' unit, seconds."""
    return ms / 1000.0


def _steps(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def _query(expr: str, legend: str = "", ref_id: str = "A") -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).ref_id(ref_id).datasource(PROMETHEUS)
    return query.legend_format(legend) if legend else query


def _series(
    panel_id: int,
    title: str,
    queries: list[tuple[str, str]],
    unit: str,
    steps: list[tuple[float | None, str]] | None = None,
    description: str = "",
    span: int = 12,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .unit(unit)
        .span(span)
        .height(8)
        .line_width(1)
        .fill_opacity(10)
    )
    for index, (expr, legend) in enumerate(queries):
        panel = panel.with_target(_query(expr, legend, chr(ord("A") + index)))
    if steps:
        panel = panel.thresholds(_steps(*steps)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED
            )
        )
    return panel


def _timeline(panel_id: int, title: str, expr: str, ok: str, bad: str) -> statetimeline.Panel:
    mapping = ValueMap(
        options={
            "0": ValueMappingResult(text=bad, color="red", index=0),
            "1": ValueMappingResult(text=ok, color="green", index=1),
        }
    )
    return (
        statetimeline.Panel()
        .id(panel_id)
        .title(title)
        .datasource(PROMETHEUS)
        .with_target(_query(expr, PATH_LEGEND))
        .mappings([mapping])
        .span(12)
        .height(7)
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
    )


def _variables(builder: dash.Dashboard, with_lanes: bool) -> dash.Dashboard:
    builder = builder.with_variable(
        dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
    )
    if not with_lanes:
        return builder.with_variable(
            _label_variable(
                "partition", "Partition", "label_values(pathwatch_ingest_messages_total, partition)"
            )
        )
    return (
        builder.with_variable(
            _label_variable(
                "service",
                "Service",
                "label_values(pathwatch_window_end_timestamp_seconds, service)",
            )
        )
        .with_variable(
            _label_variable(
                "route",
                "Route",
                'label_values(pathwatch_window_end_timestamp_seconds{service=~"$service"}, route)',
            )
        )
        .with_variable(
            _label_variable(
                "class",
                "Traffic class",
                'label_values(pathwatch_lane_samples{service=~"$service", route=~"$route"},'
                " traffic_class)",
            )
        )
    )


def _label_variable(name: str, label: str, query: str) -> dash.QueryVariable:
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(query)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def _alarm_annotations() -> dash.AnnotationQuery:
    return (
        dash.AnnotationQuery()
        .name("pathwatch alarms")
        .datasource(GRAFANA)
        .enable(True)
        .icon_color("red")
        .target(dash.AnnotationTarget().type("tags").tags([ANNOTATION_TAG]).limit(500))
    )


def _base(uid: str, title: str, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .editable()
    )


def paths_dashboard(limits: Thresholds) -> dash.Dashboard:
    """Path states, per-lane quality with the profile's limits drawn, and active alarms."""
    builder = _variables(
        _base(PATHS_UID, "pathwatch paths", "Path health learned by pathwatch, per lane."),
        with_lanes=True,
    ).annotation(_alarm_annotations())
    lane = LANE_SELECTOR
    loss_ratio = limits.max_loss_pct / 100.0
    error_ratio = limits.error_pct / 100.0
    jitter_steps: list[tuple[float | None, str]] | None = (
        [(None, "green"), (_seconds(limits.max_jitter_ms), "red")]
        if limits.max_jitter_ms is not None
        else None
    )
    builder = (
        builder.with_row(dash.Row("Paths"))
        .with_panel(_timeline(1, "Path up", f"pathwatch_path_up{{{PATH_SELECTOR}}}", "up", "down"))
        .with_panel(
            _timeline(
                2,
                "Meets SLA",
                f"pathwatch_path_meets_sla{{{PATH_SELECTOR}}}",
                "meets SLA",
                "misses SLA",
            )
        )
        .with_panel(
            _timeline(
                3,
                "In service",
                f"pathwatch_path_in_service{{{PATH_SELECTOR}}}",
                "in service",
                "out of service",
            )
        )
        .with_panel(
            _series(
                4,
                "Best effort and window age",
                [
                    (
                        f"pathwatch_path_best_effort{{{PATH_SELECTOR}}}",
                        "best effort " + PATH_LEGEND,
                    ),
                    (
                        f"time() - pathwatch_window_end_timestamp_seconds{{{PATH_SELECTOR}}}",
                        "window age " + PATH_LEGEND,
                    ),
                ],
                "short",
                description="1 when a route is kept in service only as best effort; seconds"
                " since the route's last closed window (stale above 3 windows).",
            )
        )
        .with_row(dash.Row("Quality"))
        .with_panel(
            _series(
                5,
                "Latency",
                [
                    (f"pathwatch_lane_latency_mean_seconds{{{lane}}}", "mean " + LANE_LEGEND),
                    (f"pathwatch_lane_latency_max_seconds{{{lane}}}", "max " + LANE_LEGEND),
                    (f"pathwatch_lane_latency_p90_seconds{{{lane}}}", "p90 " + LANE_LEGEND),
                ],
                "s",
                [
                    (None, "green"),
                    (_seconds(limits.latency_mean_ms), "orange"),
                    (_seconds(limits.latency_max_ms), "red"),
                ],
                description=f"SLA: mean below {limits.latency_mean_ms:g} ms (orange line),"
                f" max below {limits.latency_max_ms:g} ms (red line).",
            )
        )
        .with_panel(
            _series(
                6,
                "Loss",
                [(f"pathwatch_lane_loss_ratio{{{lane}}}", LANE_LEGEND)],
                "percentunit",
                [(None, "green"), (loss_ratio, "red")],
                description=f"SLA max-loss {limits.max_loss_pct:g} %.",
            )
        )
        .with_panel(
            _series(
                7,
                "Errors",
                [(f"pathwatch_lane_error_ratio{{{lane}}}", LANE_LEGEND)],
                "percentunit",
                [(None, "green"), (error_ratio, "red")],
                description=f"Acceptable error threshold {limits.error_pct:g} %.",
            )
        )
        .with_panel(
            _series(
                8,
                "Jitter",
                [(f"pathwatch_lane_jitter_seconds{{{lane}}}", LANE_LEGEND)],
                "s",
                jitter_steps,
            )
        )
        .with_panel(
            _series(
                9,
                "MOS",
                [(f"pathwatch_lane_mos{{{lane}}}", LANE_LEGEND)],
                "none",
                [(None, "red"), (3.6, "orange"), (4.0, "green")],
                description="Mean opinion score (1 to 4.5): below 3.6 is poor.",
            )
        )
        .with_panel(
            _series(
                10,
                "Time to establishment",
                [
                    (f"pathwatch_lane_tte_mean_seconds{{{lane}}}", "mean " + LANE_LEGEND),
                    (f"pathwatch_lane_tte_max_seconds{{{lane}}}", "max " + LANE_LEGEND),
                ],
                "s",
                [
                    (None, "green"),
                    (_seconds(limits.tte_mean_ms), "orange"),
                    (_seconds(limits.tte_max_ms), "red"),
                ],
                description=f"Reachability profile: mean below {limits.tte_mean_ms:g} ms,"
                f" max below {limits.tte_max_ms:g} ms ({protocol_titles(TTE_PROTOCOLS)} lanes).",
            )
        )
        .with_panel(
            _series(
                11,
                "Samples per window",
                [(f"pathwatch_lane_samples{{{lane}}}", LANE_LEGEND)],
                "short",
                span=WIDTH,
            )
        )
        .with_row(dash.Row("Alarms"))
        .with_panel(
            table.Panel()
            .id(12)
            .title("Active alarms")
            .datasource(PROMETHEUS)
            .with_target(
                _query(
                    "sum by (service, cause, severity)"
                    f" (pathwatch_alarms_active{{{ALARM_SELECTOR}}}) > 0"
                )
                .instant()
                .format(PromQueryFormat.TABLE)
            )
            .span(12)
            .height(8)
        )
        .with_panel(
            _series(
                13,
                "Active alarms by severity",
                [
                    (
                        f"sum by (severity) (pathwatch_alarms_active{{{ALARM_SELECTOR}}})",
                        "{{severity}}",
                    )
                ],
                "short",
            )
        )
    )
    return builder


def _rate(metric: str) -> str:
    return f'sum by (partition) (rate({metric}{{partition=~"$partition"}}[$__rate_interval]))'


def ingest_dashboard() -> dash.Dashboard:
    """Ingest health of the aggregator partitions: throughput, drops, malformed messages."""
    builder = _variables(
        _base(INGEST_UID, "pathwatch ingest", "Ingest health of the pathwatch aggregators."),
        with_lanes=False,
    )
    malformed = 'rate(pathwatch_ingest_malformed_total{partition=~"$partition"}[$__rate_interval])'
    messages = 'rate(pathwatch_ingest_messages_total{partition=~"$partition"}[$__rate_interval])'
    return (
        builder.with_panel(
            _series(
                1,
                "Throughput",
                [
                    (_rate("pathwatch_ingest_messages_total"), "messages {{partition}}"),
                    (_rate("pathwatch_ingest_batches_total"), "batches {{partition}}"),
                    (_rate("pathwatch_ingest_measurements_total"), "measurements {{partition}}"),
                ],
                "ops",
            )
        )
        .with_panel(
            _series(
                2,
                "Dropped",
                [
                    (_rate("pathwatch_ingest_late_total"), "late {{partition}}"),
                    (_rate("pathwatch_ingest_future_total"), "future {{partition}}"),
                    (_rate("pathwatch_ingest_duplicate_total"), "duplicate {{partition}}"),
                ],
                "ops",
            )
        )
        .with_panel(
            _series(
                3,
                "Malformed by reason",
                [(f"sum by (reason) ({malformed})", "{{reason}}")],
                "ops",
            )
        )
        .with_panel(
            stat.Panel()
            .id(4)
            .title("Malformed share")
            .datasource(PROMETHEUS)
            .with_target(_query(f"sum({malformed}) / clamp_min(sum({messages}), 1e-9)"))
            .unit("percentunit")
            .thresholds(_steps((None, "green"), (0.01, "orange"), (0.05, "red")))
            .span(12)
            .height(8)
        )
    )


def to_json(builder: dash.Dashboard) -> dict[str, Any]:
    """The dashboard model as plain JSON data."""
    data: dict[str, Any] = json.loads(JSONEncoder(sort_keys=True).encode(builder.build()))
    return data


def build_dashboards(limits: Thresholds | None = None) -> dict[str, dict[str, Any]]:
    """Every dashboard, keyed by its file name under deploy/grafana/."""
    chosen = limits or Thresholds.defaults()
    return {
        f"{PATHS_UID}.json": to_json(paths_dashboard(chosen)),
        f"{INGEST_UID}.json": to_json(ingest_dashboard()),
    }


def render(model: dict[str, Any]) -> str:
    """The committed text of one dashboard: sorted keys, two-space indent, final newline."""
    return json.dumps(model, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_dashboards(out_dir: Path, limits: Thresholds | None = None) -> list[Path]:
    """Write every dashboard into `out_dir`; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in build_dashboards(limits).items():
        path = out_dir / name
        path.write_text(render(model), encoding="utf-8")
        written.append(path)
    return written


def panel_queries(model: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, rows included."""
    found: list[tuple[str, str]] = []
    for panel in model.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                if "expr" in target:
                    found.append((inner.get("title", ""), target["expr"]))
    return found


def variable_queries(model: dict[str, Any]) -> dict[str, str]:
    """Query of every query variable, by variable name."""
    variables = model.get("templating", {}).get("list", [])
    return {
        variable["name"]: variable["query"]
        for variable in variables
        if variable.get("type") == "query" and isinstance(variable.get("query"), str)
    }
