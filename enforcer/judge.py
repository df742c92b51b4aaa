"""Judgement of one lane's window against a profile, with reasons that name the
test and the numbers ("tcp/high error 62 % > 50 %").

Aggregate lanes are judged against the route's reachability profile, probe
lanes against their ICMP / HTTP probe-profile SLA; the tests themselves are
declared once in `enforcer.rules`. A lane with fewer than `min_samples`
measurements is not judged (verdict None).
"""

from dataclasses import dataclass, field

from enforcer.reasons import number
from enforcer.route_spec import RouteSpec
from enforcer.rules import (
    REACHABILITY_RULES,
    SLA_RULES,
    Limits,
    Precheck,
    Rule,
    enough_samples,
    failing,
    limits_of,
    precheck,
)
from schemas.config import ClassThresholds, SlaMetrics
from schemas.wire import LaneStats, Protocol, TrafficClass

__all__ = [
    "NOT_JUDGED",
    "PASSED",
    "Judge",
    "RouteJudges",
    "Verdict",
    "combine",
    "lane_label",
    "number",
]


@dataclass(frozen=True, slots=True)
class Verdict:
    """`passed` None: not enough samples. `reasons` lists every failed test, `failed`
    the rules behind them."""

    passed: bool | None
    reasons: tuple[str, ...] = ()
    failed: tuple[Rule, ...] = ()

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


NOT_JUDGED = Verdict(None, ())
PASSED = Verdict(True, ())


def lane_label(lane: LaneStats) -> str:
    """`tcp/high`, plus the probe and destination for probe lanes."""
    label = f"{lane.protocol}/{lane.traffic_class}"
    if lane.probe:
        label += f" {lane.probe}"
    if lane.destination:
        label += f" {lane.destination}"
    return label


def _short_label(lane: LaneStats) -> str:
    return f"{lane.protocol}/{lane.traffic_class}"


@dataclass(frozen=True, slots=True)
class Judge:
    """The rules of one profile with their limits: what a lane is judged by.

    `check` is the rules' pre-check (`enforcer.rules.precheck`), so only failing
    lanes pay for their reasons. Reachability reasons name the protocol and
    class, SLA reasons the probe and address too."""

    rules: tuple[Rule, ...]
    limits: Limits
    long_label: bool
    check: Precheck = field(compare=False, hash=False, repr=False)

    @classmethod
    def reachability(cls, thresholds: ClassThresholds) -> "Judge":
        limits = limits_of(REACHABILITY_RULES, thresholds)
        return cls(REACHABILITY_RULES, limits, False, precheck(REACHABILITY_RULES, limits))

    @classmethod
    def sla(cls, sla: SlaMetrics) -> "Judge":
        limits = limits_of(SLA_RULES, sla)
        return cls(SLA_RULES, limits, True, precheck(SLA_RULES, limits))

    def verdict(self, lane: LaneStats, min_samples: int) -> Verdict:
        if not enough_samples(lane, min_samples):
            return NOT_JUDGED
        if not self.check(lane):
            return PASSED
        label = lane_label(lane) if self.long_label else _short_label(lane)
        failed = failing(self.rules, self.limits, lane)
        return Verdict(
            False,
            tuple(rule.reason(label, getattr(lane, rule.field), limit) for rule, limit in failed),
            tuple(rule for rule, _ in failed),
        )


def judge_reachability(lane: LaneStats, thresholds: ClassThresholds, min_samples: int) -> Verdict:
    """Error threshold and time-to-establishment of an aggregate lane."""
    return Judge.reachability(thresholds).verdict(lane, min_samples)


def judge_sla(lane: LaneStats, sla: SlaMetrics, min_samples: int) -> Verdict:
    """Loss, latency max / mean and jitter of one probe address."""
    return Judge.sla(sla).verdict(lane, min_samples)


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


#: The judge of every distinct profile in use, shared by the routes that have it.
_JUDGES: dict[ClassThresholds | SlaMetrics, Judge] = {}
_JUDGES_MAX = 4096


def _judge_of(profile: ClassThresholds | SlaMetrics) -> Judge:
    judge = _JUDGES.get(profile)
    if judge is None:
        if len(_JUDGES) >= _JUDGES_MAX:
            _JUDGES.clear()
        if isinstance(profile, SlaMetrics):
            judge = Judge.sla(profile)
        else:
            judge = Judge.reachability(profile)
        _JUDGES[profile] = judge
    return judge


class RouteJudges:
    """The judges of one route: reachability per (protocol, class), SLA per probe."""

    def __init__(self, spec: RouteSpec) -> None:
        self.spec = spec
        self._reachability: dict[tuple[str, str], Judge] = {}
        self._sla: dict[str, Judge | None] = {}

    def reachability(self, protocol: Protocol, traffic_class: TrafficClass) -> Judge:
        key = (protocol, traffic_class)
        judge = self._reachability.get(key)
        if judge is None:
            thresholds = self.spec.thresholds_for(protocol, traffic_class)
            judge = self._reachability[key] = _judge_of(thresholds)
        return judge

    def sla(self, probe: str) -> Judge | None:
        """The SLA judge of a probe; None when it has no SLA (plugin, unknown probe)."""
        if probe not in self._sla:
            probe_spec = self.spec.probes.get(probe)
            sla = probe_spec.sla if probe_spec is not None else None
            self._sla[probe] = _judge_of(sla) if sla is not None else None
        return self._sla[probe]
