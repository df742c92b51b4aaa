"""Multi-host deployment: a real 3-node NATS cluster started from
deploy/nats/cluster (its accounts, per-role users and partition mapping), one
node per network namespace, clients in two more namespaces ("sites").

Checks that the deployed permissions hold (an agent cannot publish an alarm,
can publish measurements, which the server maps onto partitions; a router
reads only its own commands) and that killing one NATS node loses no alarm,
event or command published with JetStream acks, while a connected agent
reconnects within 5 s.

The 10.231.0.0/24 addresses exist only inside the namespaces this test
creates (joined by a bridge in a namespace of their own, no route out).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import nats
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError
from pyroute2 import netns as pyroute2_netns

from agents.routing.follower import command_consumer_name
from aggregator.partition import partition_of
from pathwatch.runtime.bus import Bus, BusOptions
from pathwatch.runtime.embedded import find_nats_server
from schemas import subjects
from tests.conftest import wait_for
from tests.netns import in_ns, namespaces, requires_root, sh, unique

pytestmark = requires_root

T = TypeVar("T")

DEPLOY_NATS = Path(__file__).resolve().parent.parent / "deploy" / "nats"
NODE_ADDRESSES = ["10.231.0.1", "10.231.0.2", "10.231.0.3"]
SITE_A_ADDRESS = "10.231.0.11"
SITE_B_ADDRESS = "10.231.0.12"
CLIENT_PORT = 4222
PASSWORD_VARS = (
    "SYS",
    "AGENT_SITE_A_EDGE",
    "AGENT_SITE_B_EDGE",
    "AGGREGATOR",
    "ENFORCER",
    "ROUTER_SITE_A_EDGE",
    "ROUTER_SITE_B_EDGE",
    "HEALER",
    "API",
    "ADMIN",
    "AGENT",
    "ROUTER",
    "NOTIFIER",
)
ROUNDS = 20
KILL_AFTER_ROUND = 6
PARTITIONS = 2  # deploy/nats/partitions.conf


def password(role_var: str) -> str:
    return f"test-{role_var.lower()}"


def server_env() -> dict[str, str]:
    return {f"PATHWATCH_NATS_PW_{var}": password(var) for var in PASSWORD_VARS}


def template_cluster(target: Path) -> list[Path]:
    """Copy deploy/nats into `target` with the test's addresses and store dirs."""
    shutil.copytree(DEPLOY_NATS, target / "nats")
    configs: list[Path] = []
    for index, address in enumerate(NODE_ADDRESSES, start=1):
        path = target / "nats" / "cluster" / f"nats-{index}.conf"
        text = path.read_text()
        for loopback_index, node_address in enumerate(NODE_ADDRESSES, start=1):
            text = text.replace(f"127.0.0.{loopback_index}", node_address)
        text, count = re.subn(r"store_dir: \S+", f"store_dir: {target / f'store-{index}'}", text)
        assert count == 1, f"{path.name} has no jetstream store_dir"
        assert address in text
        path.write_text(text)
        configs.append(path)
    return configs


@dataclass
class Bed:
    """Namespaces of the test: three NATS hosts and two client sites."""

    nodes: list[str]
    site_a: str
    site_b: str

    @property
    def urls(self) -> list[str]:
        return [f"nats://{address}:{CLIENT_PORT}" for address in NODE_ADDRESSES]


@contextlib.contextmanager
def switched_hosts() -> Iterator[Bed]:
    """Five host namespaces, each with one veth into a bridge in a sixth namespace."""
    with namespaces("sw", "n1", "n2", "n3", "sa", "sb") as names:
        switch, *hosts = names
        in_ns(switch, "ip", "link", "add", "br0", "type", "bridge")
        in_ns(switch, "ip", "link", "set", "br0", "up")
        for host, address in zip(
            hosts, [*NODE_ADDRESSES, SITE_A_ADDRESS, SITE_B_ADDRESS], strict=True
        ):
            host_if, switch_if = unique("vh"), unique("vs")
            sh(
                "ip", "link", "add", host_if, "netns", host, "type", "veth",
                "peer", "name", switch_if, "netns", switch,
            )  # fmt: skip
            in_ns(switch, "ip", "link", "set", switch_if, "master", "br0", "up")
            in_ns(host, "ip", "addr", "add", f"{address}/24", "dev", host_if)
            in_ns(host, "ip", "link", "set", host_if, "up")
        yield Bed(nodes=hosts[:3], site_a=hosts[3], site_b=hosts[4])


@dataclass
class Cluster:
    """The three nats-server processes, one per host namespace."""

    configs: list[Path]
    bed: Bed
    processes: list[subprocess.Popen[bytes] | None] = field(default_factory=list)

    def start(self) -> None:
        binary = str(find_nats_server())
        env = server_env()
        for config, node in zip(self.configs, self.bed.nodes, strict=True):
            log = (config.parent / f"{config.stem}.log").open("ab")
            process = subprocess.Popen(
                ["ip", "netns", "exec", node, binary, "-c", str(config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
            log.close()
            self.processes.append(process)

    def check_alive(self) -> None:
        for config, process in zip(self.configs, self.processes, strict=True):
            if process is not None and process.poll() is not None:
                log = (config.parent / f"{config.stem}.log").read_text(errors="replace")
                raise AssertionError(f"{config.name} exited {process.returncode}: {log[-2000:]}")

    def kill(self, index: int) -> None:
        process = self.processes[index]
        assert process is not None
        process.kill()
        process.wait()
        self.processes[index] = None

    def stop(self) -> None:
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def run_in_namespace(namespace: str, coroutine_factory: Any) -> threading.Thread:
    """Run `asyncio.run(coroutine_factory())` in a thread that lives in `namespace`.

    setns(CLONE_NEWNET) changes only the calling thread, so every socket the
    client opens (and reopens on reconnect) is inside that namespace."""
    failure: list[BaseException] = []

    def body() -> None:
        try:
            pyroute2_netns.setns(namespace, flags=0)
            asyncio.run(coroutine_factory())
        except BaseException as exc:  # re-raised by join_checked
            failure.append(exc)

    thread = threading.Thread(target=body, name=f"ns-{namespace}", daemon=True)
    thread.failure = failure  # type: ignore[attr-defined]
    thread.start()
    return thread


def join_checked(thread: threading.Thread, timeout: float) -> None:
    thread.join(timeout)
    assert not thread.is_alive(), f"{thread.name} still running after {timeout:g} s"
    failure: list[BaseException] = thread.failure  # type: ignore[attr-defined]
    if failure:
        raise failure[0]


def user_options(user: str, urls: list[str], **kwargs: Any) -> BusOptions:
    var = user.upper().replace("-", "_")
    return BusOptions.from_url(
        ",".join(urls), name=user, user=user, password=password(var), **kwargs
    )


async def ensure_when_ready(admin: Bus) -> bool:
    try:
        await admin.ensure()
    except Exception:
        return False
    return True


@dataclass
class AgentB:
    """What the agent in site B saw: when it reconnected after the kill."""

    connected: threading.Event = field(default_factory=threading.Event)
    killed: threading.Event = field(default_factory=threading.Event)
    measurement_seen: threading.Event = field(default_factory=threading.Event)
    killed_at: float = 0.0
    reconnected_at: float | None = None
    connected_url: str = ""


def agent_b_main(victim_url: str, agent_b: AgentB) -> Any:
    """Agent of site B, connected to the node that will be killed."""

    async def main() -> None:
        options = user_options("agent-site-b-edge", [victim_url], connect_timeout=2.0)
        bus = await Bus.connect(options)
        reconnected = asyncio.Event()

        async def on_reconnect() -> None:
            agent_b.reconnected_at = time.monotonic()
            reconnected.set()

        bus.reconnect_callbacks.append(on_reconnect)
        agent_b.connected_url = str(bus.nc.connected_url.netloc if bus.nc.connected_url else "")
        agent_b.connected.set()
        try:
            await asyncio.to_thread(agent_b.killed.wait, 30)
            await asyncio.wait_for(reconnected.wait(), timeout=10)
            # the subscriber may itself be resubscribing after the kill: repeat
            # the measurement until the scenario in site A says it arrived
            deadline = time.monotonic() + 10
            while not agent_b.measurement_seen.is_set() and time.monotonic() < deadline:
                await bus.nc.publish(subjects.meas("web", "site-b"), b"after-reconnect")
                await bus.nc.flush()
                await asyncio.to_thread(agent_b.measurement_seen.wait, 0.2)
        finally:
            await bus.close()

    return main


@dataclass
class Outcome:
    """What the site-A scenario observed, checked by the test afterwards."""

    permission_errors: list[str] = field(default_factory=list)
    alarms_seen: list[str] = field(default_factory=list)
    meas_seen: list[str] = field(default_factory=list)
    replicas: dict[str, int] = field(default_factory=dict)
    published: dict[str, list[int]] = field(default_factory=dict)
    stored: dict[str, list[int]] = field(default_factory=dict)
    router_commands: list[str] = field(default_factory=list)
    router_foreign_refused: bool = False
    router_path_state: bytes = b""
    victim: str = ""


KINDS: dict[str, Callable[[int], str]] = {
    subjects.STREAM_ALARMS: lambda n: subjects.alarm("web", f"r{n % 2}"),
    subjects.STREAM_EVENTS: lambda n: subjects.event("web", f"r{n % 2}"),
    subjects.STREAM_COMMANDS: lambda n: subjects.cmd_route(
        "site-a-edge" if n % 2 == 0 else "site-b-edge"
    ),
}


async def publish_acked(bus: Bus, subject: str, payload: bytes, msg_id: str) -> None:
    """Publish with a JetStream ack, retrying (same Nats-Msg-Id) across the node loss."""
    deadline = time.monotonic() + 25
    while True:
        try:
            await bus.js.publish(subject, payload, timeout=1.0, headers={"Nats-Msg-Id": msg_id})
            return
        except (nats.errors.Error, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)  # back-off between attempts, not a readiness wait


async def retrying(factory: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """Await `factory()` until it succeeds: after a node loss, JetStream
    requests time out until the affected raft groups have elected leaders."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await factory()
        except (nats.errors.Error, TimeoutError):
            if time.monotonic() > deadline:
                raise


async def read_stream(admin: Bus, stream: str) -> list[tuple[str, bytes]]:
    info = await admin.js.stream_info(stream)
    messages = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = await admin.js.get_msg(stream, seq)
        messages.append((str(message.subject), bytes(message.data or b"")))
    return messages


def site_a_main(bed: Bed, cluster: Cluster, agent_b: AgentB, outcome: Outcome) -> Any:
    """Everything that runs in site A: admin, enforcer, agent A, router A."""

    async def main() -> None:
        admin = await Bus.connect(user_options("admin", bed.urls, replicas=3))
        try:
            await wait_for(
                lambda: ensure_when_ready(admin), timeout=20, what="JetStream cluster ready"
            )
            for stream in (*KINDS, f"KV_{subjects.KV_PATHS}"):
                info = await admin.js.stream_info(stream)
                outcome.replicas[stream] = info.config.num_replicas or 0
            await check_agent_permissions(bed, admin, outcome)
            await kill_and_publish(bed, cluster, admin, agent_b, outcome)
            await check_router(bed, outcome)
        finally:
            await admin.close()

    return main


async def check_agent_permissions(bed: Bed, admin: Bus, outcome: Outcome) -> None:
    """An agent's alarm is refused (error callback) and reaches nobody; its measurement passes."""
    await admin.nc.subscribe("pw.alarm.>", cb=functools.partial(_append, outcome.alarms_seen))
    await admin.nc.subscribe("pw.meas.>", cb=functools.partial(_append, outcome.meas_seen))
    await admin.nc.flush()

    async def error_cb(exc: Exception) -> None:
        outcome.permission_errors.append(str(exc))

    agent = await nats.connect(
        servers=bed.urls,
        user="agent-site-a-edge",
        password=password("AGENT_SITE_A_EDGE"),
        error_cb=error_cb,
    )
    try:
        # interest crosses the cluster asynchronously: publish measurements
        # until one arrives, then the alarm subscription (made first, on the
        # same connection) has reached the agent's server too
        async def measurement_arrived(marker: bytes) -> bool:
            await agent.publish(subjects.meas("web", "site-a"), marker)
            await agent.flush()
            await asyncio.sleep(0.05)  # pacing of the repeated probe message
            return bool(outcome.meas_seen)

        await wait_for(
            lambda: measurement_arrived(b"interest"), timeout=5, what="subscriptions in place"
        )
        seen_before = len(outcome.meas_seen)
        await agent.publish(subjects.alarm("web", "site-a"), b'{"forged": true}')
        # one connection's messages arrive in order: once the measurement sent
        # after the alarm has arrived, the alarm would have arrived too
        await agent.publish(subjects.meas("web", "site-a"), b"marker")
        await agent.flush()
        await wait_for(
            lambda: any("permissions violation" in e.lower() for e in outcome.permission_errors),
            timeout=5,
            what="permissions violation reported to the agent",
        )
        await wait_for(
            lambda: len(outcome.meas_seen) > seen_before, timeout=5, what="agent measurement"
        )
    finally:
        await agent.close()
    try:
        await admin.js.get_last_msg(subjects.STREAM_ALARMS, subjects.alarm("web", "site-a"))
    except NotFoundError:
        pass
    else:
        outcome.alarms_seen.append("stored in PATHWATCH_ALARMS")


async def _append(into: list[str], msg: Any) -> None:
    into.append(str(msg.subject))


async def kill_and_publish(
    bed: Bed, cluster: Cluster, admin: Bus, agent_b: AgentB, outcome: Outcome
) -> None:
    """Publish alarms, events and commands with acks; kill the alarms leader midway."""
    leader = (await admin.js.stream_info(subjects.STREAM_ALARMS)).cluster
    assert leader is not None and leader.leader
    outcome.victim = leader.leader
    victim_index = int(leader.leader.rsplit("-", 1)[1]) - 1
    agent_thread = run_in_namespace(bed.site_b, agent_b_main(bed.urls[victim_index], agent_b))
    assert await asyncio.to_thread(agent_b.connected.wait, 10), "agent B did not connect"

    enforcer = await Bus.connect(user_options("enforcer", bed.urls))
    try:
        for n in range(ROUNDS):
            if n == KILL_AFTER_ROUND:
                cluster.kill(victim_index)
                agent_b.killed_at = time.monotonic()
                agent_b.killed.set()
            for stream, subject_of in KINDS.items():
                payload = f"{stream}:{n}".encode()
                await publish_acked(enforcer, subject_of(n), payload, f"{stream}-{n}")
                outcome.published.setdefault(stream, []).append(n)
        # the bucket's raft group may still be electing a leader after the kill
        paths = await retrying(lambda: enforcer.kv(subjects.KV_PATHS))
        await retrying(lambda: paths.put(subjects.path_key("web", "r0"), b'{"state": "up"}'))
    finally:
        await enforcer.close()
    await wait_for(
        lambda: any(s.endswith(".web.site-b") for s in outcome.meas_seen),
        timeout=10,
        what="agent B measurement after reconnect",
    )
    agent_b.measurement_seen.set()
    await asyncio.to_thread(join_checked, agent_thread, 15)
    for stream in KINDS:
        messages = await retrying(functools.partial(read_stream, admin, stream))
        outcome.stored[stream] = sorted(
            int(data.decode().rsplit(":", 1)[1]) for _, data in messages
        )


async def check_router(bed: Bed, outcome: Outcome) -> None:
    """Router A pulls its own commands; a consumer on site B's commands is refused."""
    router_errors: list[str] = []

    async def error_cb(exc: Exception) -> None:
        router_errors.append(str(exc))

    router = await nats.connect(
        servers=bed.urls,
        user="router-site-a-edge",
        password=password("ROUTER_SITE_A_EDGE"),
        error_cb=error_cb,
        inbox_prefix="_INBOX_router-site-a-edge",  # the only inbox its user may read
    )
    js = router.jetstream()
    try:
        # after the kill the JetStream meta leader may still be in election
        own = await retrying(
            lambda: js.pull_subscribe(
                subjects.cmd_route("site-a-edge"),
                durable=command_consumer_name("site-a-edge"),
                stream=subjects.STREAM_COMMANDS,
            )
        )
        while len(outcome.router_commands) < ROUNDS // 2:
            for message in await own.fetch(ROUNDS, timeout=5):
                outcome.router_commands.append(message.data.decode())
                await message.ack()
        foreign = ConsumerConfig(
            name=command_consumer_name("site-a-edge"),
            durable_name=command_consumer_name("site-a-edge"),
            filter_subject=subjects.cmd_route("site-b-edge"),
        )
        with contextlib.suppress(nats.errors.Error, TimeoutError, asyncio.TimeoutError):
            await js.add_consumer(subjects.STREAM_COMMANDS, config=foreign, timeout=1.0)
            outcome.router_foreign_refused = False
            return
        refused_subject = (
            "$JS.API.CONSUMER.CREATE.PATHWATCH_COMMANDS."
            f"{command_consumer_name('site-a-edge')}.{subjects.cmd_route('site-b-edge')}"
        )
        await wait_for(
            lambda: any(refused_subject.lower() in e.lower() for e in router_errors),
            timeout=5,
            what="permissions violation for the foreign consumer",
        )
        outcome.router_foreign_refused = True
        paths = await js.key_value(subjects.KV_PATHS)
        entry = await retrying(lambda: paths.get(subjects.path_key("web", "r0")))
        outcome.router_path_state = bytes(entry.value or b"")
    finally:
        await router.close()


def test_cluster_permissions_and_node_loss(tmp_path: Path) -> None:
    configs = template_cluster(tmp_path)
    outcome = Outcome()
    agent_b = AgentB()
    with switched_hosts() as bed:
        cluster = Cluster(configs=configs, bed=bed)
        try:
            cluster.start()
            site_a = run_in_namespace(bed.site_a, site_a_main(bed, cluster, agent_b, outcome))
            site_a.join(90)
            cluster.check_alive()
            join_checked(site_a, 0)
        finally:
            cluster.stop()

    # streams and KV at 3 replicas
    assert outcome.replicas == {
        subjects.STREAM_ALARMS: 3,
        subjects.STREAM_EVENTS: 3,
        subjects.STREAM_COMMANDS: 3,
        f"KV_{subjects.KV_PATHS}": 3,
    }
    # an agent's alarm is refused and reaches no subscriber nor the stream
    assert any(
        "permissions violation for publish" in e.lower() and "pw.alarm.web.site-a" in e
        for e in outcome.permission_errors
    ), outcome.permission_errors
    assert subjects.alarm("web", "site-a") not in outcome.alarms_seen, outcome.alarms_seen
    assert "stored in PATHWATCH_ALARMS" not in outcome.alarms_seen
    # its measurement passes, rewritten onto its partition by the server
    expected_partition = partition_of("web", "site-a", PARTITIONS)
    assert f"pw.meas.{expected_partition}.web.site-a" in outcome.meas_seen, outcome.meas_seen
    # nothing lost or duplicated across the node kill
    for stream in KINDS:
        assert outcome.stored[stream] == list(range(ROUNDS)), (stream, outcome.stored[stream])
    # agent B reconnected within 5 s of its server dying
    assert agent_b.reconnected_at is not None
    reconnect_s = agent_b.reconnected_at - agent_b.killed_at
    print(f"agent reconnected {reconnect_s:.3f} s after {outcome.victim} was killed")
    assert reconnect_s < 5.0
    # the router read exactly its own commands and could not open site B's
    assert len(outcome.router_commands) == ROUNDS // 2
    assert all(c.startswith(f"{subjects.STREAM_COMMANDS}:") for c in outcome.router_commands)
    assert sorted(int(c.rsplit(":", 1)[1]) for c in outcome.router_commands) == list(
        range(0, ROUNDS, 2)
    )
    assert outcome.router_foreign_refused
    assert outcome.router_path_state == b'{"state": "up"}'
