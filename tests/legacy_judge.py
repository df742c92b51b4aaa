"""A verbatim copy of enforcer/judge.py before the rules were declared once (enforcer.rules):
the old judgement, kept in the test tree only, that tests/test_enforcer_rules.py compares
the new one with. Not used by the enforcer.

Judgement of one lane's window against thresholds, with reasons that name
the test and the numbers ("tcp/high error 62 % > 50 %").

Aggregate lanes are judged against the route's reachability profile
(acceptable-error-threshold, time-to-establishment max / mean; 0 disables a
test); probe lanes against their ICMP / HTTP probe-profile SLA (max-loss,
latency max / mean, max-jitter). A lane with fewer than `min_samples`
measurements is not judged (verdict None).
"""

from dataclasses import dataclass

from schemas.config import ClassThresholds, SlaMetrics
from schemas.wire import LaneStats


@dataclass(frozen=True, slots=True)
class Verdict:
    """`passed` None: not enough samples. `reasons` lists every failed test."""

    passed: bool | None
    reasons: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


NOT_JUDGED = Verdict(None, ())
PASSED = Verdict(True, ())


def number(value: float) -> str:
    """A figure for humans: integers without decimals, others with one."""
    rounded = round(value, 1)
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{rounded:.1f}"


def lane_label(lane: LaneStats) -> str:
    """`tcp/high`, plus the probe and destination for probe lanes."""
    label = f"{lane.protocol}/{lane.traffic_class}"
    if lane.probe:
        label += f" {lane.probe}"
    if lane.destination:
        label += f" {lane.destination}"
    return label


def judge_reachability(lane: LaneStats, thresholds: ClassThresholds, min_samples: int) -> Verdict:
    """Error threshold and time-to-establishment of an aggregate lane."""
    if lane.count < min_samples:
        return NOT_JUDGED
    reasons: list[str] = []
    label = f"{lane.protocol}/{lane.traffic_class}"
    limit = thresholds.acceptable_error_threshold
    if limit > 0 and lane.error_pct > limit:
        reasons.append(f"{label} error {number(lane.error_pct)} % > {number(limit)} %")
    tte = thresholds.time_to_establishment
    if tte.enabled:
        if tte.max > 0 and lane.latency_max_ms is not None and lane.latency_max_ms > tte.max:
            reasons.append(
                f"{label} time-to-establishment max {number(lane.latency_max_ms)} ms"
                f" > {number(tte.max)} ms"
            )
        if tte.mean > 0 and lane.latency_mean_ms is not None and lane.latency_mean_ms > tte.mean:
            reasons.append(
                f"{label} time-to-establishment mean {number(lane.latency_mean_ms)} ms"
                f" > {number(tte.mean)} ms"
            )
    if reasons:
        return Verdict(False, tuple(reasons))
    return PASSED


@dataclass(frozen=True, slots=True)
class SlaExcess:
    """Which SLA limits one probe lane exceeded (for the probe counters)."""

    loss: bool = False
    latency_max: bool = False
    latency_mean: bool = False
    jitter: bool = False


def judge_sla(lane: LaneStats, sla: SlaMetrics, min_samples: int) -> tuple[Verdict, SlaExcess]:
    """Loss, latency max / mean and jitter of one probe address."""
    if lane.count < min_samples:
        return NOT_JUDGED, SlaExcess()
    reasons: list[str] = []
    label = lane_label(lane)
    loss = sla.max_loss < 100 and lane.loss_pct > sla.max_loss
    if loss:
        reasons.append(f"{label} loss {number(lane.loss_pct)} % > {number(sla.max_loss)} %")
    latency = sla.latency
    high_max = (
        latency.max > 0 and lane.latency_max_ms is not None and lane.latency_max_ms > latency.max
    )
    if high_max:
        reasons.append(
            f"{label} latency max {number(lane.latency_max_ms or 0)} ms > {number(latency.max)} ms"
        )
    high_mean = (
        latency.mean > 0
        and lane.latency_mean_ms is not None
        and lane.latency_mean_ms > latency.mean
    )
    if high_mean:
        reasons.append(
            f"{label} latency mean {number(lane.latency_mean_ms or 0)} ms"
            f" > {number(latency.mean)} ms"
        )
    high_jitter = (
        sla.max_jitter is not None
        and sla.max_jitter > 0
        and lane.jitter_ms is not None
        and lane.jitter_ms > sla.max_jitter
    )
    if high_jitter:
        reasons.append(
            f"{label} jitter {number(lane.jitter_ms or 0)} ms > {number(sla.max_jitter or 0)} ms"
        )
    excess = SlaExcess(loss, high_max, high_mean, high_jitter)
    if reasons:
        return Verdict(False, tuple(reasons)), excess
    return PASSED, excess


def combine(verdicts: list[Verdict]) -> Verdict:
    """All must pass: any failure fails (with every reason); any unjudged leaves it unjudged."""
    failed = [
        reason for verdict in verdicts if verdict.passed is False for reason in verdict.reasons
    ]
    if failed:
        return Verdict(False, tuple(failed))
    if not verdicts or any(verdict.passed is None for verdict in verdicts):
        return NOT_JUDGED
    return PASSED


_NO_LIMIT = float("inf")


@dataclass(frozen=True, slots=True)
class ReachabilityLimits:
    """The reachability tests of one (protocol, class) as plain numbers, inf when off.

    `exceeded` is the hot-path pre-check: False exactly when `judge_reachability`
    passes a lane with enough samples, so only failing lanes pay for reasons.
    """

    error_pct: float
    tte_max_ms: float
    tte_mean_ms: float

    @classmethod
    def of(cls, thresholds: ClassThresholds) -> "ReachabilityLimits":
        tte = thresholds.time_to_establishment
        limit = thresholds.acceptable_error_threshold
        return cls(
            error_pct=limit if limit > 0 else _NO_LIMIT,
            tte_max_ms=tte.max if tte.enabled and tte.max > 0 else _NO_LIMIT,
            tte_mean_ms=tte.mean if tte.enabled and tte.mean > 0 else _NO_LIMIT,
        )

    def exceeded(self, lane: LaneStats) -> bool:
        latency_max, latency_mean = lane.latency_max_ms, lane.latency_mean_ms
        return (
            lane.error_pct > self.error_pct
            or (latency_max is not None and latency_max > self.tte_max_ms)
            or (latency_mean is not None and latency_mean > self.tte_mean_ms)
        )


@dataclass(frozen=True, slots=True)
class SlaLimits:
    """A probe profile's SLA as plain numbers, inf when off; pre-check for `judge_sla`."""

    loss_pct: float
    latency_max_ms: float
    latency_mean_ms: float
    jitter_ms: float

    @classmethod
    def of(cls, sla: SlaMetrics) -> "SlaLimits":
        latency = sla.latency
        return cls(
            loss_pct=sla.max_loss if sla.max_loss < 100 else _NO_LIMIT,
            latency_max_ms=latency.max if latency.max > 0 else _NO_LIMIT,
            latency_mean_ms=latency.mean if latency.mean > 0 else _NO_LIMIT,
            jitter_ms=sla.max_jitter
            if sla.max_jitter is not None and sla.max_jitter > 0
            else _NO_LIMIT,
        )

    def exceeded(self, lane: LaneStats) -> bool:
        latency_max, latency_mean, jitter = (
            lane.latency_max_ms,
            lane.latency_mean_ms,
            lane.jitter_ms,
        )
        return (
            lane.loss_pct > self.loss_pct
            or (latency_max is not None and latency_max > self.latency_max_ms)
            or (latency_mean is not None and latency_mean > self.latency_mean_ms)
            or (jitter is not None and jitter > self.jitter_ms)
        )
