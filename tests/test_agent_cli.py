"""`pathwatch agent` as a process: heartbeats, SIGHUP reload, SIGTERM drain,
and a clear error at start for an unknown plugin."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
from pathlib import Path

from pathwatch.runtime.bus import Bus
from schemas.codec import decode_message
from schemas.wire import AgentHeartbeat, MeasurementBatch
from tests.conftest import wait_for
from tests.netns import requires_root

PATHWATCH = str(Path(sys.executable).parent / "pathwatch")

CONFIG = """
tcp-probe-profiles:
  fast: {{probe-interval: 0.2, number-of-attempts: 1, probe-duration: 0.1,
         probe-address: [127.0.0.1], port: 9}}
services:
  web:
    service-routes:
      r1:
        next-hop: {{node: n1}}
        reachability-detection:
          probes: [{{name: {probe}, {kind}}}]
"""


def write(path: Path, probe: str, kind: str = "tcp-probe-profile: fast") -> str:
    text = CONFIG.format(probe=probe, kind=kind)
    path.write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@requires_root
async def test_agent_command_reloads_on_sighup_and_drains_on_sigterm(
    bus: Bus, nats_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "agent.yaml"
    first_hash = write(config, "conn")
    heartbeats: list[AgentHeartbeat] = []
    batches: list[MeasurementBatch] = []

    async def on_hb(msg: object) -> None:
        heartbeats.append(decode_message(msg.data, AgentHeartbeat))  # type: ignore[attr-defined]

    async def on_meas(msg: object) -> None:
        batches.append(decode_message(msg.data, MeasurementBatch))  # type: ignore[attr-defined]

    await bus.nc.subscribe("pw.agent.hb.*.cli-agent", cb=on_hb)
    await bus.nc.subscribe("pw.meas.web.r1", cb=on_meas)
    await bus.nc.flush()
    process = await asyncio.create_subprocess_exec(
        PATHWATCH,
        "agent",
        "-c",
        str(config),
        "--node",
        "n1",
        "--name",
        "cli-agent",
        "--nats",
        nats_url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for(lambda: len(heartbeats) >= 1, 15, what="first heartbeat")
        assert heartbeats[0].config_hash == first_hash
        await wait_for(lambda: len(batches) >= 1, 5, what="a batch")
        # port 9 on loopback has no listener
        assert {m.outcome for m in batches[0].items} == {"refused"}

        second_hash = write(config, "renamed")
        process.send_signal(signal.SIGHUP)
        await wait_for(
            lambda: any(b.items[0].probe == "renamed" for b in batches), 5, what="reloaded probe"
        )
        count = len(heartbeats)
        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), 10)
        assert returncode == 0
        # the drain sends a last heartbeat carrying the reloaded config's hash
        await wait_for(lambda: len(heartbeats) > count, 3, what="final heartbeat")
        assert heartbeats[-1].config_hash == second_hash
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_agent_command_refuses_unknown_plugin(nats_url: str, tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    write(config, "custom", kind="plugin: no-such-kind")
    process = await asyncio.create_subprocess_exec(
        PATHWATCH,
        "agent",
        "-c",
        str(config),
        "--node",
        "n1",
        "--nats",
        nats_url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert b"unknown probe plugin 'no-such-kind'" in stderr
