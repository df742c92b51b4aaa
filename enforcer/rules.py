"""Every judging rule of a lane, declared once, as data; everything else is derived.

A `Rule` names a figure of `LaneStats` (`field`), how its limit is read from
the profile (`limit`: the number, `inf` when the profile turns the test off),
the comparison that fails it (`comparison`: the figure above the limit) and
the words of its reason (`name`, `unit`). Aggregate lanes are judged by
`REACHABILITY_RULES` against a reachability profile's `ClassThresholds`,
probe addresses by `SLA_RULES` against a probe profile's `SlaMetrics`; a lane
with fewer than `min-samples` measurements is not judged (`enough_samples`).

Three things are derived from these tables, so they cannot disagree:

* `failing`: the full judgement, the rules a lane fails (reasons are built
  from them by `enforcer.judge`);
* `precheck`: the hot-path test, a function compiled from the rules with
  their limits inlined, True exactly when `failing` is not empty;
* `constraints`: the msgspec field constraints of the quiet-window decoder
  (`enforcer.quiet_types`), which accept exactly the figures no rule fails.
"""

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from msgspec import Meta

from enforcer.reasons import number
from schemas.config import ClassThresholds, SlaMetrics
from schemas.wire import LaneStats

NO_LIMIT = math.inf

#: How a comparison fails a figure (the test, its sign in Python) and the msgspec
#: constraint that accepts every other figure (from a floor, up to the limit).
_COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str, Callable[..., Meta]]] = {
    ">": (operator.gt, ">", lambda floor, limit: Meta(ge=floor, le=limit)),
}


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """One test of one figure of a lane against one limit of a profile (each declared
    once below: compared and hashed by identity)."""

    #: the test's words in a reason ("error", "latency max")
    name: str
    #: the `LaneStats` figure it reads
    field: str
    unit: Literal["%", "ms"]
    #: the limit, read from the profile; inf when the profile turns the test off
    limit: Callable[[Any], float]
    comparison: Literal[">"] = ">"
    #: whether the figure may be missing (None: not measured, which passes)
    optional: bool = True
    #: the router's counter of probe windows that failed it (SLA rules)
    counter: str = ""

    def fails(self, value: float | None, limit: float) -> bool:
        return value is not None and _COMPARISONS[self.comparison][0](value, limit)

    def reason(self, label: str, value: float, limit: float) -> str:
        """`tcp/high error 62 % > 50 %`."""
        unit, sign = self.unit, self.comparison
        return f"{label} {self.name} {number(value)} {unit} {sign} {number(limit)} {unit}"


def _positive(value: float | None) -> float:
    """A limit that 0 (or null) turns off."""
    return value if value is not None and value > 0 else NO_LIMIT


def _tte(thresholds: ClassThresholds, which: str) -> float:
    tte = thresholds.time_to_establishment
    return _positive(getattr(tte, which)) if tte.enabled else NO_LIMIT


REACHABILITY_RULES: tuple[Rule, ...] = (
    Rule(
        "error",
        "error_pct",
        "%",
        lambda t: _positive(t.acceptable_error_threshold),
        optional=False,
    ),
    Rule("time-to-establishment max", "latency_max_ms", "ms", lambda t: _tte(t, "max")),
    Rule("time-to-establishment mean", "latency_mean_ms", "ms", lambda t: _tte(t, "mean")),
)

SLA_RULES: tuple[Rule, ...] = (
    Rule(
        "loss",
        "loss_pct",
        "%",
        lambda s: s.max_loss if s.max_loss < 100 else NO_LIMIT,
        optional=False,
        counter="exceeded-by-max-loss",
    ),
    Rule(
        "latency max",
        "latency_max_ms",
        "ms",
        lambda s: _positive(s.latency.max),
        counter="exceeded-by-max-latency",
    ),
    Rule(
        "latency mean",
        "latency_mean_ms",
        "ms",
        lambda s: _positive(s.latency.mean),
        counter="exceeded-by-mean-latency",
    ),
    Rule(
        "jitter",
        "jitter_ms",
        "ms",
        lambda s: _positive(s.max_jitter),
        counter="exceeded-by-max-jitter",
    ),
)


def enough_samples(lane: LaneStats, min_samples: int) -> bool:
    """The min-samples rule: a lane with fewer measurements is not judged."""
    return lane.count >= min_samples


def samples_constraint(min_samples: int) -> tuple[str, Any]:
    """The min-samples rule as a required msgspec field (a count left out is 0)."""
    return ("count", Annotated[int, Meta(ge=max(min_samples, 0))])


#: The limits of a rule set read from one profile, in the rules' order.
Limits = tuple[float, ...]


def limits_of(rules: tuple[Rule, ...], profile: ClassThresholds | SlaMetrics) -> Limits:
    return tuple(rule.limit(profile) for rule in rules)


def failing(rules: tuple[Rule, ...], limits: Limits, lane: LaneStats) -> list[tuple[Rule, float]]:
    """The full judgement: every rule the lane fails, with its limit."""
    return [
        (rule, limit)
        for rule, limit in zip(rules, limits, strict=True)
        if rule.fails(getattr(lane, rule.field), limit)
    ]


Precheck = Callable[[LaneStats], bool]
_PRECHECKS: dict[tuple[tuple[Rule, ...], Limits], Precheck] = {}


def precheck(rules: tuple[Rule, ...], limits: Limits) -> Precheck:
    """A function True exactly when `failing` is not empty, compiled from the rules with
    their limits inlined (tests turned off left out): the hot path's one comparison
    per test, and only failing lanes pay for `failing` and reasons."""
    key = (rules, limits)
    found = _PRECHECKS.get(key)
    if found is not None:
        return found
    tests = []
    for rule, limit in zip(rules, limits, strict=True):
        if limit == NO_LIMIT:
            continue
        sign = _COMPARISONS[rule.comparison][1]
        figure = f"lane.{rule.field}"
        test = f"{figure} {sign} {limit!r}"
        tests.append(f"({figure} is not None and {test})" if rule.optional else test)
    source = f"lambda lane: {' or '.join(tests) or 'False'}"
    check: Precheck = eval(source, {"__builtins__": {}})
    if len(_PRECHECKS) >= 4096:
        _PRECHECKS.clear()
    _PRECHECKS[key] = check
    return check


def constraints(rules: tuple[Rule, ...], limits: Limits) -> list[tuple[str, Any, Any]]:
    """msgspec fields (name, type, default) accepting exactly the figures no rule fails,
    on top of the wire contract's own constraints (a percentage stays within 0..100)."""
    fields: list[tuple[str, Any, Any]] = []
    for rule, limit in zip(rules, limits, strict=True):
        if limit == NO_LIMIT:
            continue
        accept = _COMPARISONS[rule.comparison][2]
        if rule.unit == "%":
            figure: Any = Annotated[float, accept(0, min(limit, 100.0))]
        else:
            figure = Annotated[float, accept(None, limit)]
        if rule.optional:
            fields.append((rule.field, figure | None, None))
        else:
            fields.append((rule.field, figure, 0.0))
    return fields
