"""The rules declared once (enforcer.rules) judge exactly as the old hand-written
judgement did (tests/legacy_judge.py): random window sequences against random
profiles go through both side by side; verdicts, reasons, SLA counters and the
pre-checks must agree, and the quiet decoder derived from the same rules must
accept exactly the lanes that pass."""

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from enforcer import judge as new
from enforcer.judge import Judge
from enforcer.quiet_types import REACHABILITY, SLA, quiet_decoder
from schemas.codec import encode
from schemas.config import ClassThresholds, LatencySla, SlaMetrics, TimeToEstablishment
from schemas.wire import Lane, LaneStats, WindowStats
from tests import legacy_judge as old

counts = st.sampled_from([0, 1, 2, 3, 10, 40])
percents = st.sampled_from([0.0, 5.0, 10.0, 24.9, 25.0, 25.1, 50.0, 99.9, 100.0])
latencies = st.one_of(st.none(), st.sampled_from([0.0, 1.0, 99.95, 100.0, 250.0, 250.04, 812.4]))
limits_ms = st.sampled_from([0.0, 100.0, 250.0, 500.0])

thresholds = st.builds(
    ClassThresholds,
    acceptable_error_threshold=st.sampled_from([0.0, 10.0, 25.0, 50.0, 100.0]),
    time_to_establishment=st.builds(
        TimeToEstablishment, enabled=st.booleans(), max=limits_ms, mean=limits_ms
    ),
)
slas = st.builds(
    SlaMetrics,
    max_loss=st.sampled_from([0.0, 10.0, 50.0, 100.0]),
    latency=st.builds(LatencySla, max=limits_ms, mean=limits_ms),
    max_jitter=st.one_of(st.none(), st.sampled_from([0.0, 2.0, 5.0])),
)


@st.composite
def lanes(draw: st.DrawFn, probe: bool) -> LaneStats:
    return LaneStats(
        protocol="icmp" if probe else draw(st.sampled_from(["tcp", "udp", "tls", "http"])),
        traffic_class=draw(st.sampled_from(["high", "best-effort"])),
        probe="ping" if probe else "",
        destination=draw(st.sampled_from(["127.0.0.1", "127.0.0.2"])) if probe else "",
        count=draw(counts),
        error_pct=draw(percents),
        loss_pct=draw(percents),
        latency_max_ms=draw(latencies),
        latency_mean_ms=draw(latencies),
        jitter_ms=draw(latencies),
    )


windows = st.lists(
    st.tuples(st.lists(lanes(False), max_size=4), st.lists(lanes(True), max_size=4)),
    min_size=1,
    max_size=8,
)


def same(old_verdict: old.Verdict, new_verdict: new.Verdict) -> bool:
    return (old_verdict.passed, old_verdict.reasons) == (new_verdict.passed, new_verdict.reasons)


def counters(excess: old.SlaExcess) -> list[str]:
    hits = [
        ("exceeded-by-max-loss", excess.loss),
        ("exceeded-by-max-latency", excess.latency_max),
        ("exceeded-by-mean-latency", excess.latency_mean),
        ("exceeded-by-max-jitter", excess.jitter),
    ]
    return [counter for counter, hit in hits if hit]


def quiet(lane: LaneStats, kind: int, judge: Judge, min_samples: int) -> bool:
    """Whether the quiet decoder of a one-lane layout accepts a window holding `lane`."""
    where = Lane(lane.protocol, lane.traffic_class, lane.source, lane.destination, lane.probe)
    decoder = quiet_decoder(((where, kind, judge.limits),), min_samples)
    window = WindowStats(service="s", route="r", window_start=0, window_end=5, lanes=[lane])
    try:
        decoder.decode(encode(window))
    except msgspec.ValidationError:
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(windows, thresholds, slas, st.sampled_from([0, 3, 10]))
def test_old_and_new_judgement_agree_on_random_window_sequences(
    sequence: list[tuple[list[LaneStats], list[LaneStats]]],
    profile: ClassThresholds,
    sla: SlaMetrics,
    min_samples: int,
) -> None:
    reachability, probe_sla = Judge.reachability(profile), Judge.sla(sla)
    old_reachability = old.ReachabilityLimits.of(profile)
    old_sla = old.SlaLimits.of(sla)
    for aggregates, probes in sequence:
        for lane in aggregates:
            before = old.judge_reachability(lane, profile, min_samples)
            after = new.judge_reachability(lane, profile, min_samples)
            assert same(before, after), lane
            assert old_reachability.exceeded(lane) == reachability.check(lane)
            passes = lane.count >= min_samples and not old_reachability.exceeded(lane)
            assert quiet(lane, REACHABILITY, reachability, min_samples) == passes
        old_verdicts, new_verdicts = [], []
        for lane in probes:
            before, excess = old.judge_sla(lane, sla, min_samples)
            after = new.judge_sla(lane, sla, min_samples)
            assert same(before, after), lane
            assert counters(excess) == [rule.counter for rule in after.failed]
            assert old_sla.exceeded(lane) == probe_sla.check(lane)
            passes = lane.count >= min_samples and not old_sla.exceeded(lane)
            assert quiet(lane, SLA, probe_sla, min_samples) == passes
            old_verdicts.append(before)
            new_verdicts.append(after)
        assert same(old.combine(old_verdicts), new.combine(new_verdicts))
