"""Traffic classes: the four names, highest priority first."""

from typing import Literal

TrafficClass = Literal["high", "medium", "low", "best-effort"]
TRAFFIC_CLASSES: tuple[TrafficClass, ...] = ("high", "medium", "low", "best-effort")
