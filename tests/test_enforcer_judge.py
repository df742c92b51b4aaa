"""Judgement of windows: reasons that name the test and the numbers; min-samples."""

from enforcer.judge import combine, judge_reachability, judge_sla
from schemas.config import ClassThresholds, LatencySla, SlaMetrics, TimeToEstablishment
from schemas.wire import LaneStats


def lane(**kwargs: object) -> LaneStats:
    base: dict[str, object] = {"protocol": "tcp", "traffic_class": "high", "count": 10}
    base.update(kwargs)
    return LaneStats(**base)  # type: ignore[arg-type]


def test_error_threshold_reason_names_numbers() -> None:
    verdict = judge_reachability(
        lane(error_pct=62.0), ClassThresholds(acceptable_error_threshold=50), 3
    )
    assert verdict.passed is False
    assert verdict.reason == "tcp/high error 62 % > 50 %"


def test_time_to_establishment_max_and_mean() -> None:
    verdict = judge_reachability(
        lane(latency_max_ms=812.4, latency_mean_ms=300.0),
        ClassThresholds(time_to_establishment=TimeToEstablishment(max=500, mean=250)),
        3,
    )
    assert verdict.reasons == (
        "tcp/high time-to-establishment max 812.4 ms > 500 ms",
        "tcp/high time-to-establishment mean 300 ms > 250 ms",
    )


def test_zero_disables_a_test() -> None:
    thresholds = ClassThresholds(
        acceptable_error_threshold=0,
        time_to_establishment=TimeToEstablishment(max=0, mean=250),
    )
    verdict = judge_reachability(
        lane(error_pct=100, latency_max_ms=5000, latency_mean_ms=10), thresholds, 3
    )
    assert verdict.passed is True


def test_min_samples() -> None:
    verdict = judge_reachability(lane(count=2, error_pct=100), ClassThresholds(), 3)
    assert verdict.passed is None


def test_sla_per_probe_address() -> None:
    verdict = judge_sla(
        lane(
            protocol="icmp",
            traffic_class="best-effort",
            probe="ping",
            destination="127.0.0.2",
            loss_pct=50,
            latency_max_ms=300,
            latency_mean_ms=90,
        ),
        SlaMetrics(max_loss=10, latency=LatencySla(max=250, mean=100)),
        3,
    )
    assert verdict.reasons == (
        "icmp/best-effort ping 127.0.0.2 loss 50 % > 10 %",
        "icmp/best-effort ping 127.0.0.2 latency max 300 ms > 250 ms",
    )
    assert [rule.counter for rule in verdict.failed] == [
        "exceeded-by-max-loss",
        "exceeded-by-max-latency",
    ]


def test_combine_any_failure_fails() -> None:
    ok = judge_reachability(lane(), ClassThresholds(), 3)
    bad = judge_reachability(lane(error_pct=90), ClassThresholds(), 3)
    unjudged = judge_reachability(lane(count=0), ClassThresholds(), 3)
    assert combine([ok, bad, unjudged]).passed is False
    assert combine([ok, unjudged]).passed is None
    assert combine([ok, ok]).passed is True
