"""An example third-party probe kind: "counts" how many characters the target
address has, with the one probe signature. Registered in the tests through a
`*.dist-info/entry_points.txt` in the group `pathwatch.probes`."""

from __future__ import annotations

import time
from typing import Any

from agents.probe.base import Target
from schemas.wire import Measurement, Outcome


async def probe_example(target: Target, profile: Any, deadline: float) -> list[Measurement]:
    outcome: Outcome = "ok" if profile.options.get("fail") != "yes" else "error"
    return [
        target.measurement("tcp", time.time(), outcome, float(len(target.address)))
        for _ in range(profile.number_of_attempts)
    ]
