"""Per-address SLA verdict of a probe round (router icmp-probe-profile; every kind
judged per address, `schemas.probekinds`).

From the measurements of one probe-address: loss, latency min / max / mean,
jitter (mean absolute difference of consecutive RTTs), and whether the
address meets `sla-metrics` (max-loss, latency max, latency mean, optional
max-jitter), with the exceeded-by-* counters the router keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from schemas.config import SlaMetrics
from schemas.wire import Measurement


@dataclass(frozen=True)
class AddressSummary:
    """One probe-address over one round."""

    destination: str
    sent: int
    received: int
    loss_pct: float
    latency_min_ms: float | None
    latency_max_ms: float | None
    latency_mean_ms: float | None
    jitter_ms: float | None
    exceeded: list[str] = field(default_factory=list)

    @property
    def meets_sla(self) -> bool:
        return not self.exceeded


def summarize(destination: str, items: list[Measurement], sla: SlaMetrics) -> AddressSummary:
    """Loss, latency and jitter of `items` and the SLA tests they fail."""
    rtts = [m.latency_ms for m in items if m.outcome == "ok" and m.latency_ms is not None]
    sent = len(items)
    loss = 100.0 * (sent - len(rtts)) / sent if sent else 0.0
    mean = sum(rtts) / len(rtts) if rtts else None
    jitter = sum(abs(b - a) for a, b in pairwise(rtts)) / (len(rtts) - 1) if len(rtts) > 1 else None
    exceeded: list[str] = []
    if sent and loss > sla.max_loss:
        exceeded.append("max-loss")
    if rtts and sla.latency.max and max(rtts) > sla.latency.max:
        exceeded.append("max-latency")
    if mean is not None and sla.latency.mean and mean > sla.latency.mean:
        exceeded.append("mean-latency")
    if jitter is not None and sla.max_jitter is not None and jitter > sla.max_jitter:
        exceeded.append("max-jitter")
    return AddressSummary(
        destination=destination,
        sent=sent,
        received=len(rtts),
        loss_pct=loss,
        latency_min_ms=min(rtts) if rtts else None,
        latency_max_ms=max(rtts) if rtts else None,
        latency_mean_ms=mean,
        jitter_ms=jitter,
        exceeded=exceeded,
    )
