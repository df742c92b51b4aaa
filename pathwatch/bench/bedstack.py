"""Every pathwatch part running on the failover test bed (pathwatch.testbed).

`Stack` runs inside the bed's client namespace (await it through
`agents.nsexec.run_in_netns(bed.client, ...)`): an embedded nats-server on
the client's loopback, the aggregator, the enforcer, the agent (UDP echo
probes pinned to each path), the router (node `client`, mode `best`, the
client's kernel table) and optionally the healer (its own /32 to
HEALER_ADDRESS), each on its own NATS connection. It also runs the UDP echo
server (a socket inside the server namespace), a steady client stream
(`Stream`), and reads the truth the measurements need: the path state in KV
and the route the client's kernel uses to reach the service. A `Timeline` records, with the
wall-clock time each arrived, every piece of fast evidence on the bed and
every change of path 1's state in KV, so a run can be broken down hop by hop.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import socket
import struct
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError
from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE

from agents.agent import Agent, AgentOptions
from agents.healer.healer import Healer
from agents.nsexec import socket_in_netns
from agents.router import run_router
from aggregator.service import run_aggregator
from enforcer.service import run_enforcer
from pathwatch.bench.echo import EchoProcess
from pathwatch.runtime.bus import Bus, BusOptions, PathStateFollower
from pathwatch.runtime.configfile import parse_config
from pathwatch.runtime.embedded import EmbeddedNats, free_port
from pathwatch.testbed import (
    ECHO_PORT,
    HEALER_ADDRESS,
    SERVICE_NET,
    STREAM_ADDRESS,
    Bed,
    bed_host,
)
from schemas import subjects
from schemas.codec import DecodeError, decode_message
from schemas.config import PathwatchConfig
from schemas.wire import FastEvidence, PathState

log = logging.getLogger("pathwatch.bedstack")

SERVICE = "svc"
ROUTES = ("path-1", "path-2")
#: The reference service: the same two paths, probed with confirm mode off.
REFERENCE = "ref"
#: Its address (the router routes it like the service's) and its probes' payload.
REFERENCE_ADDRESS = bed_host(100, 30)
REFERENCE_PAYLOAD = "pathwatch-ref"
PROBE_PAYLOAD = "pathwatch"
STOP_GRACE_S = 3.0


@dataclass(frozen=True)
class StackOptions:
    """Timing of the parts on the bed."""

    probe_interval: float = 0.1
    consecutive_failures: int = 3
    detection_window: float = 1.0
    hold_down: float = 5.0
    healer: bool = True
    #: Without the agent nothing probes: the healer's own check is the only evidence.
    agent: bool = True
    liveness_interval: float = 0.2
    liveness_timeout: float = 1.0
    best_effort: bool = True
    #: re-probe interval of the service's probes (0: confirm mode off)
    confirm_interval: float = 0.01
    #: floor of the reply timeout of the service's probes
    reply_timeout_min: float = 0.02
    #: also run the reference service (confirm mode off) on the same paths
    reference: bool = False


def _service_text(bed: Bed, options: StackOptions, name: str, address: str, profile: str) -> str:
    detection = (
        f"{{detection-window: {options.detection_window}, hold-down: {options.hold_down},"
        f" max-hold-down: {options.hold_down},"
        f" consecutive-failures: {options.consecutive_failures}, reachability-profile: bed,"
        f" probes: [{{name: echo, udp-probe-profile: {profile}}}]}}"
    )
    routes = []
    for route, interface, gateway, source, cost in (
        (ROUTES[0], bed.client_if1, bed.gateway1, bed.client_address1, 10),
        (ROUTES[1], bed.client_if2, bed.gateway2, bed.client_address2, 20),
    ):
        routes.append(
            f"      {route}:\n"
            f"        next-hop: {{node: client, interface: {interface}, gateway-ip: {gateway},"
            f" source-address: {source}}}\n"
            f"        cost: {cost}\n"
            f"        reachability-detection: {detection}\n"
        )
    return (
        f"  {name}:\n"
        f"    address: [{address}]\n"
        f"    service-policy: {{best-effort: {'true' if options.best_effort else 'false'}}}\n"
        "    service-routes:\n" + "".join(routes)
    )


def _profile_text(name: str, options: StackOptions, confirm: float, payload: str) -> str:
    return (
        f"  {name}: {{probe-interval: {options.probe_interval}, number-of-attempts: 1,"
        f" probe-duration: {options.probe_interval}, probe-address: [{STREAM_ADDRESS}],"
        f" port: {ECHO_PORT}, confirm-interval: {confirm}, payload: {payload},"
        f" reply-timeout: {{min: {options.reply_timeout_min}}}}}\n"
    )


def bed_config_text(bed: Bed, options: StackOptions, nats_url: str) -> str:
    """The pathwatch config of the bed (YAML)."""
    profiles = _profile_text("echo", options, options.confirm_interval, PROBE_PAYLOAD)
    services = _service_text(bed, options, SERVICE, str(SERVICE_NET), "echo")
    if options.reference:
        profiles += _profile_text("echo-ref", options, 0, REFERENCE_PAYLOAD)
        services += _service_text(bed, options, REFERENCE, f"{REFERENCE_ADDRESS}/32", "echo-ref")
    return (
        f'nats: {{url: "{nats_url}"}}\n'
        "router: {mode: best}\n"
        "enforcer: {lease-ttl: 3, agent-silence-windows: 5}\n"
        f"healer: {{liveness-check-interval: {options.liveness_interval},"
        f" liveness-check-timeout: {options.liveness_timeout}}}\n"
        "reachability-profiles:\n"
        "  bed:\n"
        "    udp:\n"
        "      best-effort: {acceptable-error-threshold: 25,"
        " time-to-establishment: {enabled: false}}\n"
        "udp-probe-profiles:\n" + profiles + "services:\n" + services
    )


def start_echo(bed: Bed) -> EchoProcess:
    """The UDP echo at STREAM_ADDRESS:ECHO_PORT inside the server namespace, served by a
    process of its own (`pathwatch.bench.echo`): a far end that never waits for pathwatch."""
    sock = socket_in_netns(bed.server, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((STREAM_ADDRESS, ECHO_PORT))
    except OSError:
        sock.close()
        raise
    return EchoProcess(sock)


@dataclass
class Stream:
    """A steady UDP stream from the client to the echo server: one datagram every `every` s."""

    every: float = 0.01
    #: send time of each datagram, by sequence number (they only grow)
    sent: list[float] = field(default_factory=list)
    answered: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # in the client namespace
        self.sock.setblocking(False)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._readable)
        self._task = asyncio.create_task(self._send(), name="bed-stream")

    async def _send(self) -> None:
        seq = 0
        while True:
            self.sent.append(time.monotonic())
            with contextlib.suppress(OSError):  # no route for a moment: a lost datagram
                self.sock.sendto(struct.pack("!Q", seq), (STREAM_ADDRESS, ECHO_PORT))
            seq += 1
            await asyncio.sleep(self.every)

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            if len(data) == 8:
                self.answered[struct.unpack("!Q", data)[0]] = time.monotonic()

    def flowing_since(self, after: float, run: int = 10) -> float | None:
        """Send time of the first datagram sent after `after` that starts `run` answered ones."""
        seqs = range(bisect.bisect_left(self.sent, after), len(self.sent))
        streak_start: int | None = None
        streak = 0
        for seq in seqs:
            if seq in self.answered:
                streak_start = seq if streak == 0 else streak_start
                streak += 1
                if streak >= run and streak_start is not None:
                    return self.sent[streak_start]
            else:
                streak = 0
        return None

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


@dataclass
class Timeline:
    """Fast evidence and path-1 KV changes as the bench saw them (wall-clock arrival)."""

    evidence: list[tuple[float, FastEvidence]] = field(default_factory=list)
    paths: dict[str, list[tuple[float, PathState]]] = field(default_factory=dict)
    malformed: Counter[str] = field(default_factory=Counter)

    async def on_fast(self, msg: Msg) -> None:
        with contextlib.suppress(DecodeError):
            self.evidence.append((time.time(), decode_message(msg.data, FastEvidence)))

    def first_evidence(
        self, service: str, route: str, after: float
    ) -> tuple[float, FastEvidence] | None:
        """The first down evidence of a route sent at or after `after` (wall clock)."""
        for seen, evidence in self.evidence:
            if (
                (evidence.service, evidence.route) == (service, route)
                and evidence.ts >= after
                and evidence.kind in ("link-down", "consecutive-failures", "neighbour-unresolved")
            ):
                return seen, evidence
        return None

    def first_out_of_service(self, key: str, after: float) -> tuple[float, PathState] | None:
        """The first state of `key` out of service decided at or after `after`."""
        for seen, state in self.paths.get(key, []):
            if not state.in_service and state.updated >= after:
                return seen, state
        return None

    def take_downs(self, key: str, start: float, end: float) -> list[str]:
        """Why `key` left service, each time it did between `start` and `end`."""
        reasons: list[str] = []
        was_in = True
        for _, state in self.paths.get(key, []):
            if start <= state.updated < end and was_in and not state.in_service:
                reasons.append(state.reason)
            was_in = state.in_service
        return reasons


class RouteWatch:
    """Changes of the router's route to the service prefix, as netlink announces them
    (wall-clock arrival, gateway; None: deleted or multipath), in the client namespace."""

    def __init__(self, prefix: str, protocol: int) -> None:
        self.prefix, length = prefix.split("/")
        self.length = int(length)
        self.protocol = protocol
        self.changes: list[tuple[float, str | None]] = []
        self._ipr = AsyncIPRoute()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._ipr.bind(groups=RTMGRP_IPV4_ROUTE)
        self._task = asyncio.create_task(self._run(), name="bench-route-watch")

    async def _run(self) -> None:
        while True:
            async for message in self._ipr.get():
                if (
                    message.get("dst") == self.prefix
                    and message["dst_len"] == self.length
                    and message["proto"] == self.protocol
                ):
                    gateway = message.get("gateway")
                    deleted = message.get("event") == "RTM_DELROUTE"
                    self.changes.append(
                        (time.time(), None if deleted or not gateway else str(gateway))
                    )

    def left(self, gateway: str, after: float) -> float | None:
        """When the route first stopped using `gateway` at or after `after`."""
        for at, now_via in self.changes:
            if at >= after and now_via != gateway:
                return at
        return None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._ipr.close()


class Stack:
    """Everything running on the bed: `async with Stack(bed, options)`, in the client namespace."""

    def __init__(self, bed: Bed, options: StackOptions | None = None) -> None:
        self.bed = bed
        self.options = options or StackOptions()
        self._tmp = tempfile.TemporaryDirectory(prefix="pathwatch-bed-")
        self.port = free_port()
        self.nats = EmbeddedNats(store_dir=Path(self._tmp.name) / "nats", port=self.port)
        self.config: PathwatchConfig = parse_config(
            bed_config_text(bed, self.options, self.nats.url)
        ).config
        self.stop = asyncio.Event()
        self.buses: list[Bus] = []
        self.tasks: dict[asyncio.Task[None], str] = {}
        self.healer: Healer | None = None
        self.agent: Agent | None = None
        self.bus: Bus | None = None
        self.echo: EchoProcess | None = None
        self.stream = Stream()
        self.timeline = Timeline()
        self.routes: RouteWatch | None = None
        self._closers: list[Callable[[], None]] = []
        self._follower: PathStateFollower | None = None
        self._ipr: AsyncIPRoute | None = None

    async def _connect(self, role: str) -> Bus:
        bus = await Bus.connect(BusOptions.from_url(self.nats.url, name=f"bed-{role}"))
        self.buses.append(bus)
        return bus

    def _spawn(self, name: str, coroutine: Coroutine[Any, Any, None]) -> None:
        self.tasks[asyncio.create_task(coroutine, name=name)] = name

    async def __aenter__(self) -> Stack:
        await asyncio.to_thread(self.nats.start)
        try:
            self.bus = await self._connect("observer")
            await self.bus.ensure()
            await self._observe(self.bus)
            self.routes = RouteWatch(str(SERVICE_NET), self.config.router.protocol)
            await self.routes.start()
            self.echo = start_echo(self.bed)
            self._ipr = AsyncIPRoute()
            config, stop = self.config, self.stop
            self._spawn(
                "enforcer",
                run_enforcer(config, await self._connect("enforcer"), stop=stop, instance="bed"),
            )
            self._spawn(
                "aggregator", run_aggregator(config, await self._connect("aggregator"), stop=stop)
            )
            if self.options.agent:
                self.agent = Agent(
                    config,
                    await self._connect("agent"),
                    agent_name="client",
                    node="client",
                    options=AgentOptions(heartbeat_interval=1.0),
                )
                self._spawn("agent", self.agent.run(stop))
            self._spawn(
                "router",
                run_router(config, await self._connect("router"), stop=stop, node="client"),
            )
            if self.options.healer:
                self.healer = Healer(
                    config,
                    await self._connect("healer"),
                    service=SERVICE,
                    route=ROUTES[0],
                    destination=[HEALER_ADDRESS],
                )
                self._spawn("healer", self.healer.run(stop))
            self.stream.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def _observe(self, bus: Bus) -> None:
        """Start the timeline: fast evidence, and path 1's state in KV."""
        await bus.nc.subscribe(subjects.FAST_ALL, cb=self.timeline.on_fast)

        def changed(key: str | None) -> None:
            follower = self._follower
            state = None if follower is None or key is None else follower.states.get(key)
            if key is not None and state is not None:
                self.timeline.paths.setdefault(key, []).append((time.time(), state))

        self._follower = PathStateFollower(
            bus, changed, lambda: None, self.timeline.malformed, name="bench"
        )
        await self._follower.resync()

    def on_close(self, closer: Callable[[], None]) -> None:
        """Call `closer` when the stack closes (before the parts stop)."""
        self._closers.append(closer)

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def check_alive(self) -> None:
        """Raise if a part has died (so a test fails with its error, not a timeout)."""
        for task, name in self.tasks.items():
            if task.done() and not self.stop.is_set():
                error = task.exception()
                raise RuntimeError(f"{name} stopped: {error!r}")

    async def close(self) -> None:
        for closer in self._closers:
            closer()
        self._closers = []
        self.stop.set()
        self.stream.close()
        if self._follower is not None:
            with contextlib.suppress(Exception):
                await self._follower.stop()
        if self.routes is not None:
            await self.routes.close()
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=STOP_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
        for bus in self.buses:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(bus.close(), 1.0)
        if self.echo is not None:
            self.echo.close()
        if self._ipr is not None:
            self._ipr.close()
        await asyncio.to_thread(self.nats.stop)
        self._tmp.cleanup()

    # --- NATS outage ----------------------------------------------------------------

    async def stop_nats(self) -> None:
        await asyncio.to_thread(self.nats.stop)

    async def start_nats(self) -> None:
        self.nats = EmbeddedNats(store_dir=self.nats.store_dir, port=self.port)
        await asyncio.to_thread(self.nats.start)

    # --- the truth ----------------------------------------------------------------------

    async def path_state(self, route: str, service: str = SERVICE) -> PathState | None:
        assert self.bus is not None
        kv = await self.bus.kv(subjects.KV_PATHS)
        try:
            entry = await kv.get(subjects.path_key(service, route))
            return decode_message(entry.value or b"", PathState)
        except (KeyNotFoundError, DecodeError):
            return None

    async def kernel_gateway(self, address: str = STREAM_ADDRESS) -> str | None:
        """The gateway the client's kernel uses for `address` now (`ip route get`)."""
        assert self._ipr is not None
        try:
            found = await self._ipr.route("get", dst=address)
        except Exception:  # no route at all
            return None
        for message in found:
            gateway = message.get("gateway")
            return str(gateway) if gateway else None
        return None

    async def router_gateway(self) -> str | None:
        """The gateway of the router's own (protocol 199) route to the service prefix."""
        assert self._ipr is not None
        prefix, length = str(SERVICE_NET).split("/")
        async for message in await self._ipr.route(
            "dump", family=socket.AF_INET, proto=self.config.router.protocol
        ):
            if message.get("dst") == prefix and message["dst_len"] == int(length):
                gateway = message.get("gateway")
                return str(gateway) if gateway else None
        return None
