"""Per-agent and per-route subjects must match their payload (the real enforcer on a real
nats-server): a heartbeat naming another agent or node on an agent's own subject
`pw.agent.hb.<node>.<agent>` (the subject the server's permissions bind to the agent's
user) is refused and counted, so it can never make the enforcer track, and later call
silent, an agent that never spoke; fast evidence about one route on another route's
subject is refused too."""

from __future__ import annotations

import asyncio
import time
import uuid

from nats.aio.msg import Msg

from enforcer.service import run_enforcer
from pathwatch.runtime.bus import Bus
from pathwatch.runtime.configfile import parse_config
from schemas import subjects
from schemas.codec import decode_message, encode
from schemas.wire import AgentHeartbeat, Alarm, FastEvidence, RoleStatus
from tests.conftest import wait_for


def heartbeat(agent: str, node: str) -> bytes:
    return encode(
        AgentHeartbeat(
            agent=agent, node=node, version="1", config_hash="x", ts=time.time(), interval_s=0.5
        )
    )


async def test_a_heartbeat_or_evidence_off_its_own_subject_is_refused(bus: Bus) -> None:
    suffix = uuid.uuid4().hex[:6]
    service, node_a, node_b = f"subj-{suffix}", f"na-{suffix}", f"nb-{suffix}"
    detection = "reachability-detection: {detection-window: 1}"
    config = parse_config(
        f"enforcer: {{agent-silence-windows: 2}}\n"
        f"services:\n  {service}:\n    service-routes:\n"
        f"      r1: {{next-hop: {{node: {node_a}}}, {detection}}}\n"
        f"      r2: {{next-hop: {{node: {node_b}}}, {detection}}}\n"
    ).config
    instance = f"subj-{suffix}"
    alarms: list[Alarm] = []
    statuses: list[RoleStatus] = []

    async def on_alarm(msg: Msg) -> None:
        alarms.append(decode_message(msg.data, Alarm))

    async def on_status(msg: Msg) -> None:
        statuses.append(decode_message(msg.data, RoleStatus))

    await bus.nc.subscribe(f"{subjects.ALARM_PREFIX}.{subjects.SYSTEM_SERVICE}.*", cb=on_alarm)
    await bus.nc.subscribe(subjects.status("enforcer", instance), cb=on_status)
    stop = asyncio.Event()
    task = asyncio.create_task(run_enforcer(config, bus, stop=stop, instance=instance))
    try:
        await wait_for(lambda: bool(statuses), 10, what="the enforcer's first status")
        own = subjects.heartbeat(node_a, "agent-a")
        await bus.nc.publish(own, heartbeat("agent-a", node_a))
        await bus.nc.publish(own, heartbeat("agent-b", node_b))  # names another agent
        await bus.nc.publish(own, heartbeat("agent-a", node_b))  # names another node
        evidence = FastEvidence(service=service, route="r1", ts=time.time(), kind="link-down")
        await bus.nc.publish(subjects.fast(service, "r2"), encode(evidence))
        await bus.nc.flush()
        # agent-a falls silent: its agent-lost alarm is raised, none for the forged names
        await wait_for(lambda: any(a.agent == "agent-a" for a in alarms), 10, what="agent-a lost")
        # the refusals are counted in the enforcer's status (published every few seconds)
        await wait_for(
            lambda: statuses[-1].dropped.get("fast:subject") == 1,
            15,
            what="a status counting the refusals",
        )
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    # forged names were as old as agent-a's: their alarms would have gone out with its own,
    # on this same connection, before the flush's answer
    await bus.nc.flush()
    assert {alarm.agent for alarm in alarms} == {"agent-a"}
    dropped = statuses[-1].dropped
    assert dropped.get("heartbeat:subject") == 2
    assert dropped.get("fast:subject") == 1
